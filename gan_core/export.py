"""Bulk synthetic datasets to Parquet: streaming, atomic, resumable, shardable and traceable.

Layout of a committed export (DESIGN.md, "Export format"):

    <destination>/part-NNNNN.parquet   rows sample_id, label, label_name, image{bytes,path}, seed, model_name, model_version
    <destination>/_manifest.json       counts, per-file rows and SHA-256, lineage, generator settings

Parts are written into a staging directory (one finished part = its file plus a sidecar JSON with
its checksum); the export becomes visible by one rename of the whole directory once every part is
there and verified. A crash leaves only staging behind, and a rerun with the same destination picks
up from the finished parts."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import struct
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from .checkpoint import atomic_write, file_sha256, weights_digest  # a resumed export must come from the very same weights
from .models import FoldedGenerator
from .sample import generate, sample_seeds

SCHEMA_VERSION = 1
IMAGE_FORMATS = ("png", "raw")
MANIFEST = "_manifest.json"
PLAN_FILE = "_plan.json"


class ExportError(RuntimeError):
    """An export that cannot be written, committed or read as asked; the message says which file."""


class PlanError(ValueError):
    """A plan that names unknown labels, negative counts or impossible sizes."""


IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
DICT_STRING = pa.dictionary(pa.int32(), pa.string())
EXPORT_SCHEMA = pa.schema(
    [
        ("sample_id", pa.int64()),
        ("label", pa.int64()),  # int64, not int32: Hugging Face reads it as a ClassLabel only then
        ("label_name", DICT_STRING),
        ("image", IMAGE_TYPE),
        ("seed", pa.int64()),
        ("model_name", DICT_STRING),
        ("model_version", DICT_STRING),
    ]
)


@dataclass(frozen=True)
class ExportPlan:
    """What to generate: `counts[label]` samples of each class, in class blocks, sample_id 0..N-1."""

    class_names: tuple[str, ...]
    counts: tuple[int, ...]
    seed: int = 0
    batch_size: int = 256  # small batches keep activations in cache: faster on CPU
    rows_per_part: int = 100_000
    row_group_size: int = 16_384
    image_format: str = "png"

    def __post_init__(self) -> None:
        if len(self.counts) != len(self.class_names):
            raise PlanError(f"counts: {len(self.counts)} counts for {len(self.class_names)} classes; expected one per class")
        for name, count in zip(self.class_names, self.counts):
            if not isinstance(count, (int, np.integer)) or count < 0:
                raise PlanError(f"counts['{name}']: expected a non-negative integer, got {count!r}")
        if self.total == 0:
            raise PlanError("counts: the plan has no samples; expected at least one")
        for name in ("batch_size", "rows_per_part", "row_group_size"):
            if getattr(self, name) < 1:
                raise PlanError(f"{name}: expected a positive integer, got {getattr(self, name)}")
        if self.image_format not in IMAGE_FORMATS:
            raise PlanError(f"image_format: expected one of {IMAGE_FORMATS}, got {self.image_format!r}")
        if not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise PlanError(f"seed: expected a non-negative integer, got {self.seed!r}")

    @classmethod
    def per_class(cls, class_names: Sequence[str], samples_per_class: int | Mapping[str | int, int], **options: Any) -> ExportPlan:
        """Equal counts (an int) or a mapping from class name or index to count (others get 0)."""
        names = tuple(str(name) for name in class_names)
        if isinstance(samples_per_class, Mapping):
            counts = [0] * len(names)
            for key, count in samples_per_class.items():
                index = key if isinstance(key, (int, np.integer)) else (names.index(key) if key in names else None)
                if index is None or not 0 <= index < len(names):
                    raise PlanError(f"samples_per_class: unknown label {key!r}; expected one of {list(names)}")
                counts[index] = count
            return cls(names, tuple(counts), **options)
        return cls(names, (samples_per_class,) * len(names), **options)

    @classmethod
    def from_total(cls, class_names: Sequence[str], total: int, proportions: Sequence[float] | None = None, **options: Any) -> ExportPlan:
        """`total` samples split by `proportions` (uniform by default), largest remainder first."""
        names = tuple(str(name) for name in class_names)
        weights = np.ones(len(names)) if proportions is None else np.asarray(proportions, dtype=np.float64)
        if len(weights) != len(names) or (weights < 0).any() or weights.sum() <= 0:
            raise PlanError(f"proportions: expected {len(names)} non-negative weights with a positive sum, got {list(weights)}")
        if total < 0:
            raise PlanError(f"total: expected a non-negative integer, got {total}")
        exact = weights / weights.sum() * total
        counts = np.floor(exact).astype(int)
        for index in np.argsort(-(exact - counts), kind="stable")[: total - counts.sum()]:
            counts[index] += 1
        return cls(names, tuple(int(c) for c in counts), **options)

    @property
    def total(self) -> int:
        return int(sum(self.counts))

    @property
    def num_parts(self) -> int:
        return -(-self.total // self.rows_per_part)

    def part_range(self, part: int) -> tuple[int, int]:
        start = part * self.rows_per_part
        return start, min(start + self.rows_per_part, self.total)

    def labels_for(self, start: int, stop: int) -> np.ndarray:
        """Labels of sample_ids start..stop-1 (class blocks), without materialising all N."""
        return np.searchsorted(np.cumsum(self.counts), np.arange(start, stop), side="right").astype(np.int64)

    def seeds_for(self, start: int, stop: int) -> np.ndarray:
        return sample_seeds(self.seed, stop - start, offset=start)

    def shards(self, num_shards: int) -> list[list[int]]:
        """Disjoint sets of parts (so disjoint sample_id ranges) for separate writers."""
        if num_shards < 1:
            raise PlanError(f"num_shards: expected a positive integer, got {num_shards}")
        return [list(range(shard, self.num_parts, num_shards)) for shard in range(num_shards)]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "class_names": list(self.class_names), "counts": [int(c) for c in self.counts]}

    @classmethod
    def from_dict(cls, fields: Mapping[str, Any]) -> ExportPlan:
        """The inverse of `to_dict` (a plan handed to another process as JSON)."""
        return cls(**{**fields, "class_names": tuple(fields["class_names"]), "counts": tuple(int(c) for c in fields["counts"])})

    def identity(self) -> dict[str, Any]:
        """What fixes the rows and files: batch size only paces the work, so a rerun may change it."""
        return {key: value for key, value in self.to_dict().items() if key != "batch_size"}


@dataclass
class ExportResult:
    destination: str
    rows: int
    files: list[dict[str, Any]]
    manifest: dict[str, Any]
    wall_s: float
    parts_written: int
    parts_reused: int
    bytes_written: int = 0


# ---------------------------------------------------------------- paths and lineage


def default_root() -> Path:
    return Path(os.environ.get("GANPIPE_HOME", "var"))


def _is_uri(destination: str | Path) -> bool:
    return "://" in str(destination) and not str(destination).startswith("file://")


def _staging_dir(destination: str | Path, root: Path) -> Path:
    key = hashlib.sha256(str(destination if _is_uri(destination) else Path(destination).resolve()).encode()).hexdigest()[:20]
    return root / "staging" / f"export-{key}"


def _check_destination(destination: str | Path, root: Path, allow_outside_root: bool) -> None:
    if _is_uri(destination):
        return  # a remote store: the root guards local paths only
    resolved, resolved_root = Path(destination).resolve(), root.resolve()
    if not allow_outside_root and resolved_root not in resolved.parents:
        raise ExportError(
            f"destination '{destination}' lies outside the storage root '{root}'; "
            "pass allow_outside_root=True to write there"
        )


def _write_json_atomic(path: Path, payload: Any) -> None:
    atomic_write(path, lambda temp: temp.write_text(json.dumps(payload, indent=2, sort_keys=True)))


def _hf_features(class_names: Sequence[str], image_format: str) -> dict[str, Any]:
    """The `huggingface` schema metadata: `datasets` then decodes `image` and `label` itself."""
    value = lambda dtype: {"dtype": dtype, "_type": "Value"}  # noqa: E731
    image = {"_type": "Image"} if image_format == "png" else {"bytes": value("binary"), "path": value("string")}
    return {
        "info": {
            "features": {
                "sample_id": value("int64"),
                "label": {"names": list(class_names), "_type": "ClassLabel"},
                "label_name": value("string"),
                "image": image,
                "seed": value("int64"),
                "model_name": value("string"),
                "model_version": value("string"),
            }
        }
    }


def _schema_for(plan: ExportPlan, lineage: Mapping[str, Any], image_shape: Sequence[int]) -> pa.Schema:
    metadata = {
        "huggingface": json.dumps(_hf_features(plan.class_names, plan.image_format)),
        "ganpipe.schema_version": str(SCHEMA_VERSION),
        "ganpipe.image_format": plan.image_format,
        "ganpipe.image_shape": json.dumps(list(image_shape)),
        "ganpipe.lineage": json.dumps(dict(lineage), sort_keys=True, default=str),
    }
    return EXPORT_SCHEMA.with_metadata(metadata)


# ---------------------------------------------------------------- encoding


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


def _encode_batch(images: np.ndarray, image_format: str) -> list[bytes]:
    if image_format == "raw":
        return [image.tobytes() for image in images]
    return encode_pngs(images)


def _encoded_batches(
    generator: FoldedGenerator, plan: ExportPlan, start: int, stop: int, pool: ThreadPoolExecutor, workers: int, depth: int, screen: CopyScreen | None, copies: dict[str, int]
) -> Iterator[tuple[int, int, list[bytes]]]:
    """Generate on the device in the calling thread while `pool` encodes earlier batches; with a
    `screen`, its counts for each batch are added to `copies`."""
    pending: list[tuple[int, int, Any]] = []
    for batch_start in range(start, stop, plan.batch_size):
        batch_stop = min(batch_start + plan.batch_size, stop)
        images = generate(generator, plan.labels_for(batch_start, batch_stop), seeds=plan.seeds_for(batch_start, batch_stop), batch_size=plan.batch_size)
        if screen is not None:
            for key, value in screen.count(images).items():
                copies[key] = copies.get(key, 0) + value
        # Split the batch so every worker gets a share even when one batch is in flight.
        chunks = np.array_split(images, workers)
        pending.append((batch_start, batch_stop, [pool.submit(_encode_batch, chunk, plan.image_format) for chunk in chunks]))
        while len(pending) > depth:
            first, last, futures = pending.pop(0)
            yield first, last, [payload for future in futures for payload in future.result()]
    for first, last, futures in pending:
        yield first, last, [payload for future in futures for payload in future.result()]


def _batch_table(plan: ExportPlan, start: int, stop: int, payloads: list[bytes], lineage: Mapping[str, Any], schema: pa.Schema) -> pa.Table:
    labels = plan.labels_for(start, stop)
    sample_ids = np.arange(start, stop, dtype=np.int64)
    suffix = ".png" if plan.image_format == "png" else ".raw"
    names = pa.DictionaryArray.from_arrays(pa.array(labels.astype(np.int32)), pa.array(list(plan.class_names), pa.string()))
    model_name = str(lineage.get("model_name", ""))
    model_version = str(lineage.get("model_version", ""))
    constant = lambda text: pa.DictionaryArray.from_arrays(pa.array(np.zeros(stop - start, np.int32)), pa.array([text], pa.string()))  # noqa: E731
    image = pa.StructArray.from_arrays(
        [pa.array(payloads, pa.binary()), pa.array([f"{i}{suffix}" for i in range(start, stop)], pa.string())],
        fields=list(IMAGE_TYPE),
    )
    return pa.Table.from_arrays(
        [pa.array(sample_ids), pa.array(labels), names, image, pa.array(plan.seeds_for(start, stop)), constant(model_name), constant(model_version)],
        schema=schema,
    )


# ---------------------------------------------------------------- copy screening


@dataclass
class CopyScreen:
    """Screens every exported image against the training images, in pixel space. An exact copy
    (no pixel differs) is never published; a near copy is closer to a training image than
    `threshold` (the evaluation's: the 1st percentile of holdout→train distances), and more than
    `max_near_copy_fraction` of them refuses the export too. The figures go into the manifest."""

    train_images: np.ndarray  # N×C×H×W uint8
    threshold: float
    max_near_copy_fraction: float = 1.0

    def __post_init__(self) -> None:
        self.train_images = np.ascontiguousarray(self.train_images, dtype=np.uint8)
        if self.train_images.ndim != 4 or len(self.train_images) == 0:
            raise PlanError(f"copy screen: expected training images as a non-empty N×C×H×W array, got shape {self.train_images.shape}")
        self._train_digests = {_image_digest(image) for image in self.train_images}

    def identity(self) -> dict[str, Any]:
        return {
            "threshold": float(self.threshold),
            "max_near_copy_fraction": float(self.max_near_copy_fraction),
            "reference_images": len(self.train_images),
            "reference_sha256": hashlib.sha256(self.train_images.tobytes()).hexdigest(),
        }

    def count(self, images: np.ndarray) -> dict[str, int]:
        from .metrics import nearest_distances

        if images.shape[1:] != self.train_images.shape[1:]:
            raise PlanError(f"copy screen: generated images are {images.shape[1:]}, training images {self.train_images.shape[1:]}")
        distances, _ = nearest_distances(images, self.train_images)
        exact = sum(_image_digest(image) in self._train_digests for image in np.ascontiguousarray(images, dtype=np.uint8))
        return {"checked": len(images), "near_copies": int((distances < self.threshold).sum()), "exact_copies": int(exact)}


def _image_digest(image: np.ndarray) -> bytes:
    """Identifies an image by its bytes: equal digests are exact copies, whatever the image's size."""
    return hashlib.blake2b(image.tobytes(), digest_size=16).digest()


def _screen_verdict(parts: Sequence[Mapping[str, Any]], recorded: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The manifest's memorization entry, and why the export must not be published (or None)."""
    totals = {key: sum(int(info["copies"][key]) for info in parts) for key in ("checked", "near_copies", "exact_copies")}
    fraction = totals["near_copies"] / max(totals["checked"], 1)
    entry = {**recorded, **totals, "near_copy_fraction": fraction, "space": "pixels"}
    if totals["exact_copies"]:
        return entry, f"{totals['exact_copies']} exported image(s) are exact copies of training images"
    if fraction > recorded["max_near_copy_fraction"]:
        return entry, f"near-copy fraction {fraction:.4f} is above the allowed {recorded['max_near_copy_fraction']}"
    return entry, None


# ---------------------------------------------------------------- writer


def _part_name(part: int) -> str:
    return f"part-{part:05d}.parquet"


def _finished_parts(staging: Path) -> dict[int, dict[str, Any]]:
    found = {}
    for sidecar in staging.glob("part-*.json"):
        info = json.loads(sidecar.read_text())
        if (staging / info["path"]).is_file():
            found[int(info["part"])] = info
    return found


def _prepare_staging(staging: Path, plan: ExportPlan, lineage: Mapping[str, Any], generator_settings: Mapping[str, Any], screen: CopyScreen | None) -> None:
    staging.mkdir(parents=True, exist_ok=True)
    wanted = {"plan": plan.identity(), "lineage": dict(lineage), "generator": dict(generator_settings), "screen": screen.identity() if screen else None}
    wanted = json.loads(json.dumps(wanted, default=str))
    plan_path = staging / PLAN_FILE
    if plan_path.exists():
        existing = json.loads(plan_path.read_text())
        if existing != wanted:
            raise ExportError(
                f"staging '{staging}' holds an unfinished export with another plan or lineage; "
                "finish it with the same settings or remove that staging directory"
            )
    else:
        _write_json_atomic(plan_path, wanted)


def _write_part(generator: FoldedGenerator, plan: ExportPlan, part: int, staging: Path, lineage, schema, pool, workers: int, depth: int, screen: CopyScreen | None) -> dict[str, Any]:
    start, stop = plan.part_range(part)
    copies: dict[str, int] = {}
    final = staging / _part_name(part)
    temp = staging / f".{_part_name(part)}.{os.getpid()}.tmp"
    try:
        with pq.ParquetWriter(temp, schema, compression="zstd", write_statistics=["sample_id", "label", "seed"]) as writer:
            # Payloads are collected as plain bytes and become one Arrow table per row group: many
            # small per-batch tables cost far more memory than the payloads themselves.
            group_start, group = start, []
            for batch_start, batch_stop, payloads in _encoded_batches(generator, plan, start, stop, pool, workers, depth, screen, copies):
                group.extend(payloads)
                if len(group) >= plan.row_group_size or batch_stop == stop:
                    writer.write_table(_batch_table(plan, group_start, batch_stop, group, lineage, schema), row_group_size=plan.row_group_size)
                    group_start, group = batch_stop, []
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        checksum = file_sha256(temp)
        os.replace(temp, final)
    except OSError as error:
        temp.unlink(missing_ok=True)
        raise ExportError(f"writing {final} failed: {error.strerror or error}; finished parts in '{staging}' are kept for a rerun") from error
    finally:
        temp.unlink(missing_ok=True)
    info = {"part": part, "path": final.name, "rows": stop - start, "sha256": checksum, "sample_id_start": start, "sample_id_stop": stop, "bytes": final.stat().st_size}
    if screen is not None:
        info["copies"] = copies
    _write_json_atomic(staging / f"part-{part:05d}.json", info)
    return info


def export_samples(
    generator,
    plan: ExportPlan,
    destination: str | Path,
    *,
    lineage: Mapping[str, Any] | None = None,
    root: str | Path | None = None,
    allow_outside_root: bool = False,
    shard: tuple[int, int] | None = None,
    commit: bool = True,
    workers: int | None = None,
    screen: CopyScreen | None = None,
) -> ExportResult:
    """Generate `plan` with `generator` and write it to `destination` (a path under `root`, or a
    filesystem URI). `shard=(i, n)` writes only the i-th of n disjoint part sets and, unless
    `commit=True` and it is the last writer, leaves them in staging for `commit_export`.
    `screen` checks every image against the training images before anything is published."""
    started = time.perf_counter()
    root = Path(root) if root is not None else default_root()
    lineage = dict(lineage or {})
    _check_destination(destination, root, allow_outside_root)
    if export_exists(destination):
        raise ExportError(f"export '{destination}' already exists and is complete; refusing to overwrite it")
    staging = _staging_dir(destination, root)
    config = generator.config
    image_shape = (config.channels, config.size, config.size)
    if config.num_classes != len(plan.class_names):
        raise PlanError(f"class_names: the plan has {len(plan.class_names)} classes but the generator was trained on {config.num_classes}")
    settings = {"model": config.to_dict(), "weights_sha256": weights_digest(generator), "seed": plan.seed, "image_shape": list(image_shape)}
    _prepare_staging(staging, plan, lineage, settings, screen)
    schema = _schema_for(plan, lineage, image_shape)

    parts = plan.shards(shard[1])[shard[0]] if shard else list(range(plan.num_parts))
    finished = _finished_parts(staging)
    workers = workers or max(1, os.cpu_count() or 1)
    written = 0
    folded = FoldedGenerator(generator)  # folded once, not once per batch
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for part in parts:
            if part in finished:
                continue
            _write_part(folded, plan, part, staging, lineage, schema, pool, workers, depth=2, screen=screen)
            written += 1
    result_files = sorted(_finished_parts(staging).values(), key=lambda info: info["part"])
    manifest: dict[str, Any] = {}
    if commit and len(result_files) == plan.num_parts:
        manifest = commit_export(plan, destination, root=root, allow_outside_root=allow_outside_root)
    return ExportResult(
        destination=str(destination),
        rows=sum(info["rows"] for info in result_files),
        files=result_files,
        manifest=manifest,
        wall_s=time.perf_counter() - started,
        parts_written=written,
        parts_reused=len([p for p in parts if p in finished]),
        bytes_written=sum(info["bytes"] for info in result_files),
    )


def export_exists(destination: str | Path) -> bool:
    """Whether a complete export (its manifest) is at `destination`, local or remote."""
    if _is_uri(destination):
        fs, base = _filesystem(destination)
        return fs.exists(f"{base}/{MANIFEST}")
    return Path(destination).exists()  # a local export appears in one rename, complete


def commit_export(plan: ExportPlan, destination: str | Path, *, root: str | Path | None = None, allow_outside_root: bool = False) -> dict[str, Any]:
    """Verify every part in staging (rows, checksums, sample_id ranges), write the manifest and
    make the export visible in one step."""
    root = Path(root) if root is not None else default_root()
    _check_destination(destination, root, allow_outside_root)
    if export_exists(destination):
        raise ExportError(f"export '{destination}' already exists and is complete; refusing to overwrite it")
    staging = _staging_dir(destination, root)
    if not (staging / PLAN_FILE).exists():
        raise ExportError(f"no staged export for '{destination}' (expected '{staging}')")
    recorded = json.loads((staging / PLAN_FILE).read_text())
    if recorded["plan"] != json.loads(json.dumps(plan.identity())):
        raise ExportError(f"staging '{staging}' was written for another plan")
    finished = _finished_parts(staging)
    missing = [part for part in range(plan.num_parts) if part not in finished]
    if missing:
        raise ExportError(f"cannot commit '{destination}': part(s) {missing[:10]} of {plan.num_parts} are not written yet")
    files = []
    for part in range(plan.num_parts):
        info = finished[part]
        start, stop = plan.part_range(part)
        path = staging / info["path"]
        if (info["sample_id_start"], info["sample_id_stop"], info["rows"]) != (start, stop, stop - start):
            raise ExportError(f"{path}: holds sample_ids {info['sample_id_start']}..{info['sample_id_stop']}, expected {start}..{stop}")
        if pq.ParquetFile(path).metadata.num_rows != info["rows"] or file_sha256(path) != info["sha256"]:
            raise ExportError(f"{path}: row count or SHA-256 does not match what was recorded when it was written")
        files.append({key: info[key] for key in ("path", "rows", "sha256", "sample_id_start", "sample_id_stop", "bytes")})
    memorization = None
    if recorded.get("screen"):
        memorization, refusal = _screen_verdict([finished[part] for part in range(plan.num_parts)], recorded["screen"])
        if refusal:
            shutil.rmtree(staging)  # not resumable: the same plan would make the same images
            raise ExportError(f"refusing to publish '{destination}': {refusal}; nothing was written there")
    lineage = recorded["lineage"]
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "total_rows": plan.total,
        "class_names": list(plan.class_names),
        "counts_per_class": {name: int(count) for name, count in zip(plan.class_names, plan.counts)},
        "image_format": plan.image_format,
        "image_shape": recorded["generator"]["image_shape"],
        "files": files,
        "model": {key: lineage.get(key) for key in ("model_name", "model_version", "run_id")},
        "metrics": lineage.get("metrics", {}),
        "lineage": lineage,
        "generator": {**recorded["generator"], "plan": plan.to_dict()},
        "memorization": memorization,
    }
    for sidecar in staging.glob("part-*.json"):
        sidecar.unlink()
    (staging / PLAN_FILE).unlink()
    _write_json_atomic(staging / MANIFEST, manifest)
    if _is_uri(destination):
        _upload(staging, str(destination))
    else:
        final = Path(destination)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staging, final)  # one atomic step; fails if the destination appeared meanwhile
    return manifest


def _upload(staging: Path, uri: str) -> None:
    """Object stores have no directory rename: parts first, manifest last (readers key on it)."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri)
    path = path.rstrip("/")
    fs.makedirs(path, exist_ok=True)
    for part in sorted(staging.glob("part-*.parquet")):
        fs.put_file(str(part), f"{path}/{part.name}")
    fs.put_file(str(staging / MANIFEST), f"{path}/{MANIFEST}")
    shutil.rmtree(staging)


# ---------------------------------------------------------------- reader


def _filesystem(path: str | Path):
    """(fsspec filesystem, path on it): a local path or any fsspec URI (s3://, gs://, memory://...)."""
    import fsspec

    if _is_uri(path):
        fs, inner = fsspec.core.url_to_fs(str(path))
        return fs, inner.rstrip("/")
    return fsspec.filesystem("file"), str(Path(path))


def read_manifest(path: str | Path) -> dict[str, Any]:
    fs, base = _filesystem(path)
    manifest_path = f"{base}/{MANIFEST}"
    try:
        return json.loads(fs.cat_file(manifest_path))
    except FileNotFoundError as error:
        raise ExportError(f"{manifest_path}: missing; '{path}' is not a complete export") from error
    except ValueError as error:
        raise ExportError(f"{manifest_path}: not valid JSON ({error})") from error


def export_schemas(path: str | Path) -> list[tuple[str, pa.Schema]]:
    """(name, Arrow schema) of every file the manifest lists, unverified: for schema checks."""
    fs, base = _filesystem(path)
    schemas = []
    for info in read_manifest(path)["files"]:
        with fs.open(f"{base}/{info['path']}", "rb") as handle:
            schemas.append((info["path"], pq.read_schema(handle)))
    return schemas


def verify_export(path: str | Path) -> dict[str, Any]:
    """Check every file the manifest lists: present, row count and SHA-256. Returns the manifest."""
    fs, base = _filesystem(path)
    manifest = read_manifest(path)
    total = 0
    for info in manifest["files"]:
        file = f"{base}/{info['path']}"
        if Path(info["path"]).name != info["path"]:
            raise ExportError(f"{base}/{MANIFEST}: file entry {info['path']!r} is not a plain file name")
        if not fs.isfile(file):
            raise ExportError(f"{file}: listed in the manifest but missing")
        if file_sha256(file, fs.open) != info["sha256"]:
            raise ExportError(f"{file}: SHA-256 does not match the manifest (corrupted or modified)")
        with fs.open(file, "rb") as handle:
            if pq.ParquetFile(handle).metadata.num_rows != info["rows"]:
                raise ExportError(f"{file}: row count does not match the manifest")
        total += info["rows"]
    if total != manifest["total_rows"]:
        raise ExportError(f"{base}: files hold {total} rows, the manifest says {manifest['total_rows']}")
    return manifest


def decode_images(table: pa.Table, manifest: Mapping[str, Any]) -> np.ndarray:
    """The `image` column as uint8 N×C×H×W."""
    channels, height, width = manifest["image_shape"]
    payloads = table.column("image").combine_chunks().field("bytes").to_pylist()
    out = np.empty((len(payloads), channels, height, width), np.uint8)
    for i, payload in enumerate(payloads):
        if manifest["image_format"] == "raw":
            out[i] = np.frombuffer(payload, np.uint8).reshape(channels, height, width)
        else:
            array = np.asarray(Image.open(io.BytesIO(payload)))
            out[i] = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return out


def read_export(path: str | Path, *, as_pandas: bool = False, decode: bool = False, verify: bool = True):
    """Read a committed export (verified against its manifest unless verify=False).

    Returns a pyarrow Table (or a pandas DataFrame with as_pandas=True); with decode=True, a pair
    (table or frame, images as uint8 N×C×H×W in sample_id order)."""
    fs, base = _filesystem(path)
    manifest = verify_export(path) if verify else read_manifest(path)
    tables = []
    for info in manifest["files"]:
        with fs.open(f"{base}/{info['path']}", "rb") as handle:
            tables.append(pq.read_table(handle))
    table = pa.concat_tables(tables).sort_by("sample_id")
    frame = table.to_pandas() if as_pandas else table
    return (frame, decode_images(table, manifest)) if decode else frame
