"""Bringing images to one size and channel count: channel conversion, pad or resize, Pillow modes."""

from __future__ import annotations

import numpy as np
from PIL import Image

from .images import FIT_MODES, DataError, ImageData


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
