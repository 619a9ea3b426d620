"""Evaluate: the judge (label fidelity and the domain backbone) and the generator's figures, each
beside its real-vs-real baseline, recorded on the model version with the yardstick they were
measured on. The quality gate is a blocking check (`checks.py`)."""

from pathlib import Path
from typing import Optional

import dagster as dg

from gan_core.checkpoint import load_generator
from gan_core.classifier import Judge
from gan_core.metrics import EvaluationConfig, evaluate, too_small

from ... import records
from ...lineage import log_data_input
from ...registry import tag_metrics, tag_yardstick
from ...resources import MLflowResource, SpecsResource
from ...specs import primary_metric
from .common import COMPUTE_TAG, STAGE, load_split, picture, spec_of


class GanEvaluationConfig(dg.Config):
    n_samples: Optional[int] = None


@dg.asset(**STAGE, kinds={"pytorch", "mlflow"}, op_tags=COMPUTE_TAG)
def gan_evaluation(
    context: dg.AssetExecutionContext,
    config: GanEvaluationConfig,
    specs: SpecsResource,
    mlflow_store: MLflowResource,
    real_images: records.Snapshot,
    judge_classifier: records.Judge,
    gan_model: records.ModelVersion,
) -> dg.Output[records.Evaluation]:
    """FID/KID/IS, precision/recall, label fidelity and memorization, each beside its real-vs-real baseline."""
    import mlflow

    spec = spec_of(specs, context, real_images, judge_classifier, gan_model)
    model = gan_model
    judge = Judge.load(judge_classifier.path)
    train_split, holdout = load_split(real_images.path)
    generator, _ = load_generator(model.generator_path)
    out_dir = Path(model.generator_path).parent / "evaluation"
    report = evaluate(
        generator,
        train_split,
        holdout,
        judge,
        out_dir,
        EvaluationConfig(n_samples=config.n_samples or spec.evaluation.n_samples, backbone=spec.evaluation.backbone),
    )
    context.log.info(f"backbone {report.backbone}: {report.backbone_reason}")
    metric, higher_is_better = primary_metric(spec, report.backbone)
    if metric not in report.metrics:
        raise dg.Failure(f"{spec.path}: field 'evaluation.primary_metric': '{metric}' is not one of {sorted(report.metrics)}")

    with mlflow.start_run(run_id=model.mlflow_run_id):
        log_data_input(spec, holdout, "holdout", context.run.run_id)
        mlflow.log_metrics(report.metrics)
        mlflow.log_artifacts(str(out_dir), "evaluation")
    client = mlflow_store.client()
    tag_metrics(client, model.model_name, model.model_version, report.metrics)
    tag_yardstick(client, model.model_name, model.model_version, report.yardstick)
    key_figures = {k: round(v, 5) for k, v in report.metrics.items() if not k.endswith("_std")}
    reasons = [reason for name in report.metrics if not name.endswith(("_std", "_baseline")) and (reason := too_small(name, report.n_compare))]
    for reason in reasons:
        context.log.warning(f"{reason}: reported, not gated on")
    record = records.Evaluation(
        model_name=model.model_name,
        model_version=model.model_version,
        metrics=dict(report.metrics),
        backbone=report.backbone,
        primary_metric=metric,
        primary_higher_is_better=higher_is_better,
        n_compare=report.n_compare,
        yardstick=dict(report.yardstick),
        judge_holdout_accuracy=judge_classifier.holdout_accuracy,
    )
    return dg.Output(
        record,
        metadata={
            **key_figures,
            "n_compare": report.n_compare,
            "holdout_images": len(holdout),
            "judge_holdout_accuracy": round(judge_classifier.holdout_accuracy, 5),  # label accuracy and the domain figures rest on the judge
            **({"too_small_to_gate": "; ".join(reasons)} if reasons else {}),
            "backbone": report.backbone,
            "backbone_reason": report.backbone_reason,
            "primary_metric": metric,
            "primary_higher_is_better": higher_is_better,
            "yardstick_id": report.yardstick["id"],
            "yardstick": dg.MetadataValue.json(report.yardstick),
            "model_name": model.model_name,
            "model_version": model.model_version,
            "mlflow_run_id": model.mlflow_run_id,
            "mlflow_run": dg.MetadataValue.url(model.mlflow_run),
            "report": dg.MetadataValue.path(report.files["markdown"]),
            "label_accuracy_per_class": dg.MetadataValue.json(report.label_accuracy_per_class),
            "samples": picture(Path(report.files["samples"]), rows=train_split.class_names),
        },
    )
