"""Export: a labelled synthetic dataset from the champion to Parquet, screened for copies of
training images, filtered and soft-labelled by the teacher when it was shown useful. Its validity
is a check (`checks.py`)."""

from typing import Optional

import dagster as dg

from gan_core.classifier import Judge
from gan_core.export import ConfidenceFilter, CopyScreen, ExportPlan, SoftLabels, export_exists, export_in_processes, export_samples, verify_export

from ... import records
from ...registry import load_registered_generator, version_metrics
from ...resources import ComputeResource, MLflowResource, SpecsResource, StorageResource
from .common import COMPUTE_TAG, STAGE, load_split, spec_of


def _lineage(spec, champion, mlflow_store: MLflowResource, snapshot: records.Snapshot) -> dict:
    """What every row, the manifest and the dataset card say of where the export comes from."""
    run_link = mlflow_store.run_link(mlflow_store.client().get_run(champion.run_id).info.experiment_id, champion.run_id)
    return {
        "model_name": champion.name,
        "model_version": str(champion.version),
        "run_id": champion.run_id,
        "metrics": version_metrics(champion),
        "spec": spec.name,
        "license": spec.export.license,
        "mlflow_run": run_link,
        "data": snapshot.data_counts(),  # the training data's hash and counts, never its images
    }


def _teacher_at_export(context, spec, judge: records.Judge) -> tuple[Optional[ConfidenceFilter], Optional[SoftLabels]]:
    """The judge's filter (with `export.min_confidence`) and soft labels, or neither when it was not
    shown a useful teacher."""
    if not judge.useful:
        context.log.warning(f"export neither filtered nor soft-labelled: {judge.usefulness}")
        return None, None
    teacher = Judge.load(judge.path)
    confidence = ConfidenceFilter(teacher, spec.export.min_confidence, spec.export.min_acceptance) if spec.export.min_confidence > 0 else None
    return confidence, SoftLabels(teacher, judge.holdout_accuracy)


def _write(context, processes: int, generator, plan: ExportPlan, destination, options: dict) -> tuple[dict, list[int]]:
    """Write and commit the export, in this process or in `processes` shard processes; (manifest, shard pids)."""
    if processes > 1:
        manifest, shards = export_in_processes(generator, plan, destination, processes=processes, **options)
        for shard in shards:
            context.log.info(f"shard {shard['shard']} (pid {shard['pid']}) wrote parts {shard['parts']}")
        return manifest, [shard["pid"] for shard in shards]
    result = export_samples(generator, plan, destination, progress=context.log.info, **options)
    context.log.info(f"exported {result.rows} rows in {result.wall_s:.1f} s to {destination}")
    return result.manifest, []


class ExportConfig(dg.Config):
    samples_per_class: Optional[int] = None


@dg.asset(**STAGE, kinds={"parquet"}, op_tags=COMPUTE_TAG)
def synthetic_dataset(
    context: dg.AssetExecutionContext,
    config: ExportConfig,
    specs: SpecsResource,
    storage: StorageResource,
    mlflow_store: MLflowResource,
    compute: ComputeResource,
    real_images: records.Snapshot,
    judge_classifier: records.Judge,
    champion_model: records.Champion,
) -> dg.Output[records.Export]:
    """Export a labelled synthetic dataset from the champion to Parquet, screened for copies of
    training images; when the judge was shown a useful teacher, every row carries its class
    probabilities (`label_probs`) and, with `export.min_confidence`, only rows it accepts are kept."""
    spec = spec_of(specs, context, real_images, judge_classifier)
    name = champion_model.model_name
    # The version this run's promotion left as champion, resolved once: its rows, tags and weights all come from it.
    champion = mlflow_store.client().get_model_version(name, champion_model.champion_version)
    generator = load_registered_generator(name, str(champion.version))
    train_split, holdout = load_split(real_images.path)
    per_class = config.samples_per_class or spec.export.samples_per_class
    plan = ExportPlan.per_class(
        train_split.class_names, per_class, seed=spec.export.seed, image_format=spec.export.image_format, rows_per_part=spec.export.rows_per_part
    )
    confidence, soft_labels = _teacher_at_export(context, spec, judge_classifier)
    export_id = f"n{per_class}-s{spec.export.seed}-{spec.export.image_format}" + (f"-c{spec.export.min_confidence:g}" if confidence else "")
    export_id += "-soft" if soft_labels else ""  # an export of the same version made before soft labels keeps its own folder
    destination = storage.export_destination(spec.name, str(champion.version), export_id)
    shard_pids: list[int] = []
    with storage.lock(spec.name, f"Dagster run {context.run.run_id}"):
        if export_exists(destination):
            context.log.info(f"{destination} already holds this export of v{champion.version}; verifying it")
            manifest = verify_export(destination)
        else:
            lineage = _lineage(spec, champion, mlflow_store, real_images)
            screen = CopyScreen.from_split(train_split, holdout, max_near_copy_fraction=spec.export.max_near_copy_fraction)
            options = {"lineage": lineage, "root": storage.path, "screen": screen, "confidence": confidence, "soft_labels": soft_labels}
            manifest, shard_pids = _write(context, compute.export_processes, generator, plan, destination, options)
    copies = manifest.get("memorization") or {}
    accepted = manifest.get("filter") or {}
    record = records.Export(path=str(destination), model_version=str(champion.version), rows=manifest["total_rows"], planned_rows=plan.total)
    return dg.Output(
        record,
        metadata={
            "path": dg.MetadataValue.path(str(destination)),
            "rows": manifest["total_rows"],
            "planned_rows": plan.total,
            "files": len(manifest["files"]),
            "export_processes": len(shard_pids) or 1,
            **({"shard_pids": dg.MetadataValue.json(shard_pids)} if shard_pids else {}),
            "model_version": str(champion.version),
            "teacher": judge_classifier.usefulness,
            "soft_labels": bool(manifest.get("soft_labels")),
            "counts_per_class": dg.MetadataValue.json(manifest["counts_per_class"]),
            **({"near_copy_fraction": copies["near_copy_fraction"], "exact_copies": copies["exact_copies"]} if copies else {}),
            **(
                {"min_confidence": accepted["min_confidence"], "acceptance_per_class": dg.MetadataValue.json(accepted["acceptance_per_class"])}
                if accepted
                else {}
            ),
        },
    )
