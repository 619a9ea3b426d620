"""The judge at export: the confidence filter and the soft labels.

The confidence filter: an exported row is kept only if the judge gives its conditioning label at
least `min_confidence`. Rejected draws are replaced by fresh ones, and each row records the seed of
the draw that was kept, so `generate(generator, [label], seeds=[seed])` gives that row again.

Draw k of sample_id i has the seed `seeds_at(plan.seed, i + k * plan.total)`: draw 0
is the unfiltered export's seed, and every draw depends only on the plan, never on which part,
batch or shard process made it.

Soft labels: every row's `label_probs` is the teacher's class probabilities of that row's image,
the very image its seed regenerates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ..checkpoint import weights_digest
from ..classifier import Judge
from ..data import ImageData
from ..sample import generate, seeds_at
from .plan import SOFT_LABELS, ExportError, ExportPlan, PlanError


@dataclass
class ConfidenceFilter:
    judge: Judge
    min_confidence: float
    min_acceptance: float = 0.0  # a class whose draws are accepted less often fails the export
    max_draws: int = 100  # per row: a row still rejected after this many draws fails the export

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_confidence < 1.0:
            raise PlanError(f"min_confidence: expected a probability in [0, 1), got {self.min_confidence}")
        if not 0.0 <= self.min_acceptance <= 1.0:
            raise PlanError(f"min_acceptance: expected a rate in [0, 1], got {self.min_acceptance}")
        if self.max_draws < 1:
            raise PlanError(f"max_draws: expected at least 1, got {self.max_draws}")

    def identity(self) -> dict[str, Any]:
        return {
            "min_confidence": float(self.min_confidence),
            "min_acceptance": float(self.min_acceptance),
            "max_draws": int(self.max_draws),
            "judge_sha256": weights_digest(self.judge.net),
            "judge_classes": list(self.judge.class_names),
        }

    def confidence(self, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """The judge's probability of each image's conditioning label."""
        return self.judge.probabilities(images)[np.arange(len(labels)), labels]

    def draw(self, generator, plan: ExportPlan, start: int, stop: int, counts: dict[str, list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Images and seeds of sample_ids start..stop-1, each accepted by the judge; per class, the
        draws made and accepted are added to `counts` (class name → [draws, accepted])."""
        labels = plan.labels_for(start, stop)
        images: np.ndarray | None = None
        seeds = np.zeros(stop - start, np.int64)
        pending = np.arange(stop - start)
        for attempt in range(self.max_draws):
            ids = start + pending
            candidate_seeds = seeds_at(plan.seed, ids + attempt * plan.total)
            candidates = generate(generator, labels[pending], seeds=candidate_seeds, batch_size=plan.batch_size)
            accepted = self.confidence(candidates, labels[pending]) >= self.min_confidence
            if images is None:
                images = np.empty((stop - start, *candidates.shape[1:]), np.uint8)
            images[pending[accepted]] = candidates[accepted]
            seeds[pending[accepted]] = candidate_seeds[accepted]
            for label in np.unique(labels[pending]):
                mine = labels[pending] == label
                tally = counts.setdefault(plan.class_names[label], [0, 0])
                tally[0] += int(mine.sum())
                tally[1] += int((accepted & mine).sum())
            pending = pending[~accepted]
            if not len(pending):
                return images, seeds
        stuck = plan.class_names[labels[pending[0]]]
        draws, kept = counts[stuck]
        raise ExportError(
            f"class '{stuck}': {len(pending)} row(s) still below min_confidence {self.min_confidence} after {self.max_draws} draws each "
            f"(acceptance {kept}/{draws}); lower export.min_confidence or train the generator longer"
        )


@dataclass
class SoftLabels:
    """The teacher whose class probabilities of each exported image become its row's `label_probs`."""

    teacher: Judge
    holdout_accuracy: float | None = None  # the teacher's, recorded beside the column it underlies

    def identity(self) -> dict[str, Any]:
        return {
            "column": SOFT_LABELS,
            "teacher_sha256": weights_digest(self.teacher.net),
            "teacher_classes": list(self.teacher.class_names),
            "teacher_holdout_accuracy": self.holdout_accuracy,
        }

    def of(self, images: np.ndarray) -> np.ndarray:
        """float32 probabilities, one row per image and one column per class."""
        return self.teacher.probabilities(images).astype(np.float32)


def filter_verdict(parts: Sequence[Mapping[str, Any]], recorded: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The manifest's filter entry (acceptance per class over every part), and why the export must
    not be published (or None)."""
    totals: dict[str, list[int]] = {}
    for info in parts:
        for name, (draws, kept) in info["acceptance"].items():
            tally = totals.setdefault(name, [0, 0])
            tally[0] += draws
            tally[1] += kept
    acceptance = {name: kept / draws for name, (draws, kept) in sorted(totals.items()) if draws}
    entry = {**recorded, "draws_per_class": {name: t[0] for name, t in sorted(totals.items())}, "acceptance_per_class": acceptance}
    below = [(rate, name) for name, rate in acceptance.items() if rate < recorded["min_acceptance"]]
    if below:
        rate, name = min(below)
        return (
            entry,
            f"class '{name}': acceptance {rate:.3f} at min_confidence {recorded['min_confidence']} is below export.min_acceptance {recorded['min_acceptance']}",
        )
    return entry, None


def filtered_samples(generator, judge: Judge, per_class: int, min_confidence: float, seed: int = 0) -> ImageData:
    """`per_class` samples of every class the judge knows, each accepted by it at `min_confidence`
    (0: every draw), drawn exactly as an export with that seed and filter draws them."""
    plan = ExportPlan.per_class(judge.class_names, per_class, seed=seed)
    images, _ = ConfidenceFilter(judge, min_confidence).draw(generator, plan, 0, plan.total, {})
    return ImageData(images, plan.labels_for(0, plan.total), judge.class_names)
