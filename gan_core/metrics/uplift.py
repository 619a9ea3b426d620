"""Augmentation uplift: does a classifier trained with the synthetic images beat one without?"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Sequence

import numpy as np

from ..classifier import ClassifierConfig, train_classifier
from ..data import ImageData
from .errors import MetricsError


UPLIFT_CLASSIFIER = ClassifierConfig(steps=600, width=16)


def uplift_classifier(steps: int | None = None) -> ClassifierConfig:
    """The uplift study's classifier, with `steps` optimizer steps instead of its default."""
    return UPLIFT_CLASSIFIER if steps is None else replace(UPLIFT_CLASSIFIER, steps=steps)


@dataclass
class Uplift:
    real_only: tuple[float, float]  # (mean, std) holdout accuracy over seeds
    real_plus_synthetic: tuple[float, float]
    synthetic_only: tuple[float, float]
    seeds: list[int]
    n_real: int
    n_synthetic: int
    per_seed: dict[str, list[float]] = field(default_factory=dict)  # real, mixed, synthetic: one accuracy per seed

    @property
    def gain(self) -> float:
        return self.real_plus_synthetic[0] - self.real_only[0]

    def gain_interval(self, confidence: float = 0.95) -> tuple[float, float]:
        """A `confidence` interval of the gain (Student's t over the per-seed differences, paired by
        seed: each seed trains both arms from the same start). NaN with fewer than two seeds."""
        from scipy import stats

        differences = np.subtract(self.per_seed["mixed"], self.per_seed["real"])
        if len(differences) < 2:
            return float("nan"), float("nan")
        half = stats.t.ppf(0.5 + confidence / 2, len(differences) - 1) * differences.std(ddof=1) / np.sqrt(len(differences))
        return float(differences.mean() - half), float(differences.mean() + half)


def augmentation_uplift(
    real_train: ImageData,
    holdout: ImageData,
    synthetic: ImageData,
    seeds: Sequence[int] = (0, 1, 2),
    classifier: ClassifierConfig | None = None,
) -> Uplift:
    """The same small classifier, with the same number of optimizer steps, trained on real,
    real+synthetic and synthetic only, tested on the real holdout, over several seeds (mean ± std)."""
    if len(seeds) < 1:
        raise MetricsError("seeds: expected at least one seed")
    base = classifier or UPLIFT_CLASSIFIER
    if not base.steps:
        # Epochs would give the larger real+synthetic set more optimizer steps than real only.
        raise MetricsError("uplift classifier: expected a fixed number of optimizer steps (ClassifierConfig.steps), the same for every training set")
    mixed = ImageData(np.concatenate([real_train.images, synthetic.images]), np.concatenate([real_train.labels, synthetic.labels]), real_train.class_names)
    results: dict[str, list[float]] = {"real": [], "mixed": [], "synthetic": []}
    for seed in seeds:
        config = ClassifierConfig(**{**asdict(base), "seed": int(seed)})
        for key, data in (("real", real_train), ("mixed", mixed), ("synthetic", synthetic)):
            results[key].append(train_classifier(data, config).accuracy(holdout))
    stats = {key: (float(np.mean(v)), float(np.std(v))) for key, v in results.items()}
    return Uplift(stats["real"], stats["mixed"], stats["synthetic"], [int(s) for s in seeds], len(real_train), len(synthetic), per_seed=results)
