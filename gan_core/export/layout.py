"""The names of an export's files and where they are: a local folder or any fsspec URI.

<destination>/data/part-NNNNN.parquet   the parts (DATA_DIR, part_name)
<destination>/_manifest.json            MANIFEST, written last: a reader keys on it
<destination>/README.md, samples.png    CARD and GRID, the dataset card and its picture
<root>/staging/export-<key>/            a destination's staging folder until the commit
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .plan import ExportError

MANIFEST = "_manifest.json"
PLAN_FILE = "_plan.json"  # in staging: the plan a resumed export must match
DATA_DIR = "data"
PARTS = f"{DATA_DIR}/part-*.parquet"
CARD = "README.md"
GRID = "samples.png"


def part_name(part: int) -> str:
    return f"part-{part:05d}.parquet"


def is_uri(destination: str | Path) -> bool:
    return "://" in str(destination) and not str(destination).startswith("file://")


def filesystem(path: str | Path):
    """(fsspec filesystem, path on it): a local path or any fsspec URI (s3://, gs://, memory://...)."""
    import fsspec

    if is_uri(path):
        fs, inner = fsspec.core.url_to_fs(str(path))
        return fs, inner.rstrip("/")
    return fsspec.filesystem("file"), str(Path(path))


def staging_dir(destination: str | Path, root: Path) -> Path:
    key = hashlib.sha256(str(destination if is_uri(destination) else Path(destination).resolve()).encode()).hexdigest()[:20]
    return root / "staging" / f"export-{key}"


def read_manifest(path: str | Path) -> dict[str, Any]:
    fs, base = filesystem(path)
    manifest_path = f"{base}/{MANIFEST}"
    try:
        return json.loads(fs.cat_file(manifest_path))
    except FileNotFoundError as error:
        raise ExportError(f"{manifest_path}: missing; '{path}' is not a complete export") from error
    except ValueError as error:
        raise ExportError(f"{manifest_path}: not valid JSON ({error})") from error
