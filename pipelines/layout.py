"""The storage root's layout, in one place, and the rule for spec names (each one a path segment
and a partition key):

    <root>/data/<spec>/                               snapshots of the real images
    <root>/runs/<spec>/                               training runs, judges, evaluations
    <root>/exports/<spec>/v<version>/<export id>/     committed exports (or under GANPIPE_EXPORT_URI)
    <root>/locks/<spec>.lock                          one writer per spec
    <root>/staging/                                   exports being written (gan_core.export)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from gan_core.export import MANIFEST, ExportError

from .settings import Settings

SPEC_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


@dataclass(frozen=True)
class StorageLayout:
    root: Path
    export_uri: str = ""  # e.g. s3://bucket/exports: exports go there instead of under the root

    def data_dir(self, spec: str) -> Path:
        return self.root / "data" / spec

    def runs_dir(self, spec: str) -> Path:
        return self.root / "runs" / spec

    def exports_dir(self, spec: str) -> Path:
        return self.root / "exports" / spec

    def lock_file(self, spec: str) -> Path:
        return self.root / "locks" / f"{spec}.lock"

    def export_destination(self, spec: str, version: str, export_id: str) -> str | Path:
        """<export root>/<spec>/v<version>/<export id>: under the storage root, or the object store."""
        if self.export_uri:
            return f"{self.export_uri.rstrip('/')}/{spec}/v{version}/{export_id}"
        return self.exports_dir(spec) / f"v{version}" / export_id


def find_export(spec: str, which: str = "recommended", root: str | Path | None = None) -> Path:
    """The newest export of `spec` under the storage root (default: GANPIPE_HOME, else ./var):
    `which="recommended"` only those the uplift gate marked recommended (`utility.recommended` in the
    manifest), `which="latest"` any. Read it with `gan_core.export.read_export(path)`."""
    if not isinstance(spec, str) or not SPEC_NAME.match(spec):
        raise ExportError(f"spec: expected a spec name of [a-z0-9-], got {spec!r}")
    if which not in ("recommended", "latest"):
        raise ExportError(f"which: expected 'recommended' or 'latest', got {which!r}")
    exports = StorageLayout(Path(root) if root is not None else Settings.from_env().root).exports_dir(spec)
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
