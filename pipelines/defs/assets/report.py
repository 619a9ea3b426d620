"""Report: does a classifier trained with the exported images beat one trained without them, and
at which share of each batch? The best share is the export's recommended mix (`utility` in its
manifest); the uplift gate (`checks.py`) decides whether the export is recommended at all, and
`recommended` marks it so."""

import time
from typing import Any, Optional

import dagster as dg
import numpy as np

from gan_core.data import ImageData
from gan_core.export import annotate_export, read_export, read_manifest
from gan_core.metrics import UPLIFT_SHARES, augmentation_uplift, uplift_classifier

from ... import records
from ...registry import model_name, tag_metrics
from ...resources import MLflowResource, SpecsResource
from ...specs import Spec
from .common import COMPUTE_TAG, STAGE, load_split, spec_of

RECOMMENDED = "recommended"  # the MLflow alias of the version whose export passed the uplift gate


class AugmentationReportConfig(dg.Config):
    classifier_steps: Optional[int] = None  # the same optimizer steps for every training set (default: gan_core's uplift classifier)
    seeds: Optional[int] = None  # default: the spec's evaluation.uplift_seeds


@dg.asset(**STAGE, kinds={"pytorch", "mlflow"}, op_tags=COMPUTE_TAG)
def augmentation_report(
    context: dg.AssetExecutionContext,
    config: AugmentationReportConfig,
    specs: SpecsResource,
    mlflow_store: MLflowResource,
    real_images: records.Snapshot,
    synthetic_dataset: records.Export,
) -> dg.Output[records.Uplift]:
    """The uplift classifier on real only, on real + synthetic at several shares of each batch, and
    on synthetic only, scored on the real holdout; the best share is recorded as the recommended mix."""
    import mlflow

    spec = spec_of(specs, context, real_images)
    export = synthetic_dataset
    train_split, holdout = load_split(real_images.path)
    table, images = read_export(export.path, decode=True)
    synthetic = ImageData(images, table.column("label").to_numpy().astype(np.int64), train_split.class_names)
    seeds = list(range(config.seeds or spec.evaluation.uplift_seeds))
    uplift = augmentation_uplift(
        train_split, holdout, synthetic, seeds, uplift_classifier(config.classifier_steps), shares=UPLIFT_SHARES, progress=context.log.info
    )
    figures = uplift.figures()
    low, high = figures["uplift_gain_ci_low"], figures["uplift_gain_ci_high"]
    passed, reason = uplift_verdict(spec, figures)  # taken once, here: the gate, the manifest and the tags read it
    utility = {**uplift.summary(), "recommended": False, "verdict": reason, "min_uplift": min_uplift(spec), "measured_at": _now()}
    annotate_export(export.path, "utility", utility)  # recommended only once the uplift gate has passed
    name, version = model_name(spec.name), export.model_version
    client = mlflow_store.client()
    with mlflow.start_run(run_id=client.get_model_version(name, version).run_id):
        mlflow.log_metrics(figures)
    tag_metrics(client, name, version, figures)
    client.set_model_version_tag(
        name, version, "recommended_mix", f"{uplift.best_share:g} synthetic share of each batch: gain {uplift.gain:+.4f} ({low:+.4f} to {high:+.4f})"
    )
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
    )
    return dg.Output(
        record,
        metadata={
            **{k: round(v, 5) for k, v in figures.items()},
            "seeds": len(seeds),
            "classifier_steps": uplift.classifier_steps,
            "model_version": version,
            "export_path": dg.MetadataValue.path(export.path),
            "verdict": reason,
            "summary": dg.MetadataValue.md(uplift.table()),
        },
    )


def min_uplift(spec: Spec) -> float:
    limit = spec.evaluation.gates.limit("min", "uplift_gain")
    return 0.0 if limit is None else limit


def uplift_verdict(spec: Spec, figures: dict[str, Any]) -> tuple[bool, str]:
    """Do no harm: recommended only when the best share's gain exceeds `gates.min_uplift` (default 0)
    and the lower bound of its 95% interval (over holdout images and seeds) is above 0. A gain above
    the bound whose interval still reaches 0 is no verdict either way: the holdout is too small to
    show it, and the verdict says so. Returns (passed, why)."""
    gain, low, share, bound = figures["uplift_gain"], figures["uplift_gain_ci_low"], figures["uplift_best_share"], min_uplift(spec)
    measured = f"best share {share:g}: gain {gain:+.4f}, 95% interval lower bound {low:+.4f}"
    if not gain > bound:
        return False, f"not recommended: {measured}; the gain does not exceed gates.min_uplift {bound:g}"
    if not low > 0:
        images, smallest = int(figures["uplift_holdout_images"]), figures["uplift_min_detectable_gain"]
        return False, (
            f"cannot be shown with {images} holdout images: {measured}; the smallest gain this holdout and these seeds can show is "
            f"about {smallest:+.4f}, so neither a gain nor its absence is shown (a larger holdout, e.g. a spec's `holdout:` source, can tell)"
        )
    return True, f"recommended: {measured} (> {bound:g} and > 0)"


@dg.asset(**STAGE, kinds={"mlflow"})
def recommended(
    context: dg.AssetExecutionContext, specs: SpecsResource, mlflow_store: MLflowResource, augmentation_report: records.Uplift
) -> dg.MaterializeResult:
    """Runs only after the uplift gate passed: marks the export recommended in its manifest and
    moves the MLflow alias `recommended` to its model version."""
    spec = specs.get(context.partition_key)
    path, version = augmentation_report.export_path, augmentation_report.model_version
    utility = {**read_manifest(path)["utility"], "recommended": True, "recommended_at": _now()}
    annotate_export(path, "utility", utility)
    mlflow_store.client().set_registered_model_alias(model_name(spec.name), RECOMMENDED, version)
    context.log.info(f"{path} recommended; alias '{RECOMMENDED}' → v{version}")
    return dg.MaterializeResult(metadata={"path": dg.MetadataValue.path(path), "model_version": version, "share": utility["share"], "gain": utility["gain"]})


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
