"""The asset graph, one partition per spec, one module per stage. Assets stay thin: read the spec
and their typed inputs, call gan_core, log to MLflow, return a record and metadata. An asset's
inputs are its upstream assets' records (`records.py`), which `RecordIOManager` stores per run and
loads from the run that produced them; heavy objects travel as files the records point at."""

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
