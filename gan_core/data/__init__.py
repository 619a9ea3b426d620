"""Real image data: the `ImageData` container, loaders for every source kind, validation,
normalisation to a target size/channels, a deterministic stratified split and a content hash.

    images.py     ImageData, DataError and the split
    normalise.py  channels, size and Pillow modes
    loaders.py    image folders, .npz, MNIST IDX; one image's bytes decoded
    parquet.py    the export schema as a source
    sources.py    load_source (a spec's `source` entry), the builtin datasets, save_npz
"""

from .loaders import decode_image, decode_image_bytes, images_from_array, load_image_folder, load_mnist_idx, load_npz
from .images import FIT_MODES, IMAGE_SUFFIXES, UNLABELLED, DataError, ImageData
from .normalise import convert_channels, fit_image, normalise, to_mode
from .parquet import load_parquet
from .sources import (
    BUILTIN_DATASETS,
    BUILTIN_PER_CLASS,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    FASHION_MNIST_ENV,
    FASHION_MNIST_PACKAGE,
    LOADERS,
    fashion_mnist_dir,
    load_builtin,
    load_fashion_mnist,
    load_source,
    load_unlabelled,
    save_npz,
)

__all__ = [
    "BUILTIN_DATASETS",
    "BUILTIN_PER_CLASS",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIR",
    "FASHION_MNIST_ENV",
    "FASHION_MNIST_PACKAGE",
    "FIT_MODES",
    "IMAGE_SUFFIXES",
    "LOADERS",
    "UNLABELLED",
    "DataError",
    "ImageData",
    "convert_channels",
    "decode_image",
    "decode_image_bytes",
    "fashion_mnist_dir",
    "fit_image",
    "images_from_array",
    "load_builtin",
    "load_fashion_mnist",
    "load_image_folder",
    "load_mnist_idx",
    "load_npz",
    "load_parquet",
    "load_source",
    "load_unlabelled",
    "normalise",
    "save_npz",
    "to_mode",
]
