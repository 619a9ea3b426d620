"""Sensors: `spec_files` turns each new spec file into a partition while the webserver and daemon
run; `image_folder_changes` starts a run for a spec whose `image_folder` source or unlabelled folder
has files added or changed.

The folder sensor's cursor holds one fingerprint per spec (names, sizes and modification times of the
files), so the same state never starts two runs."""

import hashlib
import json
from pathlib import Path

import dagster as dg

from ..partitions import SPECS_PARTITIONS, new_spec_keys
from ..resources import SpecsResource
from ..specs import load_specs
from .jobs import JOB_NAME


@dg.sensor(name="spec_files", minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def spec_files(context: dg.SensorEvaluationContext, specs: SpecsResource):
    """A spec file dropped into the spec folder becomes a partition within a tick, with no restart. A
    removed file keeps its partition, its runs and its data."""
    new = new_spec_keys(context.instance, specs.directory)
    if not new:
        return dg.SkipReason(f"no new spec file in {Path(specs.directory).absolute()}")
    context.log.info(f"new spec partitions: {', '.join(new)}")
    return dg.SensorResult(dynamic_partitions_requests=[SPECS_PARTITIONS.build_add_request(new)])


def folder_fingerprint(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


@dg.sensor(name="image_folder_changes", job_name=JOB_NAME, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED)
def image_folder_changes(context: dg.SensorEvaluationContext, specs: SpecsResource):
    loaded, _ = load_specs(specs.directory)
    seen = json.loads(context.cursor) if context.cursor else {}
    requests = []
    for spec in loaded.values():
        watched = {field: source for field, source in (("source", spec.source), ("unlabelled", spec.unlabelled)) if source and source.kind == "image_folder"}
        folders = {field: (spec.base_dir / source.path).resolve() for field, source in watched.items()}
        missing = [f"{field}.path '{folder}'" for field, folder in folders.items() if not folder.is_dir()]
        if missing:
            context.log.warning(f"{spec.path}: {', '.join(missing)} is not a directory")
        if missing or not folders:
            continue
        fingerprint = "-".join(folder_fingerprint(folder) for folder in folders.values())
        if seen.get(spec.name) == fingerprint:
            continue
        seen[spec.name] = fingerprint
        requests.append(
            dg.RunRequest(run_key=f"{spec.name}-{fingerprint}", partition_key=spec.name, tags={"ganpipe/spec": spec.name, "ganpipe/trigger": "files"})
        )
    cursor = json.dumps(seen, sort_keys=True)
    if not requests:
        return dg.SensorResult(skip_reason="no image folder changed", cursor=cursor)
    # A run of a spec whose file came after the last `spec_files` tick needs its partition first.
    unregistered = sorted(set(new_spec_keys(context.instance, specs.directory)) & {request.partition_key for request in requests})
    additions = [SPECS_PARTITIONS.build_add_request(unregistered)] if unregistered else []
    return dg.SensorResult(run_requests=requests, dynamic_partitions_requests=additions, cursor=cursor)
