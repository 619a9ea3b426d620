"""Shared fixtures: temporary storage for the pipeline, the real Dagster CLI, free ports, and
prerequisites that may be missing. The tiny dataset and spec are `pipelines.tiny`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import dagster as dg
import mlflow
import pytest
import torch

from gan_core.export import ExportError, read_export
from pipelines.definitions import IN_PROCESS_RUN_CONFIG, build_definitions, with_checks
from pipelines.layout import find_export

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


# ---------------------------------------------------------------- the tiny spec through the whole graph


def _materialize_tiny(env, tracking_uri: str | None = None, selection: tuple[str, ...] | None = None, ops: dict | None = None, **kwargs):
    defs = build_definitions(str(env["specs"]), str(env["home"]), tracking_uri or f"sqlite:///{env['home'] / 'mlflow.db'}")
    instance = kwargs.pop("instance")
    ops = {**({"augmentation_report": {"config": {"classifier_steps": 20}}} if selection is None else {}), **(ops or {})}
    return dg.materialize(with_checks(defs, selection), partition_key="tiny", resources=defs.resources, instance=instance, run_config={"ops": ops}, **kwargs)


def _mlflow_client(env, tracking_uri: str | None = None):
    uri = tracking_uri or f"sqlite:///{env['home'] / 'mlflow.db'}"
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def _assert_first_night(env, result, tracking_uri: str | None = None) -> None:
    """What one whole run of the graph for the tiny spec must leave behind (any storage backend)."""
    # A 20-step generator does not help a classifier: the uplift gate fails the run after the report,
    # the export stays, marked not recommended, and no `recommended` alias appears.
    assert not result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"quality_gate": True, "export_valid": True, "uplift_gate": False}
    materialized = {event.asset_key.path[-1] for event in result.get_asset_materialization_events()}
    assert materialized == {"real_images", "judge_classifier", "gan_model", "gan_evaluation", "champion_model", "synthetic_dataset", "augmentation_report"}
    report = {k: v.value for k, v in result.asset_materializations_for_node("augmentation_report")[0].metadata.items()}
    assert report["uplift_gain_ci_low"] <= report["uplift_gain"] <= report["uplift_gain_ci_high"] and report["seeds"] == 2
    assert report["uplift_best_share"] in (0.1, 0.25, 0.5) and "| real + synthetic, 0.25 of each batch" in report["summary"]
    assert report["verdict"].startswith("not recommended: best share")
    gate = next(e for e in result.get_asset_check_evaluations() if e.check_name == "uplift_gate")
    assert gate.metadata["verdict"].value == report["verdict"]

    client = _mlflow_client(env, tracking_uri)
    champion = client.get_model_version_by_alias("gan-tiny", "champion")
    assert str(champion.version) == "1"
    run = client.get_run(champion.run_id)
    assert {"fid_domain", "fid_domain_baseline", "label_accuracy", "d_loss"} <= set(run.data.metrics)
    assert "metric.fid_domain" in champion.tags and champion.tags["quality_gate"] == "passed"
    # What a person reads on the MLflow model page: the model, and each version's data, gate and figures.
    assert "spec 'tiny'" in client.get_registered_model("gan-tiny").description
    described = champion.description
    assert "spec tiny, data " in described and "20 steps" in described and "Quality gate passed" in described
    label_accuracy = run.data.metrics["label_accuracy"]
    assert (
        f"label_accuracy {label_accuracy:.4g} (real vs real " in described
        and "fid_domain " in described
        and "coverage_domain " in described
        and "recall_domain " in described
    )
    assert run.data.tags["dagster.partition"] == "tiny" and run.data.tags["dagster.run_id"] == result.run_id
    # The data behind the run, as MLflow datasets: the train split's and the holdout's content hashes, and the Dagster run.
    from gan_core.data import load_source

    snapshot = result.asset_materializations_for_node("real_images")[0].metadata["snapshot"].value
    inputs = {}
    for item in run.inputs.dataset_inputs:
        tags = {tag.key: tag.value for tag in item.tags}
        inputs[tags["mlflow.data.context"]] = (item.dataset, tags)
    assert set(inputs) == {"training", "holdout"}  # no unlabelled pool in the tiny spec
    for context, split in (("training", "train"), ("holdout", "holdout")):
        dataset, tags = inputs[context]
        content_hash = load_source({"kind": "npz", "path": f"{snapshot}/{split}.npz"}).content_hash()
        assert tags["content_hash"] == content_hash and dataset.digest == content_hash[:32] and tags["dagster.run_id"] == result.run_id
        assert json.loads(dataset.source)["tags"]["spec"] == "tiny" and json.loads(dataset.profile)["num_rows"] > 0

    exports = list((env["home"] / "exports" / "tiny").glob("v*/*"))
    assert [p.parent.name for p in exports] == ["v1"]
    table = read_export(exports[0])
    assert table.num_rows == 30
    assert set(table.column("model_version").to_pylist()) == {"1"}
    manifest = json.loads((exports[0] / "_manifest.json").read_text())
    assert manifest["model"]["run_id"] == champion.run_id and "fid_domain" in manifest["metrics"]
    utility = manifest["utility"]  # the recommended mix, measured; not recommended
    assert utility["recommended"] is False and utility["verdict"] == report["verdict"] and utility["share"] == report["uplift_best_share"]
    assert utility["seeds"] == 2 and utility["classifier_steps"] == 20 and utility["gain"] == pytest.approx(report["uplift_gain"], abs=1e-5)
    assert "recommended" not in client.get_registered_model("gan-tiny").aliases and champion.tags["uplift_gate"] == "failed"
    assert "gain" in champion.tags["recommended_mix"]
    with pytest.raises(ExportError, match="no recommended export of spec 'tiny'"):
        find_export("tiny", root=env["home"])
    assert read_export(find_export("tiny", which="latest", root=env["home"])).num_rows == table.num_rows
    card = (exports[0] / "README.md").read_text()  # the dataset card: what a person reads, with the verdict that landed last
    assert f"**Not recommended**. {report['verdict']}" in card and f"run `{champion.run_id}`" in card and "/#/experiments/" in card
    assert manifest["lineage"]["data"]["content_hash"][:16] in card and "Licence: **not set**" in card
    screened = manifest["memorization"]  # every export is screened against the training images
    assert screened["checked"] == table.num_rows and screened["exact_copies"] == 0 and screened["reference_images"] > 0
    assert not list((env["home"] / "staging").glob("*"))

    # The registered model loads from the registry and samples on demand.
    model = mlflow.pyfunc.load_model("models:/gan-tiny@champion")
    out = model.predict(__import__("pandas").DataFrame({"label": [0, 2], "seed": [5, 6]}))
    assert list(out.columns) == ["label", "seed", "image"] and out["image"].iloc[0][:4] == b"\x89PNG"


@pytest.fixture
def materialize_tiny():
    """materialize_tiny(env, tracking_uri=None, selection=None, ops=None, instance=..., **kwargs): the
    tiny partition of the code location `env` describes, in process, with the assets' checks."""
    return _materialize_tiny


@pytest.fixture
def mlflow_client():
    """mlflow_client(env, tracking_uri=None): a client of the env's MLflow store (or of tracking_uri)."""
    return _mlflow_client


@pytest.fixture
def assert_first_night():
    """assert_first_night(env, result, tracking_uri=None): what one whole run of the graph for the
    tiny spec must leave behind, whatever the storage backend."""
    return _assert_first_night
