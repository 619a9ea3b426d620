"""Memorization: synthetic samples closer to a training image than unseen real images are."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .distances import nearest_distances


@dataclass
class Memorization:
    space: str
    threshold: float  # 1st percentile of holdout → nearest-training distances
    fraction_near_copies: float  # synthetic samples closer to a training image than the threshold
    median_synthetic_distance: float
    median_holdout_distance: float
    closest: list[tuple[int, int, float]]  # (synthetic index, training index, distance), closest first


def memorization(synthetic: np.ndarray, train: np.ndarray, holdout: np.ndarray, space: str, top: int = 8) -> Memorization:
    """Synthetic→train nearest distances against holdout→train ones: a synthetic sample closer to a
    training image than 99% of real unseen images are is a likely copy."""
    synthetic_d, synthetic_i = nearest_distances(synthetic, train)
    holdout_d, _ = nearest_distances(holdout, train)
    return memorization_from_distances(synthetic_d, synthetic_i, holdout_d, space, top)


def near_copy_threshold(holdout_distances: np.ndarray) -> float:
    """Closer to a training image than 99% of unseen real images are: a likely copy."""
    return float(np.percentile(holdout_distances, 1))


def memorization_from_distances(synthetic_d: np.ndarray, synthetic_i: np.ndarray, holdout_d: np.ndarray, space: str, top: int = 8) -> Memorization:
    threshold = near_copy_threshold(holdout_d)
    order = np.argsort(synthetic_d, kind="stable")[:top]
    return Memorization(
        space=space,
        threshold=threshold,
        fraction_near_copies=float((synthetic_d < threshold).mean()),
        median_synthetic_distance=float(np.median(synthetic_d)),
        median_holdout_distance=float(np.median(holdout_d)),
        closest=[(int(i), int(synthetic_i[i]), float(synthetic_d[i])) for i in order],
    )
