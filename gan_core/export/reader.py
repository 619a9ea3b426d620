"""Reading a committed export back, verified against its manifest, locally or from any fsspec URI."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..files import file_sha256
from .layout import DATA_DIR, MANIFEST, filesystem, read_manifest
from .plan import ExportError
from .png import decode_images


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


def read_export(
    path: str | Path,
    *,
    as_pandas: bool = False,
    decode: bool = False,
    verify: bool = True,
):
    """Read the committed export at `path`, a folder or any fsspec URI (verified against its
    manifest unless verify=False; `pipelines.layout.find_export` finds a spec's newest one).

    Returns a pyarrow Table (or a pandas DataFrame with as_pandas=True); with decode=True, a pair
    (table or frame, images as uint8 N×C×H×W in sample_id order)."""
    fs, base = filesystem(path)
    manifest = verify_export(path) if verify else read_manifest(path)
    tables = []
    for info in manifest["files"]:
        with fs.open(f"{base}/{info['path']}", "rb") as handle:
            tables.append(pq.read_table(handle))
    table = pa.concat_tables(tables).sort_by("sample_id")
    frame = table.to_pandas() if as_pandas else table
    return (frame, decode_images(table, manifest)) if decode else frame
