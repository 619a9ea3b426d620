"""Services the assets use: storage paths, spec files, MLflow and compute settings."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Iterator

import dagster as dg
from filelock import FileLock, Timeout
from pydantic import Field

from .layout import StorageLayout
from .settings import Settings
from .specs import Spec, SpecError, load_specs


class StorageResource(dg.ConfigurableResource):
    """The storage root (GANPIPE_HOME, default ./var) and the layout under it (`layout.py`)."""

    root: str = Field(default_factory=lambda: Settings.from_env().home)
    export_uri: str = Field(default_factory=lambda: Settings.from_env().export_uri)  # e.g. s3://bucket/exports

    @property
    def path(self) -> Path:
        return Path(self.root).absolute()

    @property
    def layout(self) -> StorageLayout:
        return StorageLayout(self.path, self.export_uri)

    def data_dir(self, spec: str) -> Path:
        return self.layout.data_dir(spec)

    def runs_dir(self, spec: str) -> Path:
        return self.layout.runs_dir(spec)

    def exports_dir(self, spec: str) -> Path:
        return self.layout.exports_dir(spec)

    def export_destination(self, spec: str, version: str, export_id: str) -> str | Path:
        return self.layout.export_destination(spec, version, export_id)

    @contextlib.contextmanager
    def lock(self, spec: str, holder: str) -> Iterator[Path]:
        """Only one writer per spec at a time: a second one fails at once, naming the holder. The
        lock (filelock's flock) dies with its process, so a killed run never leaves the spec locked.
        The holder's name is a file beside it: filelock truncates the lock file it opens."""
        path = self.layout.lock_file(spec)
        holder_file = path.with_suffix(".holder")
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(path, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            held_by = holder_file.read_text().strip() if holder_file.exists() else "unknown"
            raise SpecBusyError(f"spec '{spec}' is being written by another run ({held_by or 'unknown'}); lock file {path}") from None
        try:
            holder_file.write_text(f"{holder} pid {os.getpid()} on {socket.gethostname()}")
            yield path
        finally:
            lock.release()


class SpecBusyError(RuntimeError):
    """Another run holds the spec's lock."""


class SpecsResource(dg.ConfigurableResource):
    """Reads spec files at execution time, so an edited spec applies to the next run."""

    directory: str = Field(default_factory=lambda: Settings.from_env().specs)

    def get(self, name: str) -> Spec:
        specs, errors = load_specs(self.directory)
        if name in specs:
            return specs[name]
        for file, message in errors.items():
            if Path(file).stem == name:
                raise SpecError(message)
        raise SpecError(f"{self.directory}: no spec named '{name}' (found {sorted(specs)})")


class MLflowResource(dg.ConfigurableResource):
    """MLflow tracking and registry. Default store: SQLite under the storage root, artifacts in
    <root>/mlartifacts; one experiment per spec."""

    tracking_uri: str = Field(default_factory=lambda: Settings.from_env().mlflow_tracking_uri)
    storage_root: str = Field(default_factory=lambda: Settings.from_env().home)
    ui_url: str = Field(default_factory=lambda: Settings.from_env().mlflow_ui)

    @property
    def uri(self) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        return f"sqlite:///{Path(self.storage_root).absolute() / 'mlflow.db'}"

    artifacts: str = Field(default_factory=lambda: Settings.from_env().mlflow_artifacts)  # e.g. s3://bucket/mlflow

    @property
    def artifact_root(self) -> str:
        """Where new experiments keep their artifacts: GANPIPE_MLFLOW_ARTIFACTS, else <root>/mlartifacts."""
        return self.artifacts.rstrip("/") if self.artifacts else (Path(self.storage_root).absolute() / "mlartifacts").as_uri()

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Every step process (multiprocess executor, a Kubernetes pod) starts with MLflow's default
        # tracking URI, ./mlflow.db: point the fluent API at this store before any asset code runs.
        self._point_mlflow_here()

    def _point_mlflow_here(self) -> None:
        import mlflow

        mlflow.set_tracking_uri(self.uri)
        mlflow.set_registry_uri(self.uri)

    @property
    def environment(self) -> dict[str, str]:
        """What a child process (a Pipes worker) needs to reach the same store."""
        return {"MLFLOW_TRACKING_URI": self.uri, "MLFLOW_REGISTRY_URI": self.uri}

    def client(self):
        import mlflow

        if not self.tracking_uri:
            Path(self.storage_root).absolute().mkdir(parents=True, exist_ok=True)
        self._point_mlflow_here()
        if self.uri not in _OPENED_STORES:
            with _store_init_lock(self.uri):
                client = mlflow.MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
                try:
                    client.search_experiments(max_results=1)  # creates and migrates a new store
                    _OPENED_STORES.add(self.uri)
                except Exception:  # noqa: BLE001, S110 - the caller's own call reports the error with the URI
                    pass
            return client
        return mlflow.MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    def check_reachable(self) -> None:
        """Fail fast, before any training, with the URI in the message."""
        try:
            self.client().search_experiments(max_results=1)
        except Exception as error:  # noqa: BLE001 - any failure here means the store is unusable
            raise RuntimeError(f"MLflow tracking store '{self.uri}' is not usable: {error}") from error

    def writable_experiment(self, spec: str) -> str:
        """The spec's experiment id, once the store has taken a write: a read-only store passes a
        read, so prove a write works before training, not after it."""
        import time

        self.check_reachable()
        try:
            experiment_id = self.experiment_id(spec)
            self.client().set_experiment_tag(experiment_id, "ganpipe.last_write_check", str(time.time()))
        except Exception as error:  # noqa: BLE001 - any failure here means the store is unusable
            raise RuntimeError(f"MLflow tracking store '{self.uri}' is not writable: {error}") from error
        return experiment_id

    def experiment_id(self, spec: str) -> str:
        client = self.client()
        name = f"ganpipe-{spec}"
        found = client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        return client.create_experiment(name, artifact_location=f"{self.artifact_root}/{spec}")

    def run_link(self, experiment_id: str, run_id: str) -> str:
        return f"{self.ui_url}/#/experiments/{experiment_id}/runs/{run_id}"


_OPENED_STORES: set[str] = set()


@contextlib.contextmanager
def _store_init_lock(uri: str) -> Iterator[None]:
    """MLflow creates and migrates a SQLite store when a client first opens it; two processes doing
    that at once corrupt its schema version. The first open in each process holds a lock beside it."""
    database = Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None
    if database is None or not database.parent.is_dir() or not os.access(database.parent, os.W_OK):
        yield  # a read-only store cannot be migrated by anyone: nothing to guard
        return
    with FileLock(database.with_name(database.name + ".init-lock")):
        yield


class ComputeResource(dg.ConfigurableResource):
    device: str = "auto"  # auto: cuda, then mps, then cpu
    precision: str = "auto"  # auto: bf16 autocast on CUDA
    num_processes: int = 1  # above 1: gan_model trains under torchrun with this many ranks, through Dagster Pipes
    export_processes: int = 1  # above 1: synthetic_dataset writes that many shards in parallel processes
