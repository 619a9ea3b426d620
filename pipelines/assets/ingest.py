"""Ingest: the spec's real images, validated, normalised, split and snapshotted."""

import dagster as dg
import numpy as np

from gan_core.data import load_source, save_npz
from gan_core.sample import save_grid

from ..resources import SpecsResource, StorageResource
from .common import STAGE, picture


@dg.asset(**STAGE, kinds={"numpy"})
def real_images(context: dg.AssetExecutionContext, specs: SpecsResource, storage: StorageResource) -> dg.MaterializeResult:
    """Load, validate and normalise the spec's real images; split train/holdout; snapshot them."""
    spec = specs.get(context.partition_key)
    data = load_source(
        spec.source.loader_args(), size=spec.image.size, channels=spec.image.channels, fit=spec.image.fit, skip_bad=spec.source.skip_bad, base_dir=spec.base_dir
    )
    train_split, holdout = data.split(spec.holdout_fraction, seed=spec.seed)
    digest = data.content_hash()
    snapshot = storage.data_dir(spec.name) / digest[:16]
    if not (snapshot / "holdout.npz").exists():
        save_npz(train_split, snapshot / "train.npz")
        save_npz(holdout, snapshot / "holdout.npz")
    rows = min(data.num_classes, 10)
    picks = np.concatenate([np.flatnonzero(data.labels == c)[:10] for c in range(rows)])
    save_grid(data.images[picks], snapshot / "real.png", columns=10)
    for path, reason in data.skipped:
        context.log.warning(f"skipped {path}: {reason}")
    return dg.MaterializeResult(
        metadata={
            "snapshot": dg.MetadataValue.path(str(snapshot)),
            "content_hash": digest,
            "images": len(data),
            "train_images": len(train_split),
            "holdout_images": len(holdout),
            "image_size": f"{spec.image.size}x{spec.image.size}x{spec.image.channels}",
            "class_counts": dg.MetadataValue.json(data.class_counts()),
            "skipped_files": len(data.skipped),
            "sample_grid": picture(snapshot / "real.png"),
        }
    )
