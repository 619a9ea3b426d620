"""A sensor that starts a run for an `image_folder` spec when its files are added or changed.

The cursor holds one fingerprint per spec (names, sizes and modification times of the files), so
the same state never starts two runs."""

import hashlib
import json
from pathlib import Path

import dagster as dg

from .specs import load_specs


def folder_fingerprint(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def build_folder_sensor(job, specs_dir: str) -> dg.SensorDefinition:
    @dg.sensor(name="image_folder_changes", job=job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED)
    def image_folder_changes(context: dg.SensorEvaluationContext):
        specs, _ = load_specs(specs_dir)
        seen = json.loads(context.cursor) if context.cursor else {}
        requests = []
        for spec in specs.values():
            if spec.source.kind != "image_folder":
                continue
            folder = (spec.base_dir / spec.source.path).resolve()
            if not folder.is_dir():
                context.log.warning(f"{spec.path}: source.path '{folder}' is not a directory")
                continue
            fingerprint = folder_fingerprint(folder)
            if seen.get(spec.name) == fingerprint:
                continue
            seen[spec.name] = fingerprint
            requests.append(
                dg.RunRequest(run_key=f"{spec.name}-{fingerprint}", partition_key=spec.name, tags={"ganpipe/spec": spec.name, "ganpipe/trigger": "files"})
            )
        context.update_cursor(json.dumps(seen, sort_keys=True))
        return requests or dg.SkipReason("no image folder changed")

    return image_folder_changes
