"""Report: does a classifier trained with the exported images beat what the team would get without
them (real only, and the best semi-supervised use of its pool), and with which recipe? The best
recipe is the export's recommended one (`utility` in its manifest); the uplift gate (`checks.py`)
decides whether the export is recommended at all, and `recommended` marks it so."""

import time
from enum import Enum
from typing import Any, Optional

import dagster as dg
import numpy as np

from gan_core.classifier import Judge
from gan_core.data import ImageData
from gan_core.export import annotate_export, read_export, read_manifest
from gan_core.metrics import UPLIFT_LABEL_KINDS, UPLIFT_MIXES, TeacherPool, augmentation_uplift, uplift_classifier

from ... import records
from ...registry import model_name, tag_metrics
from ...resources import MLflowResource, SpecsResource
from ...specs import Spec
from .common import COMPUTE_TAG, STAGE, load_pool, load_split, spec_of

RECOMMENDED = "recommended"  # the MLflow alias of the version whose export passed the uplift gate


# The launchpad's choices as enums, so that Dagster refuses a misspelt arm when the run is launched
# (naming the field), not hours later when the study starts.
SyntheticMix = Enum("SyntheticMix", {mix: mix for mix in UPLIFT_MIXES})
SyntheticLabels = Enum("SyntheticLabels", {kind: kind for kind in UPLIFT_LABEL_KINDS})


class AugmentationReportConfig(dg.Config):
    classifier_steps: Optional[int] = None  # the same optimizer steps for every training set (default: the spec's evaluation.uplift_classifier_steps)
    seeds: Optional[int] = None  # default: the spec's evaluation.uplift_seeds
    shares: Optional[list[float]] = None  # synthetic shares of each batch; default: the spec's evaluation.uplift_shares
    # Leave arms out (a shorter study, e.g. the demo's): what the synthetic images join, real and/or
    # ssl (real + the teacher-labelled pool), and their labels, hard and/or soft. Default: every arm.
    mixes: Optional[list[SyntheticMix]] = None
    labels: Optional[list[SyntheticLabels]] = None


def teacher_pool(spec: Spec, snapshot: records.Snapshot, judge: records.Judge) -> TeacherPool | None:
    """The unlabelled pool under the teacher's probabilities, for the study's ssl arms; none without a
    pool or when the teacher was not shown useful (its labels would teach nothing)."""
    pool = load_pool(snapshot.path)
    if not len(pool) or not judge.useful:
        return None
    return TeacherPool(pool, Judge.load(judge.path).probabilities(pool), spec.pseudo_label_confidence)


def _study_arms(context: dg.AssetExecutionContext, config: AugmentationReportConfig, soft_labels: bool, judge: records.Judge) -> tuple[list[str], list[str]]:
    """The launchpad's mixes and label kinds (default: all); soft labels asked of an export without
    them are said in the log, not left out silently."""
    mixes = [mix.value for mix in config.mixes] if config.mixes else list(UPLIFT_MIXES)
    labels = [kind.value for kind in config.labels] if config.labels else list(UPLIFT_LABEL_KINDS)
    if config.labels and "soft" in labels and not soft_labels:  # the default's soft arms: the export step said why already
        only = " (the study's arms with synthetic data fall back to the generator's labels)" if labels == ["soft"] else ""
        context.log.warning(f"labels: soft asked for, but the export has no label_probs: {judge.usefulness}{only}")
    return mixes, labels


@dg.asset(**STAGE, kinds={"pytorch", "mlflow"}, op_tags=COMPUTE_TAG)
def augmentation_report(
    context: dg.AssetExecutionContext,
    config: AugmentationReportConfig,
    specs: SpecsResource,
    mlflow_store: MLflowResource,
    real_images: records.Snapshot,
    judge_classifier: records.Judge,
    synthetic_dataset: records.Export,
) -> dg.Output[records.Uplift]:
    """The uplift classifier on real only, on ssl (the pool under the teacher's labels, when there is a
    pool), on real + synthetic and ssl + synthetic at several shares of each batch (hard and soft
    labels), and on synthetic only, scored on the real holdout; the best recipe with synthetic data
    is recorded as the recommended one, beside its gain over real only and over ssl."""
    import mlflow

    spec = spec_of(specs, context, real_images, judge_classifier)
    export = synthetic_dataset
    train_split, holdout = load_split(real_images.path)
    table, images = read_export(export.path, decode=True)
    synthetic = ImageData(images, table.column("label").to_numpy().astype(np.int64), train_split.class_names)
    soft = np.stack(table.column("label_probs").to_numpy(zero_copy_only=False)) if "label_probs" in table.column_names else None
    mixes, labels = _study_arms(context, config, soft is not None, judge_classifier)
    seeds = list(range(config.seeds or spec.evaluation.uplift_seeds))
    baseline = spec.evaluation.gates.uplift_baseline
    uplift = augmentation_uplift(
        train_split,
        holdout,
        synthetic,
        seeds,
        uplift_classifier(config.classifier_steps or spec.evaluation.uplift_classifier_steps),
        shares=config.shares or spec.evaluation.uplift_shares,
        progress=context.log.info,
        pool=teacher_pool(spec, real_images, judge_classifier),
        synthetic_probs=soft,
        baseline=baseline,
        mixes=mixes,
        labels=labels,
    )
    figures = uplift.figures()
    passed, reason = uplift_verdict(spec, figures, uplift.summary())  # taken once, here: the gate, the manifest and the tags read it
    summary = {**uplift.summary(), "teacher_holdout_accuracy": judge_classifier.holdout_accuracy if judge_classifier.useful else None}
    utility = {**summary, "recommended": False, "verdict": reason, "min_uplift": min_uplift(spec), "measured_at": _now()}
    annotate_export(export.path, "utility", utility)  # recommended only once the uplift gate has passed
    name, version = model_name(spec.name), export.model_version
    client = mlflow_store.client()
    with mlflow.start_run(run_id=client.get_model_version(name, version).run_id):
        mlflow.log_metrics(figures)
    tag_metrics(client, name, version, figures)
    for key, value in recipe_tags(summary).items():
        client.set_model_version_tag(name, version, key, value)
    context.log.info(f"uplift: {reason}")
    record = records.Uplift(
        model_version=version,
        export_path=export.path,
        figures=figures,
        passed=passed,
        verdict=reason,
        min_uplift=min_uplift(spec),
        seeds=len(seeds),
        classifier_steps=uplift.classifier_steps,
        recipe=summary["recipe"],
        baseline=summary["baseline"],
    )
    return dg.Output(
        record,
        metadata={
            **{k: round(v, 5) for k, v in figures.items()},
            "recipe": summary["recipe"],
            "baseline": summary["baseline"],
            "ssl": summary["ssl"] or "none (no pool, or a teacher not shown useful)",
            "seeds": len(seeds),
            "classifier_steps": uplift.classifier_steps,
            "model_version": version,
            "export_path": dg.MetadataValue.path(export.path),
            "verdict": reason,
            "summary": dg.MetadataValue.md(uplift.table()),
        },
    )


def recipe_tags(summary: dict[str, Any]) -> dict[str, str]:
    """The model version's tags naming the recommended recipe and its gains (with 95% intervals)."""

    def gain(key: str) -> str:
        low, high = summary[f"{key}_ci95"]
        return f"{summary[key]:+.4f} ({low:+.4f} to {high:+.4f})"

    tags = {
        "recommended_recipe": summary["recipe"],
        "recommended_mix": f"{summary['share']:g} synthetic share of each batch, {summary['label_kind']} labels, {'with' if summary['with_pool'] else 'without'} the pool",
        "gain_over_real": gain("gain_over_real"),
    }
    if summary["ssl"]:
        tags["gain_over_ssl"] = gain("gain_over_ssl")
        tags["ssl_recipe"] = summary["ssl"]
    return tags


def min_uplift(spec: Spec) -> float:
    limit = spec.evaluation.gates.limit("min", "uplift_gain")
    return 0.0 if limit is None else limit


def uplift_verdict(spec: Spec, figures: dict[str, Any], summary: dict[str, Any]) -> tuple[bool, str]:
    """Do no harm: recommended only when the recommended recipe's gain over the best arm without
    synthetic data (`summary['baseline']`: ssl with a pool, real only otherwise or with
    `gates.uplift_baseline: real`) exceeds `gates.min_uplift` (default 0) and the lower bound of
    its 95% interval (over holdout images and seeds) is above 0. A gain above the bound whose
    interval still reaches 0 is no verdict either way: the holdout is too small to show it, and
    the verdict says so. Returns (passed, why)."""
    gain, low, bound = figures["uplift_gain"], figures["uplift_gain_ci_low"], min_uplift(spec)
    measured = (
        f"{summary['recipe']} ({figures['uplift_recommended']:.4f}) against {summary['baseline']} ({figures['uplift_baseline_accuracy']:.4f}): "
        f"gain {gain:+.4f}, 95% interval lower bound {low:+.4f}"
    )
    if summary["baseline"] != "real only":
        measured += f"; over real only ({figures['uplift_real_only']:.4f}) {figures['uplift_gain_over_real']:+.4f}"
    if not gain > bound:
        return False, f"not recommended: {measured}; the gain does not exceed gates.min_uplift {bound:g}"
    if not low > 0:
        images, smallest = int(figures["uplift_holdout_images"]), figures["uplift_min_detectable_gain"]
        return False, (
            f"cannot be shown with {images} holdout images: {measured}; the smallest gain this holdout and these seeds can show is "
            f"about {smallest:+.4f}, so neither a gain nor its absence is shown (a larger holdout, e.g. a spec's `holdout:` source, can tell)"
        )
    return True, f"recommended: {measured} (> {bound:g} and > 0)"


@dg.asset(**STAGE, kinds={"mlflow"}, output_required=False)
def recommended(context: dg.AssetExecutionContext, specs: SpecsResource, mlflow_store: MLflowResource, augmentation_report: records.Uplift):
    """Only for a report that passed the uplift gate: marks the export recommended in its manifest
    and moves the MLflow alias `recommended` to its model version. For one that did not, nothing is
    materialized and no alias moves: the report's verdict (what the gate recorded) says why. The
    verdict is read from the report's record, so this holds however the asset is launched."""
    spec = specs.get(context.partition_key)
    path, version = augmentation_report.export_path, augmentation_report.model_version
    if not augmentation_report.passed:
        context.log.info(f"{path} stays not recommended, alias '{RECOMMENDED}' unchanged: {augmentation_report.verdict}")
        return
    utility = {**read_manifest(path)["utility"], "recommended": True, "recommended_at": _now()}
    annotate_export(path, "utility", utility)
    mlflow_store.client().set_registered_model_alias(model_name(spec.name), RECOMMENDED, version)
    context.log.info(f"{path} recommended; alias '{RECOMMENDED}' → v{version}")
    yield dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(path),
            "model_version": version,
            "recipe": utility["recipe"],
            "share": utility["share"],
            "gain": utility["gain"],
        }
    )


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
