"""Two processes on CPU (gloo) through torchrun: the same model as one process with the same
global batch and g_norm_groups=2, weights in sync on every rank, exact resume, one writer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gan_core.checkpoint import CheckpointError, load_checkpoint
from gan_core.data import load_source
from gan_core.train import TrainConfig, train
from pipelines.tiny import write_tiny_npz, write_tiny_spec

BIN = Path(sys.executable).parent  # this environment's console scripts

SETTINGS = {
    "profile": "quick",
    "steps": 12,
    "batch_size": 16,
    "z_dim": 8,
    "g_width": 4,
    "d_width": 4,
    "checkpoint_every": 6,
    "keep_checkpoints": 5,
    "log_every": 3,
    "class_weight": 1.0,
    "augment": "off",
}


def torchrun(data: Path, run_dir: Path, settings: dict, *extra: str, processes: int = 2) -> list[dict]:
    command = [
        str(BIN / "torchrun"),
        "--standalone",
        f"--nproc_per_node={processes}",
        "-m",
        "gan_core.train",
        "--data",
        str(data),
        "--run-dir",
        str(run_dir),
        "--config",
        json.dumps(settings),
        *extra,
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-4000:]
    return [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]


def _weights(state: dict, module: str) -> dict[str, torch.Tensor]:
    """Parameters and spectral-norm vectors; batch-norm running statistics are left out (see train.py)."""
    return {k: v for k, v in state[module].items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    return write_tiny_npz(tmp_path_factory.mktemp("ddp") / "tiny.npz", per_class=20)


@pytest.fixture(scope="module")
def two_process_run(data_file, tmp_path_factory) -> tuple[Path, list[dict]]:
    run_dir = tmp_path_factory.mktemp("ddp-run")
    return run_dir, torchrun(data_file, run_dir, SETTINGS)


def test_two_processes_train_the_model_one_process_trains_with_two_norm_groups(two_process_run, data_file, tmp_path):
    run_dir, _ = two_process_run
    single = train(
        load_source({"kind": "npz", "path": str(data_file)}), TrainConfig(**{**SETTINGS, "g_norm_groups": 2}), tmp_path / "single", progress_bar=False
    )
    assert single.steps == 12
    distributed = load_checkpoint(run_dir / "checkpoints" / "ckpt-00000012.pt")
    reference = load_checkpoint(tmp_path / "single" / "checkpoints" / "ckpt-00000012.pt")
    for module in ("G", "D", "G_ema"):
        ours, theirs = _weights(distributed, module), _weights(reference, module)
        assert ours.keys() == theirs.keys()
        for name in ours:
            torch.testing.assert_close(ours[name], theirs[name], rtol=1e-4, atol=1e-5, msg=f"{module}.{name}")
    # ...and not by accident: one process with one norm group is a different model.
    plain = train(load_source({"kind": "npz", "path": str(data_file)}), TrainConfig(**SETTINGS), tmp_path / "plain", progress_bar=False)
    plain_state = load_checkpoint(tmp_path / "plain" / "checkpoints" / "ckpt-00000012.pt")
    assert not torch.allclose(plain_state["G"]["to_image.weight"], distributed["G"]["to_image.weight"], atol=1e-5)
    assert plain.steps == 12


def test_every_rank_ends_with_the_same_weights_and_rank_zero_alone_reports_and_writes(two_process_run):
    run_dir, lines = two_process_run
    results = sorted((line["result"] for line in lines if "result" in line), key=lambda r: r["rank"])
    assert [r["rank"] for r in results] == [0, 1]
    assert results[0]["weights_sha256"] == results[1]["weights_sha256"]
    assert [line["progress"]["step"] for line in lines if "progress" in line] == [3, 6, 9, 12]  # once, not once per rank
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["ckpt-00000006.pt", "ckpt-00000012.pt"]
    state = load_checkpoint(run_dir / "checkpoints" / "ckpt-00000012.pt")
    assert state["world_size"] == 2 and len(state["rng"]["torch"]) == 2  # both ranks' RNG, gathered by the one writer
    assert (run_dir / "generator.safetensors").is_file()


def test_augmentation_probability_stays_in_sync(data_file, tmp_path):
    settings = {**SETTINGS, "augment": "on", "ada_interval": 1, "ada_kimg": 0.05, "ada_target": 0.01}
    lines = torchrun(data_file, tmp_path / "ada", settings)
    results = [line["result"] for line in lines if "result" in line]
    assert len(results) == 2 and results[0]["augment_p"] == results[1]["augment_p"] > 0
    assert results[0]["weights_sha256"] == results[1]["weights_sha256"]


def test_resume_at_the_same_world_size_is_exact_and_other_sizes_are_refused(two_process_run, data_file, tmp_path):
    run_dir, _ = two_process_run
    resumed_dir = tmp_path / "resumed"
    torchrun(data_file, resumed_dir, {**SETTINGS, "steps": 6})
    lines = torchrun(data_file, resumed_dir, SETTINGS, "--resume")
    assert [line["result"]["resumed_from"] for line in lines if "result" in line] == [6, 6]
    uninterrupted = load_checkpoint(run_dir / "checkpoints" / "ckpt-00000012.pt")
    resumed = load_checkpoint(resumed_dir / "checkpoints" / "ckpt-00000012.pt")
    for module in ("G", "D", "G_ema"):
        for name, value in uninterrupted[module].items():
            torch.testing.assert_close(resumed[module][name], value, rtol=0, atol=0, msg=f"{module}.{name}")
    with pytest.raises(CheckpointError, match="written by 2 process"):
        train(load_source({"kind": "npz", "path": str(data_file)}), TrainConfig(**SETTINGS), resumed_dir, resume=True, progress_bar=False)


def test_gan_model_trains_on_two_processes_through_dagster_pipes(ganpipe_env, monkeypatch):
    import dagster as dg
    import mlflow

    from pipelines.defs.assets.common import K8S_GPU_TAGS
    from pipelines.definitions import build_definitions, with_checks
    from pipelines.partitions import register_specs

    env = ganpipe_env
    write_tiny_spec(env["specs"])
    monkeypatch.setenv("GANPIPE_PROCESSES", "2")
    stale = env["home"] / "runs" / "tiny" / "pending" / "checkpoints"
    stale.mkdir(parents=True)
    (stale / "ckpt-00000010.pt").write_bytes(b"left by another version")  # every rank must start afresh alike
    defs = build_definitions(str(env["specs"]), str(env["home"]))
    assets = {a.key.path[-1]: a for a in defs.assets}
    assert json.loads(assets["gan_model"].op.tags["dagster-k8s/config"]) == K8S_GPU_TAGS["dagster-k8s/config"]  # what dagster-k8s reads
    with dg.instance_for_test() as instance:
        register_specs(instance, env["specs"])
        result = dg.materialize(**with_checks(defs, ["real_images", "gan_model"]), partition_key="tiny", resources=defs.resources, instance=instance)
        assert result.success
        logs = [entry.user_message for entry in instance.all_logs(result.run_id)]
    metadata = {k: v.value for k, v in result.asset_materializations_for_node("gan_model")[0].metadata.items()}
    assert metadata["processes"] == 2 and metadata["steps"] == 20
    assert any("step 20/20" in message and "(2 processes)" in message for message in logs)  # streamed from rank 0
    assert any("did not resume" in message and "ckpt-00000010.pt" in message for message in logs)
    run_dir = Path(metadata["generator_path"]).parent
    assert load_checkpoint(run_dir / "checkpoints" / "ckpt-00000020.pt")["world_size"] == 2
    client = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    assert [m.step for m in client.get_metric_history(metadata["mlflow_run_id"], "d_loss")] == [10, 20]


def test_synthetic_dataset_writes_two_shards_in_two_processes_and_commits_once(ganpipe_env, monkeypatch):
    import dagster as dg

    from gan_core.export import read_export
    from pipelines.definitions import build_definitions, with_checks
    from pipelines.partitions import register_specs

    env = ganpipe_env
    write_tiny_spec(env["specs"])  # 3 classes × 10 samples, 12 rows per part: 3 parts
    monkeypatch.setenv("GANPIPE_EXPORT_PROCESSES", "2")
    defs = build_definitions(str(env["specs"]), str(env["home"]))
    selection = with_checks(defs, [a.key.path[-1] for a in defs.assets if a.key.path[-1] not in ("augmentation_report", "recommended")])
    with dg.instance_for_test() as instance:
        register_specs(instance, env["specs"])
        result = dg.materialize(**selection, partition_key="tiny", resources=defs.resources, instance=instance)
    assert result.success
    metadata = {k: v.value for k, v in result.asset_materializations_for_node("synthetic_dataset")[0].metadata.items()}
    assert metadata["export_processes"] == 2
    pids = metadata["shard_pids"]
    assert len(set(pids)) == 2 and os.getpid() not in pids
    table = read_export(metadata["path"])
    assert table.num_rows == 30 and sorted(table.column("sample_id").to_pylist()) == list(range(30))
    manifest = json.loads((Path(metadata["path"]) / "_manifest.json").read_text())
    assert len(manifest["files"]) == 3 and manifest["memorization"]["checked"] == 30  # every shard screened its rows
    assert not list((env["home"] / "staging").iterdir())
