"""A sensor that starts a run for a spec whose `image_folder` source or unlabelled folder has files
added or changed.

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
            watched = {
                field: source for field, source in (("source", spec.source), ("unlabelled", spec.unlabelled)) if source and source.kind == "image_folder"
            }
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
        context.update_cursor(json.dumps(seen, sort_keys=True))
        return requests or dg.SkipReason("no image folder changed")

    return image_folder_changes
