"""Asset checks: the quality gate that blocks promotion and export of a generator that fails the
spec's `evaluation.gates`, and the export's validity against its manifest."""

import dagster as dg

from gan_core.export import EXPORT_SCHEMA, export_schemas, read_export, verify_export
from gan_core.metrics import resolve_metric

from .assets.common import upstream
from .assets.evaluate import gan_evaluation
from .assets.export import synthetic_dataset
from .registry import evaluated_description, version_metrics
from .resources import MLflowResource, SpecsResource
from .specs import Spec


@dg.asset_check(asset=gan_evaluation, blocking=True, description="the spec's evaluation.gates")
def quality_gate(context: dg.AssetCheckExecutionContext, specs: SpecsResource, mlflow_store: MLflowResource) -> dg.AssetCheckResult:
    """Every gate of the spec against the version's figures at full precision; the verdict goes on
    the model version (tag `quality_gate`, description) as well."""
    spec = specs.get(context.partition_key)
    evaluation = upstream(context, "gan_evaluation")
    name, version = evaluation["model_name"], str(evaluation["model_version"])
    client = mlflow_store.client()
    registered = client.get_model_version(name, version)
    metrics = version_metrics(registered)
    results = gate_results(spec, metrics, evaluation["backbone"])
    passed = all(ok for ok, _ in results.values())
    client.set_model_version_tag(name, version, "quality_gate", "passed" if passed else "failed")
    trained = registered.tags.get("trained", f"spec {spec.name}")
    client.update_model_version(
        name, version, description=evaluated_description(trained, passed, results, metrics, evaluation["primary_metric"], evaluation["backbone"])
    )
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={gate: f"{'ok' if ok else 'FAILED'}: {text}" for gate, (ok, text) in results.items()} or {"gates": "none configured"},
    )


def gate_results(spec: Spec, metrics: dict[str, float], backbone: str) -> dict[str, tuple[bool, str]]:
    """gate → (passed, what was compared) for each of the spec's gates."""
    results = {}
    for key, threshold in spec.evaluation.gates.root.items():
        bound, name = spec.evaluation.gates.bound(key)
        metric = resolve_metric(name, backbone)
        value = metrics[metric]
        passed = value >= threshold if bound == "min" else value <= threshold
        results[key] = (passed, f"{metric} {value:.4f} {'≥' if bound == 'min' else '≤'} {threshold}")
    return results


@dg.asset_check(asset=synthetic_dataset, description="row count, schema and readability against the manifest")
def export_valid(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    export = upstream(context, "synthetic_dataset")
    destination, expected_rows = export["path"], export["planned_rows"]
    problems = []
    try:
        manifest = verify_export(destination)
        if not manifest.get("memorization"):
            problems.append("the manifest has no copy screening (memorization) figure")
        if manifest["total_rows"] != expected_rows:
            problems.append(f"manifest has {manifest['total_rows']} rows, plan has {expected_rows}")
        for file, schema in export_schemas(destination):
            if not schema.remove_metadata().equals(EXPORT_SCHEMA):
                problems.append(f"{file}: schema differs from the export schema")
        if read_export(destination, verify=False).slice(0, 1).num_rows != 1:
            problems.append("no readable rows")
    except Exception as error:  # noqa: BLE001 - any failure is the check's finding
        problems.append(str(error))
    return dg.AssetCheckResult(passed=not problems, metadata={"problems": "; ".join(problems) or "none", "rows": expected_rows})


ALL_CHECKS = [quality_gate, export_valid]
