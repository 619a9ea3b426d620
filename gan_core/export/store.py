"""Where exports live: destinations under the storage root or at a filesystem URI, the staging
directory, the commit that makes an export visible in one step, and the upload to object stores."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from ..files import atomic_write, file_sha256
from .card import write_documents
from .layout import CARD, DATA_DIR, MANIFEST, PLAN_FILE, filesystem, is_uri, read_manifest, staging_dir
from .plan import SCHEMA_VERSION, ExportError, ExportPlan
from .filter import filter_verdict
from .screen import screen_verdict


def check_destination(destination: str | Path, root: Path, allow_outside_root: bool) -> None:
    if is_uri(destination):
        return  # a remote store: the root guards local paths only
    resolved, resolved_root = Path(destination).resolve(), root.resolve()
    if not allow_outside_root and resolved_root not in resolved.parents:
        raise ExportError(f"destination '{destination}' lies outside the storage root '{root}'; pass allow_outside_root=True to write there")


def write_json_atomic(path: Path, payload: Any) -> None:
    atomic_write(path, lambda temp: temp.write_text(json.dumps(payload, indent=2, sort_keys=True)))


def finished_parts(staging: Path) -> dict[int, dict[str, Any]]:
    found = {}
    for sidecar in staging.glob("part-*.json"):
        info = json.loads(sidecar.read_text())
        if (staging / info["path"]).is_file():
            found[int(info["part"])] = info
    return found


def export_exists(destination: str | Path) -> bool:
    """Whether a complete export (its manifest) is at `destination`, local or remote."""
    if is_uri(destination):
        fs, base = filesystem(destination)
        return fs.exists(f"{base}/{MANIFEST}")
    return Path(destination).exists()  # a local export appears in one rename, complete


def commit_export(plan: ExportPlan, destination: str | Path, *, root: str | Path, allow_outside_root: bool = False) -> dict[str, Any]:
    """Verify every part in staging (rows, checksums, sample_id ranges), write the manifest and
    make the export visible in one step."""
    root = Path(root)
    check_destination(destination, root, allow_outside_root)
    if export_exists(destination):
        raise ExportError(f"export '{destination}' already exists and is complete; refusing to overwrite it")
    staging = staging_dir(destination, root)
    if not (staging / PLAN_FILE).exists():
        raise ExportError(f"no staged export for '{destination}' (expected '{staging}')")
    recorded = json.loads((staging / PLAN_FILE).read_text())
    if recorded["plan"] != json.loads(json.dumps(plan.identity())):
        raise ExportError(f"staging '{staging}' was written for another plan")
    finished = finished_parts(staging)
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
    # The filter's and the copy screen's figures go into the manifest; either may refuse the export.
    # Not resumable then: the same plan would make the same images.
    verdicts = {}
    for key, verdict in (("filter", filter_verdict), ("screen", screen_verdict)):
        verdicts[key], refusal = verdict([finished[part] for part in range(plan.num_parts)], recorded[key]) if recorded.get(key) else (None, None)
        if refusal:
            shutil.rmtree(staging)
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
        "memorization": verdicts["screen"],
        "filter": verdicts["filter"],
        "soft_labels": recorded.get("soft_labels"),  # the label_probs column and its teacher, or None
    }
    for sidecar in staging.glob("part-*.json"):
        sidecar.unlink()
    (staging / PLAN_FILE).unlink()
    # The parts go into data/, as on the Hugging Face Hub: the card beside them would stop
    # pd.read_parquet(<folder>) (pyarrow reads every file of a folder but _ and . ones).
    (staging / DATA_DIR).mkdir()
    for info in files:
        os.rename(staging / info["path"], staging / DATA_DIR / info["path"])
        info["path"] = f"{DATA_DIR}/{info['path']}"
    manifest["documents"] = write_documents(staging, manifest)  # the dataset card and its sample picture
    write_json_atomic(staging / MANIFEST, manifest)
    if is_uri(destination):
        _upload(staging, str(destination))
    else:
        final = Path(destination)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staging, final)  # one atomic step; fails if the destination appeared meanwhile
    return manifest


def annotate_export(path: str | Path, key: str, value: Any) -> dict[str, Any]:
    """Set one top-level entry of a committed export's manifest (e.g. `utility`, what the export is
    worth to a classifier, known only once it was measured), replacing the manifest in one step.
    The parts and their checksums are untouched. Returns the new manifest."""
    if key in ("files", "total_rows", "schema_version", "counts_per_class", "image_shape", "image_format", "documents"):
        raise ExportError(f"manifest entry {key!r} describes the parts and cannot be changed after commit")
    manifest = {**read_manifest(path), key: value}
    card = any(document["path"] == CARD for document in manifest.get("documents", []))  # exports older than cards have none
    if is_uri(path):
        fs, base = filesystem(path)
        if card:
            with tempfile.TemporaryDirectory() as scratch:
                manifest["documents"] = _rerender_card(Path(scratch), manifest, lambda name: fs.get_file(f"{base}/{name}", f"{scratch}/{name}"))
                fs.put_file(f"{scratch}/{CARD}", f"{base}/{CARD}")
        fs.pipe_file(f"{base}/{MANIFEST}", json.dumps(manifest, indent=2, sort_keys=True).encode())
    else:
        if card:  # the card first, then the manifest that lists its new checksum: each replaced in one step
            with tempfile.TemporaryDirectory(dir=Path(path).parent) as scratch:
                manifest["documents"] = _rerender_card(Path(scratch), manifest, lambda name: shutil.copy(Path(path) / name, Path(scratch) / name))
                os.replace(Path(scratch) / CARD, Path(path) / CARD)
        write_json_atomic(Path(path) / MANIFEST, manifest)
    return manifest


def _rerender_card(scratch: Path, manifest: dict[str, Any], fetch) -> list[dict[str, Any]]:
    """The card rendered anew from `manifest` in `scratch`, beside the export's own sample picture."""
    for document in manifest["documents"]:
        if document["path"] != CARD:
            fetch(document["path"])
    return write_documents(scratch, manifest, grid=False)


def _upload(staging: Path, uri: str) -> None:
    """Object stores have no directory rename: parts and the card first, manifest last (readers key on it)."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri)
    path = path.rstrip("/")
    fs.makedirs(path, exist_ok=True)
    fs.makedirs(f"{path}/{DATA_DIR}", exist_ok=True)
    for file in sorted(staging.rglob("*")):
        if file.is_file() and file.name != MANIFEST:
            fs.put_file(str(file), f"{path}/{file.relative_to(staging).as_posix()}")
    fs.put_file(str(staging / MANIFEST), f"{path}/{MANIFEST}")
    shutil.rmtree(staging)
