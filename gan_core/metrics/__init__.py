"""Evaluation of a generator: fidelity and diversity (FID/KID/IS through torchmetrics, improved
precision/recall, density/coverage), label fidelity, memorization and augmentation uplift.

Features come from a named backbone: `inception` (torch-fidelity's InceptionV3) or `domain` (the
judge's penultimate layer). Metric names carry the backbone (`fid_domain`, `kid_inception`, ...) so
numbers from different backbones never mix, and every figure has a real-vs-real baseline (train
split against holdout at the same N) beside it as `<name>_baseline`.

    backbones.py     Inception and domain feature extractors, Inception weights
    distances.py     FID, KID, IS, precision/recall/density/coverage, exact pixel distances
    memorization.py  near copies of training images
    uplift.py        classifier accuracy with and without synthetic images (and the ssl competitor)
    intervals.py     intervals of paired differences (Student's t; bootstrap over seeds and images)
    registry.py      the named metrics, their directions and what they are measured on
    report.py        evaluate(): one pass, the chosen metrics, the report and its yardstick
"""

from .backbones import (
    INCEPTION_ENV,
    INCEPTION_URL,
    Backbone,
    DomainBackbone,
    InceptionBackbone,
    make_backbone,
    resolve_inception_weights,
    write_random_inception_weights,
)
from .distances import fid_from_features, inception_score_from_logits, kid_from_features, nearest_distances, prdc
from .errors import MetricsError
from .memorization import Memorization, memorization, memorization_from_distances, near_copy_threshold
from .registry import (
    BACKBONES,
    MIN_COMPARE_N,
    Measured,
    Metric,
    compute_metrics,
    default_metrics,
    known_metrics,
    metric_info,
    register_metric,
    resolve_metric,
    too_small,
)
from .report import METRICS_VERSION, EvaluationConfig, EvaluationReport, evaluate, render_markdown, yardstick
from .intervals import paired_interval
from .uplift import (
    BASELINES as UPLIFT_BASELINES,
    LABEL_KINDS as UPLIFT_LABEL_KINDS,
    MIXES as UPLIFT_MIXES,
    UPLIFT_CLASSIFIER,
    UPLIFT_SEEDS,
    UPLIFT_SHARES,
    TeacherPool,
    Uplift,
    augmentation_uplift,
    share_arm,
    uplift_classifier,
)

__all__ = [
    "BACKBONES",
    "INCEPTION_ENV",
    "INCEPTION_URL",
    "METRICS_VERSION",
    "MIN_COMPARE_N",
    "UPLIFT_CLASSIFIER",
    "UPLIFT_LABEL_KINDS",
    "UPLIFT_MIXES",
    "UPLIFT_SEEDS",
    "UPLIFT_SHARES",
    "Backbone",
    "DomainBackbone",
    "EvaluationConfig",
    "EvaluationReport",
    "InceptionBackbone",
    "Measured",
    "Memorization",
    "Metric",
    "MetricsError",
    "Uplift",
    "augmentation_uplift",
    "TeacherPool",
    "UPLIFT_BASELINES",
    "compute_metrics",
    "default_metrics",
    "evaluate",
    "fid_from_features",
    "inception_score_from_logits",
    "kid_from_features",
    "known_metrics",
    "make_backbone",
    "memorization",
    "memorization_from_distances",
    "metric_info",
    "near_copy_threshold",
    "nearest_distances",
    "paired_interval",
    "prdc",
    "register_metric",
    "render_markdown",
    "resolve_inception_weights",
    "resolve_metric",
    "share_arm",
    "too_small",
    "uplift_classifier",
    "write_random_inception_weights",
    "yardstick",
]
