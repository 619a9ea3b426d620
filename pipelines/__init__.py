"""Dagster code location for ganpipe (`workspace.yaml` loads this module)."""

from .definitions import defs

__all__ = ["defs"]
