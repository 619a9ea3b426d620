"""Faults: a run killed mid-training or mid-export, an unusable MLflow store, a full disk and a
diverging run. Each leaves nothing half-written where a reader would see it."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import mlflow
import pyarrow.parquet as pq
import pytest

from gan_core.checkpoint import load_checkpoint
from gan_core.export import ExportError, ExportPlan, export_samples, read_export
from pipelines.definitions import build_definitions, with_checks
from pipelines.partitions import register_specs
from pipelines.tiny import write_tiny_spec

BIN = Path(sys.executable).parent  # this environment's console scripts


def _client(uri: str) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def _materialize(env: dict, selection: list[str] | None = None, tracking_uri: str | None = None, **kwargs) -> dg.ExecuteInProcessResult:
    defs = build_definitions(str(env["specs"]), str(env["home"]), tracking_uri or f"sqlite:///{env['home'] / 'mlflow.db'}")
    assets = with_checks(defs, selection)  # assets and selection
    instance = dg.DagsterInstance.get()
    register_specs(instance, env["specs"])
    run_config = {"ops": {"augmentation_report": {"config": {"classifier_steps": 20}}}} if selection is None else {}
    return dg.materialize(
        **assets,
        partition_key=kwargs.pop("partition_key", "tiny"),
        resources=defs.resources,
        instance=instance,
        run_config=run_config,
        raise_on_error=False,
        **kwargs,
    )


def _failure_text(result: dg.ExecuteInProcessResult) -> str:
    return " ".join(str(e.event_specific_data.error) for e in result.all_events if e.event_type_value == "STEP_FAILURE")


def _mount_tmpfs(path: Path, options: str, unavailable) -> None:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        unavailable(f"cannot mount a tmpfs here ({done.stderr.strip()}); the injected-error tests cover this")


# ---------------------------------------------------------------- training killed


def test_training_killed_with_sigkill_resumes_from_its_last_checkpoint(ganpipe_env, dagster_cli, materialize_command):
    env = ganpipe_env
    spec = write_tiny_spec(env["specs"])
    spec.write_text(spec.read_text().replace("steps: 20,", "steps: 3000,").replace("checkpoint_every: 10", "checkpoint_every: 100"))
    assert dagster_cli("asset", "materialize", "-m", "pipelines", "--select", "real_images", "--partition", "tiny").returncode == 0

    checkpoints = env["home"] / "runs" / "tiny" / "pending" / "checkpoints"
    command = materialize_command("gan_model")
    # Its own session, so the kill takes the whole process group, as a lost machine would.
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy(), start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(list(checkpoints.glob("ckpt-*.pt"))) < 2:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    saved = sorted(checkpoints.glob("ckpt-*.pt"))
    assert saved, "no checkpoint was written before the kill"
    last_step = max(int(p.stem.split("-")[1]) for p in saved)
    assert last_step < 3000, "the kill landed after training finished; make the run longer"
    for path in saved:  # every visible checkpoint is whole
        assert load_checkpoint(path)["step"] == int(path.stem.split("-")[1])
    uri = os.environ["MLFLOW_TRACKING_URI"]
    assert not _client(uri).search_model_versions("name='gan-tiny'")  # nothing registered by the killed run

    # The rerun finishes soon after the checkpoint it resumes from (launchpad override of the steps).
    finish = {"ops": {"gan_model": {"config": {"steps": last_step + 50}}}}
    rerun = dagster_cli("asset", "materialize", "-m", "pipelines", "--select", "gan_model", "--partition", "tiny", run_config=finish)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resumed from step {last_step}" in rerun.stdout + rerun.stderr
    versions = _client(uri).search_model_versions("name='gan-tiny'")
    assert [str(v.version) for v in versions] == ["1"]
    run_dir = Path(versions[0].tags["generator_path"]).parent
    assert (run_dir / "generator.safetensors").is_file() and not (env["home"] / "runs" / "tiny" / "pending").exists()
    history = _client(uri).get_metric_history(versions[0].run_id, "d_loss")
    assert min(m.step for m in history) > last_step  # the resumed run did not start over


def test_a_stale_pending_run_is_trained_over_with_a_warning(ganpipe_env):
    env = ganpipe_env
    write_tiny_spec(env["specs"])
    checkpoints = env["home"] / "runs" / "tiny" / "pending" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "ckpt-00000010.pt").write_bytes(b"left by another version")  # cannot be continued
    result = _materialize(env, ["real_images", "gan_model"])
    assert result.success
    warnings = [e.message for e in dg.DagsterInstance.get().all_logs(result.run_id) if "did not resume" in (e.message or "")]
    assert len(warnings) == 1 and "ckpt-00000010.pt" in warnings[0]
    metadata = {k: v.value for k, v in result.asset_materializations_for_node("gan_model")[0].metadata.items()}
    assert metadata["resumed_from_step"] == 0 and metadata["steps"] == 20
    assert load_checkpoint(Path(metadata["generator_path"]).parent / "checkpoints" / "ckpt-00000010.pt")["step"] == 10  # rewritten


# ---------------------------------------------------------------- export killed


def test_export_killed_with_sigkill_leaves_nothing_visible_and_rerun_completes(tmp_path, tiny_generator, tiny_plan, lineage, export_writer):
    destination = tmp_path / "exports" / "crash"
    process = export_writer(tiny_plan(rows_per_part=5, batch_size=4), tmp_path, destination)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list((tmp_path / "staging").glob("export-*/part-*.json"))) < 3:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    finished_before = len(list((tmp_path / "staging").glob("export-*/part-*.json")))
    assert 3 <= finished_before < 15, "the kill landed after the export finished; make the export longer"
    assert not destination.exists()
    result = export_samples(tiny_generator(), tiny_plan(rows_per_part=5, batch_size=4), destination, lineage=lineage, root=tmp_path)
    assert result.parts_reused >= 3 and result.parts_reused + result.parts_written == 15
    table = read_export(destination)
    ids = table.column("sample_id").to_pylist()
    assert len(ids) == 75 and sorted(set(ids)) == list(range(75))


# ---------------------------------------------------------------- MLflow unusable


def test_unreachable_mlflow_store_fails_before_training(ganpipe_env):
    env = ganpipe_env
    write_tiny_spec(env["specs"])
    (env["root"] / "a-file").write_text("not a directory")
    bad_uri = f"sqlite:///{env['root'] / 'a-file' / 'mlflow.db'}"  # can never be created
    result = _materialize(env, ["real_images", "gan_model"], tracking_uri=bad_uri)
    assert not result.success
    assert bad_uri in _failure_text(result) and "not usable" in _failure_text(result)
    assert not (env["home"] / "runs").exists()  # no training started


def test_read_only_mlflow_store_fails_before_training_and_promotes_nothing(ganpipe_env, unavailable):
    env = ganpipe_env
    write_tiny_spec(env["specs"])
    store = env["root"] / "mlflow-ro"
    _mount_tmpfs(store, "size=64m", unavailable)
    try:
        uri = f"sqlite:///{store / 'mlflow.db'}"
        # A real, current store, made by another process so that no connection here holds it open...
        subprocess.run([os.sys.executable, "-c", f"import mlflow; mlflow.MlflowClient({uri!r}).search_experiments()"], check=True, capture_output=True)
        subprocess.run(["mount", "-o", "remount,ro", str(store)], check=True)  # ...that then turns read-only
        result = _materialize(env, ["real_images", "gan_model"], tracking_uri=uri)
        assert not result.success
        assert uri in _failure_text(result) and "not writable" in _failure_text(result)
        assert not (env["home"] / "runs").exists()
        assert not _client(uri).search_registered_models()
    finally:
        subprocess.run(["umount", "-l", str(store)], check=False)  # lazy: a pooled connection may still hold it


# ---------------------------------------------------------------- disk full


def test_disk_full_injected_is_a_clear_error_and_resumable(tmp_path, monkeypatch, tiny_generator, tiny_plan):
    destination = tmp_path / "exports" / "full"
    plan = tiny_plan(rows_per_part=10)
    real_write = pq.ParquetWriter.write_table
    calls = {"n": 0}

    def write_until_full(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # one write per 10-row part: part 2 hits a full disk
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", write_until_full)
    with pytest.raises(ExportError, match="part-00002.parquet failed: No space left on device"):
        export_samples(tiny_generator(), plan, destination, root=tmp_path)
    assert not destination.exists()
    staged = next((tmp_path / "staging").glob("export-*"))
    assert not list(staged.glob(".*tmp"))  # the half-written part is gone
    monkeypatch.setattr(pq.ParquetWriter, "write_table", real_write)
    result = export_samples(tiny_generator(), plan, destination, root=tmp_path)
    assert result.parts_reused == 2 and read_export(destination).num_rows == 75


def test_disk_full_on_a_size_capped_filesystem(tmp_path, unavailable, tiny_generator):
    root = tmp_path / "small"
    _mount_tmpfs(root, "size=256k", unavailable)
    try:
        destination = root / "exports" / "big"
        plan = ExportPlan.per_class(("zero", "one", "two"), 3000, seed=1, image_format="raw", rows_per_part=1500, batch_size=500)
        with pytest.raises(ExportError, match="No space left on device"):
            export_samples(tiny_generator(channels=3), plan, destination, root=root, workers=1)
        assert not destination.exists()
        staged = list((root / "staging").glob("export-*"))
        assert len(staged) == 1 and not list(staged[0].glob(".*tmp"))  # finished parts only: resumable
        subprocess.run(["mount", "-o", "remount,size=64m", str(root)], check=True)  # the operator frees space
        result = export_samples(tiny_generator(channels=3), plan, destination, root=root, workers=1)
        ids = read_export(destination).column("sample_id").to_pylist()
        assert len(ids) == 9000 and len(set(ids)) == 9000 and result.parts_written >= 1
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


# ---------------------------------------------------------------- divergence


def test_diverging_run_fails_with_the_step_keeps_the_champion_and_exports_nothing(ganpipe_env):
    env = ganpipe_env
    spec = write_tiny_spec(env["specs"])
    assert _materialize(env).success  # all done; a 20-step generator fails only the uplift gate, which fails no run
    uri = os.environ["MLFLOW_TRACKING_URI"]
    assert str(_client(uri).get_model_version_by_alias("gan-tiny", "champion").version) == "1"

    spec.write_text(spec.read_text().replace("steps: 20,", "steps: 20, debug_nan_at_step: 7,"))
    result = _materialize(env)
    assert not result.success
    assert "step 7" in _failure_text(result) and "diverged" in _failure_text(result)
    assert str(_client(uri).get_model_version_by_alias("gan-tiny", "champion").version) == "1"
    assert [str(v.version) for v in _client(uri).search_model_versions("name='gan-tiny'")] == ["1"]
    assert [p.parent.name for p in (env["home"] / "exports" / "tiny").glob("v*/*")] == ["v1"]
    assert {e.asset_key.path[-1] for e in result.get_asset_materialization_events()} == {"real_images", "judge_classifier"}
