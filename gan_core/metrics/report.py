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


def evaluate(
    generator,
    train: ImageData,
    holdout: ImageData,
    judge: Judge,
    out_dir: str | Path,
    *,
    n_samples: int = 10_000,
    backbone: str = "auto",
    inception_weights: str | Path | None = None,
    allow_unverified_weights: bool = False,
    resize: str = "antialias",
    seed: int = 0,
    uplift_seeds: Sequence[int] | None = None,
    uplift_classifier: ClassifierConfig | None = None,
    batch_size: int = 256,
    metrics: Sequence[str] | None = None,
    per_class_fid: bool = True,
) -> EvaluationReport:
    """Evaluate a generator against the real train/holdout split; writes report.json, report.md,
    samples.png (one row per class) and nearest_pairs.png (with pixel memorization) into out_dir.
    `metrics` names registered metrics (default: every one that applies; `known_metrics()` lists
    them); only the work they need is done. `per_class_fid` adds FID per class when FID is asked for.
    The report's `timings` give the seconds each stage took."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if len(holdout) < 2 or n_samples < 2:
        raise MetricsError(f"need at least 2 holdout images and 2 samples, got {len(holdout)} and {n_samples}")
    timings: dict[str, float] = {}
    with _timed(timings, "backbone"):
        net, reason = make_backbone(backbone, judge, inception_weights=inception_weights, allow_unverified=allow_unverified_weights, resize=resize)
    tag = net.name
    names = [resolve_metric(name, tag) for name in metrics] if metrics is not None else default_metrics(tag, uplift=bool(uplift_seeds))
    needs = {metric_info(name).measured_on for name in names}
    if "uplift" in needs and not uplift_seeds:
        raise MetricsError(f"metrics {[n for n in names if metric_info(n).measured_on == 'uplift']} need the uplift study (uplift_seeds)")

    # Conditional samples in class proportions of the train split, generated and reduced batch by
    # batch: only features, predictions and nearest-neighbour distances are kept, never the images.
    proportions = np.bincount(train.labels, minlength=train.num_classes) / len(train)
    labels = np.repeat(np.arange(train.num_classes), np.round(proportions * n_samples).astype(int))
    seeds = sample_seeds(seed, len(labels))
    synthetic_f, synthetic_l, predicted, pixel_d, pixel_i = _sample_pass(generator, labels, seeds, net, judge, train, needs, batch_size, timings)

    with _timed(timings, "features"):
        train_f, train_l = net.extract(train.images, batch_size)
        holdout_f, holdout_l = net.extract(holdout.images, batch_size)

    # Equal N for the synthetic and the real-vs-real comparison: FID is biased at small N.
    rng = np.random.default_rng(seed)
    n_compare = min(len(holdout), len(labels))
    compare = np.sort(rng.choice(len(labels), n_compare, replace=False))
    holdout_pick = np.sort(rng.choice(len(holdout), n_compare, replace=False))
    fake_f, fake_l, real_f, real_l = synthetic_f[compare], synthetic_l[compare], holdout_f[holdout_pick], holdout_l[holdout_pick]

    fid_by_class = {}
    if per_class_fid and f"fid_{tag}" in names:
        with _timed(timings, "per_class_fid"):
            for c, class_name in enumerate(train.class_names):
                fake_c, real_c, train_c = fake_f[labels[compare] == c], real_f[holdout.labels[holdout_pick] == c], train_f[train.labels == c]
                n = min(len(fake_c), len(real_c))
                if n >= 2 and len(train_c) >= 2:
                    fid_by_class[class_name] = {"value": fid_from_features(train_c, fake_c[:n]), "baseline": fid_from_features(train_c, real_c[:n]), "n": n}
    per_class_accuracy = {}
    if "judge" in needs:
        per_class_accuracy = {name: float((predicted[labels == c] == c).mean()) for c, name in enumerate(train.class_names) if (labels == c).any()}
        with _timed(timings, "judge"):
            judge_holdout_accuracy = judge.accuracy(holdout)
    holdout_pixel_d = np.empty(0)
    if "pixels" in needs:
        with _timed(timings, "pixel_distances"):
            holdout_pixel_d = nearest_distances(holdout.images, train.images)[0]

    uplift_result = None
    if "uplift" in needs:
        with _timed(timings, "uplift"):
            synthetic_data = ImageData(generate(generator, labels, seeds=seeds, batch_size=batch_size), labels, train.class_names)
            uplift_result = augmentation_uplift(train, holdout, synthetic_data, uplift_seeds, uplift_classifier)
    measured = Measured(
        backbone=tag,
        train_f=train_f,
        fake_f=fake_f,
        real_f=real_f,
        fake_l=fake_l,
        real_l=real_l,
        synthetic_f=synthetic_f,
        holdout_f=holdout_f,
        labels=labels,
        predicted=predicted,
        judge_holdout_accuracy=judge_holdout_accuracy if "judge" in needs else float("nan"),
        pixel_d=pixel_d,
        pixel_i=pixel_i,
        holdout_pixel_d=holdout_pixel_d,
        uplift=uplift_result,
    )
    figures: dict[str, float] = {}
    for name in names:
        with _timed(timings, name):
            figures.update(compute_metrics(measured, [name]))
    memorization_reports = {}
    if "memorization_fraction_features" in names:
        memorization_reports["features"] = asdict(measured.memorization_features)
    if "pixels" in needs:
        memorization_reports["pixels"] = asdict(measured.memorization_pixels)
    uplift = None if uplift_result is None else uplift_result.to_dict()

    with _timed(timings, "figures"):
        files = {"samples": str(out / "samples.png")}
        per_row = 10
        grid_labels = np.repeat(np.arange(train.num_classes), per_row)
        save_grid(generate(generator, grid_labels, seed=seed + 1), files["samples"], columns=per_row)
        if "pixels" in needs:
            closest = np.array([i for i, _, _ in measured.memorization_pixels.closest])  # regenerated from their own seeds
            closest_images = generate(generator, labels[closest], seeds=seeds[closest])
            files["nearest_pairs"] = str(out / "nearest_pairs.png")
            _save_pairs(closest_images, train.images[[j for _, j, _ in measured.memorization_pixels.closest]], Path(files["nearest_pairs"]))
    with _timed(timings, "yardstick"):
        ruler = yardstick(train, holdout, judge, net, n_samples, seed)

    report = EvaluationReport(
        backbone=tag,
        backbone_reason=reason,
        backbone_description=net.description,
        resize=resize if tag == "inception" else None,
        n_compare=n_compare,
        n_synthetic=len(labels),
        metrics=figures,
        per_class_fid=fid_by_class,
        label_accuracy_per_class=per_class_accuracy,
        memorization=memorization_reports,
        uplift=uplift,
        files=files,
        yardstick=ruler,
        timings=timings,
    )
    files["json"], files["markdown"] = str(out / "report.json"), str(out / "report.md")
    Path(files["json"]).write_text(json.dumps(report.to_dict(), indent=2))
    Path(files["markdown"]).write_text(render_markdown(report))
    return report


def _sample_pass(
    generator, labels: np.ndarray, seeds: np.ndarray, net: Backbone, judge: Judge, train: ImageData, needs: set[str], batch_size: int, timings: dict[str, float]
):
    """Generate the samples batch by batch and keep only what the metrics need: features and logits,
    the judge's labels ("judge" metrics) and nearest-training-image distances ("pixels" metrics)."""
    chunks: dict[str, list[np.ndarray]] = {"features": [], "logits": [], "predicted": [], "pixel_d": [], "pixel_i": []}
    folded = FoldedGenerator(generator)
    for start in range(0, len(labels), batch_size):
        with _timed(timings, "generate"):
            images = generate(folded, labels[start : start + batch_size], seeds=seeds[start : start + batch_size], batch_size=batch_size)
        with _timed(timings, "features"):
            features, logits = net.extract(images, batch_size)
        chunks["features"].append(features)
        chunks["logits"].append(logits)
        if "pixels" in needs:
            with _timed(timings, "pixel_distances"):
                distances, nearest = nearest_distances(images, train.images)
            chunks["pixel_d"].append(distances)
            chunks["pixel_i"].append(nearest)
        if "judge" in needs:
            with _timed(timings, "judge"):
                # The domain backbone's logits are the judge's: no second pass over the batch.
                chunks["predicted"].append(logits.argmax(axis=1) if isinstance(net, DomainBackbone) else judge.predict(images))
    return tuple(np.concatenate(v) if v else np.empty(0) for v in chunks.values())


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
