"""A PNG encoder for batches of small images, and the decoder of an export's `image` column."""

from __future__ import annotations

import struct
import zlib
from typing import Any, Mapping

import numpy as np
import pyarrow as pa

from ..data import decode_image


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


# zlib level 1: on MNIST digits 14.5 µs and 269 B per 32×32 image, against 23 µs and 256 B at
# level 6 (Pillow's defaults: 56 µs and 281 B). Encoding time is export time; the bytes barely differ.
PNG_LEVEL = 1


def encode_pngs(images: np.ndarray, level: int = PNG_LEVEL) -> list[bytes]:
    """N×C×H×W uint8 → one PNG (8-bit grayscale or RGB) per image, written directly: for small
    images Pillow's per-image overhead is most of the cost. Filter "none" on every row compresses
    generated digits smaller than Pillow's adaptive filters. The rows and header are built once per
    batch, so per image only zlib runs, mostly outside the GIL."""
    count, channels, height, width = images.shape
    rows = np.zeros((count, height, 1 + width * channels), np.uint8)  # a leading 0 per row: filter type "none"
    rows[:, :, 1:] = (images[:, 0] if channels == 1 else images.transpose(0, 2, 3, 1)).reshape(count, height, width * channels)
    header = struct.pack(">IIBBBBB", width, height, 8, 0 if channels == 1 else 2, 0, 0, 0)
    head, tail = _PNG_SIGNATURE + _png_chunk(b"IHDR", header), _png_chunk(b"IEND", b"")
    return [head + _png_chunk(b"IDAT", zlib.compress(image_rows, level)) + tail for image_rows in rows]


def encode_png(image: np.ndarray, level: int = PNG_LEVEL) -> bytes:
    """C×H×W uint8 → PNG bytes (see `encode_pngs`)."""
    return encode_pngs(image[None], level)[0]


def encode_batch(images: np.ndarray, image_format: str) -> list[bytes]:
    if image_format == "raw":
        return [image.tobytes() for image in images]
    return encode_pngs(images)


def decode_images(table: pa.Table, manifest: Mapping[str, Any]) -> np.ndarray:
    """The `image` column as uint8 N×C×H×W, decoded as the `parquet` source decodes it."""
    shape = tuple(manifest["image_shape"])
    raw_shape = shape if manifest["image_format"] == "raw" else None
    payloads = table.column("image").combine_chunks().field("bytes").to_pylist()
    out = np.empty((len(payloads), *shape), np.uint8)
    for i, payload in enumerate(payloads):
        out[i] = decode_image(payload, f"row {i}", raw_shape)
    return out
