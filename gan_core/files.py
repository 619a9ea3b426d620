"""File helpers shared by data, checkpoints, exports and metrics: writes that are never seen
half-done, and content digests."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def file_sha256(path: str | Path, opener=open) -> str:
    """SHA-256 of a file, read in 1 MiB chunks; `opener` may be an fsspec filesystem's `open`."""
    digest = hashlib.sha256()
    with opener(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write(path: Path, write) -> Path:
    """Write through a temp file in the same directory, fsync, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temp)
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return path
