"""One partition per spec. SPEC_PARTITIONS: those of the default spec folder (GANPIPE_SPECS, default
./specs), which the assets are defined with; `spec_partitions` reads any folder."""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg

from .specs import Spec, default_specs_dir, load_specs

PARTITION_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def spec_partitions(specs_dir: str | Path) -> tuple[dg.StaticPartitionsDefinition, dict[str, Spec], dict[str, str]]:
    """(partitions, the specs that loaded, file → error for those that did not). A bad spec keeps its
    partition: a run of it fails with the spec's error, naming file and field."""
    specs, errors = load_specs(specs_dir)
    broken = {Path(file).stem for file in errors if PARTITION_KEY.match(Path(file).stem)}
    return dg.StaticPartitionsDefinition(sorted(set(specs) | broken)), specs, errors


SPEC_PARTITIONS, _, _ = spec_partitions(default_specs_dir())
