"""Shared fixtures: a tiny but real dataset and spec, in temporary storage."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

BIN = Path(sys.executable).parent
IN_PROCESS = json.dumps({"execution": {"config": {"in_process": {}}}})  # one process: half the CLI's start-up time

TINY_TRAINING = "{profile: quick, steps: 20, batch_size: 16, z_dim: 8, g_width: 4, d_width: 4, checkpoint_every: 10, log_every: 10}"


def write_tiny_npz(path: Path, per_class: int = 20) -> Path:
    """Three visually distinct classes of 8×8 images: bars at the top, middle and bottom."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 40, (3 * per_class, 1, 8, 8)).astype(np.uint8)
    labels = np.repeat(np.arange(3), per_class)
    for label, rows in enumerate((slice(0, 3), slice(3, 5), slice(5, 8))):
        images[labels == label, :, rows, :] += 200
    np.savez(path, images=images, labels=labels, class_names=np.array(["top", "middle", "bottom"]))
    return path


def write_tiny_spec(specs_dir: Path, name: str = "tiny", gates: str = "{min_label_accuracy: 0.0}", extra: str = "", source: str | None = None) -> Path:
    specs_dir.mkdir(parents=True, exist_ok=True)
    if source is None:
        write_tiny_npz(specs_dir / f"{name}.npz")
        source = f"{{kind: npz, path: {name}.npz}}"
    path = specs_dir / f"{name}.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            name: {name}
            source: {source}
            image: {{size: 8, channels: 1}}
            holdout_fraction: 0.2
            training: {TINY_TRAINING}
            evaluation: {{backbone: domain, n_samples: 60, gates: {gates}, uplift_seeds: 2}}
            export: {{samples_per_class: 10, rows_per_part: 12}}
            """
        )
        + extra
    )
    return path


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


def dagster_cli(*args: str, timeout: float = 300, run_config: dict | None = None, **popen) -> subprocess.CompletedProcess:
    """The real `dagster` CLI in a subprocess, with this process's environment (GANPIPE_*, DAGSTER_HOME);
    `asset materialize` runs in one process, with `run_config` added."""
    command = [str(BIN / "dagster"), *args]
    if args[:2] == ("asset", "materialize"):
        command += ["--config-json", json.dumps({**json.loads(IN_PROCESS), **(run_config or {})})]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=os.environ.copy(), **popen)


def initialise_instance() -> None:
    """Create the SQLite instance's tables once, as `make instance` does on a real machine: two CLI
    processes that both find a fresh DAGSTER_HOME race on its migrations."""
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        instance.get_runs(limit=1)
        instance.all_instigator_state()
        instance.event_log_storage.get_concurrency_keys()


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unavailable(reason: str) -> None:
    """Skip a test whose prerequisite is missing; under CI (CI=true), where .ci/run sets the
    prerequisites up, fail instead, so that a green run cannot come from skipping."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: .ci/run should have set this up)", pytrace=False)
    pytest.skip(reason)
