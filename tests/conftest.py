"""Shared fixtures: temporary storage for the pipeline, the real Dagster CLI, free ports, and
prerequisites that may be missing. The tiny dataset and spec are `pipelines.tiny`; what the
whole-graph tests share is `helpers.py`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import helpers
import pytest
import torch

from pipelines.definitions import IN_PROCESS_RUN_CONFIG

# `make test` runs one pytest-xdist worker per core: each worker, and every process it starts (the
# Dagster CLI, its step processes), gets its share of the cores, since oversubscribed OpenMP threads spin.
# A user's own OMP_NUM_THREADS wins, here and in those processes alike.
if workers := int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0")):
    threads = int(os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers))))
    torch.set_num_threads(threads)

BIN = Path(sys.executable).parent  # this environment's console scripts


@pytest.fixture
def ganpipe_env(tmp_path, monkeypatch):
    """GANPIPE_HOME, GANPIPE_SPECS, DAGSTER_HOME and the MLflow store all under tmp_path."""
    home, specs, dagster_home = tmp_path / "var", tmp_path / "specs", tmp_path / "dagster"
    for directory in (home, specs, dagster_home):
        directory.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("GANPIPE_HOME", str(home))
    monkeypatch.setenv("GANPIPE_SPECS", str(specs))
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    return {"home": home, "specs": specs, "dagster_home": dagster_home, "root": tmp_path}


@pytest.fixture(scope="session")
def dagster_cli():
    """run(*args, run_config=None): the real `dagster` CLI in a subprocess, with this process's
    environment (GANPIPE_*, DAGSTER_HOME); `asset materialize` runs in one process, with `run_config` added."""

    def run(*args: str, timeout: float = 300, run_config: dict | None = None, **popen) -> subprocess.CompletedProcess:
        command = [str(BIN / "dagster"), *args]
        if args[:2] == ("asset", "materialize"):
            command += ["--config-json", json.dumps({**IN_PROCESS_RUN_CONFIG, **(run_config or {})})]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=os.environ.copy(), **popen)

    return run


@pytest.fixture(scope="session")
def materialize_command():
    """materialize_command(select, partition="tiny"): `dagster asset materialize` of the pipelines
    module in one process, as an argument list for subprocess.Popen (a run to kill or to race)."""

    def command(select: str, partition: str = "tiny") -> list[str]:
        return [
            str(BIN / "dagster"),
            "asset",
            "materialize",
            "-m",
            "pipelines",
            "--select",
            select,
            "--partition",
            partition,
            "--config-json",
            json.dumps(IN_PROCESS_RUN_CONFIG),
        ]

    return command


@pytest.fixture(scope="session")
def initialise_instance():
    """Create the SQLite instance's tables once, as `make instance` does on a real machine: two CLI
    processes that both find a fresh DAGSTER_HOME race on its migrations."""

    def initialise() -> None:
        import dagster as dg

        with dg.DagsterInstance.get() as instance:
            instance.get_runs(limit=1)
            instance.all_instigator_state()
            instance.event_log_storage.get_concurrency_keys()

    return initialise


@pytest.fixture(scope="session")
def free_port():
    """free_port(): a TCP port on loopback that nothing listens on right now."""

    def pick() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    return pick


@pytest.fixture(scope="session")
def unavailable():
    """unavailable(reason): skip a test whose prerequisite is missing; under CI (CI=true), where
    .ci/run sets the prerequisites up, fail instead, so that a green run cannot come from skipping."""

    def missing(reason: str) -> None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: .ci/run should have set this up)", pytrace=False)
        pytest.skip(reason)

    return missing


# ---------------------------------------------------------------- exports of a tiny generator

TINY_MODEL = {"size": 8, "num_classes": 3, "z_dim": 8, "g_width": 4, "d_width": 4}
EXPORT_LINEAGE = {"model_name": "gan-test", "model_version": "3", "run_id": "abc123", "metrics": {"fid_domain": 1.5}}
# A separate writer process (sharded, or killed mid-export): the same generator, rebuilt from its seed.
_WRITER = """
import json, sys
import torch
from gan_core.export import ExportPlan, export_samples
from gan_core.models import Generator, ModelConfig
job = json.loads(sys.argv[1])
torch.manual_seed(0)
generator = Generator(ModelConfig(**job["model"], channels=1)).eval()
shard, shards = job["shard"], job["shards"]
export_samples(generator, ExportPlan.from_dict(job["plan"]), job["destination"], lineage=job["lineage"], root=job["root"],
               shard=(shard, shards) if shards > 1 else None, commit=shards == 1, workers=1)
"""


@pytest.fixture(scope="session")
def tiny_generator():
    """tiny_generator(channels=1): an untrained generator of 8×8 images of 3 classes, the same every call."""
    from gan_core.models import Generator, ModelConfig

    def build(channels: int = 1) -> Generator:
        torch.manual_seed(0)
        return Generator(ModelConfig(**TINY_MODEL, channels=channels)).eval()

    return build


@pytest.fixture(scope="session")
def tiny_plan():
    """tiny_plan(**options): 75 samples of classes zero, one and two (30, 20, 25), small parts and batches."""
    from gan_core.export import ExportPlan

    def plan(**options) -> ExportPlan:
        options = {"seed": 7, "batch_size": 16, "rows_per_part": 40, "row_group_size": 16, **options}
        return ExportPlan.per_class(("zero", "one", "two"), {"zero": 30, "one": 20, "two": 25}, **options)

    return plan


@pytest.fixture
def lineage() -> dict:
    return json.loads(json.dumps(EXPORT_LINEAGE))


@pytest.fixture(scope="session")
def export_writer():
    """export_writer(plan, root, destination, shard=0, shards=1): a process writing `plan` with
    `tiny_generator()`; one shard of several leaves its parts in staging, a single writer commits."""

    def start(plan, root: Path, destination: Path, shard: int = 0, shards: int = 1) -> subprocess.Popen:
        job = {
            "model": TINY_MODEL,
            "plan": plan.to_dict(),
            "root": str(root),
            "destination": str(destination),
            "lineage": EXPORT_LINEAGE,
            "shard": shard,
            "shards": shards,
        }
        return subprocess.Popen([sys.executable, "-c", _WRITER, json.dumps(job)])

    return start


@pytest.fixture
def materialize_tiny():
    """materialize_tiny(env, tracking_uri=None, selection=None, ops=None, instance=..., **kwargs): the
    tiny partition of the code location `env` describes, in process, with the assets' checks."""
    return helpers.materialize_tiny


@pytest.fixture
def mlflow_client():
    """mlflow_client(env, tracking_uri=None): a client of the env's MLflow store (or of tracking_uri)."""
    return helpers.mlflow_client


@pytest.fixture
def assert_first_night():
    """assert_first_night(env, result, tracking_uri=None): what one whole run of the graph for the
    tiny spec must leave behind, whatever the storage backend."""
    return helpers.assert_first_night
