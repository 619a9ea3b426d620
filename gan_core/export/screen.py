"""The copy screen: no exported image is a copy of a training image."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ..data import ImageData
from .plan import PlanError


@dataclass
class CopyScreen:
    """Screens every exported image against the training images, in pixel space. An exact copy
    (no pixel differs) is never published; a near copy is closer to a training image than
    `threshold` (the evaluation's: the 1st percentile of holdout→train distances), and more than
    `max_near_copy_fraction` of them refuses the export too. The figures go into the manifest."""

    train_images: np.ndarray  # N×C×H×W uint8
    threshold: float
    max_near_copy_fraction: float = 1.0

    def __post_init__(self) -> None:
        self.train_images = np.ascontiguousarray(self.train_images, dtype=np.uint8)
        if self.train_images.ndim != 4 or len(self.train_images) == 0:
            raise PlanError(f"copy screen: expected training images as a non-empty N×C×H×W array, got shape {self.train_images.shape}")
        self._train_digests = {_image_digest(image) for image in self.train_images}

    @classmethod
    def from_split(cls, train: ImageData, holdout: ImageData, max_near_copy_fraction: float = 1.0) -> CopyScreen:
        """Against `train`, with the evaluation's threshold: closer to a training image than 99% of
        the `holdout` images are."""
        from ..metrics.distances import nearest_distances
        from ..metrics.memorization import near_copy_threshold

        holdout_distances, _ = nearest_distances(holdout.images, train.images)
        return cls(train.images, threshold=near_copy_threshold(holdout_distances), max_near_copy_fraction=max_near_copy_fraction)

    def identity(self) -> dict[str, Any]:
        return {
            "threshold": float(self.threshold),
            "max_near_copy_fraction": float(self.max_near_copy_fraction),
            "reference_images": len(self.train_images),
            "reference_sha256": hashlib.sha256(self.train_images.tobytes()).hexdigest(),
        }

    def count(self, images: np.ndarray) -> dict[str, int]:
        from ..metrics.distances import nearest_distances  # torchmetrics loads only when screening

        if images.shape[1:] != self.train_images.shape[1:]:
            raise PlanError(f"copy screen: generated images are {images.shape[1:]}, training images {self.train_images.shape[1:]}")
        distances, _ = nearest_distances(images, self.train_images)
        exact = sum(_image_digest(image) in self._train_digests for image in np.ascontiguousarray(images, dtype=np.uint8))
        return {"checked": len(images), "near_copies": int((distances < self.threshold).sum()), "exact_copies": int(exact)}


def _image_digest(image: np.ndarray) -> bytes:
    """Identifies an image by its bytes: equal digests are exact copies, whatever the image's size."""
    return hashlib.blake2b(image.tobytes(), digest_size=16).digest()


def screen_verdict(parts: Sequence[Mapping[str, Any]], recorded: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The manifest's memorization entry, and why the export must not be published (or None)."""
    totals = {key: sum(int(info["copies"][key]) for info in parts) for key in ("checked", "near_copies", "exact_copies")}
    fraction = totals["near_copies"] / max(totals["checked"], 1)
    entry = {**recorded, **totals, "near_copy_fraction": fraction, "space": "pixels"}
    if totals["exact_copies"]:
        return entry, f"{totals['exact_copies']} exported image(s) are exact copies of training images"
    if fraction > recorded["max_near_copy_fraction"]:
        return entry, f"near-copy fraction {fraction:.4f} is above the allowed {recorded['max_near_copy_fraction']}"
    return entry, None
