"""`RecordIOManager`: an asset's record stored as JSON under <root>/records/<asset>/<partition>/<run id>.json,
and loaded for a downstream step from the run that produced its input: this run (or, re-executed,
the run it re-executes) when the upstream step ran in it, else the partition's latest materialization.
Two overlapping runs of one partition therefore never read each other's records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.errors import DagsterInvariantViolationError
from dagster._core.execution.context.output import RUN_ID_PLACEHOLDER
from dagster._core.types.dagster_type import OptionalType
from pydantic import Field

from gan_core.files import atomic_write

from .records import from_json, to_json
from .settings import Settings


class RecordIOManager(dg.ConfigurableIOManager):
    root: str = Field(default_factory=lambda: Settings.from_env().home)

    def _path(self, asset: str, partition: str, run_id: str) -> Path:
        return Path(self.root).absolute() / "records" / asset / partition / f"{run_id}.json"

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:  # an asset with nothing to hand on
            return
        path = self._path(context.asset_key.path[-1], context.asset_partition_key, context.run_id)
        atomic_write(path, lambda temp: temp.write_text(to_json(obj)))
        context.add_output_metadata({"record": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext) -> Any:
        # Every asset is partitioned by spec with the identity mapping: the input's partition is the
        # run's. (An asset check is no partitioned step: its input would span every spec.)
        asset, partition = context.asset_key.path[-1], context.partition_key
        run_id = _producing_run(context)
        source = f"run {run_id}"
        if run_id is None:  # the upstream step is not part of this run: the latest materialization Dagster recorded
            found = context.instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=context.asset_key, asset_partitions=[partition]), limit=1).records
            if not found and isinstance(context.dagster_type, OptionalType):
                return None  # an input its asset declares optional (Optional[...]) and that was never made
            if not found:
                raise dg.Failure(f"asset '{asset}' has no materialization for partition '{partition}'; materialize it first") from None
            run_id, source = found[0].run_id, f"its latest materialization (run {found[0].run_id})"
        path = self._path(asset, partition, run_id)
        if not path.is_file():
            raise dg.Failure(f"asset '{asset}' of partition '{partition}' from {source} left no record at {path}; materialize it again")
        return from_json(path.read_text(), str(path))


def _producing_run(context: dg.InputContext) -> str | None:
    """The run whose step produced this input: this run, or the one a re-execution re-executes. None
    when the upstream asset is no step of this run (Dagster then hands an output context of no run)."""
    try:
        run_id = context.upstream_output.run_id
    except DagsterInvariantViolationError:
        return None
    return None if run_id == RUN_ID_PLACEHOLDER else run_id
