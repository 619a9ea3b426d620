"""The asset graph, one partition per spec. Assets stay thin: read the spec and upstream
references, call gan_core, log to MLflow, return metadata. Heavy objects travel as files; an asset
finds its inputs through the metadata of the upstream materialization of the same partition."""


import base64
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

import dagster as dg
import numpy as np
import pandas as pd

from gan_core.checkpoint import load_generator, save_generator
from gan_core.classifier import ClassifierConfig, Judge, train_classifier
from gan_core.data import ImageData, load_source, save_npz
from gan_core.export import EXPORT_SCHEMA, CopyScreen, ExportPlan, commit_export, export_exists, export_samples, export_schemas, read_export, verify_export
from gan_core.metrics import MetricsError, augmentation_uplift, evaluate, near_copy_threshold, nearest_distances, resolve_metric
from gan_core.sample import class_grid, save_grid
from gan_core.train import Progress, train

from .resources import ComputeResource, MLflowResource, SpecsResource, StorageResource
from .specs import Spec, primary_metric

MODEL_CODE = str(Path(__file__).with_name("mlflow_model.py"))
# What the k8s executor (dagster-k8s) reads to give the training step's pod a GPU; other executors
# ignore it. Override per deployment with the executor's own step config (see deploy/k8s/).
K8S_GPU_TAGS = {
    "dagster-k8s/config": {
        "container_config": {"resources": {"requests": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}, "limits": {"memory": "32Gi", "nvidia.com/gpu": "1"}}},
        "pod_spec_config": {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
    }
}
GROUP = "ganpipe"
# Steps that keep every core busy with torch; the default executor runs one of them at a time.
COMPUTE_TAG = {"ganpipe/compute": "heavy"}


class GanModelConfig(dg.Config):
    """Launchpad overrides of the spec's training settings."""

    steps: Optional[int] = None
    batch_size: Optional[int] = None


class EvaluationConfig(dg.Config):
    n_samples: Optional[int] = None


class ExportConfig(dg.Config):
    samples_per_class: Optional[int] = None


class AugmentationReportConfig(dg.Config):
    classifier_steps: int = 600  # the same optimizer steps for every training set
    seeds: Optional[int] = None  # default: the spec's evaluation.uplift_seeds


def model_name(spec: str) -> str:
    return f"gan-{spec}"


def _upstream(context: dg.AssetExecutionContext, asset: str) -> dict[str, Any]:
    """Metadata of the latest materialization of `asset` for this partition."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[context.partition_key]), limit=1
    ).records
    if not records:
        raise dg.Failure(f"asset '{asset}' has no materialization for partition '{context.partition_key}'; materialize it first")
    metadata = records[0].asset_materialization.metadata
    return {key: value.value for key, value in metadata.items()}


def _picture(path: Path) -> dg.MetadataValue:
    encoded = base64.b64encode(path.read_bytes()).decode()
    return dg.MetadataValue.md(f"![{path.stem}](data:image/png;base64,{encoded})")


def _load_split(snapshot: str) -> tuple[ImageData, ImageData]:
    return (
        load_source({"kind": "npz", "path": str(Path(snapshot) / "train.npz")}),
        load_source({"kind": "npz", "path": str(Path(snapshot) / "holdout.npz")}),
    )


def build_assets(partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    @dg.asset(partitions_def=partitions, group_name=GROUP, kinds={"numpy"})
    def real_images(context: dg.AssetExecutionContext, specs: SpecsResource, storage: StorageResource) -> dg.MaterializeResult:
        """Load, validate and normalise the spec's real images; split train/holdout; snapshot them."""
        spec = specs.get(context.partition_key)
        data = load_source(
            spec.source.loader_args(),
            size=spec.image.size,
            channels=spec.image.channels,
            fit=spec.image.fit,
            skip_bad=spec.source.skip_bad,
            base_dir=spec.base_dir,
        )
        train_split, holdout = data.split(spec.holdout_fraction, seed=spec.seed)
        digest = data.content_hash()
        snapshot = storage.data_dir(spec.name) / digest[:16]
        if not (snapshot / "holdout.npz").exists():
            save_npz(train_split, snapshot / "train.npz")
            save_npz(holdout, snapshot / "holdout.npz")
        rows = min(data.num_classes, 10)
        picks = np.concatenate([np.flatnonzero(data.labels == c)[:10] for c in range(rows)])
        save_grid(data.images[picks], snapshot / "real.png", columns=10)
        for path, reason in data.skipped:
            context.log.warning(f"skipped {path}: {reason}")
        return dg.MaterializeResult(
            metadata={
                "snapshot": dg.MetadataValue.path(str(snapshot)),
                "content_hash": digest,
                "images": len(data),
                "train_images": len(train_split),
                "holdout_images": len(holdout),
                "image_size": f"{spec.image.size}x{spec.image.size}x{spec.image.channels}",
                "class_counts": dg.MetadataValue.json(data.class_counts()),
                "skipped_files": len(data.skipped),
                "sample_grid": _picture(snapshot / "real.png"),
            }
        )

    @dg.asset(partitions_def=partitions, group_name=GROUP, deps=[real_images], kinds={"pytorch"}, op_tags=COMPUTE_TAG)
    def judge_classifier(context: dg.AssetExecutionContext, compute: ComputeResource) -> dg.MaterializeResult:
        """A small CNN trained on the real train split: judge of label fidelity, domain feature extractor."""
        snapshot = _upstream(context, "real_images")["snapshot"]
        train_split, holdout = _load_split(snapshot)
        judge = train_classifier(train_split, ClassifierConfig(device=compute.device))
        path = judge.save(Path(snapshot) / "judge.safetensors")
        accuracy = judge.accuracy(holdout)
        context.log.info(f"judge holdout accuracy {accuracy:.4f}")
        return dg.MaterializeResult(metadata={"judge_path": dg.MetadataValue.path(str(path)), "holdout_accuracy": accuracy})

    @dg.asset(partitions_def=partitions, group_name=GROUP, deps=[real_images], pool="gpu", kinds={"pytorch", "mlflow"}, op_tags={**K8S_GPU_TAGS, **COMPUTE_TAG})
    def gan_model(
        context: dg.AssetExecutionContext,
        config: GanModelConfig,
        specs: SpecsResource,
        storage: StorageResource,
        mlflow_store: MLflowResource,
        compute: ComputeResource,
    ) -> dg.MaterializeResult:
        """Train the conditional GAN (resuming an interrupted run), log it to MLflow and register a version."""
        spec = specs.get(context.partition_key)
        experiment_id = mlflow_store.writable_experiment(spec.name)  # fail fast, before any training
        upstream = _upstream(context, "real_images")
        train_split, _ = _load_split(upstream["snapshot"])
        overrides = {k: v for k, v in {"steps": config.steps, "batch_size": config.batch_size}.items() if v is not None}
        train_config = spec.training.train_config(device=compute.device, precision=compute.precision, **overrides)
        with storage.lock(spec.name, f"Dagster run {context.run.run_id}"):
            return _train_and_register(context, spec, upstream, train_split, train_config, experiment_id, storage, mlflow_store, compute.num_processes)

    @dg.asset(
        partitions_def=partitions,
        group_name=GROUP,
        deps=[gan_model, judge_classifier, real_images],
        kinds={"pytorch", "mlflow"},
        op_tags=COMPUTE_TAG,
        check_specs=[dg.AssetCheckSpec("quality_gate", asset="gan_evaluation", blocking=True, description="the spec's evaluation.gates")],
    )
    def gan_evaluation(
        context: dg.AssetExecutionContext, config: EvaluationConfig, specs: SpecsResource, mlflow_store: MLflowResource
    ) -> dg.MaterializeResult:
        """FID/KID/IS, precision/recall, label fidelity and memorization, each beside its real-vs-real baseline."""
        import mlflow

        spec = specs.get(context.partition_key)
        model = _upstream(context, "gan_model")
        judge = Judge.load(_upstream(context, "judge_classifier")["judge_path"])
        train_split, holdout = _load_split(_upstream(context, "real_images")["snapshot"])
        generator, _ = load_generator(model["generator_path"])
        out_dir = Path(model["generator_path"]).parent / "evaluation"
        report = evaluate(generator, train_split, holdout, judge, out_dir, n_samples=config.n_samples or spec.evaluation.n_samples, backbone=spec.evaluation.backbone)
        context.log.info(f"backbone {report.backbone}: {report.backbone_reason}")
        metric, higher_is_better = primary_metric(spec, report.backbone)
        if metric not in report.metrics:
            raise dg.Failure(f"{spec.path}: field 'evaluation.primary_metric': '{metric}' is not one of {sorted(report.metrics)}")

        with mlflow.start_run(run_id=model["mlflow_run_id"]):
            mlflow.log_metrics(report.metrics)
            mlflow.log_artifacts(str(out_dir), "evaluation")
        client = mlflow_store.client()
        for key, value in report.metrics.items():
            client.set_model_version_tag(model["model_name"], model["model_version"], f"metric.{key}", repr(float(value)))

        gate_results = _gates(spec, report.metrics, report.backbone)
        passed = all(ok for ok, _ in gate_results.values())
        client.set_model_version_tag(model["model_name"], model["model_version"], "quality_gate", "passed" if passed else "failed")
        _tag_yardstick(client, model["model_name"], model["model_version"], report.yardstick)
        trained = client.get_model_version(model["model_name"], model["model_version"]).tags.get("trained", f"spec {spec.name}")
        client.update_model_version(
            model["model_name"], model["model_version"], description=_evaluated_description(trained, passed, gate_results, report.metrics, metric, report.backbone)
        )
        key_figures = {k: round(v, 5) for k, v in report.metrics.items() if not k.endswith("_std")}
        return dg.MaterializeResult(
            metadata={
                **key_figures,
                "backbone": report.backbone,
                "backbone_reason": report.backbone_reason,
                "primary_metric": metric,
                "primary_higher_is_better": higher_is_better,
                "yardstick_id": report.yardstick["id"],
                "yardstick": dg.MetadataValue.json(report.yardstick),
                "model_name": model["model_name"],
                "model_version": model["model_version"],
                "mlflow_run_id": model["mlflow_run_id"],
                "mlflow_run": dg.MetadataValue.url(model["mlflow_run"]),
                "report": dg.MetadataValue.path(report.files["markdown"]),
                "samples": _picture(Path(report.files["samples"])),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name="quality_gate",
                    passed=passed,
                    severity=dg.AssetCheckSeverity.ERROR,
                    metadata={name: f"{'ok' if ok else 'FAILED'}: {text}" for name, (ok, text) in gate_results.items()} or {"gates": "none configured"},
                )
            ],
        )

    @dg.asset(partitions_def=partitions, group_name=GROUP, deps=[gan_evaluation], kinds={"mlflow"}, op_tags=COMPUTE_TAG)
    def champion_model(context: dg.AssetExecutionContext, mlflow_store: MLflowResource) -> dg.MaterializeResult:
        """Move the `champion` alias to the new version if it beats the current champion, both measured
        with the same yardstick (the champion is re-evaluated on the new one when they differ)."""
        evaluation = _upstream(context, "gan_evaluation")
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
                "model_name": name, "champion_version": champion_version, "candidate_version": version, "promoted": promote, "reason": reason,
                "metric": metric, "yardstick_id": yardstick["id"], "champion_reevaluated": reevaluated,
            }
        )

    @dg.asset(
        partitions_def=partitions,
        group_name=GROUP,
        deps=[champion_model, real_images],
        kinds={"parquet"},
        op_tags=COMPUTE_TAG,
        check_specs=[dg.AssetCheckSpec("export_valid", asset="synthetic_dataset", description="row count, schema and readability against the manifest")],
    )
    def synthetic_dataset(
        context: dg.AssetExecutionContext,
        config: ExportConfig,
        specs: SpecsResource,
        storage: StorageResource,
        mlflow_store: MLflowResource,
        compute: ComputeResource,
    ) -> dg.MaterializeResult:
        """Export a labelled synthetic dataset from the champion to Parquet."""
        import mlflow

        spec = specs.get(context.partition_key)
        name = model_name(spec.name)
        client = mlflow_store.client()
        champion = client.get_model_version_by_alias(name, "champion")
        model = mlflow.pyfunc.load_model(f"models:/{name}@champion")  # the registry is the source of truth
        generator = model.unwrap_python_model().generator
        train_split, holdout = _load_split(_upstream(context, "real_images")["snapshot"])
        class_names = train_split.class_names
        per_class = config.samples_per_class or spec.export.samples_per_class
        plan = ExportPlan.per_class(class_names, per_class, seed=spec.export.seed, image_format=spec.export.image_format, rows_per_part=spec.export.rows_per_part)
        export_id = f"n{per_class}-s{spec.export.seed}-{spec.export.image_format}"
        destination = storage.export_destination(spec.name, str(champion.version), export_id)
        shard_pids: list[int] = []
        with storage.lock(spec.name, f"Dagster run {context.run.run_id}"):
            if export_exists(destination):
                context.log.info(f"{destination} already holds this export of v{champion.version}; verifying it")
                manifest = verify_export(destination)
            else:
                metrics = {k[len("metric."):]: float(v) for k, v in champion.tags.items() if k.startswith("metric.")}
                lineage = {"model_name": name, "model_version": str(champion.version), "run_id": champion.run_id, "metrics": metrics, "spec": spec.name}
                screen = _copy_screen(spec, train_split, holdout)
                if compute.export_processes > 1:
                    snapshot = Path(_upstream(context, "real_images")["snapshot"])
                    manifest, shard_pids = _export_in_processes(context, generator, plan, destination, lineage, storage.path, screen, snapshot, compute.export_processes)
                else:
                    result = export_samples(generator, plan, destination, lineage=lineage, root=storage.path, screen=screen)
                    manifest = result.manifest
                    context.log.info(f"exported {result.rows} rows in {result.wall_s:.1f} s to {destination}")
        copies = manifest.get("memorization") or {}
        check = _check_export(destination, plan.total)
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(destination)),
                "rows": manifest["total_rows"],
                "files": len(manifest["files"]),
                "export_processes": len(shard_pids) or 1,
                **({"shard_pids": dg.MetadataValue.json(shard_pids)} if shard_pids else {}),
                "model_version": str(champion.version),
                "counts_per_class": dg.MetadataValue.json(manifest["counts_per_class"]),
                **({"near_copy_fraction": copies["near_copy_fraction"], "exact_copies": copies["exact_copies"]} if copies else {}),
            },
            check_results=[check],
        )

    @dg.asset(partitions_def=partitions, group_name=GROUP, deps=[synthetic_dataset, real_images], kinds={"pytorch", "mlflow"}, op_tags=COMPUTE_TAG)
    def augmentation_report(
        context: dg.AssetExecutionContext, config: AugmentationReportConfig, specs: SpecsResource, mlflow_store: MLflowResource
    ) -> dg.MaterializeResult:
        """Real-only vs real+synthetic vs synthetic-only classifier accuracy on the real holdout."""
        import mlflow

        spec = specs.get(context.partition_key)
        export = _upstream(context, "synthetic_dataset")
        train_split, holdout = _load_split(_upstream(context, "real_images")["snapshot"])
        table, images = read_export(export["path"], decode=True)
        synthetic = ImageData(images, table.column("label").to_numpy().astype(np.int64), train_split.class_names)
        seeds = list(range(config.seeds or spec.evaluation.uplift_seeds))
        uplift = augmentation_uplift(train_split, holdout, synthetic, seeds, ClassifierConfig(steps=config.classifier_steps, width=16))
        figures = {
            "uplift_real_only": uplift.real_only[0],
            "uplift_real_plus_synthetic": uplift.real_plus_synthetic[0],
            "uplift_synthetic_only": uplift.synthetic_only[0],
            "uplift_gain": uplift.gain,
        }
        client = mlflow_store.client()
        version = client.get_model_version(model_name(spec.name), export["model_version"])
        with mlflow.start_run(run_id=version.run_id):
            mlflow.log_metrics(figures)
        table_md = "\n".join(
            ["| training data | holdout accuracy (mean ± std) |", "| --- | --- |"]
            + [f"| {label} | {mean:.4f} ± {std:.4f} |" for label, (mean, std) in (("real only", uplift.real_only), ("real + synthetic", uplift.real_plus_synthetic), ("synthetic only", uplift.synthetic_only))]
        )
        return dg.MaterializeResult(metadata={**{k: round(v, 5) for k, v in figures.items()}, "seeds": len(seeds), "model_version": export["model_version"], "summary": dg.MetadataValue.md(table_md)})

    return [real_images, judge_classifier, gan_model, gan_evaluation, champion_model, synthetic_dataset, augmentation_report]


@dataclasses.dataclass
class Trained:
    generator: Any
    steps: int
    resumed_from: int
    wall_s: float
    images_per_s: float
    processes: int


def _log_progress(context: Optional[dg.AssetExecutionContext], progress: Progress) -> None:
    """To the active MLflow run, and to the Dagster log when a context is given."""
    import mlflow

    mlflow.log_metrics(
        {"d_loss": progress.d_loss, "g_loss": progress.g_loss, "images_per_s": progress.images_per_s, "augment_p": progress.augment_p}, step=progress.step
    )
    if context is not None:
        context.log.info(
            f"step {progress.step}/{progress.total_steps} d_loss {progress.d_loss:.3f} g_loss {progress.g_loss:.3f} "
            f"{progress.images_per_s:.0f} images/s augment p {progress.augment_p:.2f}"
        )


def _train_in_process(context: dg.AssetExecutionContext, train_split: ImageData, train_config, pending: Path) -> Trained:
    def report(progress: Progress) -> None:
        _log_progress(context, progress)

    # A pending run for other data or settings is stale: train afresh over it.
    result = train(train_split, train_config, pending, resume="if-compatible", callback=report)
    if result.not_resumed:
        context.log.warning(f"did not resume: {result.not_resumed}")
    return Trained(result.generator, result.steps, result.resumed_from, result.wall_s, result.images_per_s, 1)


def _train_with_pipes(
    context: dg.AssetExecutionContext, snapshot: str, train_config, pending: Path, processes: int, mlflow_environment: dict[str, str]
) -> Trained:
    """torchrun with `processes` ranks, launched through Dagster Pipes: rank 0's logs stream into
    this run; its progress messages are logged to MLflow here once training ends."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", "-m", "pipelines.train_worker",
        "--data", str(Path(snapshot) / "train.npz"), "--run-dir", str(pending), "--config", json.dumps(dataclasses.asdict(train_config)), "--resume", "if-compatible",
    ]
    invocation = dg.PipesSubprocessClient(env=mlflow_environment).run(command=command, context=context)
    messages = list(invocation.get_custom_messages())  # the payloads rank 0 reported, in order
    for payload in messages:
        if "progress" in payload:
            _log_progress(None, Progress(**payload["progress"]))
    summary = next(payload["result"] for payload in reversed(messages) if "result" in payload)
    generator, _ = load_generator(pending / "generator.safetensors")
    return Trained(generator, summary["steps"], summary["resumed_from"], summary["wall_s"], summary["images_per_s"], summary["processes"])


def _train_and_register(
    context: dg.AssetExecutionContext, spec: Spec, upstream: dict[str, Any], train_split: ImageData, train_config, experiment_id: str,
    storage: StorageResource, mlflow_store: MLflowResource, processes: int,
) -> dg.MaterializeResult:
    """gan_model's work, under the spec's lock."""
    import mlflow

    pending = storage.runs_dir(spec.name) / "pending"  # the version-to-be; a killed run resumes here

    tags = {"dagster.run_id": context.run.run_id, "dagster.asset": "gan_model", "dagster.partition": spec.name, "data_hash": upstream["content_hash"]}
    with mlflow.start_run(experiment_id=experiment_id, tags=tags) as run:
        mlflow.log_params({f"train.{k}": v for k, v in dataclasses.asdict(train_config).items()})
        mlflow.log_dict(spec.model_dump(mode="json"), "spec.json")

        if processes > 1:
            result = _train_with_pipes(context, upstream["snapshot"], train_config, pending, processes, mlflow_store.environment)
        else:
            result = _train_in_process(context, train_split, train_config, pending)
        if result.resumed_from:
            context.log.info(f"resumed from step {result.resumed_from}")
        grid = pending / "samples.png"
        save_grid(class_grid(result.generator), grid, columns=10)
        mlflow.log_artifact(str(grid))
        mlflow.log_metrics({"train_wall_s": result.wall_s, "train_images_per_s": result.images_per_s})
        with tempfile.TemporaryDirectory() as scratch:
            model_dir = Path(scratch) / "generator"
            save_generator(result.generator, model_dir / "generator.safetensors", extra={"spec": spec.name})
            info = mlflow.pyfunc.log_model(
                name="generator",
                python_model=MODEL_CODE,
                artifacts={"generator": str(model_dir)},  # the weights and their JSON config
                registered_model_name=model_name(spec.name),
                pip_requirements=["torch", "safetensors", "numpy", "pandas", "pillow"],
                signature=_model_signature(),
                input_example=pd.DataFrame({"label": [0], "seed": [0]}),
            )
        version = str(info.registered_model_version)
        run_id = run.info.run_id

    final_dir = storage.runs_dir(spec.name) / run_id
    pending.rename(final_dir)
    client = mlflow_store.client()
    client.update_registered_model(model_name(spec.name), description=_model_description(spec))
    trained = f"{_data_summary(spec, upstream)}; {result.steps} steps ({spec.training.profile} profile) in {result.wall_s:.0f} s"
    client.update_model_version(model_name(spec.name), version, description=f"{trained}. Not evaluated yet.")
    for key, value in {"trained": trained, "run_id": run_id, "data_hash": upstream["content_hash"], "generator_path": str(final_dir / "generator.safetensors"), "dagster_run_id": context.run.run_id}.items():
        client.set_model_version_tag(model_name(spec.name), version, key, value)
    link = mlflow_store.run_link(experiment_id, run_id)
    return dg.MaterializeResult(
        metadata={
            "mlflow_run_id": run_id,
            "mlflow_run": dg.MetadataValue.url(link),
            "model_name": model_name(spec.name),
            "model_version": version,
            "generator_path": dg.MetadataValue.path(str(final_dir / "generator.safetensors")),
            "steps": result.steps,
            "resumed_from_step": result.resumed_from,
            "images_per_s": round(result.images_per_s, 1),
            "wall_s": round(result.wall_s, 1),
            "processes": result.processes,
            "sample_grid": _picture(final_dir / "samples.png"),
        }
    )


def _export_in_processes(
    context: dg.AssetExecutionContext, generator, plan: ExportPlan, destination: Path, lineage: dict[str, Any], root: Path, screen: CopyScreen, snapshot: Path, processes: int
) -> tuple[dict[str, Any], list[int]]:
    """One `pipelines.export_worker` process per shard (disjoint parts), then one commit here.
    Returns the manifest and the writers' pids."""
    (root / "staging").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root / "staging", prefix="export-job-") as scratch:
        generator_path = save_generator(generator, Path(scratch) / "generator.safetensors")
        job = {
            "generator": str(generator_path), "plan": plan.to_dict(), "destination": str(destination), "root": str(root), "lineage": lineage,
            "shards": processes, "threads": max(1, (os.cpu_count() or 1) // processes),
            "screen": {"train_npz": str(snapshot / "train.npz"), "threshold": screen.threshold, "max_near_copy_fraction": screen.max_near_copy_fraction},
        }
        (Path(scratch) / "job.json").write_text(json.dumps(job))
        command = [sys.executable, "-m", "pipelines.export_worker", "--job", str(Path(scratch) / "job.json")]
        workers = [subprocess.Popen([*command, "--shard", str(shard)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for shard in range(processes)]
        outputs = [worker.communicate() for worker in workers]
    failed = [(shard, err) for shard, (worker, (_, err)) in enumerate(zip(workers, outputs)) if worker.returncode != 0]
    if failed:
        shard, err = failed[0]
        raise dg.Failure(f"export shard {shard} of {processes} failed (finished parts stay in staging for a rerun): {err.strip().splitlines()[-1] if err.strip() else 'no output'}")
    reports = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    for report in reports:
        context.log.info(f"shard {report['shard']} (pid {report['pid']}) wrote parts {report['parts']}")
    return commit_export(plan, destination, root=root), [report["pid"] for report in reports]


def _copy_screen(spec: Spec, train: ImageData, holdout: ImageData) -> CopyScreen:
    """Every export is screened against the training images with the evaluation's threshold."""
    holdout_distances, _ = nearest_distances(holdout.images, train.images)
    limit = spec.evaluation.gates.limit("max", "memorization_fraction_features")
    return CopyScreen(train.images, threshold=near_copy_threshold(holdout_distances), max_near_copy_fraction=1.0 if limit is None else limit)


def _tag_yardstick(client, name: str, version: str, yardstick: dict[str, Any]) -> None:
    client.set_model_version_tag(name, version, "yardstick_id", yardstick["id"])
    client.set_model_version_tag(name, version, "yardstick", json.dumps(yardstick, sort_keys=True))


def _reevaluate(context: dg.AssetExecutionContext, client, champion, yardstick: dict[str, Any], metric: str) -> tuple[Optional[float], str]:
    """The champion's `metric` on this run's yardstick (its data split, judge, backbone, sample count),
    recorded on the champion's version; or None and why it cannot be measured so."""
    import mlflow

    before = champion.tags.get("yardstick_id", "none recorded")
    train_split, holdout = _load_split(_upstream(context, "real_images")["snapshot"])
    judge = Judge.load(_upstream(context, "judge_classifier")["judge_path"])
    generator = mlflow.pyfunc.load_model(f"models:/{champion.name}/{champion.version}").unwrap_python_model().generator
    with tempfile.TemporaryDirectory() as scratch:
        try:
            report = evaluate(generator, train_split, holdout, judge, scratch, n_samples=yardstick["n_samples"], backbone=yardstick["backbone"], seed=yardstick["seed"])
        except MetricsError as error:
            return None, f"champion v{champion.version} could not be re-evaluated on yardstick {yardstick['id']}: {error}"
    if report.yardstick["id"] != yardstick["id"] or metric not in report.metrics:
        return None, f"champion v{champion.version} re-evaluated on yardstick {report.yardstick['id']}, not this run's {yardstick['id']}, or without {metric}"
    for key, value in report.metrics.items():
        client.set_model_version_tag(champion.name, champion.version, f"metric.{key}", repr(float(value)))
    _tag_yardstick(client, champion.name, champion.version, report.yardstick)
    old = champion.tags.get(f"metric.{metric}")
    context.log.info(f"champion v{champion.version} re-evaluated on yardstick {yardstick['id']} (was {before}): {metric} {old} → {report.metrics[metric]:.5f}")
    return report.metrics[metric], f"champion re-evaluated on this run's yardstick {yardstick['id']}; its own was {before}, where {metric} was {old}"


def _model_description(spec: Spec) -> str:
    """What a person reads on the MLflow model page."""
    return (
        f"Class-conditional GAN trained by ganpipe on spec '{spec.name}' ({spec.source.kind} source, "
        f"{spec.image.size}×{spec.image.size}×{spec.image.channels} images). Each version says its data, steps, quality gate "
        "and key figures beside their real-vs-real baselines. Alias `champion`: the version that passed its gate and beat the "
        "one before; synthetic exports are made from it."
    )


def _data_summary(spec: Spec, real_images: dict[str, Any]) -> str:
    return (
        f"spec {spec.name}, data {real_images['content_hash'][:12]} "
        f"({real_images['train_images']} train / {real_images['holdout_images']} holdout images)"
    )


def _evaluated_description(trained: str, passed: bool, gates: dict[str, tuple[bool, str]], metrics: dict[str, float], primary: str, backbone: str) -> str:
    """The version's description after evaluation: how it was trained, the gate verdict and three key
    figures beside their baselines."""
    verdict = "passed" if passed else "FAILED"
    checked = "; ".join(text for _, text in gates.values()) or "no gates configured"
    figures = []
    for name in dict.fromkeys(["label_accuracy", primary, f"coverage_{backbone}"]):
        if name in metrics:
            baseline = metrics.get(f"{name}_baseline")
            figures.append(f"{name} {metrics[name]:.4g}" + ("" if baseline is None else f" (real vs real {baseline:.4g})"))
    return f"{trained}. Quality gate {verdict} ({checked}). " + ", ".join(figures) + "."


def _model_signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    ids = [ColSpec("long", "label"), ColSpec("long", "seed")]
    return ModelSignature(inputs=Schema(ids), outputs=Schema([*ids, ColSpec("binary", "image")]))


def _gates(spec: Spec, metrics: dict[str, float], backbone: str) -> dict[str, tuple[bool, str]]:
    """gate → (passed, what was compared) for each of the spec's gates."""
    results = {}
    for key, threshold in spec.evaluation.gates.root.items():
        bound, name = spec.evaluation.gates.bound(key)
        metric = resolve_metric(name, backbone)
        value = metrics[metric]
        passed = value >= threshold if bound == "min" else value <= threshold
        results[key] = (passed, f"{metric} {value:.4f} {'≥' if bound == 'min' else '≤'} {threshold}")
    return results


def _check_export(destination: str | Path, expected_rows: int) -> dg.AssetCheckResult:
    problems = []
    try:
        manifest = verify_export(destination)
        if not manifest.get("memorization"):
            problems.append("the manifest has no copy screening (memorization) figure")
        if manifest["total_rows"] != expected_rows:
            problems.append(f"manifest has {manifest['total_rows']} rows, plan has {expected_rows}")
        for name, schema in export_schemas(destination):
            if not schema.remove_metadata().equals(EXPORT_SCHEMA):
                problems.append(f"{name}: schema differs from the export schema")
        first = read_export(destination, verify=False).slice(0, 1)
        if first.num_rows != 1:
            problems.append("no readable rows")
    except Exception as error:  # noqa: BLE001 - any failure is the check's finding
        problems.append(str(error))
    return dg.AssetCheckResult(check_name="export_valid", passed=not problems, metadata={"problems": "; ".join(problems) or "none", "rows": expected_rows})

