"""The judge: a small CNN on the real train split that, when there is an unlabelled pool, learns
from it too (the spec's `teacher`: self-training or weak/strong consistency). It judges label
fidelity, pseudo-labels the pool for the GAN, filters and soft-labels the export and is the domain
feature extractor. It never sees the holdout, which only scores it and
says whether it may teach at all (`check_teacher`)."""

from pathlib import Path
from typing import Optional

import dagster as dg

from gan_core.classifier import ClassifierConfig, classifier_steps
from gan_core.consistency import ConsistencyConfig
from gan_core.semi import check_teacher, train_teacher

from ...resources import ComputeResource, SpecsResource
from ... import records
from .common import COMPUTE_TAG, STAGE, load_pool, load_split, spec_of


class JudgeClassifierConfig(dg.Config):
    """Launchpad overrides of the teacher's optimizer steps (a shorter run, e.g. the demo's)."""

    steps: Optional[int] = None  # supervised steps on the labelled split (default: 12 epochs, at least 600)
    consistency_steps: Optional[int] = None  # then weak/strong consistency on the pool (default: ConsistencyConfig's)


@dg.asset(**STAGE, kinds={"pytorch"}, op_tags=COMPUTE_TAG)
def judge_classifier(
    context: dg.AssetExecutionContext,
    config: JudgeClassifierConfig,
    specs: SpecsResource,
    compute: ComputeResource,
    real_images: records.Snapshot,
) -> dg.Output[records.Judge]:
    """A small CNN trained on the real train split (and on the unlabelled pool by the spec's teacher
    recipe when there is one): judge of label fidelity, pseudo-labeller of the pool, domain feature extractor."""
    spec = spec_of(specs, context, real_images)
    snapshot = real_images.path
    train_split, holdout = load_split(snapshot)
    pool = load_pool(snapshot)
    classifier = ClassifierConfig(device=compute.device, steps=config.steps)
    consistency = ConsistencyConfig() if config.consistency_steps is None else ConsistencyConfig(steps=config.consistency_steps)
    judge = train_teacher(spec.teacher, train_split, pool, classifier, spec.pseudo_label_confidence, consistency)
    path = judge.save(Path(snapshot) / "judge.safetensors")
    teacher = check_teacher(judge, holdout)
    trained_on = f" ({spec.teacher.replace('_', '-')} on {len(pool)} unlabelled images)" if len(pool) else ""
    if teacher.useful:
        context.log.info(f"judge{trained_on}: {teacher.reason()}")
    else:
        context.log.warning(
            f"judge{trained_on}: {teacher.reason()}; the GAN learns from the labelled images alone, the export is neither filtered nor soft-labelled"
        )
    record = records.Judge(
        path=str(path),
        snapshot=real_images.content_hash,
        holdout_accuracy=teacher.accuracy,
        holdout_images=len(holdout),
        useful=teacher.useful,
        usefulness=teacher.reason(),
    )
    return dg.Output(
        record,
        metadata={
            "judge_path": dg.MetadataValue.path(str(path)),
            "holdout_accuracy": teacher.accuracy,
            "holdout_images": len(holdout),
            "majority_class_share": teacher.majority_share,
            "teacher_p_value": teacher.p_value,
            "teacher_used": teacher.useful,
            "teacher": teacher.reason(),
            "optimizer_steps": classifier_steps(classifier, len(train_split)),  # supervised; consistency then adds its own
            "consistency_steps": consistency.steps if spec.teacher == "consistency" and len(pool) else 0,
            "teacher_recipe": spec.teacher if len(pool) else "supervised (no pool)",
            "unlabelled_images": len(pool),
        },
    )
