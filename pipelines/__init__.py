"""Dagster code location for ganpipe: `dg` ([tool.dg] in pyproject.toml), workspace.yaml and
`dagster -m pipelines` all load `defs`, the `@dg.definitions` function in `definitions.py`."""

from .definitions import defs

__all__ = ["defs"]
