"""The asset graph, one partition per spec, one module per stage. Assets stay thin: read the spec
and upstream references, call gan_core, log to MLflow, return metadata. Heavy objects travel as
files; an asset finds its inputs through the metadata of the upstream materialization of the same
partition (`common.upstream`), and its `deps` name them."""

from .evaluate import gan_evaluation
from .export import synthetic_dataset
from .ingest import real_images
from .judge import judge_classifier
from .promote import champion_model
from .report import augmentation_report, recommended
from .train import gan_model

ALL_ASSETS = [real_images, judge_classifier, gan_model, gan_evaluation, champion_model, synthetic_dataset, augmentation_report, recommended]

__all__ = [
    "ALL_ASSETS",
    "augmentation_report",
    "champion_model",
    "gan_evaluation",
    "gan_model",
    "judge_classifier",
    "real_images",
    "recommended",
    "synthetic_dataset",
]
