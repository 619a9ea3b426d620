"""What each asset hands the next: a small frozen record (paths, hashes, versions, figures at full
precision), stored by `RecordIOManager` as JSON per asset, partition and run. Heavy objects (image
snapshots, weights, exports) stay files that a record points at.

    real_images ─Snapshot─► judge_classifier ─Judge─► gan_model ─ModelVersion─► gan_evaluation
    ─Evaluation─► champion_model ─Champion─► synthetic_dataset ─Export─► augmentation_report ─Uplift─► recommended
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from .specs import Spec


def spec_digest(spec: Spec) -> str:
    """The spec's settings as a hash: a record made under other settings is not this spec's."""
    return hashlib.sha256(json.dumps(spec.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Snapshot:
    """real_images: the split snapshot folder (train.npz, holdout.npz, unlabelled.npz) and the spec it was made under."""

    spec: str
    spec_digest: str
    path: str
    content_hash: str
    train_images: int
    holdout_images: int
    unlabelled_images: int

    def data_counts(self) -> dict[str, Any]:
        """What the dataset card and the model's description say of the training data."""
        return {
            "content_hash": self.content_hash,
            "train_images": self.train_images,
            "holdout_images": self.holdout_images,
            "unlabelled_images": self.unlabelled_images,
        }


@dataclass(frozen=True)
class Judge:
    """judge_classifier: its weights, its accuracy on the snapshot's holdout, and whether that shows
    it better than chance and the majority class (else it pseudo-labels, filters and soft-labels nothing)."""

    path: str
    snapshot: str  # the content hash of the snapshot it was trained on
    holdout_accuracy: float
    holdout_images: int
    useful: bool
    usefulness: str  # why it is used or not, with the figures of the test


@dataclass(frozen=True)
class ModelVersion:
    """gan_model: the registered version, its MLflow run and its generator's weights."""

    model_name: str
    model_version: str
    mlflow_run_id: str
    mlflow_run: str  # a link to the run in the MLflow UI
    generator_path: str
    snapshot: str


@dataclass(frozen=True)
class Evaluation:
    """gan_evaluation: every figure at full precision, on the yardstick it was measured on."""

    model_name: str
    model_version: str
    metrics: dict[str, float]
    backbone: str
    primary_metric: str
    primary_higher_is_better: bool
    n_compare: int
    yardstick: dict[str, Any]
    judge_holdout_accuracy: float


@dataclass(frozen=True)
class Champion:
    """champion_model: the version the `champion` alias names after this run, and why."""

    model_name: str
    champion_version: str
    candidate_version: str
    promoted: bool
    reason: str


@dataclass(frozen=True)
class Export:
    """synthetic_dataset: a committed export of one model version."""

    path: str
    model_version: str
    rows: int
    planned_rows: int


@dataclass(frozen=True)
class Uplift:
    """augmentation_report: the study's figures at full precision and the verdict taken on them."""

    model_version: str
    export_path: str
    figures: dict[str, float]
    passed: bool
    verdict: str
    min_uplift: float
    seeds: int
    classifier_steps: int
    recipe: str = "real + synthetic"  # the recommended recipe, and what it was compared with
    baseline: str = "real only"


RECORDS = {cls.__name__: cls for cls in (Snapshot, Judge, ModelVersion, Evaluation, Champion, Export, Uplift)}


def to_json(record: Any) -> str:
    return json.dumps({"record": type(record).__name__, **dataclasses.asdict(record)}, indent=2, sort_keys=True)


def from_json(text: str, where: str) -> Any:
    payload = json.loads(text)
    kind = payload.pop("record", None)
    if kind not in RECORDS:
        raise ValueError(f"{where}: not a ganpipe record (record type {kind!r}; expected one of {sorted(RECORDS)})")
    return RECORDS[kind](**payload)
