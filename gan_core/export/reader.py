"""Reading a committed export back, verified against its manifest, locally or from any fsspec URI."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from ..files import file_sha256
from .plan import MANIFEST, ExportError
from .store import filesystem


def read_manifest(path: str | Path) -> dict[str, Any]:
    fs, base = filesystem(path)
    manifest_path = f"{base}/{MANIFEST}"
    try:
        return json.loads(fs.cat_file(manifest_path))
    except FileNotFoundError as error:
        raise ExportError(f"{manifest_path}: missing; '{path}' is not a complete export") from error
    except ValueError as error:
        raise ExportError(f"{manifest_path}: not valid JSON ({error})") from error


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
        if Path(info["path"]).name != info["path"]:
            raise ExportError(f"{base}/{MANIFEST}: file entry {info['path']!r} is not a plain file name")
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
    return manifest


def decode_images(table: pa.Table, manifest: Mapping[str, Any]) -> np.ndarray:
    """The `image` column as uint8 N×C×H×W."""
    channels, height, width = manifest["image_shape"]
    payloads = table.column("image").combine_chunks().field("bytes").to_pylist()
    out = np.empty((len(payloads), channels, height, width), np.uint8)
    for i, payload in enumerate(payloads):
        if manifest["image_format"] == "raw":
            out[i] = np.frombuffer(payload, np.uint8).reshape(channels, height, width)
        else:
            array = np.asarray(Image.open(io.BytesIO(payload)))
            out[i] = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return out


def read_export(path: str | Path, *, as_pandas: bool = False, decode: bool = False, verify: bool = True):
    """Read a committed export (verified against its manifest unless verify=False).

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
