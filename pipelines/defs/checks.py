"""Asset checks: the quality gate that blocks promotion and export of a generator that fails the
spec's `evaluation.gates`, the export's validity against its manifest, and the uplift gate that
keeps an export that does not help a classifier from being recommended."""

import dagster as dg

from gan_core.export import export_schema, export_schemas, read_export, verify_export
from gan_core.metrics import metric_info, resolve_metric, too_small

from .. import records
from .assets import evaluate, export, report
from ..registry import evaluated_description, model_name
from ..resources import MLflowResource, SpecsResource
from ..specs import Spec


@dg.asset_check(asset=evaluate.gan_evaluation, blocking=True, description="the spec's evaluation.gates")
def quality_gate(
    context: dg.AssetCheckExecutionContext, specs: SpecsResource, mlflow_store: MLflowResource, gan_evaluation: records.Evaluation
) -> dg.AssetCheckResult:
    """Every gate of the spec against the evaluation's figures at full precision; the verdict goes on
    the model version (tag `quality_gate`, description) as well."""
    spec = specs.get(context.partition_key)
    evaluation = gan_evaluation
    name, version, metrics = evaluation.model_name, evaluation.model_version, evaluation.metrics
    client = mlflow_store.client()
    registered = client.get_model_version(name, version)
    results = gate_results(spec, metrics, evaluation.backbone, evaluation.n_compare)
    passed = all(ok for ok, _ in results.values())
    client.set_model_version_tag(name, version, "quality_gate", "passed" if passed else "failed")
    trained = registered.tags.get("trained", f"spec {spec.name}")
    client.update_model_version(
        name, version, description=evaluated_description(trained, passed, results, metrics, evaluation.primary_metric, evaluation.backbone)
    )
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={gate: f"{'ok' if ok else 'FAILED'}: {text}" for gate, (ok, text) in results.items()} or {"gates": "none configured"},
    )


def gate_results(spec: Spec, metrics: dict[str, float], backbone: str, n_compare: int | None = None) -> dict[str, tuple[bool, str]]:
    """gate → (passed, what was compared) for each of the spec's gates on the evaluation's figures.
    A set-to-set figure measured on too few holdout images passes with the reason it was not
    gated on; `min_uplift` is the uplift gate's."""
    results = {}
    for key, threshold in spec.evaluation.gates.thresholds.items():
        bound, name = spec.evaluation.gates.bound(key)
        metric = resolve_metric(name, backbone)
        if metric_info(metric).measured_on == "uplift":
            continue
        value = metrics[metric]
        compared = f"{metric} {value:.4f} {'≥' if bound == 'min' else '≤'} {threshold}"
        unreliable = too_small(metric, n_compare) if n_compare is not None else None
        if unreliable:
            results[key] = (True, f"not gated: {unreliable} (measured {compared})")
            continue
        passed = value >= threshold if bound == "min" else value <= threshold
        results[key] = (passed, compared)
    return results


@dg.asset_check(asset=export.synthetic_dataset, description="row count, schema and readability against the manifest")
def export_valid(context: dg.AssetCheckExecutionContext, synthetic_dataset: records.Export) -> dg.AssetCheckResult:
    destination, expected_rows = synthetic_dataset.path, synthetic_dataset.planned_rows
    problems = []
    try:
        manifest = verify_export(destination)
        if not manifest.get("memorization"):
            problems.append("the manifest has no copy screening (memorization) figure")
        if manifest["total_rows"] != expected_rows:
            problems.append(f"manifest has {manifest['total_rows']} rows, plan has {expected_rows}")
        expected = export_schema(len(manifest["class_names"]) if manifest.get("soft_labels") else None)
        for file, schema in export_schemas(destination):
            if not schema.remove_metadata().equals(expected):
                problems.append(f"{file}: schema differs from the export schema")
        if read_export(destination, verify=False).slice(0, 1).num_rows != 1:
            problems.append("no readable rows")
    except Exception as error:  # noqa: BLE001 - any failure is the check's finding
        problems.append(str(error))
    return dg.AssetCheckResult(passed=not problems, metadata={"problems": "; ".join(problems) or "none", "rows": expected_rows})


@dg.asset_check(
    asset=report.augmentation_report,
    description="do no harm: the recommended recipe beats the best arm without synthetic data by gates.min_uplift, with a 95% interval above 0",
)
def uplift_gate(
    context: dg.AssetCheckExecutionContext, specs: SpecsResource, mlflow_store: MLflowResource, augmentation_report: records.Uplift
) -> dg.AssetCheckResult:
    """Records the verdict `augmentation_report` took at full precision (the manifest holds it too):
    the recommended recipe's gain over the best arm without synthetic data (ssl when there is a pool,
    real only otherwise or with `gates.uplift_baseline: real`) must exceed `gates.min_uplift`
    (default 0) with the lower bound of its 95% interval above 0. A failure is a finding, not a
    crash: the check fails (severity ERROR) without failing the run, and `recommended`, which reads
    the same verdict, marks nothing and moves no alias."""
    spec = specs.get(context.partition_key)
    report = augmentation_report
    mlflow_store.client().set_model_version_tag(model_name(spec.name), report.model_version, "uplift_gate", "passed" if report.passed else "failed")
    return dg.AssetCheckResult(
        passed=report.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "verdict": report.verdict,
            "recipe": report.recipe,
            "baseline": report.baseline,
            "min_uplift": report.min_uplift,
            "gain": report.figures["uplift_gain"],
            "gain_ci_low": report.figures["uplift_gain_ci_low"],
            "gain_over_real": report.figures["uplift_gain_over_real"],
            "best_share": report.figures["uplift_best_share"],
            "export_path": dg.MetadataValue.path(report.export_path),
        },
    )
