"""Promote: the `champion` alias moves to the new version only if it beats the champion, both
measured on the same yardstick."""

import tempfile
from typing import Any, Optional

import dagster as dg

from gan_core.classifier import Judge
from gan_core.metrics import EvaluationConfig, MetricsError, evaluate

from ...registry import load_registered_generator, tag_metrics, tag_yardstick
from ... import records
from ...resources import MLflowResource, SpecsResource
from .common import COMPUTE_TAG, STAGE, load_split, spec_of


@dg.asset(**STAGE, kinds={"mlflow"}, op_tags=COMPUTE_TAG)
def champion_model(
    context: dg.AssetExecutionContext,
    specs: SpecsResource,
    mlflow_store: MLflowResource,
    real_images: records.Snapshot,
    judge_classifier: records.Judge,
    gan_evaluation: records.Evaluation,
) -> dg.Output[records.Champion]:
    """Move the `champion` alias to the new version if it beats the current champion, both measured
    with the same yardstick (the champion is re-evaluated on the new one when they differ)."""
    spec_of(specs, context, real_images, judge_classifier)
    evaluation = gan_evaluation
    name, version, metric = evaluation.model_name, evaluation.model_version, evaluation.primary_metric
    yardstick = evaluation.yardstick
    client = mlflow_store.client()
    current = client.get_registered_model(name).aliases.get("champion")  # any MLflow error propagates
    champion_value, how, reevaluated = None, "", False
    if current is not None and str(current) != version:
        champion = client.get_model_version(name, str(current))
        if champion.tags.get("yardstick_id") == yardstick["id"] and f"metric.{metric}" in champion.tags:
            champion_value, how = float(champion.tags[f"metric.{metric}"]), "same yardstick"
        else:
            champion_value, how = _reevaluate(context, client, champion, real_images, judge_classifier, yardstick, metric)
            reevaluated = True
    promote, reason = decide_promotion(
        version, evaluation.metrics[metric], metric, evaluation.primary_higher_is_better, None if current is None else str(current), champion_value, how
    )
    if promote:
        client.set_registered_model_alias(name, "champion", version)
    champion_version = version if promote else str(current)
    context.log.info(("promoted: " if promote else "kept champion: ") + reason)
    record = records.Champion(model_name=name, champion_version=champion_version, candidate_version=version, promoted=promote, reason=reason)
    return dg.Output(
        record,
        metadata={
            "model_name": name,
            "champion_version": champion_version,
            "candidate_version": version,
            "promoted": promote,
            "reason": reason,
            "metric": metric,
            "yardstick_id": yardstick["id"],
            "champion_reevaluated": reevaluated,
        },
    )


def decide_promotion(
    candidate: str, value: float, metric: str, higher_is_better: bool, champion: Optional[str], champion_value: Optional[float], how: str
) -> tuple[bool, str]:
    """Whether candidate version `candidate`, at `value` of `metric`, takes the `champion` alias
    from version `champion` (None: there is none), whose figure on the same yardstick is
    `champion_value` (None: it could not be measured so, for the reason `how`). Returns (promote, why)."""
    if champion is None:
        return True, "no champion yet"
    if champion == candidate:
        return False, f"version {candidate} is already the champion"
    if champion_value is None:
        return False, f"not promoted: {how}"
    promote = value > champion_value if higher_is_better else value < champion_value
    verdict = "beats" if promote else "does not beat"
    return promote, f"v{candidate} {metric}={value:.5f} {verdict} champion v{champion} {metric}={champion_value:.5f} ({how})"


def _reevaluate(
    context: dg.AssetExecutionContext, client, champion, snapshot: records.Snapshot, judge_record: records.Judge, yardstick: dict[str, Any], metric: str
) -> tuple[Optional[float], str]:
    """The champion's `metric` on this run's yardstick (its data split, judge, backbone, sample count),
    recorded on the champion's version; or None and why it cannot be measured so."""
    before = champion.tags.get("yardstick_id", "none recorded")
    train_split, holdout = load_split(snapshot.path)
    judge = Judge.load(judge_record.path)
    generator = load_registered_generator(champion.name, str(champion.version))
    with tempfile.TemporaryDirectory() as scratch:
        try:
            report = evaluate(
                generator,
                train_split,
                holdout,
                judge,
                scratch,
                EvaluationConfig(n_samples=yardstick["n_samples"], backbone=yardstick["backbone"], seed=yardstick["seed"]),
            )
        except MetricsError as error:
            return None, f"champion v{champion.version} could not be re-evaluated on yardstick {yardstick['id']}: {error}"
    if report.yardstick["id"] != yardstick["id"] or metric not in report.metrics:
        return None, f"champion v{champion.version} re-evaluated on yardstick {report.yardstick['id']}, not this run's {yardstick['id']}, or without {metric}"
    tag_metrics(client, champion.name, champion.version, report.metrics)
    tag_yardstick(client, champion.name, champion.version, report.yardstick)
    old = champion.tags.get(f"metric.{metric}")
    context.log.info(f"champion v{champion.version} re-evaluated on yardstick {yardstick['id']} (was {before}): {metric} {old} → {report.metrics[metric]:.5f}")
    return report.metrics[metric], f"champion re-evaluated on this run's yardstick {yardstick['id']}; its own was {before}, where {metric} was {old}"
