"""Loaders on real files written into tmp dirs, normalisation, split, hash, and every bad input."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from gan_core.data import DataError, ImageData, load_source, normalise


def _png_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _digits(n_per_class: int = 4, classes: int = 3, size: int = 8, channels: int = 1) -> ImageData:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n_per_class * classes, channels, size, size), dtype=np.uint8)
    labels = np.repeat(np.arange(classes), n_per_class)
    return ImageData(images, labels, [f"c{i}" for i in range(classes)])


@pytest.fixture
def folder(tmp_path):
    """Three classes, mixed formats and modes, one image of a different size."""
    rng = np.random.default_rng(1)
    root = tmp_path / "images"
    for name in ("cat", "dog", "emu"):
        (root / name).mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8), "L").save(root / "cat" / "a.png")
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), "RGB").save(root / "cat" / "b.jpg", quality=95)
    Image.fromarray(rng.integers(0, 256, (16, 16, 4), dtype=np.uint8), "RGBA").save(root / "dog" / "c.png")
    Image.fromarray(rng.integers(0, 256, (20, 12, 3), dtype=np.uint8), "RGB").save(root / "dog" / "d.bmp")
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), "RGB").save(root / "emu" / "e.webp", lossless=True)
    Image.fromarray((rng.integers(0, 65536, (16, 16))).astype(np.uint16)).save(root / "emu" / "f.png")  # 16-bit
    return root


def test_builtin_mnist_5k_is_the_real_digits():
    data = load_source({"kind": "builtin", "name": "mnist-5k"})
    assert data.images.shape == (5000, 1, 28, 28) and data.images.dtype == np.uint8
    assert data.class_counts() == {str(d): 500 for d in range(10)}
    # Real digits: dark background, bright strokes.
    assert data.images[:, :, :3, :].mean() < 5 and data.images.max() == 255
    padded = load_source({"kind": "builtin", "name": "mnist-5k"}, size=32, channels=1)
    assert padded.images.shape == (5000, 1, 32, 32)
    np.testing.assert_array_equal(padded.images[:, :, 2:30, 2:30], data.images)  # pad, no resampling


def test_image_folder_mixed_formats_and_modes(folder):
    data = load_source({"kind": "image_folder", "path": str(folder)}, size=16, channels=3)
    assert data.class_names == ["cat", "dog", "emu"]
    assert data.images.shape == (6, 3, 16, 16)
    np.testing.assert_array_equal(data.labels, [0, 0, 1, 1, 2, 2])
    gray = load_source({"kind": "image_folder", "path": str(folder)}, size=8, channels=1)
    assert gray.images.shape == (6, 1, 8, 8)


def test_image_folder_exact_pixels_survive(tmp_path):
    pixels = np.arange(64, dtype=np.uint8).reshape(8, 8)
    (tmp_path / "only").mkdir()
    Image.fromarray(pixels, "L").save(tmp_path / "only" / "x.png")
    data = load_source({"kind": "image_folder", "path": str(tmp_path)})
    np.testing.assert_array_equal(data.images[0, 0], pixels)
    assert data.class_names == ["only"]


def test_npz_round_trip_and_layouts(tmp_path):
    data = _digits(channels=3)
    nhwc = data.images.transpose(0, 2, 3, 1)
    np.savez(tmp_path / "d.npz", images=nhwc, labels=data.labels, class_names=np.array(data.class_names))
    loaded = load_source({"kind": "npz", "path": str(tmp_path / "d.npz")})
    np.testing.assert_array_equal(loaded.images, data.images)
    np.testing.assert_array_equal(loaded.labels, data.labels)
    assert loaded.class_names == data.class_names


def test_mnist_idx_gzip_and_plain(tmp_path):
    data = _digits(size=28)
    pixels = data.images[:, 0]
    image_bytes = struct.pack(">I3I", 0x00000803, *pixels.shape) + pixels.tobytes()
    label_bytes = struct.pack(">II", 0x00000801, len(data.labels)) + data.labels.astype(np.uint8).tobytes()
    (tmp_path / "img.idx3-ubyte.gz").write_bytes(gzip.compress(image_bytes))
    (tmp_path / "lab.idx1-ubyte").write_bytes(label_bytes)
    loaded = load_source({"kind": "mnist_idx", "images": str(tmp_path / "img.idx3-ubyte.gz"), "labels": str(tmp_path / "lab.idx1-ubyte")})
    np.testing.assert_array_equal(loaded.images, data.images)
    np.testing.assert_array_equal(loaded.labels, data.labels)


def _export_table(data: ImageData) -> pa.Table:
    rows = [{"bytes": _png_bytes(image[0]), "path": f"{i}.png"} for i, image in enumerate(data.images)]
    return pa.table(
        {
            "sample_id": pa.array(np.arange(len(data)), pa.int64()),
            "label": pa.array(data.labels.astype(np.int32), pa.int32()),
            "label_name": pa.array([data.class_names[i] for i in data.labels]).dictionary_encode(),
            "image": pa.array(rows, pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        }
    )


def test_parquet_export_schema_round_trip(tmp_path):
    data = _digits()
    export = tmp_path / "export"
    export.mkdir()
    table = _export_table(data)
    pq.write_table(table.slice(0, 5), export / "part-00000.parquet")
    pq.write_table(table.slice(5), export / "part-00001.parquet")
    loaded = load_source({"kind": "parquet", "path": str(export)})
    np.testing.assert_array_equal(loaded.images, data.images)
    np.testing.assert_array_equal(loaded.labels, data.labels)
    assert loaded.class_names == data.class_names


def test_normalise_channels_and_resize_keep_labels_aligned():
    data = _digits(channels=3, size=16)
    small = normalise(data, 8, 1, fit="resize")
    assert small.images.shape == (len(data), 1, 8, 8)
    np.testing.assert_array_equal(small.labels, data.labels)
    flat = ImageData(np.full((2, 3, 4, 4), 200, np.uint8), np.array([0, 1]), ["a", "b"])
    assert (normalise(flat, 4, 1).images == 200).all()  # luma of a gray pixel is the same gray
    assert normalise(_digits(), 8, 3).images.shape[1] == 3


def test_split_is_stratified_deterministic_and_disjoint():
    data = _digits(n_per_class=10, classes=4)
    train_a, holdout_a = data.split(0.2, seed=3)
    train_b, holdout_b = data.split(0.2, seed=3)
    np.testing.assert_array_equal(holdout_a.images, holdout_b.images)
    assert holdout_a.class_counts() == {f"c{i}": 2 for i in range(4)}
    assert len(train_a) + len(holdout_a) == len(data)
    _, holdout_c = data.split(0.2, seed=4)
    assert not np.array_equal(holdout_a.images, holdout_c.images)
    train_keys = {img.tobytes() for img in train_a.images}
    assert not any(img.tobytes() in train_keys for img in holdout_a.images)


def test_content_hash_tracks_pixels_and_labels():
    data = _digits()
    same = ImageData(data.images.copy(), data.labels.copy(), list(data.class_names))
    assert data.content_hash() == same.content_hash()
    changed = data.images.copy()
    changed[0, 0, 0, 0] ^= 1
    assert ImageData(changed, data.labels, data.class_names).content_hash() != data.content_hash()
    relabelled = data.labels.copy()
    relabelled[0] = 1
    assert ImageData(data.images, relabelled, data.class_names).content_hash() != data.content_hash()


# ---------------------------------------------------------------- bad input


def _error(source, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        load_source(source, **kwargs)
    return str(info.value)


def test_empty_folder(tmp_path):
    assert "no class sub-folders" in _error({"kind": "image_folder", "path": str(tmp_path)})


def test_class_folder_with_no_images(folder):
    (folder / "zebra").mkdir()
    message = _error({"kind": "image_folder", "path": str(folder)}, size=16)
    assert "zebra" in message and "no readable images" in message


def test_corrupt_truncated_and_fake_images_name_the_file(folder):
    good = (folder / "cat" / "a.png").read_bytes()
    (folder / "cat" / "trunc.png").write_bytes(good[: len(good) // 2])
    message = _error({"kind": "image_folder", "path": str(folder)}, size=16)
    assert "trunc.png" in message and "corrupt or truncated" in message
    (folder / "cat" / "trunc.png").unlink()
    (folder / "cat" / "text.png").write_text("hello, not a picture")
    message = _error({"kind": "image_folder", "path": str(folder)}, size=16)
    assert "text.png" in message and "not a readable image" in message
    (folder / "cat" / "text.png").unlink()
    (folder / "cat" / "notes.txt").write_text("x")
    assert "notes.txt" in _error({"kind": "image_folder", "path": str(folder)}, size=16)


def test_skip_bad_reports_what_was_skipped(folder):
    (folder / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 garbage")
    (folder / "dog" / "readme.md").write_text("x")
    data = load_source({"kind": "image_folder", "path": str(folder)}, size=16, skip_bad=True)
    assert len(data) == 6
    skipped = sorted(path for path, _ in data.skipped)
    assert [p.rsplit("/", 1)[1] for p in skipped] == ["broken.jpg", "readme.md"]


def test_mixed_sizes_without_a_target_size(folder):
    assert "set image.size" in _error({"kind": "image_folder", "path": str(folder)})


def test_unreadable_and_missing_paths(tmp_path):
    assert "cannot read" in _error({"kind": "npz", "path": str(tmp_path / "nope.npz")})
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    assert "cannot read" in _error({"kind": "image_folder", "path": str(loop)})


def test_npz_wrong_keys_dtype_shape_and_count(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, pictures=np.zeros((2, 8, 8), np.uint8), labels=np.zeros(2, np.int64))
    assert "missing array 'images'" in _error({"kind": "npz", "path": str(path)})
    np.savez(path, images=np.zeros((2, 8, 8), np.float32), labels=np.zeros(2, np.int64))
    message = _error({"kind": "npz", "path": str(path)})
    assert "images" in message and "uint8" in message and "float32" in message
    np.savez(path, images=np.zeros((2, 8, 8), np.uint8), labels=np.zeros(2, np.float64))
    assert "labels" in _error({"kind": "npz", "path": str(path)})
    np.savez(path, images=np.zeros((2, 8), np.uint8), labels=np.zeros(2, np.int64))
    assert "expected shape" in _error({"kind": "npz", "path": str(path)})
    np.savez(path, images=np.zeros((3, 8, 8), np.uint8), labels=np.zeros(2, np.int64))
    assert "2 labels for 3 images" in _error({"kind": "npz", "path": str(path)})
    np.savez(path, images=np.zeros((0, 8, 8), np.uint8), labels=np.zeros(0, np.int64))
    assert "no images" in _error({"kind": "npz", "path": str(path)})
    path.write_bytes(b"not a zip at all")
    assert "not a readable .npz" in _error({"kind": "npz", "path": str(path)})


def test_labels_out_of_range():
    with pytest.raises(DataError, match="labels: values must lie in"):
        ImageData(np.zeros((2, 1, 8, 8), np.uint8), np.array([0, 5]), ["a", "b"])


def test_idx_wrong_magic_and_truncated_body(tmp_path):
    (tmp_path / "img").write_bytes(struct.pack(">I3I", 0x00000801, 1, 2, 2) + bytes(4))
    (tmp_path / "lab").write_bytes(struct.pack(">II", 0x00000801, 1) + bytes(1))
    message = _error({"kind": "mnist_idx", "images": str(tmp_path / "img"), "labels": str(tmp_path / "lab")})
    assert "img" in message and "wrong IDX magic" in message
    (tmp_path / "img").write_bytes(struct.pack(">I3I", 0x00000803, 2, 2, 2) + bytes(4))
    assert "expected 8" in _error({"kind": "mnist_idx", "images": str(tmp_path / "img"), "labels": str(tmp_path / "lab")})


def test_parquet_wrong_schema_and_corrupt_bytes(tmp_path):
    pq.write_table(pa.table({"label": [0], "pixels": [b"x"]}), tmp_path / "wrong.parquet")
    assert "missing column" in _error({"kind": "parquet", "path": str(tmp_path / "wrong.parquet")})
    table = _export_table(_digits(n_per_class=1))
    broken = table.set_column(3, "image", pa.array([{"bytes": b"garbage", "path": "x"}] * 3, table.schema.field("image").type))
    pq.write_table(broken, tmp_path / "broken.parquet")
    message = _error({"kind": "parquet", "path": str(tmp_path / "broken.parquet")})
    assert "broken.parquet row 0" in message
    (tmp_path / "junk.parquet").write_text("not parquet")
    assert "not a readable Parquet" in _error({"kind": "parquet", "path": str(tmp_path / "junk.parquet")})


def test_too_small_for_the_split():
    data = ImageData(np.zeros((3, 1, 8, 8), np.uint8), np.array([0, 0, 1]), ["a", "b"])
    with pytest.raises(DataError, match="class 'b' has 1 image"):
        data.split(0.2)


def test_unknown_source_kind_and_builtin():
    assert "source.kind" in _error({"kind": "ftp"})
    assert "unknown builtin" in _error({"kind": "builtin", "name": "cifar"})
