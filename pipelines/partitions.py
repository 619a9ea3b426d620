"""One partition per spec, a dynamic partition named after the spec file. The `spec_files` sensor
adds a new file's partition while the webserver and daemon run; `register_specs` adds them at once
where a command starts from the instance (a fresh one included). A removed spec keeps its partition
and its data: nothing here deletes."""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg
from sqlalchemy.exc import IntegrityError

from .specs import load_specs

PARTITION_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
SPECS_PARTITIONS = dg.DynamicPartitionsDefinition(name="specs")


def spec_partition_keys(specs_dir: str | Path) -> list[str]:
    """One key per spec file. A bad spec keeps its partition: a run of it fails with the spec's
    error, naming file and field."""
    specs, errors = load_specs(specs_dir)
    broken = {Path(file).stem for file in errors if PARTITION_KEY.match(Path(file).stem)}
    return sorted(set(specs) | broken)


def new_spec_keys(instance: dg.DagsterInstance, specs_dir: str | Path) -> list[str]:
    """The spec folder's partition keys the instance does not hold yet."""
    keys = spec_partition_keys(specs_dir)
    known = set(instance.get_dynamic_partitions(SPECS_PARTITIONS.name))
    return [key for key in keys if key not in known]


def register_specs(instance: dg.DagsterInstance, specs_dir: str | Path) -> list[str]:
    """Adds the folder's new specs as partitions of `instance`; returns the keys that were new."""
    new = new_spec_keys(instance, specs_dir)
    add_spec_partitions(instance, new)
    return new


def add_spec_partitions(instance: dg.DagsterInstance, keys: list[str], attempts: int = 5) -> None:
    """Makes each key a partition of `instance`, whoever adds it first.

    Two commands started together (two specs launched at once) both find the same new files:
    Dagster reads which keys exist and then inserts the rest, so the slower insert meets a key the
    other just added and the store refuses the duplicate. That key is registered, which is all this
    asks, so the keys still missing are read again and added."""
    missing = list(keys)
    for attempt in range(attempts):
        if not missing:
            return
        try:
            instance.add_dynamic_partitions(SPECS_PARTITIONS.name, missing)
            return
        except IntegrityError:
            if attempt == attempts - 1:
                raise
            known = set(instance.get_dynamic_partitions(SPECS_PARTITIONS.name))
            missing = [key for key in missing if key not in known]
