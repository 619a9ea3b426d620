"""`evaluate()`: one pass over a generator's samples, the metrics asked for, and the report (JSON,
markdown, a sample grid and the closest synthetic/training pairs), with the yardstick it was
measured on."""

from __future__ import annotations

import hashlib
import json
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..checkpoint import weights_digest
from ..classifier import ClassifierConfig, Judge
from ..data import ImageData
from ..models import FoldedGenerator
from ..sample import generate, image_grid, sample_seeds, save_grid
from .backbones import Backbone, DomainBackbone, make_backbone
from .distances import fid_from_features, nearest_distances
from .errors import MetricsError
from .registry import Measured, compute_metrics, default_metrics, metric_info, resolve_metric
from .uplift import augmentation_uplift


# Raise when a metric's definition changes: figures measured under different versions never compare.
# 2: pixel distances exact (float64 on uint8), copies found by content hash.
METRICS_VERSION = 2


def yardstick(train: ImageData, holdout: ImageData, judge: Judge, backbone: Backbone, n_samples: int, seed: int) -> dict[str, Any]:
    """Everything a generator's figures depend on besides the generator. Two figures compare only
    under equal yardsticks (equal `id`): other data, another judge (the domain backbone), another
    backbone, sample count or metric code make another scale."""
    fields = {
        "train": train.content_hash(),
        "holdout": holdout.content_hash(),
        "judge": weights_digest(judge.net),
        "backbone": backbone.name,
        "backbone_detail": backbone.description,
        "n_samples": int(n_samples),
        "seed": int(seed),
        "metrics_version": METRICS_VERSION,
    }
    return {**fields, "id": hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]}


@dataclass
class EvaluationReport:
    backbone: str
    backbone_reason: str
    backbone_description: str
    resize: str | None
    n_compare: int  # N of the synthetic and holdout sets compared against the train split
    n_synthetic: int
    metrics: dict[str, float]
    per_class_fid: dict[str, dict[str, float]]
    label_accuracy_per_class: dict[str, float]
    memorization: dict[str, dict[str, Any]]
    uplift: dict[str, Any] | None = None
    files: dict[str, str] = field(default_factory=dict)
    yardstick: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage and per metric

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextmanager
def _timed(timings: dict[str, float], stage: str):
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - started


@dataclass(frozen=True)
class EvaluationConfig:
    """How to evaluate: sample count, backbone, the metrics asked for (default: every one that
    applies; `known_metrics()` lists them), and the uplift study's seeds and classifier."""

    n_samples: int = 10_000
    backbone: str = "auto"
    inception_weights: str | Path | None = None
    allow_unverified_weights: bool = False
    resize: str = "antialias"
    seed: int = 0
    uplift_seeds: Sequence[int] | None = None
    uplift_classifier: ClassifierConfig | None = None
    batch_size: int = 256
    metrics: Sequence[str] | None = None
    per_class_fid: bool = True  # FID per class too, when FID is asked for


@dataclass
class _Job:
    """One evaluation: its inputs, the backbone and metrics chosen, and the seconds each stage took."""

    generator: Any
    train: ImageData
    holdout: ImageData
    judge: Judge
    config: EvaluationConfig
    net: Backbone
    backbone_reason: str
    names: list[str]  # the metrics to compute
    needs: set[str]  # what they are measured on: judge, pixels, uplift, ...
    labels: np.ndarray  # the conditioning label of every synthetic sample
    seeds: np.ndarray  # and its seed
    timings: dict[str, float] = field(default_factory=dict)
    compare: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # the samples compared at equal N
    holdout_pick: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # and the holdout images

    def timed(self, stage: str):
        return _timed(self.timings, stage)


def evaluate(
    generator, train: ImageData, holdout: ImageData, judge: Judge, out_dir: str | Path, config: EvaluationConfig = EvaluationConfig()
) -> EvaluationReport:
    """Evaluate a generator against the real train/holdout split; writes report.json, report.md,
    samples.png (one row per class) and nearest_pairs.png (with pixel memorization) into out_dir.
    Only the work the chosen metrics need is done; the report's `timings` give each stage's seconds."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if len(holdout) < 2 or config.n_samples < 2:
        raise MetricsError(f"need at least 2 holdout images and 2 samples, got {len(holdout)} and {config.n_samples}")

    # Choose the backbone and the metrics, and the samples' labels and seeds.
    job = _plan(generator, train, holdout, judge, config)
    # Generate and reduce batch by batch, then extract the real images' features: `Measured`.
    measured = _measure(job)
    # Compute each metric once from what was measured.
    figures: dict[str, float] = {}
    for name in job.names:
        with job.timed(name):
            figures.update(compute_metrics(measured, [name]))
    # The pictures, the yardstick and the report files.
    with job.timed("figures"):
        files = _save_pictures(job, measured, out)
    with job.timed("yardstick"):
        ruler = yardstick(train, holdout, judge, job.net, config.n_samples, config.seed)
    report = EvaluationReport(
        backbone=job.net.name,
        backbone_reason=job.backbone_reason,
        backbone_description=job.net.description,
        resize=config.resize if job.net.name == "inception" else None,
        n_compare=len(measured.fake_f),
        n_synthetic=len(job.labels),
        metrics=figures,
        per_class_fid=_per_class_fid(job, measured) if config.per_class_fid and f"fid_{job.net.name}" in job.names else {},
        label_accuracy_per_class=_label_accuracy_per_class(job, measured) if "judge" in job.needs else {},
        memorization=_memorization_reports(job, measured),
        uplift=None if measured.uplift is None else measured.uplift.to_dict(),
        files=files,
        yardstick=ruler,
        timings=job.timings,
    )
    files["json"], files["markdown"] = str(out / "report.json"), str(out / "report.md")
    Path(files["json"]).write_text(json.dumps(report.to_dict(), indent=2))
    Path(files["markdown"]).write_text(render_markdown(report))
    return report


def _plan(generator, train: ImageData, holdout: ImageData, judge: Judge, config: EvaluationConfig) -> _Job:
    timings: dict[str, float] = {}
    with _timed(timings, "backbone"):
        net, reason = make_backbone(
            config.backbone, judge, inception_weights=config.inception_weights, allow_unverified=config.allow_unverified_weights, resize=config.resize
        )
    tag = net.name
    uplift = bool(config.uplift_seeds)
    names = [resolve_metric(name, tag) for name in config.metrics] if config.metrics is not None else default_metrics(tag, uplift=uplift)
    needs = {metric_info(name).measured_on for name in names}
    if "uplift" in needs and not uplift:
        raise MetricsError(f"metrics {[n for n in names if metric_info(n).measured_on == 'uplift']} need the uplift study (uplift_seeds)")
    # Conditional samples in the class proportions of the train split.
    proportions = np.bincount(train.labels, minlength=train.num_classes) / len(train)
    labels = np.repeat(np.arange(train.num_classes), np.round(proportions * config.n_samples).astype(int))
    return _Job(generator, train, holdout, judge, config, net, reason, names, needs, labels, sample_seeds(config.seed, len(labels)), timings)


def _measure(job: _Job) -> Measured:
    """Features, predictions and distances of the samples (never the images themselves), the real
    images' features, equal-N comparison sets, and the uplift study when asked for."""
    config, train, holdout = job.config, job.train, job.holdout
    synthetic_f, synthetic_l, predicted, pixel_d, pixel_i = _sample_pass(job)
    with job.timed("features"):
        train_f, _ = job.net.extract(train.images, config.batch_size)
        holdout_f, holdout_l = job.net.extract(holdout.images, config.batch_size)
    # Equal N for the synthetic and the real-vs-real comparison: FID is biased at small N.
    rng = np.random.default_rng(config.seed)
    n_compare = min(len(holdout), len(job.labels))
    job.compare = np.sort(rng.choice(len(job.labels), n_compare, replace=False))
    job.holdout_pick = np.sort(rng.choice(len(holdout), n_compare, replace=False))
    judge_holdout_accuracy = float("nan")
    if "judge" in job.needs:
        with job.timed("judge"):
            judge_holdout_accuracy = job.judge.accuracy(holdout)
    holdout_pixel_d = np.empty(0)
    if "pixels" in job.needs:
        with job.timed("pixel_distances"):
            holdout_pixel_d = nearest_distances(holdout.images, train.images)[0]
    uplift = None
    if "uplift" in job.needs:
        with job.timed("uplift"):
            synthetic = ImageData(generate(job.generator, job.labels, seeds=job.seeds, batch_size=config.batch_size), job.labels, train.class_names)
            uplift = augmentation_uplift(train, holdout, synthetic, config.uplift_seeds, config.uplift_classifier)
    return Measured(
        backbone=job.net.name,
        train_f=train_f,
        fake_f=synthetic_f[job.compare],
        real_f=holdout_f[job.holdout_pick],
        fake_l=synthetic_l[job.compare],
        real_l=holdout_l[job.holdout_pick],
        synthetic_f=synthetic_f,
        holdout_f=holdout_f,
        labels=job.labels,
        predicted=predicted,
        judge_holdout_accuracy=judge_holdout_accuracy,
        pixel_d=pixel_d,
        pixel_i=pixel_i,
        holdout_pixel_d=holdout_pixel_d,
        uplift=uplift,
    )


def _sample_pass(job: _Job):
    """Generate the samples batch by batch and keep only what the metrics need: features and logits,
    the judge's labels ("judge" metrics) and nearest-training-image distances ("pixels" metrics)."""
    chunks: dict[str, list[np.ndarray]] = {"features": [], "logits": [], "predicted": [], "pixel_d": [], "pixel_i": []}
    folded = FoldedGenerator(job.generator)
    size = job.config.batch_size
    for start in range(0, len(job.labels), size):
        with job.timed("generate"):
            images = generate(folded, job.labels[start : start + size], seeds=job.seeds[start : start + size], batch_size=size)
        with job.timed("features"):
            features, logits = job.net.extract(images, size)
        chunks["features"].append(features)
        chunks["logits"].append(logits)
        if "pixels" in job.needs:
            with job.timed("pixel_distances"):
                distances, nearest = nearest_distances(images, job.train.images)
            chunks["pixel_d"].append(distances)
            chunks["pixel_i"].append(nearest)
        if "judge" in job.needs:
            with job.timed("judge"):
                # The domain backbone's logits are the judge's: no second pass over the batch.
                chunks["predicted"].append(logits.argmax(axis=1) if isinstance(job.net, DomainBackbone) else job.judge.predict(images))
    return tuple(np.concatenate(v) if v else np.empty(0) for v in chunks.values())


def _per_class_fid(job: _Job, measured: Measured) -> dict[str, dict[str, float]]:
    """FID of each class's samples and of its holdout images (the baseline) against its train images."""
    by_class = {}
    fake_labels, real_labels = job.labels[job.compare], job.holdout.labels[job.holdout_pick]
    with job.timed("per_class_fid"):
        for c, class_name in enumerate(job.train.class_names):
            fake_c, real_c, train_c = measured.fake_f[fake_labels == c], measured.real_f[real_labels == c], measured.train_f[job.train.labels == c]
            n = min(len(fake_c), len(real_c))
            if n >= 2 and len(train_c) >= 2:
                by_class[class_name] = {"value": fid_from_features(train_c, fake_c[:n]), "baseline": fid_from_features(train_c, real_c[:n]), "n": n}
    return by_class


def _label_accuracy_per_class(job: _Job, measured: Measured) -> dict[str, float]:
    labels = job.labels
    return {name: float((measured.predicted[labels == c] == c).mean()) for c, name in enumerate(job.train.class_names) if (labels == c).any()}


def _memorization_reports(job: _Job, measured: Measured) -> dict[str, dict[str, Any]]:
    reports = {}
    if "memorization_fraction_features" in job.names:
        reports["features"] = asdict(measured.memorization_features)
    if "pixels" in job.needs:
        reports["pixels"] = asdict(measured.memorization_pixels)
    return reports


def _save_pictures(job: _Job, measured: Measured, out: Path) -> dict[str, str]:
    """samples.png (10 per class, seed + 1) and, with pixel memorization, nearest_pairs.png."""
    files = {"samples": str(out / "samples.png")}
    per_row, seed = 10, job.config.seed
    grid_labels = np.repeat(np.arange(job.train.num_classes), per_row)
    save_grid(generate(job.generator, grid_labels, seed=seed + 1), files["samples"], columns=per_row)
    if "pixels" in job.needs:
        closest = measured.memorization_pixels.closest
        synthetic = np.array([i for i, _, _ in closest])  # regenerated from their own seeds
        closest_images = generate(job.generator, job.labels[synthetic], seeds=job.seeds[synthetic])
        files["nearest_pairs"] = str(out / "nearest_pairs.png")
        _save_pairs(closest_images, job.train.images[[j for _, j, _ in closest]], Path(files["nearest_pairs"]))
    return files


def _save_pairs(synthetic: np.ndarray, nearest_train: np.ndarray, path: Path) -> None:
    """Top row: the synthetic samples closest to a training image; bottom row: those images."""
    from PIL import Image

    Image.fromarray(image_grid(np.concatenate([synthetic, nearest_train]), columns=len(synthetic))).save(path)


def render_markdown(report: EvaluationReport) -> str:
    lines = [
        f"# Evaluation ({report.backbone} backbone)",
        "",
        f"Backbone: {report.backbone_description} ({report.backbone_reason}).",
        f"Synthetic samples: {report.n_synthetic}; set-to-set metrics at N = {report.n_compare} against the train split.",
        "",
        "| metric | synthetic | real holdout (baseline) |",
        "| --- | --- | --- |",
    ]
    for name, value in report.metrics.items():
        if name.endswith("_baseline") or name.endswith("_std"):
            continue
        baseline = report.metrics.get(f"{name}_baseline")
        lines.append(f"| {name} | {value:.4f} | {'' if baseline is None else f'{baseline:.4f}'} |")
    if report.uplift:
        lines += ["", "Augmentation uplift (holdout accuracy):", "", report.uplift["table"]]
    lines += ["", "![samples](samples.png)", ""]
    if "nearest_pairs" in report.files:
        lines += ["Closest synthetic/training pairs:", "", "![pairs](nearest_pairs.png)", ""]
    return "\n".join(lines)
