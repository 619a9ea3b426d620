"""The users' own door: `dg launch` of the whole graph from a fresh working directory, with Dagster's
default (multiprocess) executor, a fresh instance where no sensor has run, and nothing set but
DAGSTER_HOME."""

from __future__ import annotations

import json

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import mlflow
from pipelines.tiny import write_tiny_spec

BIN = Path(sys.executable).parent  # this environment's console scripts


REPO = Path(__file__).resolve().parents[1]


def _users_environment(dagster_home: Path) -> dict[str, str]:
    """The caller's environment less everything this project or MLflow would read, plus DAGSTER_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GANPIPE_", "MLFLOW_"))}
    env["DAGSTER_HOME"] = str(dagster_home)
    return env


def _step_spans(instance: dg.DagsterInstance, run_id: str) -> dict[str, tuple[float, float, int]]:
    """step -> (start, end, pid) from the run's event log."""
    starts, spans = {}, {}
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type_value == "STEP_START":
            starts[event.step_key] = (record.timestamp, event.pid)
        elif event.event_type_value == "STEP_SUCCESS":
            start, pid = starts[event.step_key]
            spans[event.step_key] = (start, record.timestamp, pid)
    return spans


def test_whole_graph_through_dg_launch_with_the_default_executor(tmp_path):
    workdir, dagster_home = tmp_path / "team", tmp_path / "dagster-home"
    workdir.mkdir()
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    shutil.copy(REPO / "workspace.yaml", workdir / "workspace.yaml")
    write_tiny_spec(workdir / "specs")

    completed = subprocess.run(
        [str(BIN / "dg"), "launch", "--assets", "*", "--partition", "tiny", "-m", "pipelines"],
        cwd=workdir,
        env=_users_environment(dagster_home),
        capture_output=True,
        text=True,
        timeout=600,
    )
    # A 20-step generator does not help a classifier: the uplift gate fails, recorded as a finding with
    # the run succeeding (no traceback, no ERROR line), and `recommended` materializes nothing.
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "Traceback" not in completed.stderr and " - ERROR - " not in completed.stderr, completed.stderr[-4000:]

    # MLflow went to the store under the default storage root, in every step process; never ./mlflow.db.
    assert not (workdir / "mlflow.db").exists()
    assert f"storage root {workdir / 'var'}, MLflow store sqlite:///{workdir / 'var' / 'mlflow.db'}" in completed.stderr  # said at load
    store = f"sqlite:///{workdir / 'var' / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=store, registry_uri=store)
    champion = client.get_model_version_by_alias("gan-tiny", "champion")
    run = client.get_run(champion.run_id)
    assert {"d_loss", "fid_domain", "label_accuracy", "uplift_real_only"} <= set(run.data.metrics)
    exports = list((workdir / "var" / "exports" / "tiny" / f"v{champion.version}").glob("*/_manifest.json"))
    assert len(exports) == 1
    utility = json.loads(exports[0].read_text())["utility"]
    assert utility["classifier_steps"] == 100 and utility["seeds"] == 2  # the spec's evaluation settings, with no run config

    with dg.DagsterInstance.local_temp(str(dagster_home)) as instance:
        (record,) = instance.get_run_records()
        spans = _step_spans(instance, record.dagster_run.run_id)
        checks = {
            event.dagster_event.event_specific_data.check_name: event.dagster_event.event_specific_data.passed
            for event in instance.all_logs(record.dagster_run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        }
    assert checks == {"quality_gate": True, "export_valid": True, "uplift_gate": False}
    assert {"real_images", "judge_classifier", "gan_model", "gan_evaluation", "champion_model", "synthetic_dataset", "augmentation_report"} <= set(spans)
    assert len({pid for _, _, pid in spans.values()}) == len(spans)  # one process per step: the multiprocess executor
    # The judge, then the GAN that learns from its pseudo-labels: never sharing the cores.
    (first_start, first_end, _), (second_start, second_end, _) = sorted([spans["judge_classifier"], spans["gan_model"]])
    assert first_end <= second_start, spans
