"""Intervals of paired differences: Student's t over pairs, and a bootstrap over seeds and holdout
images together (the uplift study's, where the holdout is a sample too)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

BOOTSTRAP_DRAWS = 2000


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
