"""The registry of named metrics, in the manner of stylegan2-ada-pytorch's `metric_main.py`: each
metric a function of one shared evaluation pass (`Measured`), registered with its direction, what it
is measured on and on how many samples. Specs, gates and the champion read names and directions
from here."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Sequence

import numpy as np

from .distances import fid_from_features, inception_score_from_logits, kid_from_features, prdc
from .errors import MetricsError
from .memorization import Memorization, memorization, memorization_from_distances
from .uplift import Uplift


@dataclass
class Measured:
    """What one evaluation pass extracted, shared by every metric: features and logits of the train
    split, the synthetic samples and the holdout (at equal N for set-to-set metrics: `fake_*` and
    `real_*`), the judge's predictions, nearest-training-image distances and the uplift study."""

    backbone: str
    train_f: np.ndarray
    fake_f: np.ndarray
    real_f: np.ndarray
    fake_l: np.ndarray
    real_l: np.ndarray
    synthetic_f: np.ndarray
    holdout_f: np.ndarray
    labels: np.ndarray  # the conditioning label of every synthetic sample
    predicted: np.ndarray  # the judge's label for every synthetic sample
    judge_holdout_accuracy: float
    pixel_d: np.ndarray  # synthetic → nearest training image, 0–255 pixel units
    pixel_i: np.ndarray
    holdout_pixel_d: np.ndarray
    uplift: Uplift | None = None

    @cached_property
    def prdc_synthetic(self) -> dict[str, float]:
        return prdc(self.train_f, self.fake_f)

    @cached_property
    def prdc_real(self) -> dict[str, float]:
        return prdc(self.train_f, self.real_f)

    @cached_property
    def memorization_features(self) -> Memorization:
        return memorization(self.synthetic_f, self.train_f, self.holdout_f, f"{self.backbone} features")

    @cached_property
    def memorization_pixels(self) -> Memorization:
        # On a 0–1 scale (÷255); the distances themselves are exact on the uint8 images.
        return memorization_from_distances(self.pixel_d / 255, self.pixel_i, self.holdout_pixel_d / 255, "pixels")


@dataclass(frozen=True)
class Metric:
    """A named figure: the function computing it from a `Measured` pass (figures keyed by suffix:
    "" the value, "_baseline" real vs real, "_std"), which way is better, what it is measured on
    (`backbone` metrics are named `<name>_<backbone>`) and on how many samples."""

    name: str
    compute: Callable[[Measured], dict[str, float]]
    higher_is_better: bool
    measured_on: str  # backbone (named <name>_<backbone>) | features (the backbone's, one name) | judge | pixels | uplift
    samples: str  # n_compare: synthetic and holdout sets of equal N; n_samples: every synthetic sample
    description: str


_REGISTRY: dict[str, Metric] = {}


BACKBONES = ("domain", "inception")


ALIASES = ("fid", "kid")  # of the backbone the evaluation used

# Set-to-set figures (FID, KID, IS, precision/recall/density/coverage) compare N synthetic samples
# with N holdout images; below this N they are too noisy to gate on (FID on 40 images means little).
MIN_COMPARE_N = 200


def too_small(name: str, n_compare: int) -> str | None:
    """Why `name` measured at N = n_compare should not be gated on, or None when it can be."""
    if metric_info(name).samples == "n_compare" and n_compare < MIN_COMPARE_N:
        return f"{name} compares only {n_compare} holdout images with as many samples; at least {MIN_COMPARE_N} are needed for a figure to gate on"
    return None


def register_metric(name: str, *, higher_is_better: bool, measured_on: str, samples: str):
    def register(compute: Callable[[Measured], dict[str, float]]):
        _REGISTRY[name] = Metric(name, compute, higher_is_better, measured_on, samples, (compute.__doc__ or "").strip())
        return compute

    return register


def known_metrics() -> list[str]:
    """Every full metric name evaluate() can report (backbone metrics once per backbone)."""
    names = []
    for metric in _REGISTRY.values():
        names += [f"{metric.name}_{b}" for b in BACKBONES] if metric.measured_on == "backbone" else [metric.name]
    return names


def metric_info(name: str) -> Metric:
    """The registered metric behind a full name (`fid_domain` → fid); MetricsError lists the known ones."""
    if name in _REGISTRY and _REGISTRY[name].measured_on != "backbone":
        return _REGISTRY[name]
    family, _, backbone = name.rpartition("_")
    if backbone in BACKBONES and family in _REGISTRY and _REGISTRY[family].measured_on == "backbone":
        return _REGISTRY[family]
    raise MetricsError(f"unknown metric {name!r}; expected one of {', '.join(ALIASES)} (of the backbone used) or {', '.join(known_metrics())}")


def resolve_metric(name: str, backbone: str) -> str:
    """A full metric name: `fid`/`kid` name the backbone's; anything else must be registered."""
    full = f"{name}_{backbone}" if name in ALIASES else name
    metric_info(full)
    return full


def default_metrics(backbone: str, uplift: bool = False) -> list[str]:
    """Every registered metric on this backbone; the uplift ones only with the uplift study."""
    return [f"{m.name}_{backbone}" if m.measured_on == "backbone" else m.name for m in _REGISTRY.values() if uplift or m.measured_on != "uplift"]


def compute_metrics(measured: Measured, names: Sequence[str]) -> dict[str, float]:
    figures: dict[str, float] = {}
    for name in names:
        metric = metric_info(name)
        if metric.measured_on == "backbone" and not name.endswith(f"_{measured.backbone}"):
            raise MetricsError(f"metric {name!r} needs the {name.rpartition('_')[2]} backbone; this evaluation used {measured.backbone}")
        if metric.measured_on == "uplift" and measured.uplift is None:
            raise MetricsError(f"metric {name!r} needs the uplift study (uplift_seeds)")
        for suffix, value in metric.compute(measured).items():
            figures[f"{name}{suffix}"] = float(value)
    return figures


@register_metric("fid", higher_is_better=False, measured_on="backbone", samples="n_compare")
def _fid(m: Measured) -> dict[str, float]:
    """Fréchet distance of synthetic to train features."""
    return {"": fid_from_features(m.train_f, m.fake_f), "_baseline": fid_from_features(m.train_f, m.real_f)}


@register_metric("kid", higher_is_better=False, measured_on="backbone", samples="n_compare")
def _kid(m: Measured) -> dict[str, float]:
    """Kernel (polynomial MMD²) distance of synthetic to train features: unbiased at small N."""
    (value, std), (baseline, _) = kid_from_features(m.train_f, m.fake_f), kid_from_features(m.train_f, m.real_f)
    return {"": value, "_std": std, "_baseline": baseline}


@register_metric("is", higher_is_better=True, measured_on="backbone", samples="n_compare")
def _inception_score(m: Measured) -> dict[str, float]:
    """Inception score of the backbone's class logits."""
    (value, std), (baseline, _) = inception_score_from_logits(m.fake_l), inception_score_from_logits(m.real_l)
    return {"": value, "_std": std, "_baseline": baseline}


def _prdc_metric(key: str, description: str):
    def compute(m: Measured) -> dict[str, float]:
        return {"": m.prdc_synthetic[key], "_baseline": m.prdc_real[key]}

    compute.__doc__ = description
    register_metric(key, higher_is_better=True, measured_on="backbone", samples="n_compare")(compute)


_prdc_metric("precision", "Share of synthetic samples inside the train features' k-NN balls (fidelity).")


_prdc_metric("recall", "Share of train features inside the synthetic samples' k-NN balls (diversity).")


_prdc_metric("density", "How many train k-NN balls hold a synthetic sample, on average (fidelity).")


_prdc_metric("coverage", "Share of train features whose k-NN ball holds a synthetic sample (diversity).")


@register_metric("label_accuracy", higher_is_better=True, measured_on="judge", samples="n_samples")
def _label_accuracy(m: Measured) -> dict[str, float]:
    """Share of samples the judge gives their conditioning label; baseline: the judge on the real holdout."""
    return {"": float((m.predicted == m.labels).mean()), "_baseline": m.judge_holdout_accuracy}


@register_metric("memorization_fraction_features", higher_is_better=False, measured_on="features", samples="n_samples")
def _memorization_features(m: Measured) -> dict[str, float]:
    """Share of samples closer to a training image (backbone features) than 99% of holdout images are."""
    return {"": m.memorization_features.fraction_near_copies}


@register_metric("memorization_fraction_pixels", higher_is_better=False, measured_on="pixels", samples="n_samples")
def _memorization_pixels(m: Measured) -> dict[str, float]:
    """Share of samples closer to a training image (pixels) than 99% of holdout images are."""
    return {"": m.memorization_pixels.fraction_near_copies}


def _uplift_metric(key: str, description: str) -> None:
    def compute(m: Measured) -> dict[str, float]:
        figures = m.uplift.figures()
        return {"": figures[key]} if key in figures else {}  # a study without real + synthetic has no such figure

    compute.__doc__ = description
    register_metric(key, higher_is_better=True, measured_on="uplift", samples="n_samples")(compute)


_uplift_metric("uplift_real_only", "Holdout accuracy of the uplift classifier trained on real images only.")
_uplift_metric("uplift_real_plus_synthetic", "Holdout accuracy of the uplift classifier trained on real + synthetic (the best share).")
_uplift_metric("uplift_recommended", "Holdout accuracy of the recommended recipe: the best arm with synthetic data.")
_uplift_metric("uplift_synthetic_only", "Holdout accuracy of the uplift classifier trained on synthetic only.")
_uplift_metric("uplift_gain", "The recommended recipe minus the best arm without synthetic data (ssl with a pool, else real only).")
_uplift_metric("uplift_gain_over_real", "The recommended recipe minus real only.")
_uplift_metric("uplift_gain_ci_low", "Lower bound of the gain's 95% interval, a paired bootstrap over holdout images and seeds.")
