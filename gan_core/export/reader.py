"""Reading a committed export back, verified against its manifest, locally or from any fsspec URI."""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..files import file_sha256
from .plan import MANIFEST, ExportError
from .png import decode_images
from .store import DATA_DIR, default_root, filesystem


def read_manifest(path: str | Path) -> dict[str, Any]:
    fs, base = filesystem(path)
    manifest_path = f"{base}/{MANIFEST}"
    try:
        return json.loads(fs.cat_file(manifest_path))
    except FileNotFoundError as error:
        raise ExportError(f"{manifest_path}: missing; '{path}' is not a complete export") from error
    except ValueError as error:
        raise ExportError(f"{manifest_path}: not valid JSON ({error})") from error


def _in_export(path: str) -> bool:
    """A manifest's file entry: `name` or `data/name` (exports before cards kept parts at the top)."""
    parts = PurePosixPath(path).parts
    return len(parts) in (1, 2) and (len(parts) == 1 or parts[0] == DATA_DIR) and parts[-1] not in (".", "..") and "\\" not in path


def export_schemas(path: str | Path) -> list[tuple[str, pa.Schema]]:
    """(name, Arrow schema) of every file the manifest lists, unverified: for schema checks."""
    fs, base = filesystem(path)
    schemas = []
    for info in read_manifest(path)["files"]:
        with fs.open(f"{base}/{info['path']}", "rb") as handle:
            schemas.append((info["path"], pq.read_schema(handle)))
    return schemas


def verify_export(path: str | Path) -> dict[str, Any]:
    """Check every file the manifest lists: present, row count and SHA-256. Returns the manifest."""
    fs, base = filesystem(path)
    manifest = read_manifest(path)
    total = 0
    for info in manifest["files"]:
        file = f"{base}/{info['path']}"
        if not _in_export(info["path"]):
            raise ExportError(f"{base}/{MANIFEST}: file entry {info['path']!r} is not a plain file name in the export or its data/ folder")
        if not fs.isfile(file):
            raise ExportError(f"{file}: listed in the manifest but missing")
        if file_sha256(file, fs.open) != info["sha256"]:
            raise ExportError(f"{file}: SHA-256 does not match the manifest (corrupted or modified)")
        with fs.open(file, "rb") as handle:
            if pq.ParquetFile(handle).metadata.num_rows != info["rows"]:
                raise ExportError(f"{file}: row count does not match the manifest")
        total += info["rows"]
    if total != manifest["total_rows"]:
        raise ExportError(f"{base}: files hold {total} rows, the manifest says {manifest['total_rows']}")
    for document in manifest.get("documents", []):  # the dataset card and its picture (exports older than cards have none)
        file = f"{base}/{document['path']}"
        if not _in_export(document["path"]) or not fs.isfile(file) or file_sha256(file, fs.open) != document["sha256"]:
            raise ExportError(f"{file}: missing, or its SHA-256 does not match the manifest's documents entry (corrupted or modified)")
    return manifest


SPEC_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def find_export(spec: str, which: str = "recommended", root: str | Path | None = None) -> Path:
    """The newest export of `spec` under the storage root (default `GANPIPE_HOME` or ./var):
    `which="recommended"` only those the uplift gate marked recommended (`utility.recommended` in the
    manifest), `which="latest"` any."""
    if not isinstance(spec, str) or not SPEC_NAME.match(spec):
        raise ExportError(f"spec: expected a spec name of [a-z0-9-], got {spec!r}")
    if which not in ("recommended", "latest"):
        raise ExportError(f"which: expected 'recommended' or 'latest', got {which!r}")
    exports = (Path(root) if root is not None else default_root()) / "exports" / spec
    found = []
    for manifest_path in exports.glob(f"v*/*/{MANIFEST}"):
        manifest = json.loads(manifest_path.read_text())
        utility = manifest.get("utility") or {}
        if which == "latest" or utility.get("recommended") is True:
            found.append((utility.get("recommended_at", "") if which == "recommended" else "", manifest["created_at"], str(manifest_path.parent)))
    if not found:
        kind = "recommended export" if which == "recommended" else "export"
        raise ExportError(f"no {kind} of spec '{spec}' under '{exports}'" + (" (none has passed the uplift gate yet)" if which == "recommended" else ""))
    return Path(max(found)[2])


def read_export(
    path: str | Path | None = None,
    *,
    spec: str | None = None,
    which: str = "recommended",
    root: str | Path | None = None,
    as_pandas: bool = False,
    decode: bool = False,
    verify: bool = True,
):
    """Read a committed export (verified against its manifest unless verify=False): the one at
    `path`, or with `spec` the newest one of that spec under the storage root `root` (`which`:
    "recommended", the default, or "latest"; see `find_export`).

    Returns a pyarrow Table (or a pandas DataFrame with as_pandas=True); with decode=True, a pair
    (table or frame, images as uint8 N×C×H×W in sample_id order)."""
    if (path is None) == (spec is None):
        raise ExportError("read_export: pass either an export path or spec=<name>")
    path = path if path is not None else find_export(spec, which, root)
    fs, base = filesystem(path)
    manifest = verify_export(path) if verify else read_manifest(path)
    tables = []
    for info in manifest["files"]:
        with fs.open(f"{base}/{info['path']}", "rb") as handle:
            tables.append(pq.read_table(handle))
    table = pa.concat_tables(tables).sort_by("sample_id")
    frame = table.to_pandas() if as_pandas else table
    return (frame, decode_images(table, manifest)) if decode else frame
