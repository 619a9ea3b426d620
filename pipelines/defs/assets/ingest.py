"""Ingest: the spec's real images, validated, normalised, split and snapshotted, and its
unlabelled images (the pool), which may train the GAN and the judge but never the holdout's place."""

import hashlib

import dagster as dg
import numpy as np

from gan_core.data import UNLABELLED, DataError, ImageData, load_source, load_unlabelled, save_npz
from gan_core.sample import save_grid

from ... import records
from ...resources import SpecsResource, StorageResource
from ...specs import Spec
from .common import STAGE, picture


@dg.asset(**STAGE, kinds={"numpy"})
def real_images(context: dg.AssetExecutionContext, specs: SpecsResource, storage: StorageResource) -> dg.Output[records.Snapshot]:
    """Load, validate and normalise the spec's real images; split off the holdout first; keep
    `labels_per_class` and pool the rest with the spec's unlabelled images; snapshot them."""
    spec = specs.get(context.partition_key)
    fitting = {"size": spec.image.size, "channels": spec.image.channels, "fit": spec.image.fit, "base_dir": spec.base_dir}
    data = load_source(spec.source.loader_args(), skip_bad=spec.source.skip_bad, **fitting)
    train_split, holdout, train_copies, skipped = _split_off_holdout(spec, data, fitting)  # labelled images only, before anything else
    pool = np.zeros((0, *data.images.shape[1:]), np.uint8)
    if spec.source.labels_per_class:
        train_split, pool = train_split.keep_labels_per_class(spec.source.labels_per_class, seed=spec.seed)
    if spec.unlabelled is not None:
        unlabelled = load_unlabelled(spec.unlabelled.loader_args(), skip_bad=spec.unlabelled.skip_bad, **fitting)
        pool, skipped = np.concatenate([pool, unlabelled.images]), skipped + unlabelled.skipped
    pool, holdout_copies = without_copies_of(pool, holdout)
    digest = snapshot_hash(data, spec, pool, holdout)
    snapshot = storage.data_dir(spec.name) / digest[:16]
    if not (snapshot / "holdout.npz").exists():
        if len(pool):
            save_npz(ImageData(pool, np.zeros(len(pool), np.int64), [UNLABELLED]), snapshot / "unlabelled.npz")
        save_npz(train_split, snapshot / "train.npz")
        save_npz(holdout, snapshot / "holdout.npz")  # written last: its presence marks a complete snapshot
    rows = min(data.num_classes, 10)
    picks = np.concatenate([np.flatnonzero(data.labels == c)[:10] for c in range(rows)])
    save_grid(data.images[picks], snapshot / "real.png", columns=10)
    pool_grid = {}
    if len(pool):
        save_grid(pool[:50], snapshot / "unlabelled.png", columns=10)
        pool_grid = {"unlabelled_grid": picture(snapshot / "unlabelled.png")}
    for path, reason in skipped:
        context.log.warning(f"skipped {path}: {reason}")
    if holdout_copies:
        context.log.warning(f"dropped {holdout_copies} unlabelled image(s) identical to holdout images: the holdout never trains anything")
    if train_copies:
        context.log.warning(f"dropped {train_copies} labelled image(s) identical to images of the spec's holdout: the holdout never trains anything")
    record = records.Snapshot(
        spec=spec.name,
        spec_digest=records.spec_digest(spec),
        path=str(snapshot),
        content_hash=digest,
        train_images=len(train_split),
        holdout_images=len(holdout),
        unlabelled_images=len(pool),
    )
    return dg.Output(
        record,
        metadata={
            "snapshot": dg.MetadataValue.path(str(snapshot)),
            "spec_digest": record.spec_digest,
            "content_hash": digest,
            "images": len(data),
            "train_images": len(train_split),
            "holdout_images": len(holdout),
            "unlabelled_images": len(pool),
            "unlabelled_dropped_as_holdout_copies": holdout_copies,
            "train_dropped_as_holdout_copies": train_copies,
            "holdout_source": "the spec's holdout" if spec.holdout is not None else f"{spec.holdout_fraction:g} of the source, split off",
            "image_size": f"{spec.image.size}x{spec.image.size}x{spec.image.channels}",
            "class_counts": dg.MetadataValue.json(data.class_counts()),
            "train_class_counts": dg.MetadataValue.json(train_split.class_counts()),
            "skipped_files": len(skipped),
            "sample_grid": picture(snapshot / "real.png", rows=data.class_names[:rows]),
            **pool_grid,
        },
    )


def _split_off_holdout(spec: Spec, data: ImageData, fitting: dict) -> tuple[ImageData, ImageData, int, list]:
    """(train, holdout, source images dropped as copies of holdout ones, skipped files): a stratified
    split of the source, or the spec's own `holdout:` source with the source's copies of its images
    left out of training."""
    if spec.holdout is None:
        train_split, holdout = data.split(spec.holdout_fraction, seed=spec.seed)
        return train_split, holdout, 0, list(data.skipped)
    holdout = load_source(spec.holdout.loader_args(), skip_bad=spec.holdout.skip_bad, **fitting)
    if holdout.class_names != data.class_names:
        raise DataError(
            f"spec '{spec.name}' field 'holdout': its classes {holdout.class_names[:10]} are not the source's {data.class_names[:10]}; "
            "a holdout must name the same classes in the same order"
        )
    keep = _not_in(data.images, holdout)
    train_split = ImageData(data.images[keep], data.labels[keep], data.class_names)
    return train_split, holdout, int((~keep).sum()), list(data.skipped) + list(holdout.skipped)


def _image_digests(images: np.ndarray) -> list[bytes]:
    return [hashlib.sha256(np.ascontiguousarray(image).tobytes()).digest() for image in images]


def _not_in(images: np.ndarray, holdout: ImageData) -> np.ndarray:
    """True for each image not identical to a holdout image."""
    held = set(_image_digests(holdout.images))
    return np.array([digest not in held for digest in _image_digests(images)], bool)


def without_copies_of(pool: np.ndarray, holdout: ImageData) -> tuple[np.ndarray, int]:
    """The pool without images identical to a holdout image, and how many were dropped."""
    if not len(pool):
        return pool, 0
    keep = _not_in(pool, holdout)
    return pool[keep], int((~keep).sum())


def snapshot_hash(data: ImageData, spec: Spec, pool: np.ndarray, holdout: ImageData) -> str:
    """The labelled data, how it was split and the pool: equal inputs give an equal snapshot."""
    digest = hashlib.sha256(data.content_hash().encode())
    if spec.holdout is not None:
        digest.update(f"holdout={holdout.content_hash()}".encode())
    if spec.source.labels_per_class or len(pool) or spec.holdout is not None:
        digest.update(f"holdout={spec.holdout_fraction} seed={spec.seed} labels_per_class={spec.source.labels_per_class}".encode())
        digest.update(np.ascontiguousarray(pool).tobytes())
        return digest.hexdigest()
    return data.content_hash()  # as before pools existed, so existing snapshots stay valid
