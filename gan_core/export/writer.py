"""The writer: generation on the device overlapped with encoding in threads, one Parquet part at a
time into staging, resumable part by part, shardable across processes."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..progress import time_left
from ..checkpoint import weights_digest  # a resumed export must come from the very same weights
from ..files import file_sha256
from ..models import FoldedGenerator
from ..sample import generate
from .layout import PLAN_FILE, part_name, staging_dir
from .plan import IMAGE_TYPE, ExportError, ExportPlan, ExportResult, PlanError, schema_for
from .filter import ConfidenceFilter, SoftLabels
from .png import encode_batch
from .screen import CopyScreen
from .store import check_destination, commit_export, export_exists, finished_parts, write_json_atomic


@dataclass
class _PartJob:
    """What writing one part needs, shared by every part of an export."""

    generator: FoldedGenerator
    plan: ExportPlan
    staging: Path
    lineage: Mapping[str, Any]
    schema: pa.Schema
    pool: ThreadPoolExecutor  # encodes earlier batches while the calling thread generates
    workers: int
    screen: CopyScreen | None
    confidence: ConfidenceFilter | None
    soft_labels: SoftLabels | None
    depth: int = 2  # batches in flight in the pool


@dataclass
class _Tally:
    """One part's counts: copies the screen found, draws the confidence filter accepted."""

    copies: dict[str, int] = field(default_factory=dict)
    acceptance: dict[str, list[int]] = field(default_factory=dict)


class _Batch(NamedTuple):
    start: int
    stop: int
    seeds: np.ndarray
    probs: np.ndarray | None  # the teacher's label_probs of the batch's images, with soft labels
    payloads: Any  # futures of encoded chunks while in flight, then the encoded images


def _encoded_batches(job: _PartJob, start: int, stop: int, tally: _Tally) -> Iterator[_Batch]:
    """Generate on the device in the calling thread while the pool encodes earlier batches; yields
    each batch with its payloads. With a screen, its counts for each batch are added to the tally;
    with a confidence filter, rejected draws are replaced and counted in it; with soft labels, the
    teacher's probabilities of the kept images come along."""
    plan = job.plan
    pending: list[_Batch] = []
    for batch_start in range(start, stop, plan.batch_size):
        batch_stop = min(batch_start + plan.batch_size, stop)
        if job.confidence is None:
            seeds = plan.seeds_for(batch_start, batch_stop)
            images = generate(job.generator, plan.labels_for(batch_start, batch_stop), seeds=seeds, batch_size=plan.batch_size)
        else:
            images, seeds = job.confidence.draw(job.generator, plan, batch_start, batch_stop, tally.acceptance)
        if job.screen is not None:
            for key, value in job.screen.count(images).items():
                tally.copies[key] = tally.copies.get(key, 0) + value
        probs = job.soft_labels.of(images) if job.soft_labels is not None else None
        # Split the batch so every worker gets a share even when one batch is in flight.
        chunks = np.array_split(images, job.workers)
        pending.append(_Batch(batch_start, batch_stop, seeds, probs, [job.pool.submit(encode_batch, chunk, plan.image_format) for chunk in chunks]))
        while len(pending) > job.depth:
            yield _encoded(pending.pop(0))
    for batch in pending:
        yield _encoded(batch)


def _encoded(batch: _Batch) -> _Batch:
    return batch._replace(payloads=[payload for future in batch.payloads for payload in future.result()])


def _batch_table(job: _PartJob, start: int, stop: int, seeds: np.ndarray, probs: np.ndarray | None, payloads: list[bytes]) -> pa.Table:
    plan = job.plan
    labels = plan.labels_for(start, stop)
    sample_ids = np.arange(start, stop, dtype=np.int64)
    suffix = ".png" if plan.image_format == "png" else ".raw"
    names = pa.DictionaryArray.from_arrays(pa.array(labels.astype(np.int32)), pa.array(list(plan.class_names), pa.string()))
    model_name = str(job.lineage.get("model_name", ""))
    model_version = str(job.lineage.get("model_version", ""))
    constant = lambda text: pa.DictionaryArray.from_arrays(pa.array(np.zeros(stop - start, np.int32)), pa.array([text], pa.string()))  # noqa: E731
    image = pa.StructArray.from_arrays(
        [pa.array(payloads, pa.binary()), pa.array([f"{i}{suffix}" for i in range(start, stop)], pa.string())],
        fields=list(IMAGE_TYPE),
    )
    columns = [pa.array(sample_ids), pa.array(labels), names, image]
    if probs is not None:
        columns.append(pa.FixedSizeListArray.from_arrays(pa.array(probs.reshape(-1), pa.float32()), probs.shape[1]))
    columns += [pa.array(seeds), constant(model_name), constant(model_version)]
    return pa.Table.from_arrays(columns, schema=job.schema)


def _prepare_staging(job: _PartJob, generator_settings: Mapping[str, Any]) -> None:
    """Staging with its plan file; a rerun must bring the very same plan, lineage, generator and checks."""
    job.staging.mkdir(parents=True, exist_ok=True)
    wanted = {
        "plan": job.plan.identity(),
        "lineage": dict(job.lineage),
        "generator": dict(generator_settings),
        "screen": job.screen.identity() if job.screen else None,
        "filter": job.confidence.identity() if job.confidence else None,
        "soft_labels": job.soft_labels.identity() if job.soft_labels else None,
    }
    wanted = json.loads(json.dumps(wanted, default=str))
    plan_path = job.staging / PLAN_FILE
    if plan_path.exists():
        existing = json.loads(plan_path.read_text())
        if existing != wanted:
            raise ExportError(
                f"staging '{job.staging}' holds an unfinished export with another plan or lineage; "
                "finish it with the same settings or remove that staging directory"
            )
    else:
        write_json_atomic(plan_path, wanted)


def _write_part(job: _PartJob, part: int) -> dict[str, Any]:
    """One part file, fsynced and renamed into staging, and its sidecar with rows and checksum."""
    plan, staging = job.plan, job.staging
    start, stop = plan.part_range(part)
    tally = _Tally()
    final = staging / part_name(part)
    temp = staging / f".{part_name(part)}.{os.getpid()}.tmp"
    try:
        with pq.ParquetWriter(temp, job.schema, compression="zstd", write_statistics=["sample_id", "label", "seed"]) as writer:
            # Payloads are collected as plain bytes and become one Arrow table per row group: many
            # small per-batch tables cost far more memory than the payloads themselves.
            group_start, group, group_seeds, group_probs = start, [], [], []
            for batch in _encoded_batches(job, start, stop, tally):
                group.extend(batch.payloads)
                group_seeds.append(batch.seeds)
                group_probs.append(batch.probs)
                if len(group) >= plan.row_group_size or batch.stop == stop:
                    probs = np.concatenate(group_probs) if job.soft_labels is not None else None
                    table = _batch_table(job, group_start, batch.stop, np.concatenate(group_seeds), probs, group)
                    writer.write_table(table, row_group_size=plan.row_group_size)
                    group_start, group, group_seeds, group_probs = batch.stop, [], [], []
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        checksum = file_sha256(temp)
        os.replace(temp, final)
    except OSError as error:
        temp.unlink(missing_ok=True)
        raise ExportError(f"writing {final} failed: {error.strerror or error}; finished parts in '{staging}' are kept for a rerun") from error
    finally:
        temp.unlink(missing_ok=True)
    info = {
        "part": part,
        "path": final.name,
        "rows": stop - start,
        "sha256": checksum,
        "sample_id_start": start,
        "sample_id_stop": stop,
        "bytes": final.stat().st_size,
    }
    if job.screen is not None:
        info["copies"] = tally.copies
    if job.confidence is not None:
        info["acceptance"] = tally.acceptance
    write_json_atomic(staging / f"part-{part:05d}.json", info)
    return info


def export_samples(
    generator,
    plan: ExportPlan,
    destination: str | Path,
    *,
    lineage: Mapping[str, Any] | None = None,
    root: str | Path,
    allow_outside_root: bool = False,
    shard: tuple[int, int] | None = None,
    commit: bool = True,
    workers: int | None = None,
    screen: CopyScreen | None = None,
    confidence: ConfidenceFilter | None = None,
    soft_labels: SoftLabels | None = None,
    progress: Callable[[str], None] | None = None,
) -> ExportResult:
    """Generate `plan` with `generator` and write it to `destination` (a path under `root`, or a
    filesystem URI). `shard=(i, n)` writes only the i-th of n disjoint part sets and, unless
    `commit=True` and it is the last writer, leaves them in staging for `commit_export`.
    `screen` checks every image against the training images before anything is published;
    `confidence` keeps only images the judge gives their label with at least its min_confidence;
    `soft_labels` gives every row its teacher's class probabilities (`label_probs`);
    `progress` gets one line per part written (rows, rows/s, time left)."""
    started = time.perf_counter()
    root = Path(root)
    lineage = dict(lineage or {})
    check_destination(destination, root, allow_outside_root)
    if export_exists(destination):
        raise ExportError(f"export '{destination}' already exists and is complete; refusing to overwrite it")
    staging = staging_dir(destination, root)
    config = generator.config
    image_shape = (config.channels, config.size, config.size)
    if config.num_classes != len(plan.class_names):
        raise PlanError(f"class_names: the plan has {len(plan.class_names)} classes but the generator was trained on {config.num_classes}")
    settings = {"model": config.to_dict(), "weights_sha256": weights_digest(generator), "seed": plan.seed, "image_shape": list(image_shape)}
    for role, judge in (("confidence filter", confidence and confidence.judge), ("soft labels", soft_labels and soft_labels.teacher)):
        if judge is not None and list(judge.class_names) != list(plan.class_names):
            raise PlanError(f"{role}: the judge's classes {judge.class_names} are not the plan's {list(plan.class_names)}")

    parts = plan.shards(shard[1])[shard[0]] if shard else list(range(plan.num_parts))
    workers = workers or max(1, os.cpu_count() or 1)
    written = rows = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        schema = schema_for(plan, lineage, image_shape, soft_labels=soft_labels is not None)
        job = _PartJob(FoldedGenerator(generator), plan, staging, lineage, schema, pool, workers, screen, confidence, soft_labels)
        _prepare_staging(job, settings)
        finished = finished_parts(staging)
        todo = [part for part in parts if part not in finished]
        for part in todo:
            _write_part(job, part)
            written += 1
            rows += plan.part_range(part)[1] - plan.part_range(part)[0]
            if progress is not None:
                elapsed = time.perf_counter() - started
                progress(
                    f"export: part {written}/{len(todo)} written, {rows} rows, {rows / elapsed:.0f} rows/s, {time_left(elapsed / written * (len(todo) - written))} left"
                )
    result_files = sorted(finished_parts(staging).values(), key=lambda info: info["part"])
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
