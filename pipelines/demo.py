"""`make demo`: materialize the whole asset graph for the default spec, in-process, against the
local instance (DAGSTER_HOME=var/dagster) and MLflow store (var/mlflow.db), then say where things are."""

from __future__ import annotations

import argparse
import os
import time

import dagster as dg

from .definitions import JOB_NAME, build_definitions
from .registry import model_name


def demo_run_config(samples_per_class: int = 200, steps: int | None = None) -> dict:
    """The demo's launchpad config: a smaller export and uplift study than the spec's nightly run."""
    return {
        "ops": {
            "synthetic_dataset": {"config": {"samples_per_class": samples_per_class}},
            "augmentation_report": {"config": {"classifier_steps": 300}},
            **({"gan_model": {"config": {"steps": steps}}} if steps else {}),
        }
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spec", default="mnist-5k")
    parser.add_argument("--samples-per-class", type=int, default=200, help="exported samples per class (the spec's default is larger)")
    parser.add_argument("--steps", type=int, default=None, help="override the training steps")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    defs = build_definitions()
    job = defs.resolve_job_def(JOB_NAME)
    run_config = demo_run_config(args.samples_per_class, args.steps)
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(instance=instance, partition_key=args.spec, run_config=run_config, raise_on_error=False)
    if not result.success:
        print(f"demo run {result.run_id} failed; see the Dagster UI (make ui) or the log above")
        return 1
    metadata = {}
    for event in result.get_asset_materialization_events():
        metadata[event.asset_key.path[-1]] = {k: v.value for k, v in event.materialization.metadata.items()}
    evaluation, champion, export = metadata["gan_evaluation"], metadata["champion_model"], metadata["synthetic_dataset"]
    report = metadata["augmentation_report"]
    print()
    print(f"done in {time.perf_counter() - started:.0f} s (Dagster run {result.run_id})")
    print(f"model: MLflow model '{model_name(args.spec)}' version {metadata['gan_model']['model_version']} (run {metadata['gan_model']['mlflow_run_id']})")
    print(f"champion: version {champion['champion_version']} ({champion['reason']})")
    backbone = evaluation["backbone"]
    figures = [("label accuracy", "label_accuracy", 4), ("coverage", f"coverage_{backbone}", 3), ("recall", f"recall_{backbone}", 3)]
    figures.append((evaluation["primary_metric"], evaluation["primary_metric"], 3))
    # Diversity beside fidelity: classifiable samples that cover little of the real data do not augment.
    print("; ".join(f"{label} {evaluation[key]:.{digits}f} (real vs real {evaluation[key + '_baseline']:.{digits}f})" for label, key, digits in figures))
    print(f"export: {export['path']} ({export['rows']} rows)")
    print(
        f"uplift: real only {report['uplift_real_only']:.4f}, real+synthetic {report['uplift_real_plus_synthetic']:.4f}, synthetic only {report['uplift_synthetic_only']:.4f}"
    )
    print(f"storage root: {os.path.abspath(os.environ.get('GANPIPE_HOME', 'var'))}")
    print("UIs: `make ui` starts Dagster on http://127.0.0.1:3000 and MLflow on http://127.0.0.1:5000")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
