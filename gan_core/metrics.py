"""Evaluation of a generator: fidelity and diversity (FID/KID/IS through torchmetrics, improved
precision/recall, density/coverage), label fidelity, memorization and augmentation uplift.

Features come from a named backbone: `inception` (torch-fidelity's InceptionV3) or `domain` (the
judge's penultimate layer). Metric names carry the backbone (`fid_domain`, `kid_inception`, ...) so
numbers from different backbones never mix, and every figure has a real-vs-real baseline (train
split against holdout at the same N) beside it as `<name>_baseline`."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.inception import InceptionScore
from torchmetrics.image.kid import KernelInceptionDistance

from .checkpoint import file_sha256, weights_digest
from .classifier import ClassifierConfig, Judge, train_classifier
from .data import ImageData
from .device import choose_device
from .models import FoldedGenerator
from .sample import generate, image_grid, sample_seeds, save_grid

INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
INCEPTION_SHA256_PREFIX = "6726825d"
INCEPTION_ENV = "GANPIPE_INCEPTION_WEIGHTS"
RESIZES = ("antialias", "tf1")  # torchmetrics' default vs the TensorFlow-1-compatible resize of papers


class MetricsError(RuntimeError):
    """A metric that cannot be computed as asked (missing weights, too few samples...)."""


# ---------------------------------------------------------------- backbones


class Backbone:
    """Maps uint8 images N×C×H×W to features (for FID/KID/PRDC) and logits (for IS)."""

    name: str
    description: str

    def features_and_logits(self, images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def extract(self, images: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """Batched extraction: only one batch of images is ever on the device."""
        features, logits = [], []
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                f, l = self.features_and_logits(images[start : start + batch_size])
                features.append(f.float().cpu().numpy())
                logits.append(l.float().cpu().numpy())
        return np.concatenate(features), np.concatenate(logits)


class DomainBackbone(Backbone):
    name = "domain"

    def __init__(self, judge: Judge):
        self.judge = judge
        self.description = "judge classifier penultimate features"

    def features_and_logits(self, images):
        x = torch.as_tensor(images).to(self.judge.device).float() / 127.5 - 1
        features = self.judge.net.features(x)
        return features, self.judge.net.head(features)


class InceptionBackbone(Backbone):
    name = "inception"

    def __init__(self, weights_path: str | Path, resize: str = "antialias", device: str = "auto"):
        from torchmetrics.image.fid import NoTrainInceptionV3

        if resize not in RESIZES:
            raise MetricsError(f"resize: expected one of {RESIZES}, got {resize!r}")
        self.device = choose_device(device)
        self.resize = resize
        self.net = NoTrainInceptionV3(
            name="inception-v3-compat",
            features_list=["2048", "logits_unbiased"],
            feature_extractor_weights_path=str(weights_path),
            antialias=resize == "antialias",
        ).to(self.device)
        self.description = f"torch-fidelity InceptionV3 pool3 features, {resize} resize to 299 px"

    def features_and_logits(self, images):
        x = torch.as_tensor(images).to(self.device)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        features, logits = self.net._torch_fidelity_forward(x)  # both heads in one pass (forward keeps only the first)
        return features, logits


def _weights_only_copy(path: Path) -> Path:
    """torch-fidelity unpickles its weights file (weights_only=False). Re-save the file's tensors
    after a weights-only load, so no code from the file is ever unpickled."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise MetricsError(f"{path}: not a weights-only state dict ({error}); set {INCEPTION_ENV} to torch-fidelity's Inception weights") from error
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MetricsError(f"{path}: expected a state dict of tensors")
    handle, copy = tempfile.mkstemp(suffix=".pth", prefix="ganpipe-inception-")
    os.close(handle)
    torch.save(state, copy)
    return Path(copy)


def resolve_inception_weights(
    weights_path: str | Path | None = None, *, allow_unverified: bool = False, download: bool = True, url: str = INCEPTION_URL
) -> Path:
    """The Inception weights file: the argument, else $GANPIPE_INCEPTION_WEIGHTS, else torch hub's
    cache, downloading on first use. A configured file must match the official SHA-256 unless
    allow_unverified. Returns a weights-only copy that is safe to hand to torch-fidelity."""
    configured = weights_path or os.environ.get(INCEPTION_ENV)
    if configured:
        path = Path(configured)
        if not path.is_file():
            raise MetricsError(f"{INCEPTION_ENV} / inception_weights: '{path}' does not exist; expected torch-fidelity's weights-inception-2015-12-05-6726825d.pth")
        if not allow_unverified and not file_sha256(path).startswith(INCEPTION_SHA256_PREFIX):
            raise MetricsError(
                f"{INCEPTION_ENV} / inception_weights: '{path}' is not the official Inception weights file "
                f"(its SHA-256 does not start with {INCEPTION_SHA256_PREFIX}); pass allow_unverified=True to use it anyway"
            )
        return _weights_only_copy(path)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(INCEPTION_URL).name
    if not cached.is_file():
        if not download:
            raise MetricsError(f"Inception weights not available: set {INCEPTION_ENV} to a local copy of {Path(INCEPTION_URL).name}")
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(cached), hash_prefix=INCEPTION_SHA256_PREFIX, progress=False)
        except Exception as error:  # URLError offline, hash mismatch, ...
            raise MetricsError(
                f"Inception weights could not be downloaded ({error}); set {INCEPTION_ENV} to a local copy of "
                f"{Path(INCEPTION_URL).name} or use backbone='domain'"
            ) from error
    return _weights_only_copy(cached)


def write_random_inception_weights(path: str | Path, seed: int = 0) -> Path:
    """A state dict with the structure of torch-fidelity's Inception and random values: for tests
    of the loading path and for speed benchmarks (its features mean nothing)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class _Unloaded(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, strict=True, assign=False):  # keep the random init
            return None

    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as scratch:
        empty = Path(scratch) / "empty.pth"
        torch.save({}, empty)
        net = _Unloaded("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(empty))
    # Batch-norm statistics of one random batch, so activations keep their scale through the depth:
    # with the default ones features shrink to ~1e-7 and every image looks the same (FID 0).
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum, norm.training = None, True
    with torch.no_grad():
        net(torch.randint(0, 256, (16, 3, 64, 64), dtype=torch.uint8))
    for norm in norms:
        norm.momentum, norm.training = 0.1, False
    path = Path(path)
    torch.save(net.state_dict(), path)
    return path


def make_backbone(
    name: str,
    judge: Judge | None = None,
    *,
    inception_weights: str | Path | None = None,
    allow_unverified: bool = False,
    resize: str = "antialias",
    device: str = "auto",
) -> tuple[Backbone, str]:
    """(backbone, why it was chosen). `auto` uses Inception when its weights are at hand."""
    if name not in ("auto", "inception", "domain"):
        raise MetricsError(f"evaluation.backbone: expected 'auto', 'inception' or 'domain', got {name!r}")
    if name in ("auto", "inception"):
        try:
            weights = resolve_inception_weights(inception_weights, allow_unverified=allow_unverified, download=name == "inception")
            return InceptionBackbone(weights, resize, device), "inception weights available"
        except MetricsError as error:
            if name == "inception":
                raise
            reason = f"inception unavailable ({error}); using the domain backbone"
    else:
        reason = "domain backbone requested"
    if judge is None:
        raise MetricsError("the domain backbone needs a trained judge classifier")
    return DomainBackbone(judge), reason


# ---------------------------------------------------------------- metric math


class _Features(nn.Module):
    """Identity 'feature extractor': lets torchmetrics accumulate features we extracted once."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def fid_from_features(reference: np.ndarray, other: np.ndarray) -> float:
    metric = FrechetInceptionDistance(feature=_Features(reference.shape[1]))
    metric.update(torch.from_numpy(reference).double(), real=True)
    metric.update(torch.from_numpy(other).double(), real=False)
    return float(metric.compute())


def kid_from_features(reference: np.ndarray, other: np.ndarray, subsets: int = 50, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    size = min(subset_size, len(reference), len(other))
    if size < 2:
        raise MetricsError(f"KID needs at least 2 samples per set, got {len(reference)} and {len(other)}")
    torch.manual_seed(seed)
    metric = KernelInceptionDistance(feature=_Features(reference.shape[1]), subsets=subsets, subset_size=size)
    metric.update(torch.from_numpy(reference).double(), real=True)
    metric.update(torch.from_numpy(other).double(), real=False)
    mean, std = metric.compute()
    return float(mean), float(std)


def inception_score_from_logits(logits: np.ndarray, splits: int = 10) -> tuple[float, float]:
    metric = InceptionScore(feature=_Features(logits.shape[1]), splits=min(splits, len(logits)))
    torch.manual_seed(0)
    metric.update(torch.from_numpy(logits).double())
    mean, std = metric.compute()
    return float(mean), float(std)


def _pairwise(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cdist(a, b)


def _kth_neighbour_radii(x: torch.Tensor, k: int, chunk: int = 2048) -> torch.Tensor:
    radii = []
    for start in range(0, len(x), chunk):
        d = _pairwise(x[start : start + chunk], x)
        radii.append(d.kthvalue(k + 1, dim=1).values)  # +1: the point itself is at distance 0
    return torch.cat(radii)


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 5, chunk: int = 2048) -> dict[str, float]:
    """Improved precision/recall (Kynkäänniemi et al., 2019) and density/coverage (Naeem et al.,
    2020) with k-nearest-neighbour balls; distances in chunks so memory stays bounded."""
    real_t, fake_t = torch.from_numpy(real).float(), torch.from_numpy(fake).float()
    real_radii = _kth_neighbour_radii(real_t, k, chunk)
    fake_radii = _kth_neighbour_radii(fake_t, k, chunk)
    inside_count = torch.zeros(len(fake_t))
    nearest_fake = torch.full((len(real_t),), float("inf"))
    recall_hits = torch.zeros(len(real_t), dtype=torch.bool)
    for start in range(0, len(fake_t), chunk):
        d = _pairwise(fake_t[start : start + chunk], real_t)  # fakes × reals
        inside = d <= real_radii[None, :]
        inside_count[start : start + chunk] = inside.sum(dim=1).float()
        nearest_fake = torch.minimum(nearest_fake, d.min(dim=0).values)
        recall_hits |= (d <= fake_radii[start : start + chunk, None]).any(dim=0)
    return {
        "precision": float((inside_count > 0).float().mean()),
        "recall": float(recall_hits.float().mean()),
        "density": float(inside_count.sum() / (k * len(fake_t))),
        "coverage": float((nearest_fake <= real_radii).float().mean()),
    }


def nearest_distances(queries: np.ndarray, references: np.ndarray, chunk: int = 2048, chunk_bytes: int = 64 << 20) -> tuple[np.ndarray, np.ndarray]:
    """For each query row: distance to and index of its nearest reference row (Euclidean), in float64.

    On uint8 pixels this is exact: every squared norm and dot product is an integer below 2^53, so the
    matrix-multiply shortcut loses nothing, where float32 rounds once a norm passes 2^24 (any RGB or
    64 px image) and put a one-pixel-off copy at distance 0. Both sides are converted a chunk at a
    time (about `chunk_bytes` each), so 128 px RGB training sets need no float copy of their own."""
    q = np.asarray(queries).reshape(len(queries), -1)
    r = np.asarray(references).reshape(len(references), -1)
    rows = max(1, chunk_bytes // (8 * max(r.shape[1], 1)))
    q_rows, r_rows = min(chunk, rows), rows
    distances, indices = np.empty(len(q)), np.empty(len(q), dtype=np.int64)
    for q_start in range(0, len(q), q_rows):
        q_chunk = torch.from_numpy(q[q_start : q_start + q_rows]).double()
        best = torch.full((len(q_chunk),), float("inf"), dtype=torch.float64)
        best_index = torch.zeros(len(q_chunk), dtype=torch.int64)
        for r_start in range(0, len(r), r_rows):
            nearest = _pairwise(q_chunk, torch.from_numpy(r[r_start : r_start + r_rows]).double()).min(dim=1)
            closer = nearest.values < best  # strict: ties keep the first reference, as one min would
            best = torch.where(closer, nearest.values, best)
            best_index = torch.where(closer, nearest.indices + r_start, best_index)
        distances[q_start : q_start + len(q_chunk)] = best.numpy()
        indices[q_start : q_start + len(q_chunk)] = best_index.numpy()
    return distances, indices


@dataclass
class Memorization:
    space: str
    threshold: float  # 1st percentile of holdout → nearest-training distances
    fraction_near_copies: float  # synthetic samples closer to a training image than the threshold
    median_synthetic_distance: float
    median_holdout_distance: float
    closest: list[tuple[int, int, float]]  # (synthetic index, training index, distance), closest first


def memorization(synthetic: np.ndarray, train: np.ndarray, holdout: np.ndarray, space: str, top: int = 8) -> Memorization:
    """Synthetic→train nearest distances against holdout→train ones: a synthetic sample closer to a
    training image than 99% of real unseen images are is a likely copy."""
    synthetic_d, synthetic_i = nearest_distances(synthetic, train)
    holdout_d, _ = nearest_distances(holdout, train)
    return memorization_from_distances(synthetic_d, synthetic_i, holdout_d, space, top)


def near_copy_threshold(holdout_distances: np.ndarray) -> float:
    """Closer to a training image than 99% of unseen real images are: a likely copy."""
    return float(np.percentile(holdout_distances, 1))


def memorization_from_distances(synthetic_d: np.ndarray, synthetic_i: np.ndarray, holdout_d: np.ndarray, space: str, top: int = 8) -> Memorization:
    threshold = near_copy_threshold(holdout_d)
    order = np.argsort(synthetic_d, kind="stable")[:top]
    return Memorization(
        space=space,
        threshold=threshold,
        fraction_near_copies=float((synthetic_d < threshold).mean()),
        median_synthetic_distance=float(np.median(synthetic_d)),
        median_holdout_distance=float(np.median(holdout_d)),
        closest=[(int(i), int(synthetic_i[i]), float(synthetic_d[i])) for i in order],
    )


# ---------------------------------------------------------------- augmentation uplift


UPLIFT_CLASSIFIER = ClassifierConfig(steps=600, width=16)


@dataclass
class Uplift:
    real_only: tuple[float, float]  # (mean, std) holdout accuracy over seeds
    real_plus_synthetic: tuple[float, float]
    synthetic_only: tuple[float, float]
    seeds: list[int]
    n_real: int
    n_synthetic: int

    @property
    def gain(self) -> float:
        return self.real_plus_synthetic[0] - self.real_only[0]


def augmentation_uplift(
    real_train: ImageData,
    holdout: ImageData,
    synthetic: ImageData,
    seeds: Sequence[int] = (0, 1, 2),
    classifier: ClassifierConfig | None = None,
) -> Uplift:
    """The same small classifier, with the same number of optimizer steps, trained on real,
    real+synthetic and synthetic only, tested on the real holdout, over several seeds (mean ± std)."""
    if len(seeds) < 1:
        raise MetricsError("seeds: expected at least one seed")
    base = classifier or UPLIFT_CLASSIFIER
    if not base.steps:
        # Epochs would give the larger real+synthetic set more optimizer steps than real only.
        raise MetricsError("uplift classifier: expected a fixed number of optimizer steps (ClassifierConfig.steps), the same for every training set")
    mixed = ImageData(np.concatenate([real_train.images, synthetic.images]), np.concatenate([real_train.labels, synthetic.labels]), real_train.class_names)
    results: dict[str, list[float]] = {"real": [], "mixed": [], "synthetic": []}
    for seed in seeds:
        config = ClassifierConfig(**{**asdict(base), "seed": int(seed)})
        for key, data in (("real", real_train), ("mixed", mixed), ("synthetic", synthetic)):
            results[key].append(train_classifier(data, config).accuracy(holdout))
    stats = {key: (float(np.mean(v)), float(np.std(v))) for key, v in results.items()}
    return Uplift(stats["real"], stats["mixed"], stats["synthetic"], [int(s) for s in seeds], len(real_train), len(synthetic))


# ---------------------------------------------------------------- the registry of named metrics


@dataclass
class Measured:
    """What one evaluation pass extracted, shared by every metric: features and logits of the train
    split, the synthetic samples and the holdout (at equal N for set-to-set metrics: `fake_*` and
    `real_*`), the judge's predictions, nearest-training-image distances and the uplift study."""

    backbone: str
    train_f: np.ndarray
    fake_f: np.ndarray
    real_f: np.ndarray
    fake_l: np.ndarray
    real_l: np.ndarray
    synthetic_f: np.ndarray
    holdout_f: np.ndarray
    labels: np.ndarray  # the conditioning label of every synthetic sample
    predicted: np.ndarray  # the judge's label for every synthetic sample
    judge_holdout_accuracy: float
    pixel_d: np.ndarray  # synthetic → nearest training image, 0–255 pixel units
    pixel_i: np.ndarray
    holdout_pixel_d: np.ndarray
    uplift: Uplift | None = None

    @cached_property
    def prdc_synthetic(self) -> dict[str, float]:
        return prdc(self.train_f, self.fake_f)

    @cached_property
    def prdc_real(self) -> dict[str, float]:
        return prdc(self.train_f, self.real_f)

    @cached_property
    def memorization_features(self) -> Memorization:
        return memorization(self.synthetic_f, self.train_f, self.holdout_f, f"{self.backbone} features")

    @cached_property
    def memorization_pixels(self) -> Memorization:
        # On a 0–1 scale (÷255); the distances themselves are exact on the uint8 images.
        return memorization_from_distances(self.pixel_d / 255, self.pixel_i, self.holdout_pixel_d / 255, "pixels")


@dataclass(frozen=True)
class Metric:
    """A named figure: the function computing it from a `Measured` pass (figures keyed by suffix:
    "" the value, "_baseline" real vs real, "_std"), which way is better, what it is measured on
    (`backbone` metrics are named `<name>_<backbone>`) and on how many samples."""

    name: str
    compute: Callable[[Measured], dict[str, float]]
    higher_is_better: bool
    measured_on: str  # backbone (named <name>_<backbone>) | features (the backbone's, one name) | judge | pixels | uplift
    samples: str  # n_compare: synthetic and holdout sets of equal N; n_samples: every synthetic sample
    description: str


_REGISTRY: dict[str, Metric] = {}
BACKBONES = ("domain", "inception")
ALIASES = ("fid", "kid")  # of the backbone the evaluation used


def register_metric(name: str, *, higher_is_better: bool, measured_on: str, samples: str):
    def register(compute: Callable[[Measured], dict[str, float]]):
        _REGISTRY[name] = Metric(name, compute, higher_is_better, measured_on, samples, (compute.__doc__ or "").strip())
        return compute

    return register


def known_metrics() -> list[str]:
    """Every full metric name evaluate() can report (backbone metrics once per backbone)."""
    names = []
    for metric in _REGISTRY.values():
        names += [f"{metric.name}_{b}" for b in BACKBONES] if metric.measured_on == "backbone" else [metric.name]
    return names


def metric_info(name: str) -> Metric:
    """The registered metric behind a full name (`fid_domain` → fid); MetricsError lists the known ones."""
    if name in _REGISTRY and _REGISTRY[name].measured_on != "backbone":
        return _REGISTRY[name]
    family, _, backbone = name.rpartition("_")
    if backbone in BACKBONES and family in _REGISTRY and _REGISTRY[family].measured_on == "backbone":
        return _REGISTRY[family]
    raise MetricsError(f"unknown metric {name!r}; expected one of {', '.join(ALIASES)} (of the backbone used) or {', '.join(known_metrics())}")


def resolve_metric(name: str, backbone: str) -> str:
    """A full metric name: `fid`/`kid` name the backbone's; anything else must be registered."""
    full = f"{name}_{backbone}" if name in ALIASES else name
    metric_info(full)
    return full


def default_metrics(backbone: str, uplift: bool = False) -> list[str]:
    """Every registered metric on this backbone; the uplift ones only with the uplift study."""
    return [f"{m.name}_{backbone}" if m.measured_on == "backbone" else m.name for m in _REGISTRY.values() if uplift or m.measured_on != "uplift"]


def compute_metrics(measured: Measured, names: Sequence[str]) -> dict[str, float]:
    figures: dict[str, float] = {}
    for name in names:
        metric = metric_info(name)
        if metric.measured_on == "backbone" and not name.endswith(f"_{measured.backbone}"):
            raise MetricsError(f"metric {name!r} needs the {name.rpartition('_')[2]} backbone; this evaluation used {measured.backbone}")
        if metric.measured_on == "uplift" and measured.uplift is None:
            raise MetricsError(f"metric {name!r} needs the uplift study (uplift_seeds)")
        for suffix, value in metric.compute(measured).items():
            figures[f"{name}{suffix}"] = float(value)
    return figures


@register_metric("fid", higher_is_better=False, measured_on="backbone", samples="n_compare")
def _fid(m: Measured) -> dict[str, float]:
    """Fréchet distance of synthetic to train features."""
    return {"": fid_from_features(m.train_f, m.fake_f), "_baseline": fid_from_features(m.train_f, m.real_f)}


@register_metric("kid", higher_is_better=False, measured_on="backbone", samples="n_compare")
def _kid(m: Measured) -> dict[str, float]:
    """Kernel (polynomial MMD²) distance of synthetic to train features: unbiased at small N."""
    (value, std), (baseline, _) = kid_from_features(m.train_f, m.fake_f), kid_from_features(m.train_f, m.real_f)
    return {"": value, "_std": std, "_baseline": baseline}


@register_metric("is", higher_is_better=True, measured_on="backbone", samples="n_compare")
def _inception_score(m: Measured) -> dict[str, float]:
    """Inception score of the backbone's class logits."""
    (value, std), (baseline, _) = inception_score_from_logits(m.fake_l), inception_score_from_logits(m.real_l)
    return {"": value, "_std": std, "_baseline": baseline}


def _prdc_metric(key: str, description: str):
    def compute(m: Measured) -> dict[str, float]:
        return {"": m.prdc_synthetic[key], "_baseline": m.prdc_real[key]}

    compute.__doc__ = description
    register_metric(key, higher_is_better=True, measured_on="backbone", samples="n_compare")(compute)


_prdc_metric("precision", "Share of synthetic samples inside the train features' k-NN balls (fidelity).")
_prdc_metric("recall", "Share of train features inside the synthetic samples' k-NN balls (diversity).")
_prdc_metric("density", "How many train k-NN balls hold a synthetic sample, on average (fidelity).")
_prdc_metric("coverage", "Share of train features whose k-NN ball holds a synthetic sample (diversity).")


@register_metric("label_accuracy", higher_is_better=True, measured_on="judge", samples="n_samples")
def _label_accuracy(m: Measured) -> dict[str, float]:
    """Share of samples the judge gives their conditioning label; baseline: the judge on the real holdout."""
    return {"": float((m.predicted == m.labels).mean()), "_baseline": m.judge_holdout_accuracy}


@register_metric("memorization_fraction_features", higher_is_better=False, measured_on="features", samples="n_samples")
def _memorization_features(m: Measured) -> dict[str, float]:
    """Share of samples closer to a training image (backbone features) than 99% of holdout images are."""
    return {"": m.memorization_features.fraction_near_copies}


@register_metric("memorization_fraction_pixels", higher_is_better=False, measured_on="pixels", samples="n_samples")
def _memorization_pixels(m: Measured) -> dict[str, float]:
    """Share of samples closer to a training image (pixels) than 99% of holdout images are."""
    return {"": m.memorization_pixels.fraction_near_copies}


def _uplift_metric(key: str, description: str, value: Callable[[Uplift], float]):
    def compute(m: Measured) -> dict[str, float]:
        return {"": value(m.uplift)}

    compute.__doc__ = description
    register_metric(key, higher_is_better=True, measured_on="uplift", samples="n_samples")(compute)


_uplift_metric("uplift_real_only", "Holdout accuracy of the uplift classifier trained on real images only.", lambda u: u.real_only[0])
_uplift_metric("uplift_real_plus_synthetic", "Holdout accuracy of the uplift classifier trained on real + synthetic.", lambda u: u.real_plus_synthetic[0])
_uplift_metric("uplift_synthetic_only", "Holdout accuracy of the uplift classifier trained on synthetic only.", lambda u: u.synthetic_only[0])
_uplift_metric("uplift_gain", "real + synthetic minus real only.", lambda u: u.gain)


# ---------------------------------------------------------------- the report


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
    synthetic_f, synthetic_l, predicted, pixel_d, pixel_i = (np.concatenate(v) if v else np.empty(0) for v in chunks.values())

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
        backbone=tag, train_f=train_f, fake_f=fake_f, real_f=real_f, fake_l=fake_l, real_l=real_l, synthetic_f=synthetic_f, holdout_f=holdout_f,
        labels=labels, predicted=predicted, judge_holdout_accuracy=judge_holdout_accuracy if "judge" in needs else float("nan"),
        pixel_d=pixel_d, pixel_i=pixel_i, holdout_pixel_d=holdout_pixel_d, uplift=uplift_result,
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
    uplift = None if uplift_result is None else {**asdict(uplift_result), "gain": uplift_result.gain}

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
        u = report.uplift
        lines += [
            "",
            "Augmentation uplift (holdout accuracy, mean ± std over seeds "
            f"{u['seeds']}): real {u['real_only'][0]:.4f} ± {u['real_only'][1]:.4f}, "
            f"real+synthetic {u['real_plus_synthetic'][0]:.4f} ± {u['real_plus_synthetic'][1]:.4f}, "
            f"synthetic only {u['synthetic_only'][0]:.4f} ± {u['synthetic_only'][1]:.4f}.",
        ]
    lines += ["", "![samples](samples.png)", ""]
    if "nearest_pairs" in report.files:
        lines += ["Closest synthetic/training pairs:", "", "![pairs](nearest_pairs.png)", ""]
    return "\n".join(lines)
