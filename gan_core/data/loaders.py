"""Loaders of files on disk: an image folder, an .npz archive and MNIST's IDX pair; and the decoding
of one image's bytes, shared with the Parquet loader and the export reader."""

from __future__ import annotations

import gzip
import io
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from .images import IMAGE_SUFFIXES, UNLABELLED, DataError, ImageData, _describe
from .normalise import fit_image, to_mode


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


def decode_image(payload: bytes, where: str, raw_shape: tuple[int, int, int] | None = None) -> np.ndarray:
    """One image's bytes as uint8 C×H×W: an encoded image (PNG, JPEG, ...; grey modes stay one
    channel, every other mode becomes RGB) or, with `raw_shape`, raw pixels of that shape."""
    if raw_shape is not None:
        pixels = np.frombuffer(payload, np.uint8)
        if pixels.size != int(np.prod(raw_shape)):
            raise DataError(f"{where}: raw image has {pixels.size} bytes, expected shape {list(raw_shape)}")
        return pixels.reshape(raw_shape)
    image = decode_image_bytes(payload, where)
    array = np.asarray(to_mode(image, 1 if image.mode in ("L", "I;16", "I", "LA") else 3))
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


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
