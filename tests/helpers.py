"""What several test modules share beyond fixtures: the tiny spec through the whole graph in
process, a client of its MLflow store, and what one whole run must leave behind."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import mlflow
import pytest

from gan_core.export import ExportError, read_export
from pipelines.definitions import build_definitions, with_checks
from pipelines.layout import find_export
from pipelines.partitions import register_specs
from pipelines.records import from_json


def bars_judge(classes: tuple[str, ...] = ("zero", "one", "two")):
    """A small judge of the tiny spec's bars, named as the `tiny_plan` fixture's classes."""
    import tempfile

    from gan_core.classifier import ClassifierConfig, train_classifier
    from gan_core.data import ImageData, load_source
    from pipelines.tiny import write_tiny_npz

    data = load_source({"kind": "npz", "path": str(write_tiny_npz(Path(tempfile.mkdtemp()) / "bars.npz"))})
    return train_classifier(ImageData(data.images, data.labels, list(classes)), ClassifierConfig(steps=30, width=4, feature_dim=8, batch_size=16))


def materialize_tiny(env, tracking_uri: str | None = None, selection: tuple[str, ...] | None = None, ops: dict | None = None, **kwargs):
    defs = build_definitions(str(env["specs"]), str(env["home"]), tracking_uri or f"sqlite:///{env['home'] / 'mlflow.db'}")
    instance = kwargs.pop("instance")
    register_specs(instance, env["specs"])  # what the spec_files sensor does in a deployment
    ops = {**({"augmentation_report": {"config": {"classifier_steps": 20}}} if selection is None else {}), **(ops or {})}
    return dg.materialize(**with_checks(defs, selection), partition_key="tiny", resources=defs.resources, instance=instance, run_config={"ops": ops}, **kwargs)


def mlflow_client(env, tracking_uri: str | None = None):
    uri = tracking_uri or f"sqlite:///{env['home'] / 'mlflow.db'}"
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def assert_first_night(env, result, tracking_uri: str | None = None) -> None:
    """What one whole run of the graph for the tiny spec must leave behind (any storage backend)."""
    # A 20-step generator does not help a classifier: the uplift gate fails (without failing the run:
    # a finding, not a crash), the export stays, marked not recommended, `recommended` materializes
    # nothing and no `recommended` alias appears.
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"quality_gate": True, "export_valid": True, "uplift_gate": False}
    materialized = {event.asset_key.path[-1] for event in result.get_asset_materialization_events()}
    assert materialized == {"real_images", "judge_classifier", "gan_model", "gan_evaluation", "champion_model", "synthetic_dataset", "augmentation_report"}
    report = {k: v.value for k, v in result.asset_materializations_for_node("augmentation_report")[0].metadata.items()}
    assert report["uplift_gain_ci_low"] <= report["uplift_gain"] <= report["uplift_gain_ci_high"] and report["seeds"] == 2
    assert report["uplift_best_share"] in (0.25, 0.5, 1.0) and "| real + synthetic, 0.25 of each batch, the generator's labels" in report["summary"]
    # No pool: the baseline is real only; the export's soft labels are measured on real + synthetic.
    assert report["ssl"].startswith("none") and "uplift_gain_over_ssl" not in report and report["baseline"] == "real only"
    assert "| real + synthetic, 0.5 of each batch, the teacher's soft labels" in report["summary"]
    assert report["uplift_gain"] == pytest.approx(report["uplift_recommended"] - report["uplift_baseline_accuracy"], abs=2e-5)
    assert (
        report["verdict"].startswith(("not recommended: ", "cannot be shown with 6 holdout images: ")) and f"against {report['baseline']}" in report["verdict"]
    )
    assert report["uplift_holdout_images"] == 6 and report["uplift_selection_images"] == 6 and report["uplift_min_detectable_gain"] > 0
    gate = next(e for e in result.get_asset_check_evaluations() if e.check_name == "uplift_gate")
    assert gate.metadata["verdict"].value == report["verdict"]

    client = mlflow_client(env, tracking_uri)
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
    table, images = read_export(exports[0], decode=True)
    assert table.num_rows == 30
    # Soft labels: the judge's probabilities of every exported image, beside its holdout accuracy.
    import numpy as np

    from gan_core.classifier import Judge

    judge = {k: v.value for k, v in result.asset_materializations_for_node("judge_classifier")[0].metadata.items()}
    probs = np.stack(table.column("label_probs").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(probs, Judge.load(judge["judge_path"]).probabilities(images), atol=1e-6)
    soft = json.loads((exports[0] / "_manifest.json").read_text())["soft_labels"]
    assert judge["teacher_used"] is True and soft["teacher_holdout_accuracy"] == judge["holdout_accuracy"] and exports[0].name.endswith("-soft")
    assert set(table.column("model_version").to_pylist()) == {"1"}
    manifest = json.loads((exports[0] / "_manifest.json").read_text())
    assert manifest["model"]["run_id"] == champion.run_id and "fid_domain" in manifest["metrics"]
    utility = manifest["utility"]  # the recommended mix, measured; not recommended
    assert utility["recommended"] is False and utility["verdict"] == report["verdict"] and utility["share"] == report["uplift_best_share"]
    assert utility["seeds"] == 2 and utility["classifier_steps"] == 20 and utility["gain"] == pytest.approx(report["uplift_gain"], abs=1e-5)
    assert "recommended" not in client.get_registered_model("gan-tiny").aliases and champion.tags["uplift_gate"] == "failed"
    assert "synthetic share of each batch" in champion.tags["recommended_mix"] and champion.tags["recommended_recipe"] == utility["recipe"] == report["recipe"]
    assert champion.tags["gain_over_real"].startswith(f"{utility['gain_over_real']:+.4f} (") and "gain_over_ssl" not in champion.tags
    with pytest.raises(ExportError, match="no recommended export of spec 'tiny'"):
        find_export("tiny", root=env["home"])
    assert read_export(find_export("tiny", which="latest", root=env["home"])).num_rows == table.num_rows
    # One record of the study's figures: the record augmentation_report handed on holds them at full
    # precision, and the manifest, the gate and the version's tags show those very numbers.
    record_path = result.asset_materializations_for_node("augmentation_report")[0].metadata["record"].value
    record = from_json(Path(record_path).read_text(), record_path)
    assert Path(record_path).parent.parent.name == "augmentation_report" and Path(record_path).stem == result.run_id
    assert (
        record.figures["uplift_gain"] == utility["gain"]
        and [record.figures["uplift_gain_ci_low"], record.figures["uplift_gain_ci_high"]] == utility["gain_ci95"]
    )
    assert record.passed is False and record.verdict == utility["verdict"] == gate.metadata["verdict"].value
    assert gate.metadata["gain"].value == record.figures["uplift_gain"] and float(champion.tags["metric.uplift_gain"]) == record.figures["uplift_gain"]
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
