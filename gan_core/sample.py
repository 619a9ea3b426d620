"""Deterministic batched generation: (seed, labels) → uint8 images.

Each sample has its own 63-bit seed, and its latent vector is a pure function of that seed
(a counter-based hash, computed in numpy), so one sample can be regenerated alone from the `seed`
stored beside it, on any device, whatever the batch size or position it first had."""

from __future__ import annotations

import numpy as np
import torch

from .device import keep_freed_cpu_memory
from .models import FoldedGenerator, Generator

_MASK63 = np.uint64((1 << 63) - 1)


def _splitmix64(values: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def sample_seeds(seed: int, count: int, offset: int = 0) -> np.ndarray:
    """Per-sample seeds for samples offset..offset+count-1 of a run seeded with `seed` (int64 ≥ 0)."""
    return seeds_at(seed, np.arange(offset, offset + count, dtype=np.uint64))


def seeds_at(seed: int, indices: np.ndarray) -> np.ndarray:
    """The seeds of samples `indices` (any order) of a run seeded with `seed`: as `sample_seeds`."""
    with np.errstate(over="ignore"):
        base = _splitmix64(np.array([seed], dtype=np.uint64))[0]
        counters = base + np.asarray(indices).astype(np.uint64)
    return (_splitmix64(counters) & _MASK63).astype(np.int64)


def latents(seeds: np.ndarray, z_dim: int) -> torch.Tensor:
    """Standard normal N×z_dim from per-sample seeds (Box–Muller on hashed counters)."""
    seeds = np.asarray(seeds, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        counters = seeds[:, None] * np.uint64(2 * z_dim) + np.arange(2 * z_dim, dtype=np.uint64)[None, :]
    bits = _splitmix64(counters) >> np.uint64(11)  # 53 random bits → uniform in [0, 1)
    uniform = bits.astype(np.float64) * (1.0 / (1 << 53))
    u1, u2 = 1.0 - uniform[:, :z_dim], uniform[:, z_dim:]  # u1 in (0, 1] keeps log finite
    normal = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
    return torch.from_numpy(normal.astype(np.float32))


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats → uint8 with rounding."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


@torch.no_grad()
def generate(
    generator: Generator | FoldedGenerator,
    labels: np.ndarray | list[int],
    seed: int = 0,
    batch_size: int = 128,
    *,
    seeds: np.ndarray | None = None,
) -> np.ndarray:
    """uint8 images N×C×H×W for the given labels; memory stays at one batch on the device.

    `seeds` (one per sample) overrides `seed`; otherwise per-sample seeds are `sample_seeds(seed, N)`.
    Sampling runs the generator's eval-mode function folded for speed; callers that sample many small
    batches pass `FoldedGenerator(generator)` once instead of the generator."""
    labels = np.array(labels, dtype=np.int64)  # a writable copy: torch refuses read-only arrays
    if labels.ndim != 1:
        raise ValueError(f"labels: expected a 1-D array, got shape {labels.shape}")
    num_classes = generator.config.num_classes
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels: expected values in [0, {num_classes - 1}], got [{labels.min()}, {labels.max()}]")
    seeds = sample_seeds(seed, len(labels)) if seeds is None else np.asarray(seeds, dtype=np.int64)
    if len(seeds) != len(labels):
        raise ValueError(f"seeds: {len(seeds)} seeds for {len(labels)} labels; expected one per sample")
    folded = generator if isinstance(generator, FoldedGenerator) else FoldedGenerator(generator)
    device = folded.device
    if device.type == "cpu":
        keep_freed_cpu_memory()
    config = generator.config
    out = np.empty((len(labels), config.channels, config.size, config.size), dtype=np.uint8)
    for start in range(0, len(labels), batch_size):
        stop = min(start + batch_size, len(labels))
        z = latents(seeds[start:stop], config.z_dim).to(device)
        batch_labels = torch.from_numpy(labels[start:stop]).to(device)
        out[start:stop] = to_uint8(folded(z, batch_labels)).cpu().numpy()
    return out


def image_grid(images: np.ndarray, columns: int) -> np.ndarray:
    """N×C×H×W uint8 → one H'×W'×C (or H'×W') picture with a 2 px border, rows filled left to right."""
    n, channels, height, width = images.shape
    rows = max(1, -(-n // columns))
    grid = np.zeros((channels, rows * (height + 2) + 2, columns * (width + 2) + 2), dtype=np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        grid[:, 2 + r * (height + 2) : 2 + r * (height + 2) + height, 2 + c * (width + 2) : 2 + c * (width + 2) + width] = image
    return grid[0] if channels == 1 else grid.transpose(1, 2, 0)


def save_grid(images: np.ndarray, path, columns: int) -> None:
    from PIL import Image

    Image.fromarray(image_grid(images, columns)).save(path)


def class_grid(generator: Generator, per_class: int = 10, seed: int = 0) -> np.ndarray:
    """Samples laid out one row per class (per_class columns), for a quick visual check."""
    labels = np.repeat(np.arange(generator.config.num_classes), per_class)
    return generate(generator, labels, seed=seed)
