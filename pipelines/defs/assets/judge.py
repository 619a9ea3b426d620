"""The judge: a small CNN on the real train split, self-trained on the unlabelled pool when there
is one. It judges label fidelity, pseudo-labels the pool for the GAN, filters the export and is the
domain feature extractor. It never sees the holdout, which only scores it."""

from pathlib import Path

import dagster as dg

from gan_core.classifier import ClassifierConfig, classifier_steps
from gan_core.semi import self_train

from ...resources import ComputeResource, SpecsResource
from ... import records
from .common import COMPUTE_TAG, STAGE, load_pool, load_split, spec_of


@dg.asset(**STAGE, kinds={"pytorch"}, op_tags=COMPUTE_TAG)
def judge_classifier(
    context: dg.AssetExecutionContext, specs: SpecsResource, compute: ComputeResource, real_images: records.Snapshot
) -> dg.Output[records.Judge]:
    """A small CNN trained on the real train split (and self-trained on the unlabelled pool when
    there is one): judge of label fidelity, pseudo-labeller of the pool, domain feature extractor."""
    spec = spec_of(specs, context, real_images)
    snapshot = real_images.path
    train_split, holdout = load_split(snapshot)
    pool = load_pool(snapshot)
    config = ClassifierConfig(device=compute.device)
    judge = self_train(train_split, pool, config, spec.pseudo_label_confidence)
    path = judge.save(Path(snapshot) / "judge.safetensors")
    accuracy = judge.accuracy(holdout)
    context.log.info(
        f"judge holdout accuracy {accuracy:.4f} on {len(holdout)} images" + (f" (self-trained on {len(pool)} unlabelled images)" if len(pool) else "")
    )
    record = records.Judge(path=str(path), snapshot=real_images.content_hash, holdout_accuracy=accuracy, holdout_images=len(holdout))
    return dg.Output(
        record,
        metadata={
            "judge_path": dg.MetadataValue.path(str(path)),
            "holdout_accuracy": accuracy,
            "holdout_images": len(holdout),
            "optimizer_steps": classifier_steps(config, len(train_split)),
            "self_trained_on_unlabelled": len(pool),
        },
    )
