"""Train: the conditional GAN, in this step's process or as torchrun ranks launched through Dagster
Pipes, logged to MLflow and registered as a new model version. The training itself is gan_core's."""

import dataclasses
import json
import sys
from pathlib import Path
from typing import Optional

import dagster as dg
import numpy as np

from gan_core.checkpoint import load_generator
from gan_core.classifier import Judge
from gan_core.data import UNLABELLED, ImageData, save_npz
from gan_core.semi import pseudo_labelled
from gan_core.sample import class_grid, save_grid
from gan_core.train import Progress, TrainConfig, TrainResult, train

from ... import records
from ...lineage import log_data_input
from ...registry import data_summary, log_generator, model_description, model_name
from ...resources import ComputeResource, MLflowResource, SpecsResource, StorageResource
from ...specs import Spec
from .common import COMPUTE_TAG, K8S_GPU_TAGS, STAGE, load_pool, load_split, picture, spec_of


class GanModelConfig(dg.Config):
    """Launchpad overrides of the spec's training settings."""

    steps: Optional[int] = None
    batch_size: Optional[int] = None
    lr_g: Optional[float] = None  # Adam learning rates of the generator and discriminator
    lr_d: Optional[float] = None


@dg.asset(**STAGE, pool="gpu", kinds={"pytorch", "mlflow"}, op_tags={**K8S_GPU_TAGS, **COMPUTE_TAG})
def gan_model(
    context: dg.AssetExecutionContext,
    config: GanModelConfig,
    specs: SpecsResource,
    storage: StorageResource,
    mlflow_store: MLflowResource,
    compute: ComputeResource,
    real_images: records.Snapshot,
    judge_classifier: Optional[records.Judge],  # needed only for a pool: its pseudo-labels
) -> dg.Output[records.ModelVersion]:
    """Train the conditional GAN on the labelled train split plus the unlabelled images the judge is
    sure of, under its pseudo-labels (resuming an interrupted run); log it to MLflow and register a version."""
    import mlflow

    spec = spec_of(specs, context, real_images, judge_classifier)
    experiment_id = mlflow_store.writable_experiment(spec.name)  # fail fast, before any training
    train_split, _ = load_split(real_images.path)
    pool = load_pool(real_images.path)
    gan_data, guesses = _with_pseudo_labelled_pool(context, spec, train_split, pool, judge_classifier)
    launchpad = {"steps": config.steps, "batch_size": config.batch_size, "lr_g": config.lr_g, "lr_d": config.lr_d}
    overrides = {k: v for k, v in launchpad.items() if v is not None}
    train_config = spec.training.train_config(device=compute.device, precision=compute.precision, **overrides)
    tags = {"dagster.run_id": context.run.run_id, "dagster.asset": "gan_model", "dagster.partition": spec.name, "data_hash": real_images.content_hash}
    with storage.lock(spec.name, f"Dagster run {context.run.run_id}"):
        pending = storage.runs_dir(spec.name) / "pending"  # the version-to-be; a killed run resumes here
        with mlflow.start_run(experiment_id=experiment_id, tags=tags, log_system_metrics=True) as run:  # CPU, memory, GPU when there is one
            mlflow.log_params({f"train.{k}": v for k, v in dataclasses.asdict(train_config).items()})
            log_data_input(spec, train_split, "training", context.run.run_id)
            if len(pool):
                log_data_input(spec, ImageData(pool, np.zeros(len(pool), np.int64), [UNLABELLED]), "unlabelled", context.run.run_id)
            mlflow.log_dict(spec.model_dump(mode="json"), "spec.json")
            if guesses is not None:
                mlflow.log_params({f"unlabelled.{k}": v for k, v in guesses.summary().items()})
            if compute.num_processes > 1:
                data_file = save_npz(gan_data, pending / "gan_data.npz")  # what the ranks read
                result = _train_with_pipes(context, data_file, train_config, pending, compute.num_processes, mlflow_store.environment)
            else:
                result = _train_in_process(context, gan_data, train_config, pending)
            if result.not_resumed:
                context.log.warning(f"did not resume: {result.not_resumed}")
            if result.resumed_from:
                context.log.info(f"resumed from step {result.resumed_from}")
            save_grid(class_grid(result.generator), pending / "samples.png", columns=10)
            mlflow.log_artifact(str(pending / "samples.png"))
            mlflow.log_metrics({"train_wall_s": result.wall_s, "train_images_per_s": result.images_per_s})
            version = log_generator(result.generator, spec)
        final_dir = storage.runs_dir(spec.name) / run.info.run_id
        pending.rename(final_dir)
    record = records.ModelVersion(
        model_name=model_name(spec.name),
        model_version=str(version),
        mlflow_run_id=run.info.run_id,
        mlflow_run=mlflow_store.run_link(experiment_id, run.info.run_id),
        generator_path=str(final_dir / "generator.safetensors"),
        snapshot=real_images.content_hash,
    )
    _describe_version(mlflow_store, spec, real_images, judge_classifier, train_split.class_names, result, record, context.run.run_id)
    return dg.Output(
        record,
        metadata={
            "mlflow_run_id": run.info.run_id,
            "mlflow_run": dg.MetadataValue.url(mlflow_store.run_link(experiment_id, run.info.run_id)),
            "model_name": model_name(spec.name),
            "model_version": version,
            "generator_path": dg.MetadataValue.path(str(final_dir / "generator.safetensors")),
            "steps": result.steps,
            "training_images": len(gan_data),
            "pseudo_labelled_images": len(guesses.data) if guesses is not None else 0,
            **({"teacher": judge_classifier.usefulness} if judge_classifier is not None else {}),
            "resumed_from_step": result.resumed_from,
            "images_per_s": round(result.images_per_s, 1),
            "wall_s": round(result.wall_s, 1),
            **({"d_loss": round(result.history[-1].d_loss, 4), "g_loss": round(result.history[-1].g_loss, 4)} if result.history else {}),
            "processes": result.processes,
            "sample_grid": picture(final_dir / "samples.png", rows=train_split.class_names),
        },
    )


def _with_pseudo_labelled_pool(context: dg.AssetExecutionContext, spec: Spec, train_split: ImageData, pool, judge: Optional[records.Judge]):
    """The labelled images plus the pool images the judge is sure of, under its labels; and its guesses (None without a pool)."""
    if not len(pool):
        return train_split, None
    if judge is None:
        raise dg.Failure(
            f"spec '{spec.name}' has {len(pool)} unlabelled images: gan_model needs judge_classifier's pseudo-labels; materialize judge_classifier first"
        )
    if not judge.useful:
        context.log.warning(f"the {len(pool)} unlabelled images are not used: {judge.usefulness}")
        return train_split, None
    guesses = pseudo_labelled(Judge.load(judge.path), pool, spec.pseudo_label_confidence)
    context.log.info(
        f"{len(guesses.data)} of {len(pool)} unlabelled images pseudo-labelled at ≥{spec.pseudo_label_confidence} join {len(train_split)} labelled ones"
    )
    return train_split.concat(guesses.data), guesses


def log_progress(progress: Progress, context: Optional[dg.AssetExecutionContext] = None) -> None:
    """To the active MLflow run, and to the Dagster log when a context is given."""
    import mlflow

    mlflow.log_metrics(
        {"d_loss": progress.d_loss, "g_loss": progress.g_loss, "images_per_s": progress.images_per_s, "augment_p": progress.augment_p}, step=progress.step
    )
    if context is not None:
        context.log.info(progress.line())


def _train_in_process(context: dg.AssetExecutionContext, train_split: ImageData, train_config: TrainConfig, pending: Path) -> TrainResult:
    # A pending run for other data or settings is stale: train afresh over it.
    return train(train_split, train_config, pending, resume="if-compatible", callback=lambda progress: log_progress(progress, context))


def _train_with_pipes(
    context: dg.AssetExecutionContext, data_file: Path, train_config: TrainConfig, pending: Path, processes: int, mlflow_environment: dict[str, str]
) -> TrainResult:
    """torchrun with `processes` ranks, launched through Dagster Pipes: rank 0's logs stream into
    this run; its progress messages are logged to MLflow here once training ends."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        "-m",
        "pipelines.train_worker",
        "--data",
        str(data_file),
        "--run-dir",
        str(pending),
        "--config",
        json.dumps(dataclasses.asdict(train_config)),
        "--resume",
        "if-compatible",
    ]
    invocation = dg.PipesSubprocessClient(env=mlflow_environment).run(command=command, context=context)
    messages = list(invocation.get_custom_messages())  # the payloads rank 0 reported, in order
    history = [Progress(**payload["progress"]) for payload in messages if "progress" in payload]
    for progress in history:
        log_progress(progress)
    summary = next(payload["result"] for payload in reversed(messages) if "result" in payload)
    generator, _ = load_generator(summary["generator_path"])
    return TrainResult(
        generator=generator,
        model_config=generator.config,
        config=train_config,
        steps=summary["steps"],
        resumed_from=summary["resumed_from"],
        wall_s=summary["wall_s"],
        images_per_s=summary["images_per_s"],
        augment_p=summary["augment_p"],
        generator_path=Path(summary["generator_path"]),
        checkpoint=Path(summary["checkpoint"]),
        history=history,
        not_resumed=summary["not_resumed"],
        processes=summary["processes"],
    )


def _describe_version(
    mlflow_store: MLflowResource,
    spec: Spec,
    snapshot: records.Snapshot,
    judge: Optional[records.Judge],
    class_names: list[str],
    result: TrainResult,
    model: records.ModelVersion,
    dagster_run_id: str,
) -> None:
    client = mlflow_store.client()
    name, version = model.model_name, model.model_version
    client.update_registered_model(name, description=model_description(spec))
    trained = f"{data_summary(spec, snapshot.data_counts(), class_names)}; {result.steps} steps ({spec.training.profile} profile) in {result.wall_s:.0f} s"
    if judge is not None and not judge.useful:  # said wherever the version is described: its pool, filter and soft labels went unused
        trained += f"; {judge.usefulness}"
    client.update_model_version(name, version, description=f"{trained}. Not evaluated yet.")
    tags = {
        "trained": trained,
        "run_id": model.mlflow_run_id,
        "data_hash": snapshot.content_hash,
        "generator_path": model.generator_path,
        "dagster_run_id": dagster_run_id,
        "class_names": json.dumps(class_names, ensure_ascii=False),  # label index → name
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
