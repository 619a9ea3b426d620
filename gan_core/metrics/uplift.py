"""Augmentation uplift: does a classifier trained with the synthetic images beat one without?

The same small classifier, the same optimizer steps and the same classical augmentation in every
arm: real only, real + synthetic at several synthetic shares of each batch (the dose), and
synthetic only, each tested on the real holdout over several seeds. The best share is the
recommended mix.

A gain's interval is a paired bootstrap over the holdout images and the seeds together: the
holdout a team has is a sample too, and 40 images cannot show a one-point gain however many seeds
are trained (one image is 2.5 points)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Sequence

import numpy as np

from ..classifier import ClassifierConfig, train_classifier
from ..data import ImageData
from ..progress import time_left
from .errors import MetricsError


UPLIFT_CLASSIFIER = ClassifierConfig(steps=600, width=16)
UPLIFT_SHARES = (0.1, 0.25, 0.5)  # synthetic images per batch
UPLIFT_SEEDS = 5
BOOTSTRAP_DRAWS = 2000
MIN_DETECTABLE_IMAGES = 4  # d images more right, all else equal: the interval clears 0 once d/N > 1.96·√d/N


def uplift_classifier(steps: int | None = None) -> ClassifierConfig:
    """The uplift study's classifier, with `steps` optimizer steps instead of its default."""
    return UPLIFT_CLASSIFIER if steps is None else replace(UPLIFT_CLASSIFIER, steps=steps)


def paired_interval(differences: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """A `confidence` interval of the mean of paired differences (Student's t); NaN below two pairs."""
    from scipy import stats

    differences = np.asarray(differences, dtype=np.float64)
    if len(differences) < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf(0.5 + confidence / 2, len(differences) - 1) * differences.std(ddof=1) / np.sqrt(len(differences))
    return float(differences.mean() - half), float(differences.mean() + half)


def paired_bootstrap_interval(differences: np.ndarray, confidence: float = 0.95, draws: int = BOOTSTRAP_DRAWS, seed: int = 0) -> tuple[float, float]:
    """A `confidence` percentile interval of the mean of `differences` (seeds × holdout images, one
    arm's correctness minus the baseline's on the same image with the same seed), resampling seeds
    and images together, so that the finite holdout widens it as much as the seeds do."""
    differences = np.asarray(differences, dtype=np.float64)
    n_seeds, n_images = differences.shape
    if not n_images:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    seed_weights = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=draws)  # draws × seeds
    image_weights = rng.multinomial(n_images, np.full(n_images, 1 / n_images), size=draws)  # draws × images
    means = np.einsum("bs,si,bi->b", seed_weights, differences, image_weights) / (n_seeds * n_images)
    tail = (1 - confidence) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def share_arm(share: float) -> str:
    return f"share_{share:g}"


@dataclass
class Uplift:
    correct: dict[str, np.ndarray]  # arm (real, share_<s>, synthetic) → seeds × holdout images, 1 where the classifier was right
    shares: list[float]
    seeds: list[int]
    n_real: int
    n_synthetic: int
    classifier_steps: int

    @property
    def per_seed(self) -> dict[str, list[float]]:
        """Arm → one holdout accuracy per seed."""
        return {arm: [float(row.mean()) for row in rows] for arm, rows in self.correct.items()}

    @property
    def holdout_images(self) -> int:
        return int(self.correct["real"].shape[1])

    def arm(self, name: str) -> tuple[float, float]:
        """(mean, std) holdout accuracy of one arm over the seeds."""
        values = self.per_seed[name]
        return float(np.mean(values)), float(np.std(values))

    @property
    def real_only(self) -> tuple[float, float]:
        return self.arm("real")

    @property
    def synthetic_only(self) -> tuple[float, float]:
        return self.arm("synthetic")

    @property
    def best_share(self) -> float:
        """The share with the highest mean gain (the first of equals)."""
        return max(self.shares, key=lambda share: (self.gain_at(share), -share))

    @property
    def real_plus_synthetic(self) -> tuple[float, float]:
        return self.arm(share_arm(self.best_share))

    @property
    def gain(self) -> float:
        return self.gain_at(self.best_share)

    def gain_at(self, share: float) -> float:
        return self.arm(share_arm(share))[0] - self.real_only[0]

    def gain_interval(self, confidence: float = 0.95, share: float | None = None) -> tuple[float, float]:
        """A `confidence` interval of the gain at `share` (default the best): a bootstrap over holdout
        images and seeds, paired by image and seed (each seed trains every arm from the same start
        and every arm is scored on the same images)."""
        share = self.best_share if share is None else share
        differences = self.correct[share_arm(share)].astype(np.float64) - self.correct["real"]
        return paired_bootstrap_interval(differences, confidence)

    @property
    def min_detectable_gain(self) -> float:
        """The half-width of the best share's interval, and at least 4 images' worth of the holdout
        (even with every other image and seed agreeing, fewer than 4 more right never lift a 95%
        interval above 0): a smaller gain cannot be shown with this holdout and these seeds."""
        low, high = self.gain_interval()
        return max((high - low) / 2, MIN_DETECTABLE_IMAGES / self.holdout_images)

    def figures(self) -> dict[str, float]:
        """Every figure of the study by its metric name, at full precision: what the registry's
        `uplift_*` metrics, the pipeline's report and its gate all read."""
        low, high = self.gain_interval()
        return {
            "uplift_real_only": self.real_only[0],
            "uplift_real_plus_synthetic": self.real_plus_synthetic[0],
            "uplift_synthetic_only": self.synthetic_only[0],
            "uplift_gain": self.gain,
            "uplift_gain_ci_low": low,
            "uplift_gain_ci_high": high,
            "uplift_best_share": self.best_share,
            "uplift_min_detectable_gain": self.min_detectable_gain,
            "uplift_holdout_images": float(self.holdout_images),
            **{f"uplift_gain_{share_arm(share)}": self.gain_at(share) for share in self.shares},
        }

    def summary(self) -> dict[str, Any]:
        """The recommended mix, as the manifest's `utility` entry and the model version's tags hold it."""
        low, high = self.gain_interval()
        return {
            "share": self.best_share,
            "gain": self.gain,
            "gain_ci95": [low, high],
            "real_only": self.real_only[0],
            "real_plus_synthetic": self.real_plus_synthetic[0],
            "synthetic_only": self.synthetic_only[0],
            "seeds": len(self.seeds),
            "holdout_images": self.holdout_images,
            "min_detectable_gain": self.min_detectable_gain,
            "classifier_steps": self.classifier_steps,
            "n_real": self.n_real,
            "n_synthetic": self.n_synthetic,
        }

    def table(self) -> str:
        """Markdown: every arm's accuracy (mean ± std) and each share's gain with its 95% interval."""
        lines = ["| training data | holdout accuracy (mean ± std) | gain over real only (95% interval) |", "| --- | --- | --- |"]
        lines.append("| real only | {:.4f} ± {:.4f} | |".format(*self.real_only))
        for share in self.shares:
            low, high = self.gain_interval(share=share)
            best = " (best)" if share == self.best_share else ""
            mean, std = self.arm(share_arm(share))
            lines.append(
                f"| real + synthetic, {share:g} of each batch{best} | {mean:.4f} ± {std:.4f} | {self.gain_at(share):+.4f} ({low:+.4f} to {high:+.4f}) |"
            )
        lines.append("| synthetic only | {:.4f} ± {:.4f} | |".format(*self.synthetic_only))
        return "\n".join(lines) + (
            f"\n\n{len(self.seeds)} seeds, {self.classifier_steps} optimizer steps in every arm, scored on {self.holdout_images} holdout images; "
            f"intervals are a paired bootstrap over the holdout images and the seeds, so the smallest gain this study can show is about "
            f"{self.min_detectable_gain:+.4f}."
        )

    def to_dict(self) -> dict[str, Any]:
        fields = {key: value for key, value in asdict(self).items() if key != "correct"}
        return {**fields, "per_seed": self.per_seed, **self.summary(), "table": self.table()}


def augmentation_uplift(
    real_train: ImageData,
    holdout: ImageData,
    synthetic: ImageData,
    seeds: Sequence[int] = tuple(range(UPLIFT_SEEDS)),
    classifier: ClassifierConfig | None = None,
    shares: Sequence[float] = UPLIFT_SHARES,
    progress: Callable[[str], None] | None = None,
) -> Uplift:
    """The uplift classifier trained on real only, on real + synthetic with each of `shares` of
    every batch synthetic, and on synthetic only; tested on the real holdout for every seed.
    `progress` gets one line per seed done (arms trained, time left)."""
    if len(seeds) < 1:
        raise MetricsError("seeds: expected at least one seed")
    if not shares or not all(0 < share < 1 for share in shares):
        raise MetricsError(f"shares: expected synthetic shares of a batch in (0, 1), got {list(shares)}")
    base = classifier or UPLIFT_CLASSIFIER
    if not base.steps:
        # Epochs would give the larger real+synthetic set more optimizer steps than real only.
        raise MetricsError("uplift classifier: expected a fixed number of optimizer steps (ClassifierConfig.steps), the same for every training set")
    results: dict[str, list[np.ndarray]] = {"real": [], **{share_arm(share): [] for share in shares}, "synthetic": []}
    started = time.perf_counter()
    for done, seed in enumerate(seeds, 1):
        config = replace(base, seed=int(seed))
        results["real"].append(_correct(train_classifier(real_train, config), holdout))
        for share in shares:
            results[share_arm(share)].append(_correct(train_classifier(real_train, config, extra=synthetic, extra_share=share), holdout))
        results["synthetic"].append(_correct(train_classifier(synthetic, config), holdout))
        if progress is not None:
            left = (time.perf_counter() - started) / done * (len(seeds) - done)
            progress(f"uplift: seed {done}/{len(seeds)} done ({len(results)} classifiers of {base.steps} steps each), {time_left(left)} left")
    correct = {arm: np.stack(rows) for arm, rows in results.items()}
    return Uplift(correct, [float(s) for s in shares], [int(s) for s in seeds], len(real_train), len(synthetic), base.steps)


def _correct(classifier, holdout: ImageData) -> np.ndarray:
    return (classifier.predict(holdout.images) == holdout.labels).astype(np.uint8)
