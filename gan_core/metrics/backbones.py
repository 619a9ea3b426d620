"""Feature extractors for set-to-set metrics: `inception` (torch-fidelity's InceptionV3, its weights
downloaded or from a configured path, loaded without unpickling code) or `domain` (the judge's
penultimate layer)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..classifier import Judge
from ..device import choose_device
from ..files import file_sha256
from .errors import MetricsError


INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"


INCEPTION_SHA256_PREFIX = "6726825d"


INCEPTION_ENV = "GANPIPE_INCEPTION_WEIGHTS"


RESIZES = ("antialias", "tf1")  # torchmetrics' default vs the TensorFlow-1-compatible resize of papers


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
                batch_features, batch_logits = self.features_and_logits(images[start : start + batch_size])
                features.append(batch_features.float().cpu().numpy())
                logits.append(batch_logits.float().cpu().numpy())
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
            raise MetricsError(
                f"{INCEPTION_ENV} / inception_weights: '{path}' does not exist; expected torch-fidelity's weights-inception-2015-12-05-6726825d.pth"
            )
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
