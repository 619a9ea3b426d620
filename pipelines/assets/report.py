"""Report: does a classifier trained with the exported images beat one trained without them?"""

from typing import Optional

import dagster as dg
import numpy as np

from gan_core.data import ImageData
from gan_core.export import read_export
from gan_core.metrics import augmentation_uplift, uplift_classifier

from ..registry import model_name
from ..resources import MLflowResource, SpecsResource
from .common import COMPUTE_TAG, STAGE, load_split, upstream
from .export import synthetic_dataset
from .ingest import real_images


class AugmentationReportConfig(dg.Config):
    classifier_steps: Optional[int] = None  # the same optimizer steps for every training set (default: gan_core's uplift classifier)
    seeds: Optional[int] = None  # default: the spec's evaluation.uplift_seeds


@dg.asset(**STAGE, deps=[synthetic_dataset, real_images], kinds={"pytorch", "mlflow"}, op_tags=COMPUTE_TAG)
def augmentation_report(
    context: dg.AssetExecutionContext, config: AugmentationReportConfig, specs: SpecsResource, mlflow_store: MLflowResource
) -> dg.MaterializeResult:
    """Real-only vs real+synthetic vs synthetic-only classifier accuracy on the real holdout."""
    import mlflow

    spec = specs.get(context.partition_key)
    export = upstream(context, "synthetic_dataset")
    train_split, holdout = load_split(upstream(context, "real_images")["snapshot"])
    table, images = read_export(export["path"], decode=True)
    synthetic = ImageData(images, table.column("label").to_numpy().astype(np.int64), train_split.class_names)
    seeds = list(range(config.seeds or spec.evaluation.uplift_seeds))
    uplift = augmentation_uplift(train_split, holdout, synthetic, seeds, uplift_classifier(config.classifier_steps))
    figures = {
        "uplift_real_only": uplift.real_only[0],
        "uplift_real_plus_synthetic": uplift.real_plus_synthetic[0],
        "uplift_synthetic_only": uplift.synthetic_only[0],
        "uplift_gain": uplift.gain,
        "uplift_gain_ci_low": uplift.gain_interval()[0],
        "uplift_gain_ci_high": uplift.gain_interval()[1],
    }
    version = mlflow_store.client().get_model_version(model_name(spec.name), export["model_version"])
    with mlflow.start_run(run_id=version.run_id):
        mlflow.log_metrics(figures)
    rows = (("real only", uplift.real_only), ("real + synthetic", uplift.real_plus_synthetic), ("synthetic only", uplift.synthetic_only))
    table_md = "\n".join(
        ["| training data | holdout accuracy (mean ± std) |", "| --- | --- |"] + [f"| {label} | {mean:.4f} ± {std:.4f} |" for label, (mean, std) in rows]
    )
    low, high = uplift.gain_interval()
    table_md += (
        f"\n\nGain of real + synthetic over real only: {uplift.gain:+.4f}; 95% interval over {len(seeds)} seeds, paired by seed: {low:+.4f} to {high:+.4f}."
    )
    return dg.MaterializeResult(
        metadata={
            **{k: round(v, 5) for k, v in figures.items()},
            "seeds": len(seeds),
            "model_version": export["model_version"],
            "summary": dg.MetadataValue.md(table_md),
        }
    )
