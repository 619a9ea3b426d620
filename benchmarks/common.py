"""What several benchmarks share: a dataset's short name in their JSON keys, the datasets' own test
splits, and how the protocol draws an export. The scripts import it from their own folder."""

from __future__ import annotations

from gan_core.data import ImageData, normalise
from gan_core.data.sources import load_fashion_mnist

EXPORT_CONFIDENCE = 0.9  # the spec default of export.min_confidence
SAMPLES_PER_CLASS = 500  # each class's images in the protocol's export
# The datasets whose own test split (never trained on, far larger than the 1,000-image holdout) can also score every arm.
TEST_SPLITS = {"fashion-mnist-5k": "t10k"}


def short_name(dataset: str) -> str:
    """The dataset's name in JSON keys: mnist-5k → mnist, fashion-mnist-5k → fashion."""
    return dataset.split("-")[0]


def test_split(split: str | None) -> ImageData | None:
    """A dataset's own test split (a value of TEST_SPLITS) at the benchmarks' size (32 px, grey), or None."""
    if split is None:
        return None
    if split != "t10k":
        raise ValueError(f"split: expected one of {sorted(set(TEST_SPLITS.values()))}, got {split!r}")
    return normalise(load_fashion_mnist("t10k"), 32, 1)
