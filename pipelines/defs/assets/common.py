"""What every stage shares: the group, the step tags, the spec a step works under, the snapshot's
splits, and pictures in metadata."""

import base64
import re
from pathlib import Path
from typing import Optional, Sequence

import dagster as dg
import numpy as np

from gan_core.data import ImageData, load_source

from ... import records
from ...partitions import SPECS_PARTITIONS
from ...resources import SpecsResource
from ...specs import Spec

GROUP = "ganpipe"
# Steps that keep every core busy with torch; the default executor runs one of them at a time.
COMPUTE_TAG = {"ganpipe/compute": "heavy"}
# What the k8s executor (dagster-k8s) reads to give the training step's pod a GPU; other executors
# ignore it. Override per deployment with the executor's own step config (see deploy/k8s/).
K8S_GPU_TAGS = {
    "dagster-k8s/config": {
        "container_config": {
            "resources": {"requests": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}, "limits": {"memory": "32Gi", "nvidia.com/gpu": "1"}}
        },
        "pod_spec_config": {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
    }
}
STAGE = {"partitions_def": SPECS_PARTITIONS, "group_name": GROUP}  # every asset: one partition per spec


def spec_of(
    specs: SpecsResource, context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext, snapshot: records.Snapshot, *made_from: Optional[object]
) -> Spec:
    """The partition's spec as it was when `real_images` made the snapshot this step reads: a spec
    edited since then fails here, by name, rather than mixing two versions of its settings. Each
    record in `made_from` (a judge, a model version) must come from that same snapshot."""
    for record in made_from:
        if record is not None and getattr(record, "snapshot", snapshot.content_hash) != snapshot.content_hash:
            raise dg.Failure(
                f"{type(record).__name__.lower()} {getattr(record, 'path', '')} was made from snapshot {record.snapshot[:12]}, "
                f"not from this step's {snapshot.content_hash[:12]} ({snapshot.path}); materialize it again from real_images"
            )
    spec = specs.get(context.partition_key)
    if records.spec_digest(spec) != snapshot.spec_digest:
        raise dg.Failure(
            f"{spec.path}: spec '{spec.name}' changed since real_images made the snapshot {snapshot.path} "
            f"(settings {snapshot.spec_digest}, now {records.spec_digest(spec)}); materialize real_images and what follows again"
        )
    return spec


def load_split(snapshot: str | Path) -> tuple[ImageData, ImageData]:
    """The train and holdout splits `real_images` snapshotted."""
    return (
        load_source({"kind": "npz", "path": str(Path(snapshot) / "train.npz")}),
        load_source({"kind": "npz", "path": str(Path(snapshot) / "holdout.npz")}),
    )


def load_pool(snapshot: str | Path) -> np.ndarray:
    """The unlabelled images `real_images` snapshotted (none: an empty array)."""
    path = Path(snapshot) / "unlabelled.npz"
    if not path.exists():
        return np.zeros((0, 1, 1, 1), np.uint8)
    return load_source({"kind": "npz", "path": str(path), "unlabelled": True}).images


def picture(path: Path, rows: Sequence[str] = ()) -> dg.MetadataValue:
    """A PNG inline in Markdown metadata; `rows` (class names, one per row of the grid) become its caption."""
    encoded = base64.b64encode(path.read_bytes()).decode()
    caption = f"\n\nRows, top to bottom: {', '.join(markdown_text(name) for name in rows)}" if rows else ""
    return dg.MetadataValue.md(f"![{path.stem}](data:image/png;base64,{encoded}){caption}")


def markdown_text(text: str) -> str:
    """`text` shown as written in Markdown: a class name such as `T-shirt/top` or `*_x_*` stays a name."""
    return re.sub(r"([\\`*_\[\]{}()<>#+\-.!|~])", r"\\\1", text)
