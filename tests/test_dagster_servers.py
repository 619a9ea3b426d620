"""The real Dagster CLI and webserver against the code location, in subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from pipelines.tiny import write_tiny_spec


BIN = Path(sys.executable).parent


@pytest.mark.slow  # the default suite runs the whole graph through the CLI (test_users_path.py)
def test_cli_asset_materialize(ganpipe_env):
    env = ganpipe_env
    write_tiny_spec(env["specs"])
    completed = subprocess.run(
        [str(BIN / "dagster"), "asset", "materialize", "-m", "pipelines", "--select", "real_images", "--partition", "tiny"],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ.copy(),
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    snapshots = list((env["home"] / "data" / "tiny").glob("*/train.npz"))
    assert len(snapshots) == 1


def test_cli_reports_a_bad_source_by_name(ganpipe_env):
    env = ganpipe_env
    write_tiny_spec(env["specs"], source="{kind: npz, path: missing.npz}")
    completed = subprocess.run(
        [str(BIN / "dagster"), "asset", "materialize", "-m", "pipelines", "--select", "real_images", "--partition", "tiny"],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ.copy(),
    )
    assert completed.returncode != 0
    assert "missing.npz" in completed.stdout + completed.stderr and "cannot read" in completed.stdout + completed.stderr
    assert not (env["home"] / "data").exists()


def _graphql(port: int, query: str, variables: dict) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query, "variables": variables}).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""

STATUS = """query Status($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run { status } } }"""


@pytest.mark.slow  # the default suite launches a run from the webserver in a real browser (test_browser.py)
def test_webserver_launches_a_run_through_graphql(ganpipe_env, free_port):
    env = ganpipe_env
    write_tiny_spec(env["specs"])
    # Runs launched through GraphQL start at once (no daemon needed to dequeue them).
    (env["dagster_home"] / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\nrun_coordinator:\n  module: dagster.core.run_coordinator\n  class: DefaultRunCoordinator\n"
    )
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "dagster-webserver"), "-m", "pipelines", "-h", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ.copy(),
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
                break
            except OSError:
                time.sleep(1)
        else:
            pytest.fail("webserver did not start within 120 s")
        params = {
            "selector": {
                "repositoryLocationName": "pipelines",
                "repositoryName": "__repository__",
                "jobName": "ganpipe_nightly",
                "assetSelection": [{"path": ["real_images"]}],
            },
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "tiny"}]},
        }
        launched = _graphql(port, LAUNCH, {"params": params})["data"]["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]
        status = None
        while time.monotonic() < deadline + 180:
            status = _graphql(port, STATUS, {"runId": run_id})["data"]["runOrError"]["status"]
            if status in ("SUCCESS", "FAILURE", "CANCELED"):
                break
            time.sleep(1)
        assert status == "SUCCESS"
        assert list((env["home"] / "data" / "tiny").glob("*/holdout.npz"))
    finally:
        server.terminate()
        server.wait(timeout=30)
