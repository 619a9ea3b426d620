"""A corpus of bad sources and specs. Each one fails with an error that names the file or field and
what was expected, through the library call and through the Dagster CLI, and writes nothing under
the storage root."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from gan_core.data import DataError, load_source
from pipelines.specs import SpecError, load_spec
from pipelines.tiny import write_tiny_npz

GOOD_REST = "image: {size: 8, channels: 1, fit: FIT}\nholdout_fraction: 0.2\n"


def _rel(path: Path) -> str:
    """A case's files live in its own folder beside the spec files; spec paths are relative to them."""
    return f"{path.parent.name}/{path.name}"


def _png(path: Path, size=(8, 8), mode="L", value=128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "I;16":
        Image.fromarray(np.full(size[::-1], 40000, np.uint16)).save(path)
    else:
        Image.new(mode, size, value if mode == "L" else (value,) * len(mode)).save(path)
    return path


def _folder(root: Path, extra: Callable[[Path], None] | None = None) -> str:
    """Two good class folders of 8×8 grey PNGs, then `extra` spoils it."""
    for name in ("a", "b"):
        for i in range(3):
            _png(root / name / f"{i}.png")
    if extra:
        extra(root)
    return f"{{kind: image_folder, path: {_rel(root)}}}"


def _npz(path: Path, **arrays) -> str:
    np.savez(path, **arrays)
    return f"{{kind: npz, path: {_rel(path)}}}"


def _truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def _noise_png(path: Path) -> Path:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16), dtype=np.uint8)).save(path)
    return path


def _bomb_png(path: Path) -> Path:
    """A small file whose header claims 30,000 × 30,000 pixels."""
    _png(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", 30_000, 30_000)  # IHDR width and height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # IHDR CRC
    path.write_bytes(bytes(data))
    return path


def _jpeg(path: Path) -> Path:
    Image.new("L", (8, 8), 99).save(path, format="JPEG")
    return path


def _idx_wrong_magic(d: Path) -> str:
    (d / "images.idx").write_bytes(struct.pack(">I", 0x0000_0999) + b"\0" * 64)
    (d / "labels.idx").write_bytes(gzip.compress(struct.pack(">II", 0x0801, 1) + b"\0"))
    return f"{{kind: mnist_idx, images: {_rel(d / 'images.idx')}, labels: {_rel(d / 'labels.idx')}}}"


def _parquet_wrong_schema(d: Path) -> str:
    (d / "pq").mkdir()
    pq.write_table(pa.table({"label": [0, 1], "pixels": [b"x", b"y"]}), d / "pq" / "part-00000.parquet")
    return f"{{kind: parquet, path: {_rel(d / 'pq')}}}"


def _symlink_loop(d: Path) -> str:
    os.symlink(d / "loop-b", d / "loop-a")
    os.symlink(d / "loop-a", d / "loop-b")
    return f"{{kind: image_folder, path: {_rel(d / 'loop-a')}}}"


def _spec(source: str, fit: str = "pad", rest: str | None = None) -> Callable[[str], str]:
    return lambda name: f"name: {name}\nsource: {source}\n" + (rest if rest is not None else GOOD_REST.replace("FIT", fit))


# Each case: (name, build(directory) -> spec text builder, fragments the error must contain).
# Fragments name the file or field and what was expected.
CASES: list[tuple[str, Callable[[Path], Callable[[str], str]], list[str]]] = [
    ("empty-folder", lambda d: ((d / "empty").mkdir(), _spec(f"{{kind: image_folder, path: {_rel(d / 'empty')}}}"))[1], ["empty", "no class sub-folders"]),
    ("empty-class-folder", lambda d: _spec(_folder(d / "f", lambda r: (r / "c").mkdir())), ["/c", "no readable images"]),
    ("truncated-png", lambda d: _spec(_folder(d / "f", lambda r: _truncate(_noise_png(r / "a" / "bad.png"), -30))), ["bad.png", "corrupt or truncated image"]),
    ("truncated-png-header", lambda d: _spec(_folder(d / "f", lambda r: _truncate(_png(r / "a" / "head.png"), 10))), ["head.png", "not a readable image"]),
    ("truncated-jpeg", lambda d: _spec(_folder(d / "f", lambda r: _truncate(_jpeg(r / "a" / "bad.jpg"), 60))), ["bad.jpg", "image"]),
    ("decompression-bomb", lambda d: _spec(_folder(d / "f", lambda r: _bomb_png(r / "a" / "bomb.png"))), ["bomb.png", "too many pixels"]),
    ("text-named-png", lambda d: _spec(_folder(d / "f", lambda r: (r / "a" / "notes.png").write_text("hello"))), ["notes.png", "not a readable image"]),
    ("not-an-image-suffix", lambda d: _spec(_folder(d / "f", lambda r: (r / "a" / "readme.txt").write_text("hi"))), ["readme.txt", "not an image file"]),
    ("mixed-sizes-exact", lambda d: _spec(_folder(d / "f", lambda r: _png(r / "a" / "big.png", size=(12, 12))), fit="exact"), ["big.png", "expects 8×8"]),
    (
        "mixed-modes-exact",
        lambda d: _spec(_folder(d / "f", lambda r: _png(r / "b" / "colour.png", mode="RGB")), fit="exact"),
        ["colour.png", "mode RGB", "mode L"],
    ),
    ("16-bit-exact", lambda d: _spec(_folder(d / "f", lambda r: _png(r / "a" / "deep.png", mode="I;16")), fit="exact"), ["deep.png", "I;16", "8-bit"]),
    ("rgba-exact", lambda d: _spec(_folder(d / "f", lambda r: _png(r / "a" / "alpha.png", mode="RGBA")), fit="exact"), ["alpha.png", "RGBA", "no alpha"]),
    ("npz-wrong-keys", lambda d: _spec(_npz(d / "k.npz", pixels=np.zeros((4, 8, 8), np.uint8), labels=np.zeros(4, int))), ["k.npz", "missing array 'images'"]),
    ("npz-wrong-dtype", lambda d: _spec(_npz(d / "t.npz", images=np.zeros((4, 8, 8), np.float32), labels=np.zeros(4, int))), ["images", "expected uint8"]),
    ("npz-wrong-shape", lambda d: _spec(_npz(d / "s.npz", images=np.zeros((4, 2, 8, 8), np.uint8), labels=np.zeros(4, int))), ["images", "expected shape"]),
    (
        "npz-missing-labels",
        lambda d: _spec(_npz(d / "m.npz", images=np.zeros((4, 8, 8), np.uint8), labels=np.zeros(3, int))),
        ["m.npz", "3 labels for 4 images"],
    ),
    (
        "npz-corrupt",
        lambda d: ((d / "c.npz").write_bytes(b"PK\x03\x04 not really"), _spec(f"{{kind: npz, path: {_rel(d / 'c.npz')}}}"))[1],
        ["c.npz", "not a readable .npz"],
    ),
    (
        "labels-out-of-range",
        lambda d: _spec(_npz(d / "r.npz", images=np.zeros((4, 8, 8), np.uint8), labels=np.array([0, 1, 2, 7]), class_names=np.array(["x", "y", "z"]))),
        ["class names", "labels go up to 7"],
    ),
    ("negative-labels", lambda d: _spec(_npz(d / "n.npz", images=np.zeros((4, 8, 8), np.uint8), labels=np.array([0, -1, 1, 0]))), ["labels", "non-negative"]),
    ("idx-wrong-magic", lambda d: _spec(_idx_wrong_magic(d)), ["images.idx", "magic"]),
    ("parquet-wrong-schema", lambda d: _spec(_parquet_wrong_schema(d)), ["part-00000.parquet", "missing column"]),
    ("source-path-missing", lambda d: _spec(f"{{kind: npz, path: {_rel(d / 'nowhere.npz')}}}"), ["nowhere.npz", "cannot read"]),
    ("symlink-loop", lambda d: _spec(_symlink_loop(d)), ["loop-a", "symbolic links"]),
    (
        "spec-unknown-field",
        lambda d: (write_tiny_npz(d / "ok.npz"), _spec(f"{{kind: npz, path: {_rel(d / 'ok.npz')}}}", rest="colour: red\n"))[1],
        ["field 'colour'", "not permitted"],
    ),
    (
        "spec-wrong-type",
        lambda d: (write_tiny_npz(d / "ok.npz"), _spec(f"{{kind: npz, path: {_rel(d / 'ok.npz')}}}", rest="image: {size: big}\n"))[1],
        ["field 'image.size'", "integer"],
    ),
    (
        "spec-negative-count",
        lambda d: (write_tiny_npz(d / "ok.npz"), _spec(f"{{kind: npz, path: {_rel(d / 'ok.npz')}}}", rest="export: {samples_per_class: -5}\n"))[1],
        ["field 'export.samples_per_class'", "greater than or equal to 1"],
    ),
    (
        "spec-invalid-cron",
        lambda d: (write_tiny_npz(d / "ok.npz"), _spec(f"{{kind: npz, path: {_rel(d / 'ok.npz')}}}", rest="schedule: 'every night at 2'\n"))[1],
        ["field 'schedule'", "cron"],
    ),
    (
        "spec-name-dotdot",
        lambda d: (write_tiny_npz(d / "ok.npz"), lambda name: f"name: ../x\nsource: {{kind: npz, path: {_rel(d / 'ok.npz')}}}\n")[1],
        ["field 'name'", "pattern"],
    ),
    (
        "spec-name-slash",
        lambda d: (write_tiny_npz(d / "ok.npz"), lambda name: f"name: a/b\nsource: {{kind: npz, path: {_rel(d / 'ok.npz')}}}\n")[1],
        ["field 'name'", "pattern"],
    ),
    ("spec-not-a-mapping", lambda d: lambda name: "- just\n- a list\n", ["expected a mapping"]),
    ("spec-missing-source", lambda d: lambda name: f"name: {name}\n", ["field 'source'", "required"]),
]
assert len(CASES) >= 20


def _materialise_case(case: tuple, specs_dir: Path) -> Path:
    """Write the case's files in its own folder under `specs_dir` and its spec beside them."""
    name, build, _ = case
    data_dir = specs_dir / f"{name}-files"
    data_dir.mkdir()
    spec_text = build(data_dir)(name)
    path = specs_dir / f"{name}.yaml"
    path.write_text(spec_text)
    return path


def _library_load(spec_path: Path) -> None:
    spec = load_spec(spec_path)
    load_source(
        spec.source.loader_args(), size=spec.image.size, channels=spec.image.channels, fit=spec.image.fit, skip_bad=spec.source.skip_bad, base_dir=spec.base_dir
    )


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_library_names_the_file_or_field(ganpipe_env, case):
    spec_path = _materialise_case(case, ganpipe_env["specs"])
    with pytest.raises((DataError, SpecError)) as info:
        _library_load(spec_path)
    message = str(info.value)
    for fragment in case[2]:
        assert fragment in message, f"{case[0]}: {fragment!r} not in {message!r}"
    assert not any(ganpipe_env["home"].iterdir())


def _cli_case(dagster_cli, case: tuple) -> tuple[str, subprocess.CompletedProcess]:
    return case[0], dagster_cli("asset", "materialize", "-m", "pipelines", "--select", "real_images", "--partition", case[0])


@pytest.mark.slow
def test_dagster_cli_names_the_file_or_field(ganpipe_env, initialise_instance, dagster_cli):
    """Every case through `dagster asset materialize`, two at a time (about 10 s each)."""
    for case in CASES:
        _materialise_case(case, ganpipe_env["specs"])
    initialise_instance()
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda c: _cli_case(dagster_cli, c), CASES))
    failures = []
    for (name, completed), case in zip(results, CASES):
        output = completed.stdout + completed.stderr
        missing = [f for f in case[2] if f not in output]
        if completed.returncode == 0 or missing:
            failures.append(f"{name}: rc {completed.returncode}, missing {missing}: {output[-800:]}")
    assert not failures, "\n".join(failures)
    assert not any(ganpipe_env["home"].iterdir())  # nothing written under the storage root
