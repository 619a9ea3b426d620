"""Distances between sets and between images: FID, KID and IS through torchmetrics on features
extracted once, improved precision/recall and density/coverage, and exact nearest-neighbour
distances in pixel space."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.inception import InceptionScore
from torchmetrics.image.kid import KernelInceptionDistance

from .errors import MetricsError


class _Features(nn.Module):
    """Identity 'feature extractor': lets torchmetrics accumulate features we extracted once."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def fid_from_features(reference: np.ndarray, other: np.ndarray) -> float:
    metric = FrechetInceptionDistance(feature=_Features(reference.shape[1]))
    metric.update(torch.from_numpy(reference).double(), real=True)
    metric.update(torch.from_numpy(other).double(), real=False)
    return float(metric.compute())


def kid_from_features(reference: np.ndarray, other: np.ndarray, subsets: int = 50, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    size = min(subset_size, len(reference), len(other))
    if size < 2:
        raise MetricsError(f"KID needs at least 2 samples per set, got {len(reference)} and {len(other)}")
    torch.manual_seed(seed)
    metric = KernelInceptionDistance(feature=_Features(reference.shape[1]), subsets=subsets, subset_size=size)
    metric.update(torch.from_numpy(reference).double(), real=True)
    metric.update(torch.from_numpy(other).double(), real=False)
    mean, std = metric.compute()
    return float(mean), float(std)


def inception_score_from_logits(logits: np.ndarray, splits: int = 10) -> tuple[float, float]:
    metric = InceptionScore(feature=_Features(logits.shape[1]), splits=min(splits, len(logits)))
    torch.manual_seed(0)
    metric.update(torch.from_numpy(logits).double())
    mean, std = metric.compute()
    return float(mean), float(std)


def pairwise(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cdist(a, b)


def _kth_neighbour_radii(x: torch.Tensor, k: int, chunk: int = 2048) -> torch.Tensor:
    radii = []
    for start in range(0, len(x), chunk):
        d = pairwise(x[start : start + chunk], x)
        radii.append(d.kthvalue(k + 1, dim=1).values)  # +1: the point itself is at distance 0
    return torch.cat(radii)


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 5, chunk: int = 2048) -> dict[str, float]:
    """Improved precision/recall (Kynkäänniemi et al., 2019) and density/coverage (Naeem et al.,
    2020) with k-nearest-neighbour balls (k at most one less than either set); distances in chunks
    so memory stays bounded."""
    real_t, fake_t = torch.from_numpy(real).float(), torch.from_numpy(fake).float()
    k = max(1, min(k, len(real_t) - 1, len(fake_t) - 1))  # a few labelled images have fewer than k neighbours
    real_radii = _kth_neighbour_radii(real_t, k, chunk)
    fake_radii = _kth_neighbour_radii(fake_t, k, chunk)
    inside_count = torch.zeros(len(fake_t))
    nearest_fake = torch.full((len(real_t),), float("inf"))
    recall_hits = torch.zeros(len(real_t), dtype=torch.bool)
    for start in range(0, len(fake_t), chunk):
        d = pairwise(fake_t[start : start + chunk], real_t)  # fakes × reals
        inside = d <= real_radii[None, :]
        inside_count[start : start + chunk] = inside.sum(dim=1).float()
        nearest_fake = torch.minimum(nearest_fake, d.min(dim=0).values)
        recall_hits |= (d <= fake_radii[start : start + chunk, None]).any(dim=0)
    return {
        "precision": float((inside_count > 0).float().mean()),
        "recall": float(recall_hits.float().mean()),
        "density": float(inside_count.sum() / (k * len(fake_t))),
        "coverage": float((nearest_fake <= real_radii).float().mean()),
    }


def nearest_distances(queries: np.ndarray, references: np.ndarray, chunk: int = 2048, chunk_bytes: int = 64 << 20) -> tuple[np.ndarray, np.ndarray]:
    """For each query row: distance to and index of its nearest reference row (Euclidean), in float64.

    On uint8 pixels this is exact: every squared norm and dot product is an integer below 2^53, so the
    matrix-multiply shortcut loses nothing, where float32 rounds once a norm passes 2^24 (any RGB or
    64 px image) and put a one-pixel-off copy at distance 0. Both sides are converted a chunk at a
    time (about `chunk_bytes` each), so 128 px RGB training sets need no float copy of their own."""
    q = np.asarray(queries).reshape(len(queries), -1)
    r = np.asarray(references).reshape(len(references), -1)
    rows = max(1, chunk_bytes // (8 * max(r.shape[1], 1)))
    q_rows, r_rows = min(chunk, rows), rows
    distances, indices = np.empty(len(q)), np.empty(len(q), dtype=np.int64)
    for q_start in range(0, len(q), q_rows):
        q_chunk = torch.from_numpy(q[q_start : q_start + q_rows]).double()
        best = torch.full((len(q_chunk),), float("inf"), dtype=torch.float64)
        best_index = torch.zeros(len(q_chunk), dtype=torch.int64)
        for r_start in range(0, len(r), r_rows):
            nearest = pairwise(q_chunk, torch.from_numpy(r[r_start : r_start + r_rows]).double()).min(dim=1)
            closer = nearest.values < best  # strict: ties keep the first reference, as one min would
            best = torch.where(closer, nearest.values, best)
            best_index = torch.where(closer, nearest.indices + r_start, best_index)
        distances[q_start : q_start + len(q_chunk)] = best.numpy()
        indices[q_start : q_start + len(q_chunk)] = best_index.numpy()
    return distances, indices
