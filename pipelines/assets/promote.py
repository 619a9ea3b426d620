"""Promote: the `champion` alias moves to the new version only if it beats the champion, both
measured on the same yardstick."""

import tempfile
from typing import Any, Optional

import dagster as dg

from gan_core.classifier import Judge
from gan_core.metrics import EvaluationConfig, MetricsError, evaluate

from ..registry import load_registered_generator, tag_metrics, tag_yardstick
from ..resources import MLflowResource
from .common import COMPUTE_TAG, STAGE, load_split, upstream
from .evaluate import gan_evaluation
from .judge import judge_classifier
from .ingest import real_images


@dg.asset(**STAGE, deps=[gan_evaluation, judge_classifier, real_images], kinds={"mlflow"}, op_tags=COMPUTE_TAG)
def champion_model(context: dg.AssetExecutionContext, mlflow_store: MLflowResource) -> dg.MaterializeResult:
    """Move the `champion` alias to the new version if it beats the current champion, both measured
    with the same yardstick (the champion is re-evaluated on the new one when they differ)."""
    evaluation = upstream(context, "gan_evaluation")
    name, version = evaluation["model_name"], str(evaluation["model_version"])
    metric, higher = evaluation["primary_metric"], evaluation["primary_higher_is_better"]
    yardstick = evaluation["yardstick"]
    client = mlflow_store.client()
    # The version's tag holds the figure at full precision; the metadata shows it rounded.
    new_value = float(client.get_model_version(name, version).tags[f"metric.{metric}"])
    current = client.get_registered_model(name).aliases.get("champion")  # any MLflow error propagates
    reevaluated = False
    if current is None:
        promote, reason = True, "no champion yet"
    elif str(current) == version:
        promote, reason = False, f"version {version} is already the champion"
    else:
        champion = client.get_model_version(name, str(current))
        if champion.tags.get("yardstick_id") == yardstick["id"] and f"metric.{metric}" in champion.tags:
            current_value, how = float(champion.tags[f"metric.{metric}"]), "same yardstick"
        else:
            current_value, how = _reevaluate(context, client, champion, yardstick, metric)
            reevaluated = True
        if current_value is None:
            promote, reason = False, f"not promoted: {how}"
        else:
            promote = new_value > current_value if higher else new_value < current_value
            verdict = "beats" if promote else "does not beat"
            reason = f"v{version} {metric}={new_value:.5f} {verdict} champion v{current} {metric}={current_value:.5f} ({how})"
    if promote:
        client.set_registered_model_alias(name, "champion", version)
    champion_version = version if promote else str(current)
    context.log.info(("promoted: " if promote else "kept champion: ") + reason)
    return dg.MaterializeResult(
        metadata={
            "model_name": name,
            "champion_version": champion_version,
            "candidate_version": version,
            "promoted": promote,
            "reason": reason,
            "metric": metric,
            "yardstick_id": yardstick["id"],
            "champion_reevaluated": reevaluated,
        }
    )


def _reevaluate(context: dg.AssetExecutionContext, client, champion, yardstick: dict[str, Any], metric: str) -> tuple[Optional[float], str]:
    """The champion's `metric` on this run's yardstick (its data split, judge, backbone, sample count),
    recorded on the champion's version; or None and why it cannot be measured so."""
    before = champion.tags.get("yardstick_id", "none recorded")
    train_split, holdout = load_split(upstream(context, "real_images")["snapshot"])
    judge = Judge.load(upstream(context, "judge_classifier")["judge_path"])
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
