"""The pipeline's settings from the environment, read in this one place.

GANPIPE_HOME               storage root: snapshots, runs, exports, the default MLflow store (var)
GANPIPE_SPECS              the folder of spec files (specs)
GANPIPE_EXPORT_URI         exports to an object store instead of <root>/exports (s3://bucket/exports)
MLFLOW_TRACKING_URI        the MLflow store (default: SQLite <root>/mlflow.db)
GANPIPE_MLFLOW_UI          the MLflow UI that links point at (http://127.0.0.1:5000)
GANPIPE_MLFLOW_ARTIFACTS   where new experiments keep artifacts (default <root>/mlartifacts)
GANPIPE_DEVICE             auto | cuda | mps | cpu
GANPIPE_PROCESSES          gan_model's torchrun ranks (1)
GANPIPE_EXPORT_PROCESSES   synthetic_dataset's shard processes (1)
GANPIPE_EXECUTOR           default | k8s
DAGSTER_HOME               the Dagster instance (read by Dagster; named here in the stores' summary)
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

ENVIRONMENT = {
    "home": "GANPIPE_HOME",
    "specs": "GANPIPE_SPECS",
    "export_uri": "GANPIPE_EXPORT_URI",
    "mlflow_tracking_uri": "MLFLOW_TRACKING_URI",
    "mlflow_ui": "GANPIPE_MLFLOW_UI",
    "mlflow_artifacts": "GANPIPE_MLFLOW_ARTIFACTS",
    "device": "GANPIPE_DEVICE",
    "processes": "GANPIPE_PROCESSES",
    "export_processes": "GANPIPE_EXPORT_PROCESSES",
    "executor": "GANPIPE_EXECUTOR",
    "dagster_home": "DAGSTER_HOME",
}


class SettingsError(ValueError):
    """An environment variable with a value the pipeline cannot use; the message names it."""


@dataclass(frozen=True)
class Settings:
    home: str = "var"
    specs: str = "specs"
    export_uri: str = ""
    mlflow_tracking_uri: str = ""
    mlflow_ui: str = "http://127.0.0.1:5000"
    mlflow_artifacts: str = ""
    device: str = "auto"
    processes: int = 1
    export_processes: int = 1
    executor: str = "default"
    dagster_home: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings the environment sets (an empty variable counts as unset), defaults for the rest."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in dataclasses.fields(cls):
            raw = environ.get(ENVIRONMENT[field.name], "")
            if not raw:
                continue
            if field.type in (int, "int"):
                if not raw.isdigit() or int(raw) < 1:
                    raise SettingsError(f"{ENVIRONMENT[field.name]}: expected a whole number of at least 1, got {raw!r}")
                values[field.name] = int(raw)
            else:
                values[field.name] = raw
        if values.get("executor", "default") not in ("default", "k8s"):
            raise SettingsError(f"GANPIPE_EXECUTOR: expected 'default' or 'k8s', got {values['executor']!r}")
        return cls(**values)

    @property
    def root(self) -> Path:
        return Path(self.home).absolute()

    def stores(self, mlflow_uri: str) -> str:
        """The one-line summary of where this code location reads and writes."""
        instance = self.dagster_home or "temporary (DAGSTER_HOME not set: it keeps no runs, and a --partition finds no spec partition in it)"
        return (
            f"ganpipe: specs {Path(self.specs).absolute()}, storage root {self.root}, MLflow store {mlflow_uri} "
            f"(UI links {self.mlflow_ui}), Dagster instance {instance}"
        )
