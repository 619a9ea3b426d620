"""The writer: generation on the device overlapped with encoding in threads, one Parquet part at a
time into staging, resumable part by part, shardable across processes."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..progress import time_left
from ..checkpoint import weights_digest  # a resumed export must come from the very same weights
from ..files import file_sha256
from ..models import FoldedGenerator
from ..sample import generate
from .plan import IMAGE_TYPE, PLAN_FILE, ExportError, ExportPlan, ExportResult, PlanError, schema_for
from .filter import ConfidenceFilter
from .png import encode_batch
from .screen import CopyScreen
from .store import check_destination, commit_export, default_root, export_exists, finished_parts, part_name, staging_dir, write_json_atomic


def _encoded_batches(
    generator: FoldedGenerator,
    plan: ExportPlan,
    start: int,
    stop: int,
    pool: ThreadPoolExecutor,
    workers: int,
    depth: int,
    screen: CopyScreen | None,
    copies: dict[str, int],
    confidence: ConfidenceFilter | None,
    acceptance: dict[str, list[int]],
) -> Iterator[tuple[int, int, np.ndarray, list[bytes]]]:
    """Generate on the device in the calling thread while `pool` encodes earlier batches; yields
    (start, stop, seeds, payloads). With a `screen`, its counts for each batch are added to `copies`;
    with a `confidence` filter, rejected draws are replaced and counted in `acceptance`."""
    pending: list[tuple[int, int, np.ndarray, Any]] = []
    for batch_start in range(start, stop, plan.batch_size):
        batch_stop = min(batch_start + plan.batch_size, stop)
        if confidence is None:
            seeds = plan.seeds_for(batch_start, batch_stop)
            images = generate(generator, plan.labels_for(batch_start, batch_stop), seeds=seeds, batch_size=plan.batch_size)
        else:
            images, seeds = confidence.draw(generator, plan, batch_start, batch_stop, acceptance)
        if screen is not None:
            for key, value in screen.count(images).items():
                copies[key] = copies.get(key, 0) + value
        # Split the batch so every worker gets a share even when one batch is in flight.
        chunks = np.array_split(images, workers)
        pending.append((batch_start, batch_stop, seeds, [pool.submit(encode_batch, chunk, plan.image_format) for chunk in chunks]))
        while len(pending) > depth:
            first, last, batch_seeds, futures = pending.pop(0)
            yield first, last, batch_seeds, [payload for future in futures for payload in future.result()]
    for first, last, batch_seeds, futures in pending:
        yield first, last, batch_seeds, [payload for future in futures for payload in future.result()]


def _batch_table(plan: ExportPlan, start: int, stop: int, seeds: np.ndarray, payloads: list[bytes], lineage: Mapping[str, Any], schema: pa.Schema) -> pa.Table:
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
        [pa.array(sample_ids), pa.array(labels), names, image, pa.array(seeds), constant(model_name), constant(model_version)],
        schema=schema,
    )


def _prepare_staging(
    staging: Path,
    plan: ExportPlan,
    lineage: Mapping[str, Any],
    generator_settings: Mapping[str, Any],
    screen: CopyScreen | None,
    confidence: ConfidenceFilter | None,
) -> None:
    staging.mkdir(parents=True, exist_ok=True)
    wanted = {
        "plan": plan.identity(),
        "lineage": dict(lineage),
        "generator": dict(generator_settings),
        "screen": screen.identity() if screen else None,
        "filter": confidence.identity() if confidence else None,
    }
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
        write_json_atomic(plan_path, wanted)


def _write_part(
    generator: FoldedGenerator,
    plan: ExportPlan,
    part: int,
    staging: Path,
    lineage,
    schema,
    pool,
    workers: int,
    depth: int,
    screen: CopyScreen | None,
    confidence: ConfidenceFilter | None,
) -> dict[str, Any]:
    start, stop = plan.part_range(part)
    copies: dict[str, int] = {}
    acceptance: dict[str, list[int]] = {}
    final = staging / part_name(part)
    temp = staging / f".{part_name(part)}.{os.getpid()}.tmp"
    try:
        with pq.ParquetWriter(temp, schema, compression="zstd", write_statistics=["sample_id", "label", "seed"]) as writer:
            # Payloads are collected as plain bytes and become one Arrow table per row group: many
            # small per-batch tables cost far more memory than the payloads themselves.
            group_start, group, group_seeds = start, [], []
            batches = _encoded_batches(generator, plan, start, stop, pool, workers, depth, screen, copies, confidence, acceptance)
            for _, batch_stop, seeds, payloads in batches:
                group.extend(payloads)
                group_seeds.append(seeds)
                if len(group) >= plan.row_group_size or batch_stop == stop:
                    table = _batch_table(plan, group_start, batch_stop, np.concatenate(group_seeds), group, lineage, schema)
                    writer.write_table(table, row_group_size=plan.row_group_size)
                    group_start, group, group_seeds = batch_stop, [], []
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
    if screen is not None:
        info["copies"] = copies
    if confidence is not None:
        info["acceptance"] = acceptance
    write_json_atomic(staging / f"part-{part:05d}.json", info)
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
    confidence: ConfidenceFilter | None = None,
    progress: Callable[[str], None] | None = None,
) -> ExportResult:
    """Generate `plan` with `generator` and write it to `destination` (a path under `root`, or a
    filesystem URI). `shard=(i, n)` writes only the i-th of n disjoint part sets and, unless
    `commit=True` and it is the last writer, leaves them in staging for `commit_export`.
    `screen` checks every image against the training images before anything is published;
    `confidence` keeps only images the judge gives their label with at least its min_confidence;
    `progress` gets one line per part written (rows, rows/s, time left)."""
    started = time.perf_counter()
    root = Path(root) if root is not None else default_root()
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
    if confidence is not None and list(confidence.judge.class_names) != list(plan.class_names):
        raise PlanError(f"confidence filter: the judge's classes {confidence.judge.class_names} are not the plan's {list(plan.class_names)}")
    _prepare_staging(staging, plan, lineage, settings, screen, confidence)
    schema = schema_for(plan, lineage, image_shape)

    parts = plan.shards(shard[1])[shard[0]] if shard else list(range(plan.num_parts))
    finished = finished_parts(staging)
    workers = workers or max(1, os.cpu_count() or 1)
    written = 0
    folded = FoldedGenerator(generator)
    todo = [part for part in parts if part not in finished]
    rows = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for part in todo:
            _write_part(folded, plan, part, staging, lineage, schema, pool, workers, depth=2, screen=screen, confidence=confidence)
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
