"""Concurrency: two specs at once, the same spec twice at once, and a night of ten teams. Runs are
real `dagster asset materialize` processes against one SQLite instance with the deployed dagster.yaml."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import mlflow
import pytest

from gan_core.checkpoint import load_generator
from pipelines.definitions import build_definitions
from pipelines.partitions import register_specs
from pipelines.tiny import write_tiny_spec

BIN = Path(sys.executable).parent  # this environment's console scripts

ROOT = Path(__file__).resolve().parents[2]


def _deployed_instance(env: dict, initialise_instance, gpu_slots: int = 1) -> None:
    text = (ROOT / "deploy" / "dagster.yaml").read_text().replace("default_limit: 1", f"default_limit: {gpu_slots}")
    (env["dagster_home"] / "dagster.yaml").write_text(text)
    initialise_instance()


def _launch(materialize_command, spec: str, select: str) -> subprocess.Popen:
    return subprocess.Popen(materialize_command(select, spec), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())


def _finish(processes: list[subprocess.Popen]) -> list[tuple[int, str]]:
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    return [(p.returncode, out) for p, out in zip(processes, outputs)]


def _training_spans(instance: dg.DagsterInstance) -> list[tuple[float, float, str]]:
    """(start, end, run id) of every gan_model step, from the instance's event log."""
    spans = []
    for run in instance.get_runs():
        events = instance.all_logs(run.run_id, of_type={dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS})
        times = [e.timestamp for e in events if e.step_key == "gan_model"]
        if len(times) == 2:
            spans.append((min(times), max(times), run.run_id))
    return sorted(spans)


def _client() -> mlflow.MlflowClient:
    uri = os.environ["MLFLOW_TRACKING_URI"]
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def _longer_training(spec_path: Path, steps: int = 200) -> None:
    spec_path.write_text(spec_path.read_text().replace("steps: 20,", f"steps: {steps},"))


def test_two_specs_at_once_succeed_apart_and_train_one_at_a_time(ganpipe_env, initialise_instance, materialize_command):
    env = ganpipe_env
    for name in ("alpha", "beta"):
        _longer_training(write_tiny_spec(env["specs"], name=name))
    _deployed_instance(env, initialise_instance)
    results = _finish([_launch(materialize_command, name, "real_images,gan_model") for name in ("alpha", "beta")])
    assert [rc for rc, _ in results] == [0, 0], [out[-2000:] for _, out in results]
    assert any("blocked by limit for pool gpu" in out for _, out in results)  # one waited for the other

    with dg.DagsterInstance.get() as instance:
        (start_a, end_a, _), (start_b, end_b, _) = _training_spans(instance)
    assert end_a <= start_b, "two trainings overlapped although the gpu pool has one slot"

    for top in ("data", "runs"):
        assert sorted(p.name for p in (env["home"] / top).iterdir()) == ["alpha", "beta"]
    for name in ("alpha", "beta"):
        (version,) = _client().search_model_versions(f"name='gan-{name}'")
        run = _client().get_run(version.run_id)
        assert run.data.tags["dagster.partition"] == name
        assert Path(version.tags["generator_path"]).is_relative_to(env["home"] / "runs" / name)
        load_generator(version.tags["generator_path"])


@pytest.mark.slow  # the default suite holds two specs to one GPU slot (the test above) and refuses a second writer of a spec (below)
def test_same_spec_twice_waits_for_the_gpu_slot_and_both_register(ganpipe_env, initialise_instance, materialize_command):
    env = ganpipe_env
    _longer_training(write_tiny_spec(env["specs"]))
    _deployed_instance(env, initialise_instance)
    results = _finish([_launch(materialize_command, "tiny", "real_images,gan_model") for _ in range(2)])
    assert [rc for rc, _ in results] == [0, 0], [out[-2000:] for _, out in results]
    versions = sorted(_client().search_model_versions("name='gan-tiny'"), key=lambda v: int(v.version))
    assert [str(v.version) for v in versions] == ["1", "2"]
    assert len({v.run_id for v in versions}) == 2 and len({v.tags["generator_path"] for v in versions}) == 2
    for version in versions:  # neither run touched the other's files
        load_generator(version.tags["generator_path"])
        assert _client().get_run(version.run_id).info.status == "FINISHED"


def test_same_spec_twice_with_two_gpu_slots_the_second_fails_clearly(ganpipe_env, initialise_instance, materialize_command):
    """With two GPU slots nothing queues the second run of a spec: the spec's lock refuses it."""
    env = ganpipe_env
    _longer_training(write_tiny_spec(env["specs"]), steps=600)
    _deployed_instance(env, initialise_instance, gpu_slots=2)
    with dg.DagsterInstance.get() as instance:
        register_specs(instance, env["specs"])
        defs = build_definitions()
        real_images = next(a for a in defs.assets if a.key.path[-1] == "real_images")
        assert dg.materialize([real_images], partition_key="tiny", resources=defs.resources, instance=instance).success
    results = _finish([_launch(materialize_command, "tiny", "gan_model") for _ in range(2)])
    codes = sorted(rc for rc, _ in results)
    assert codes[0] == 0 and codes[1] != 0, [out[-2000:] for _, out in results]
    refused = next(out for rc, out in results if rc != 0)
    assert "spec 'tiny' is being written by another run" in refused and "tiny.lock" in refused
    (version,) = _client().search_model_versions("name='gan-tiny'")
    load_generator(version.tags["generator_path"])  # the winner's files are whole
    experiment = _client().get_run(version.run_id).info.experiment_id
    assert [r.info.run_id for r in _client().search_runs([experiment])] == [version.run_id]  # the refused run opened none


@pytest.mark.slow
def test_a_night_of_ten_teams(tmp_path):
    completed = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "nightly.py"), "--teams", "10", "--workdir", str(tmp_path / "night")],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=ROOT,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    figures = json.loads(completed.stdout.strip().splitlines()[-1])
    assert figures["runs"] == 10 and figures["failures"] == 0 and figures["peak_rss_mb"] > 0
    exports = list((tmp_path / "night" / "var" / "exports").glob("*/v*/*/_manifest.json"))
    assert len(exports) == 10
    shutil.rmtree(tmp_path / "night")


def _register_each_folder_at_the_barrier(barrier, folders: list[str], results) -> None:
    """One command starting, once per folder: waits for the others, then registers the folder's specs."""
    with dg.DagsterInstance.get() as instance:
        for folder in folders:
            barrier.wait(timeout=120)
            try:
                register_specs(instance, folder)
                results.put("ok")
            except Exception as error:  # noqa: BLE001 - the parent asserts on what each process raised
                results.put(f"{type(error).__name__}: {error}")


def test_commands_starting_together_register_the_same_new_specs_without_a_clash(ganpipe_env, initialise_instance):
    """`dagster asset materialize` of two specs at once: both processes find the same new spec files
    and add them in the same instant; a partition the other added a moment earlier is no error.
    Twenty folders of two new specs, four processes adding each folder at once (before the fix about
    four rounds in ten raised IntegrityError: UNIQUE constraint failed)."""
    env = ganpipe_env
    initialise_instance()
    folders = [env["specs"] / f"night{number}" for number in range(20)]
    for folder in folders:
        for letter in "ab":
            write_tiny_spec(folder, name=f"{folder.name}{letter}")
    context = multiprocessing.get_context("spawn")
    barrier, results, workers = context.Barrier(4), context.Queue(), 4
    processes = [context.Process(target=_register_each_folder_at_the_barrier, args=(barrier, [str(f) for f in folders], results)) for _ in range(workers)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=300) for _ in range(workers * len(folders))]
    for process in processes:
        process.join(timeout=60)
    assert [o for o in outcomes if o != "ok"] == []
    with dg.DagsterInstance.get() as instance:
        assert sorted(instance.get_dynamic_partitions("specs")) == sorted(f"{f.name}{letter}" for f in folders for letter in "ab")
