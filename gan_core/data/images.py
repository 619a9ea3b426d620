"""`ImageData`: uint8 images N×C×H×W with labels and class names, its split, subsets and content hash."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
FIT_MODES = ("pad", "resize", "exact")


UNLABELLED = "(unlabelled)"  # the one class name of an unlabelled pool


class DataError(ValueError):
    """Bad input data. The message names the file or field and what was expected."""


@dataclass
class ImageData:
    """uint8 images N×C×H×W with int64 labels in [0, len(class_names))."""

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) of skipped files

    def __post_init__(self) -> None:
        if not isinstance(self.images, np.ndarray) or self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise DataError(f"images: expected a uint8 array N×C×H×W, got {_describe(self.images)}")
        if self.images.shape[1] not in (1, 3):
            raise DataError(f"images: expected 1 or 3 channels, got shape {self.images.shape}")
        labels = np.asarray(self.labels)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise DataError(f"labels: expected a 1-D integer array, got {_describe(labels)}")
        if len(labels) != len(self.images):
            raise DataError(f"labels: {len(labels)} labels for {len(self.images)} images; expected one label per image")
        if not self.class_names:
            raise DataError("class_names: expected at least one class name")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(self.class_names)):
            raise DataError(
                f"labels: values must lie in [0, {len(self.class_names) - 1}] for {len(self.class_names)} classes, got range [{labels.min()}, {labels.max()}]"
            )
        self.labels = labels.astype(np.int64, copy=False)
        self.class_names = [str(name) for name in self.class_names]

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def size(self) -> int:
        return int(self.images.shape[2])

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=self.num_classes)
        return {name: int(count) for name, count in zip(self.class_names, counts)}

    def subset(self, indices: np.ndarray) -> ImageData:
        return ImageData(self.images[indices], self.labels[indices], list(self.class_names))

    def concat(self, other: ImageData) -> ImageData:
        """These images and labels followed by `other`'s (same classes)."""
        if other.class_names != self.class_names:
            raise DataError(f"class_names: cannot join sets of classes {self.class_names[:5]} and {other.class_names[:5]}")
        return ImageData(np.concatenate([self.images, other.images]), np.concatenate([self.labels, other.labels]), list(self.class_names))

    def content_hash(self) -> str:
        """SHA-256 of pixels, labels and class names: equal data gives an equal hash."""
        digest = hashlib.sha256()
        digest.update(json.dumps({"shape": list(self.images.shape), "classes": self.class_names}).encode())
        digest.update(np.ascontiguousarray(self.images).tobytes())
        digest.update(self.labels.astype("<i8").tobytes())
        return digest.hexdigest()

    def split(self, holdout_fraction: float, seed: int = 0) -> tuple[ImageData, ImageData]:
        """Stratified, seeded train/holdout split: every class keeps images on both sides."""
        if not 0.0 < holdout_fraction < 1.0:
            raise DataError(f"holdout_fraction: expected a number in (0, 1), got {holdout_fraction}")
        rng = np.random.default_rng(seed)
        train_parts, holdout_parts = [], []
        for label, name in enumerate(self.class_names):
            members = np.flatnonzero(self.labels == label)
            n_holdout = int(round(len(members) * holdout_fraction))
            n_holdout = min(max(n_holdout, 1), len(members) - 1)
            if len(members) < 2:
                raise DataError(
                    f"dataset too small for the split: class '{name}' has {len(members)} image(s); "
                    f"expected at least 2 per class for holdout_fraction={holdout_fraction}"
                )
            members = rng.permutation(members)
            holdout_parts.append(members[:n_holdout])
            train_parts.append(members[n_holdout:])
        return self.subset(np.sort(np.concatenate(train_parts))), self.subset(np.sort(np.concatenate(holdout_parts)))

    def _per_class_indices(self, k: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        chosen = []
        for label, name in enumerate(self.class_names):
            members = np.flatnonzero(self.labels == label)
            if len(members) < k:
                raise DataError(f"take_per_class: class '{name}' has {len(members)} images, expected at least {k}")
            chosen.append(rng.choice(members, size=k, replace=False))
        return np.sort(np.concatenate(chosen))

    def take_per_class(self, k: int, seed: int = 0) -> ImageData:
        """A stratified subset of k images per class (the scarce-data setting)."""
        return self.subset(self._per_class_indices(k, seed))

    def keep_labels_per_class(self, k: int, seed: int = 0) -> tuple[ImageData, np.ndarray]:
        """k labelled images per class (the same as `take_per_class`), and every other image as an
        unlabelled pool, its labels dropped: the few-labels-many-images setting, made from a labelled set."""
        labelled, rest = self.labelled_and_rest(k, seed)
        return labelled, rest.images

    def labelled_and_rest(self, k: int, seed: int = 0) -> tuple[ImageData, ImageData]:
        """`keep_labels_per_class` with the pool's true labels kept: what only a benchmark may know,
        e.g. to score the pool itself as a perfect generator's ceiling."""
        chosen = self._per_class_indices(k, seed)
        return self.subset(chosen), self.subset(np.setdiff1d(np.arange(len(self)), chosen))


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {value.shape}"
    return type(value).__name__
