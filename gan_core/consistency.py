"""Consistency training (FixMatch, Sohn et al. 2020): a teacher that learns from the unlabelled pool
in every step. Each pool image is seen twice: a weak view (the classical augmentation) whose
prediction, when confident, becomes the pseudo-label of a strong view (a larger affine, brightness
and contrast, cutout), on which the cross-entropy is taken. The labelled images train as usual.

Like `self_train`, it is handed the labelled train split and the pool only, never a holdout image."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.nn import functional as F

from .augment import color, cutout
from .classifier import BatchSource, ClassifierConfig, Judge, _Batches, _draw_batch, _labelled_parts, _parts_loss, _to_input, random_affine, train_classifier
from .data import ImageData


@dataclass(frozen=True)
class ConsistencyConfig:
    threshold: float = 0.95  # a pool image's weak view gives its pseudo-label only at this confidence
    pool_ratio: int = 1  # pool images per labelled image in each batch (2 gained little on mnist-5k for twice the time)
    pool_weight: float = 1.0  # of the pool's loss beside the labelled images' loss
    steps: int = 400  # after the supervised judge's own steps; benchmarks/teacher.py measured these defaults
    lr: float = 1e-3  # cosine-annealed from here over the consistency steps
    # The strong view: a larger affine than the classical one, then brightness and contrast, then cutout.
    strong_translate: float = 0.125
    strong_rotation: float = 25.0
    strong_scale: float = 0.2
    cutout_ratio: float = 0.4

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"ConsistencyConfig: steps must be at least 0, got {self.steps}")


def strong_view(x: torch.Tensor, config: ClassifierConfig, consistency: ConsistencyConfig, generator: torch.Generator) -> torch.Tensor:
    """A strong augmentation that suits 1- and 3-channel images alike (no colour inversion or hue)."""
    wide = replace(config, max_translate=consistency.strong_translate, max_rotation=consistency.strong_rotation, max_scale=consistency.strong_scale)
    x = color(random_affine(x, wide, generator), p=1.0).clamp(-1, 1)
    return cutout(x, p=1.0, ratio=consistency.cutout_ratio)


def consistency_train(
    labelled: ImageData,
    pool: np.ndarray,  # N × C × H × W uint8, as ImageData.images
    config: ClassifierConfig | None = None,
    consistency: ConsistencyConfig | None = None,
    sources: tuple[BatchSource, ...] = (),
) -> Judge:
    """The supervised judge on `labelled`, then `consistency.steps` optimizer steps of weak/strong
    consistency on `pool` beside the labelled images. Starting from the supervised judge, its
    confident weak views give pseudo-labels from the first step on, and the weak view costs one
    forward pass without gradients. Each of `sources` (the export, hard or soft labels) makes up its
    share of every labelled batch in both stages, as in `train_classifier` (DPT, You et al. 2023).
    Without a pool it is the supervised judge."""
    config, consistency = config or ClassifierConfig(), consistency or ConsistencyConfig()
    judge = train_classifier(labelled, config, sources=sources)  # which checks the sources
    if not len(pool) or consistency.steps <= 0:
        return judge
    net, device = judge.net, judge.device
    generator = torch.Generator().manual_seed(config.seed + 1)
    batch_size = min(config.batch_size, len(labelled))
    parts = _labelled_parts(labelled, sources, batch_size, device, generator)
    pool_images = _to_input(pool, device)
    pool_batches = _Batches(len(pool), generator)
    pool_count = batch_size * consistency.pool_ratio
    optimizer = torch.optim.AdamW(net.parameters(), lr=consistency.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, consistency.steps)
    for _ in range(consistency.steps):
        batch, indices = _draw_batch(parts, device)
        unlabelled = pool_images[pool_batches.take(pool_count).to(device)]
        with torch.no_grad():
            net.eval()
            confidence, guess = torch.softmax(
                net(random_affine(unlabelled, config, generator).contiguous(memory_format=torch.channels_last)).float(), dim=1
            ).max(dim=1)
            mask = (confidence >= consistency.threshold).float()
        net.train()
        views = torch.cat([random_affine(batch, config, generator), strong_view(unlabelled, config, consistency, generator)])
        logits = net(views.contiguous(memory_format=torch.channels_last))  # the judge's format
        pool_loss = (F.cross_entropy(logits[batch_size:], guess, reduction="none") * mask).mean()
        loss = _parts_loss(parts, logits, indices) / batch_size + consistency.pool_weight * pool_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return Judge(net, labelled.class_names, device)
