"""What an export holds: the plan (labels, seeds, parts), its Arrow schema and the errors."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa

from ..sample import sample_seeds


SCHEMA_VERSION = 2  # 2: the optional `label_probs` column (soft labels); version 1 exports read the same


IMAGE_FORMATS = ("png", "raw")


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
SOFT_LABELS = "label_probs"  # the teacher's class probabilities of a row's image, one float32 per class


def export_schema(num_classes: int | None = None) -> pa.Schema:
    """The parts' columns; with `num_classes` (an export with soft labels), `label_probs` after `image`."""
    if num_classes is None:
        return EXPORT_SCHEMA
    return EXPORT_SCHEMA.insert(EXPORT_SCHEMA.get_field_index("image") + 1, pa.field(SOFT_LABELS, pa.list_(pa.float32(), num_classes)))


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


def hf_features(class_names: Sequence[str], image_format: str, soft_labels: bool = False) -> dict[str, Any]:
    """The `huggingface` schema metadata: `datasets` then decodes `image` and `label` itself, and
    `label_probs` (with `soft_labels`) as a Sequence of float32 of one per class."""
    value = lambda dtype: {"dtype": dtype, "_type": "Value"}  # noqa: E731
    image = {"_type": "Image"} if image_format == "png" else {"bytes": value("binary"), "path": value("string")}
    probs = {SOFT_LABELS: {"feature": value("float32"), "length": len(class_names), "_type": "Sequence"}} if soft_labels else {}
    features = {
        "sample_id": value("int64"),
        "label": {"names": list(class_names), "_type": "ClassLabel"},
        "label_name": value("string"),
        "image": image,
        **probs,
        "seed": value("int64"),
        "model_name": value("string"),
        "model_version": value("string"),
    }
    return {"info": {"features": features}}


def schema_for(plan: ExportPlan, lineage: Mapping[str, Any], image_shape: Sequence[int], soft_labels: bool = False) -> pa.Schema:
    metadata = {
        "huggingface": json.dumps(hf_features(plan.class_names, plan.image_format, soft_labels)),
        "ganpipe.schema_version": str(SCHEMA_VERSION),
        "ganpipe.image_format": plan.image_format,
        "ganpipe.image_shape": json.dumps(list(image_shape)),
        "ganpipe.lineage": json.dumps(dict(lineage), sort_keys=True, default=str),
    }
    return export_schema(len(plan.class_names) if soft_labels else None).with_metadata(metadata)
