"""A person's path through the UIs, in a real browser: `dg dev` and the MLflow UI on free ports
against a temporary storage root; open the asset graph, pick the partition, click Materialize and
launch, wait for the run to succeed, look at the evaluation's sample grid, find the champion alias
in the MLflow UI; open the study's launchpad, type a misspelt arm and see it refused. Playwright
drives Debian's chromium (no browser download); screenshots are kept under test-artifacts/browser/."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest
from pipelines.tiny import write_tiny_spec

BIN = Path(sys.executable).parent  # this environment's console scripts
REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("GANPIPE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "browser"
# Chromium as root in a container, on a machine whose network is closed: no sandbox, no background traffic.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        pytest.skip(f"playwright is not installed ({error}); pip install -e '.[dev]'")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no chromium at {CHROMIUM}: apt-get install chromium (.ci/run does), or set GANPIPE_CHROMIUM")
    return sync_playwright


def _wait_for(url: str, process: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{process.args[0]} exited with {process.returncode} before {url} answered")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(1)
    pytest.fail(f"{url} did not answer within {seconds:.0f} s")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture
def servers(ganpipe_env, free_port):
    """`dg dev` (webserver + daemon, so launched runs leave the queue) and the MLflow UI, both on
    127.0.0.1 and free ports, the way `make ui` starts them."""
    env = ganpipe_env
    write_tiny_spec(env["specs"])
    dagster_port, mlflow_port = free_port(), free_port()
    mlflow_ui = f"http://127.0.0.1:{mlflow_port}"
    environment = {**os.environ, "GANPIPE_MLFLOW_UI": mlflow_ui}
    logs = env["root"] / "server-logs"
    logs.mkdir()
    started = []
    try:
        started.append(
            subprocess.Popen(
                [
                    str(BIN / "mlflow"),
                    "ui",
                    "--backend-store-uri",
                    os.environ["MLFLOW_TRACKING_URI"],
                    "--default-artifact-root",
                    (env["home"] / "mlartifacts").as_uri(),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(mlflow_port),
                ],
                stdout=open(logs / "mlflow.log", "w"),
                stderr=subprocess.STDOUT,
                env=environment,
                start_new_session=True,
            )
        )
        started.append(
            subprocess.Popen(
                [str(BIN / "dg"), "dev", "-h", "127.0.0.1", "-p", str(dagster_port)],  # the project's [tool.dg], from its root
                cwd=REPO,
                stdout=open(logs / "dagster.log", "w"),
                stderr=subprocess.STDOUT,
                env=environment,
                start_new_session=True,
            )
        )
        _wait_for(f"{mlflow_ui}/health", started[0], 120)
        _wait_for(f"http://127.0.0.1:{dagster_port}/server_info", started[1], 180)
        yield {"dagster": f"http://127.0.0.1:{dagster_port}", "mlflow": mlflow_ui, "logs": logs}
    finally:
        for process in started:
            _stop(process)


def test_materialize_from_the_ui_and_find_the_champion(servers):
    sync_playwright = _playwright()
    from playwright.sync_api import TimeoutError as PlaywrightTimeout, expect

    shutil.rmtree(ARTIFACTS, ignore_errors=True)  # only this run's pictures
    ARTIFACTS.mkdir(parents=True)
    dagster, mlflow_ui = servers["dagster"], servers["mlflow"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        try:
            # The asset graph; the first visit may greet with a newsletter prompt.
            page.goto(f"{dagster}/asset-groups")
            expect(page.get_by_role("button", name="Materialize all…")).to_be_visible(timeout=60_000)
            try:  # a new instance greets its first visitor with a newsletter prompt, a moment after the page loads
                page.get_by_role("button", name="Skip").click(timeout=20_000)
            except PlaywrightTimeout:
                pass
            expect(page.get_by_text("gan_evaluation").first).to_be_visible()
            page.screenshot(path=ARTIFACTS / "asset-graph.png")

            # A new team's spec file, dropped in while the servers run, becomes a partition with no
            # restart: the `spec_files` sensor adds it at the daemon's next tick.
            write_tiny_spec(Path(os.environ["GANPIPE_SPECS"]), name="newteam")
            deadline = time.monotonic() + 120
            with dg.DagsterInstance.get() as instance:
                while "newteam" not in instance.get_dynamic_partitions("specs"):
                    assert time.monotonic() < deadline, "the new spec did not become a partition within 120 s"
                    time.sleep(3)

            # Materialize all, for the spec's partition; the new one is offered beside it.
            page.get_by_role("button", name="Materialize all…").click()
            dialog = page.get_by_role("dialog")
            dialog.get_by_text("Select a partition or create one").click()
            expect(page.locator("span", has_text=re.compile(r"^newteam$"))).to_be_visible(timeout=30_000)
            page.locator("span", has_text=re.compile(r"^tiny$")).click()
            dialog.get_by_role("button", name="Launch 1 run").click()
            page.get_by_role("link", name="View", exact=True).or_(page.get_by_role("button", name="View", exact=True)).first.click()

            # The run page says how it ended. A live run page polls the webserver and redraws its log all
            # the time, which on 2 cores slowed the run's own steps eightfold: look in every 10 s instead.
            expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]{36}"), timeout=30_000)
            run_page, deadline = page.url, time.monotonic() + 300
            while True:
                page.goto(run_page)
                status = page.get_by_text(re.compile(r"^(Success|Failure|Canceled)$")).first
                try:
                    status.wait_for(timeout=5_000)
                    break
                except PlaywrightTimeout:
                    assert time.monotonic() < deadline, "the run did not finish within 300 s"
                    page.goto("about:blank")
                    time.sleep(10)
            # Everything ran; a 20-step generator does not help a classifier: the uplift gate fails, as a
            # finding shown on the report's checks, without failing the run.
            assert status.inner_text() == "Success"
            page.screenshot(path=ARTIFACTS / "run-finished.png")
            page.goto(f"{dagster}/assets/augmentation_report?view=checks")
            expect(page.get_by_text("uplift_gate").first).to_be_visible(timeout=60_000)
            verdict = re.compile(r"(not recommended|cannot be shown with \d+ holdout images): .* against real only")
            expect(page.get_by_text(verdict).first).to_be_visible()  # the verdict, in the check's metadata
            page.screenshot(path=ARTIFACTS / "uplift-gate.png")
            page.goto(f"{dagster}/asset-groups")
            expect(page.get_by_text("gan_evaluation").first).to_be_visible(timeout=60_000)
            page.wait_for_timeout(2_000)  # materialization badges arrive a moment after the nodes
            page.screenshot(path=ARTIFACTS / "asset-graph-materialized.png")

            # The evaluation's metadata: the sample grid loads, the MLflow link follows the MLflow UI's address.
            page.goto(f"{dagster}/assets/gan_evaluation")
            link = page.locator('a[href*="/#/experiments/"]').first
            expect(link).to_be_visible(timeout=60_000)
            run_link = link.get_attribute("href")
            assert run_link.startswith(f"{mlflow_ui}/#/experiments/"), run_link
            page.get_by_text("[Show Markdown]").click()
            grid = page.get_by_role("dialog").get_by_role("img", name="samples")
            expect(grid).to_be_visible()
            assert grid.evaluate("image => image.complete && image.naturalWidth") > 0
            page.screenshot(path=ARTIFACTS / "evaluation-metadata.png")

            # The MLflow UI: the run the link names exists there, and the model page shows the champion alias.
            page.goto(run_link)
            expect(page.get_by_text("label_accuracy").first).to_be_visible(timeout=60_000)
            # The run page lists the data behind the run as MLflow datasets: the train split, and one more
            # (the holdout) behind "+1"; the training one opens on its digest, source and profile.
            training = page.get_by_role("button", name=re.compile(r"^tiny-training \([0-9a-f]{32}\)"))
            expect(training).to_be_visible(timeout=30_000)
            expect(page.get_by_text("+1", exact=True).first).to_be_visible()
            training.click()
            details = page.get_by_role("dialog")
            expect(details.get_by_text("2 datasets used")).to_be_visible(timeout=30_000)
            expect(details.get_by_role("button", name=re.compile(r"^tiny-holdout \([0-9a-f]{32}\)"))).to_be_visible()
            expect(details.get_by_text("num rows:")).to_be_visible()
            page.screenshot(path=ARTIFACTS / "mlflow-run-datasets.png")
            page.goto(f"{mlflow_ui}/#/models/gan-tiny")
            expect(page.get_by_text("trained by ganpipe on spec 'tiny'", exact=False).first).to_be_visible(timeout=60_000)
            expect(page.get_by_text(re.compile(r"^@?\s*champion$")).first).to_be_visible()
            page.screenshot(path=ARTIFACTS / "mlflow-model.png")
            _launchpad_refuses_an_unknown_study_arm(page, dagster, expect)
            # `dg dev` said at start which stores the code location uses.
            started = (servers["logs"] / "dagster.log").read_text()
            assert f"storage root {os.environ['GANPIPE_HOME']}, MLflow store {os.environ['MLFLOW_TRACKING_URI']} (UI links {mlflow_ui})" in started
        except Exception:
            page.screenshot(path=ARTIFACTS / "failure.png")
            for log in sorted(servers["logs"].iterdir()):
                shutil.copy(log, ARTIFACTS / log.name)
            raise
        finally:
            browser.close()


def _launchpad_refuses_an_unknown_study_arm(page, dagster: str, expect) -> None:
    """A person opens the study's launchpad (the menu beside Materialize…), types a config with a
    misspelt arm and sees it refused by name before anything runs; the arms it knows, and the
    other steps' launchpad fields, pass."""
    page.goto(f"{dagster}/assets/augmentation_report")
    materialize = page.get_by_role("button", name=re.compile(r"Materialize")).first  # its name begins with its icon's
    expect(materialize).to_be_visible(timeout=60_000)
    materialize.locator("xpath=following::button[1]").click()  # the menu beside it
    page.get_by_text("Open launchpad", exact=True).click()
    editor = page.locator(".CodeMirror").first
    expect(editor).to_be_visible(timeout=60_000)

    def type_config(text: str) -> None:
        editor.click()
        page.keyboard.press("ControlOrMeta+a")
        page.keyboard.press("Delete")
        page.keyboard.insert_text(text)  # as typed, without the editor's auto-indent and bracket closing

    type_config("ops:\n  augmentation_report:\n    config:\n      mixes: [pool]\n")
    refusal = page.get_by_text(re.compile(r"not in enum type SyntheticMix")).first
    expect(refusal).to_be_visible(timeout=30_000)
    launch = page.get_by_role("dialog").get_by_role("button", name=re.compile(r"Materialize$"))
    expect(launch).to_be_disabled()  # nothing can be launched with it
    page.screenshot(path=ARTIFACTS / "launchpad-refuses-arm.png")
    type_config(
        "ops:\n  augmentation_report:\n    config:\n      mixes: [ssl]\n      labels: [soft]\n"
        "  gan_model:\n    config:\n      lr_g: 5.0e-4\n  judge_classifier:\n    config:\n      steps: 200\n"
    )
    expect(page.get_by_text("No errors", exact=True)).to_be_visible(timeout=30_000)
    expect(page.get_by_text(re.compile(r"not in enum type SyntheticMix"))).to_have_count(0)
    expect(launch).to_be_enabled()
    page.screenshot(path=ARTIFACTS / "launchpad-accepts-arms.png")
    page.keyboard.press("Escape")
