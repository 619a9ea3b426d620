"""Spec files (`specs/<name>.yaml`): one per dataset/team, validated with pydantic.

A bad spec is reported with its file and field and does not stop the other specs from loading."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError, field_validator, model_validator

from gan_core.metrics import UPLIFT_BASELINES, UPLIFT_SHARES, MetricsError, metric_info, resolve_metric
from gan_core.models import SUPPORTED_SIZES
from gan_core.semi import PSEUDO_LABEL_CONFIDENCE, TEACHER_RECIPES
from gan_core.train import PROFILES, TrainConfig
from gan_core.yaml_text import load_yaml

from .layout import SPEC_NAME
from .settings import Settings

NAME_PATTERN = SPEC_NAME.pattern  # a path segment and partition key; readers check names with the same rule


class SpecError(ValueError):
    """A spec file that cannot be used; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceSpec(_Strict):
    kind: Literal["builtin", "image_folder", "npz", "mnist_idx", "parquet"]
    name: Optional[str] = None
    path: Optional[str] = None
    images: Optional[str] = None
    labels: Optional[str] = None
    skip_bad: bool = False
    # Keep only this many labels per class of the train split; the rest of it joins the unlabelled
    # pool with its labels dropped (for demos and benchmarks of the few-labels setting).
    labels_per_class: Optional[int] = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _required_fields(self) -> SourceSpec:
        missing = [name for name in self._needed() if getattr(self, name) is None]
        if missing:
            raise ValueError(f"source kind '{self.kind}' needs field(s) {missing}")
        return self

    def _needed(self) -> list[str]:
        return {"builtin": ["name"], "image_folder": ["path"], "npz": ["path"], "parquet": ["path"], "mnist_idx": ["images", "labels"]}[self.kind]

    def loader_args(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None and k not in ("skip_bad", "labels_per_class")}


class UnlabelledSpec(SourceSpec):
    """A source of images without labels: any source kind; labels found there are ignored, and an
    image_folder may be flat (images directly in it) or hold class sub-folders."""

    @model_validator(mode="after")
    def _no_label_split(self) -> UnlabelledSpec:
        if self.labels_per_class is not None:
            raise ValueError("labels_per_class applies to the labelled source only")
        return self

    def _needed(self) -> list[str]:
        return ["images"] if self.kind == "mnist_idx" else super()._needed()

    def loader_args(self) -> dict[str, Any]:
        return {**super().loader_args(), "unlabelled": True}


class HoldoutSpec(SourceSpec):
    """A separate labelled test set (any source kind): it scores the judge and the uplift study and
    never trains anything; the spec's whole `source` then trains, and `holdout_fraction` is unused."""

    @model_validator(mode="after")
    def _whole_holdout(self) -> HoldoutSpec:
        if self.labels_per_class is not None:
            raise ValueError("labels_per_class applies to the labelled source only; a holdout is used whole")
        return self


class ImageSpec(_Strict):
    size: int = 32
    channels: Literal[1, 3] = 1
    fit: Literal["pad", "resize", "exact"] = "pad"  # exact: refuse images that would need converting

    @field_validator("size")
    @classmethod
    def _size(cls, value: int) -> int:
        if value not in SUPPORTED_SIZES:
            raise ValueError(f"expected one of {SUPPORTED_SIZES}")
        return value


class TrainingSpec(BaseModel):
    """`profile` plus any TrainConfig field as an override."""

    model_config = ConfigDict(extra="allow")
    profile: Literal[tuple(PROFILES)] = "quick"  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _known_overrides(self) -> TrainingSpec:
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(self.model_extra or {}) - known)
        if unknown:
            raise ValueError(f"unknown training field(s) {unknown}; expected TrainConfig fields")
        try:
            self.train_config()
        except (TypeError, ValueError) as error:
            raise ValueError(str(error)) from error
        return self

    def train_config(self, **overrides: Any) -> TrainConfig:
        return TrainConfig.from_profile(self.profile, **{**(self.model_extra or {}), **overrides})


# Gate names kept from before the metric registry, and min_uplift: the metric each one bounds.
GATE_ALIASES = {"memorization_fraction": "memorization_fraction_features", "uplift": "uplift_gain"}


UPLIFT_BASELINE = "uplift_baseline"  # the one gate key that names an arm, not a bound


class GatesSpec(RootModel[dict[str, Union[float, str]]]):
    """`min_<metric>: value` or `max_<metric>: value` for any registered metric (`gan_core.metrics.known_metrics()`);
    `fid` and `kid` name the backbone the evaluation used. `uplift_baseline: ssl` (the default) has the
    uplift gate compare the recommended recipe with the best arm without synthetic data (ssl when
    there is a pool); `real` relaxes it to real only."""

    root: dict[str, Union[float, str]] = {}

    @model_validator(mode="after")
    def _known_metrics(self) -> GatesSpec:
        for key, value in self.root.items():
            if key == UPLIFT_BASELINE:
                if value not in UPLIFT_BASELINES:
                    raise ValueError(f"gate {UPLIFT_BASELINE!r}: expected one of {list(UPLIFT_BASELINES)}, got {value!r}")
                continue
            self.bound(key)
            if isinstance(value, str):
                raise ValueError(f"gate {key!r}: expected a number, got {value!r}")
        return self

    @property
    def thresholds(self) -> dict[str, float]:
        """Every `min_`/`max_` gate and its threshold."""
        return {key: float(value) for key, value in self.root.items() if key != UPLIFT_BASELINE}

    @property
    def uplift_baseline(self) -> str:
        return str(self.root.get(UPLIFT_BASELINE, "ssl"))

    @staticmethod
    def bound(key: str) -> tuple[str, str]:
        """('min' or 'max', metric name as written) of a gate; ValueError names what is expected."""
        bound, _, name = key.partition("_")
        if bound not in ("min", "max") or not name:
            raise ValueError(f"gate {key!r}: expected min_<metric> or max_<metric>")
        name = GATE_ALIASES.get(name, name)
        try:
            resolve_metric(name, "domain")  # any backbone: only whether the name is known matters
        except MetricsError as error:
            raise ValueError(f"gate {key!r}: {error}") from None
        return bound, name

    def limit(self, bound: str, metric: str) -> Optional[float]:
        """The threshold of the gate `<bound>_<metric>`, if the spec sets one."""
        return next((value for key, value in self.thresholds.items() if self.bound(key) == (bound, metric)), None)


class EvaluationSpec(_Strict):
    backbone: Literal["auto", "inception", "domain"] = "auto"
    n_samples: int = Field(default=10_000, ge=2)
    primary_metric: str = "fid"  # fid/kid (of the backbone used), or any registered metric's full name
    gates: GatesSpec = GatesSpec()
    uplift_seeds: int = Field(default=5, ge=1)
    # Synthetic shares of each batch in the uplift study (real + synthetic and ssl + synthetic).
    uplift_shares: list[float] = Field(default=list(UPLIFT_SHARES), min_length=1)
    # Optimizer steps of every arm's classifier (unset: gan_core's uplift classifier, 600).
    uplift_classifier_steps: Optional[int] = Field(default=None, ge=1)

    @field_validator("uplift_shares")
    @classmethod
    def _shares(cls, value: list[float]) -> list[float]:
        if not all(0 < share < 1 for share in value):
            raise ValueError(f"expected synthetic shares of a batch in (0, 1), got {value}")
        return value

    @field_validator("primary_metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        try:
            resolve_metric(value, "domain")
        except MetricsError as error:
            raise ValueError(str(error)) from None
        return value


class ExportSpec(_Strict):
    samples_per_class: int = Field(default=1000, ge=1)
    image_format: Literal["png", "raw"] = "png"
    rows_per_part: int = Field(default=100_000, ge=1)
    seed: int = Field(default=0, ge=0)
    # Keep a row only if the judge gives its label at least this probability (rejection sampling;
    # each row's seed still regenerates it). 0 turns the filter off.
    # The default was chosen with benchmarks/uplift.py.
    min_confidence: float = Field(default=0.9, ge=0, lt=1)
    min_acceptance: float = Field(default=0.0, ge=0, le=1)  # a class accepted less often fails the export
    # The pixel copy screen fails an export whose share of near copies of training images (closer to
    # one than the real holdout ever is) exceeds this; 1 only reports it. Exact copies always fail it.
    max_near_copy_fraction: float = Field(default=1.0, ge=0, le=1)
    # The export's licence as the Hugging Face Hub names licences (cc-by-4.0, mit, apache-2.0, other...);
    # unset, the dataset card says so. Usually the licence of the real images the GAN learnt from.
    license: Optional[str] = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9.+-]*$", max_length=64)


class Spec(_Strict):
    name: str = Field(pattern=NAME_PATTERN, max_length=64)
    source: SourceSpec
    unlabelled: Optional[UnlabelledSpec] = None  # images without labels: the GAN learns from them too
    # A pool image joins the GAN's and the judge's training under the judge's guess of its class
    # only when the judge gives that class at least this probability.
    pseudo_label_confidence: float = Field(default=PSEUDO_LABEL_CONFIDENCE, ge=0, lt=1)
    # How the judge learns from the pool: weak/strong consistency (FixMatch-style; the default, by
    # benchmarks/teacher.py), or self-training.
    teacher: Literal[TEACHER_RECIPES] = "consistency"
    image: ImageSpec = ImageSpec()
    holdout_fraction: float = Field(default=0.2, gt=0, lt=1)
    holdout: Optional[HoldoutSpec] = None  # a team's own labelled test set instead of a split of `source`
    seed: int = Field(default=0, ge=0)
    training: TrainingSpec = TrainingSpec()
    evaluation: EvaluationSpec = EvaluationSpec()
    export: ExportSpec = ExportSpec()
    schedule: Optional[str] = None
    path: Optional[str] = Field(default=None, exclude=True)  # the file it came from (set by the loader)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: Optional[str]) -> Optional[str]:
        from dagster._utils.schedules import is_valid_cron_string

        if value is not None and not is_valid_cron_string(value):
            raise ValueError(f"not a valid cron expression: {value!r}")
        return value

    @property
    def base_dir(self) -> Path:
        """Relative source paths are read relative to the spec file."""
        return Path(self.path).parent if self.path else Path.cwd()


def default_specs_dir() -> Path:
    return Path(Settings.from_env().specs)


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        field = ".".join(str(p) for p in item["loc"]) or "(top level)"
        parts.append(f"field '{field}': {item['msg']}")
    return "; ".join(parts)


def load_spec(path: str | Path) -> Spec:
    path = Path(path)
    try:
        raw = load_yaml(path.read_text())
    except OSError as error:
        raise SpecError(f"{path}: cannot read ({error.strerror or error})") from error
    except yaml.YAMLError as error:
        raise SpecError(f"{path}: not valid YAML ({error})") from error
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: expected a mapping of spec fields, got {type(raw).__name__}")
    try:
        spec = Spec.model_validate({**raw, "path": str(path)})
    except ValidationError as error:
        raise SpecError(f"{path}: {_describe(error)}") from error
    if spec.name != path.stem:
        raise SpecError(f"{path}: field 'name': '{spec.name}' must match the file name '{path.stem}'")
    return spec


def load_specs(directory: str | Path | None = None) -> tuple[dict[str, Spec], dict[str, str]]:
    """All specs in the directory: (name → spec, file → error message for the bad ones)."""
    directory = Path(directory) if directory is not None else default_specs_dir()
    specs, errors = {}, {}
    for path in sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml")):
        try:
            spec = load_spec(path)
        except SpecError as error:
            errors[str(path)] = str(error)
            continue
        specs[spec.name] = spec
    return specs, errors


def primary_metric(spec: Spec, backbone: str) -> tuple[str, bool]:
    """(metric name, higher is better) for comparing model versions."""
    name = resolve_metric(spec.evaluation.primary_metric, backbone)
    return name, metric_info(name).higher_is_better
