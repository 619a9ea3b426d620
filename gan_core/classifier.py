"""The judge: a small CNN trained on the real train split.

It scores label fidelity of conditional samples and, through its penultimate features, serves as
the domain backbone for FID/KID. The same network, trained on other mixes of real and synthetic
data, measures augmentation uplift."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from .data import ImageData
from .device import choose_device


@dataclass
class ClassifierConfig:
    epochs: int = 12
    steps: int | None = None  # fixed number of optimizer steps instead of epochs
    # With epochs, at least this many steps: 12 epochs of 160 images are 36 steps, too few to learn.
    min_steps: int = 600
    batch_size: int = 64
    lr: float = 2e-3
    width: int = 32
    feature_dim: int = 128
    # Classical augmentation, drawn per image: the baseline a practitioner would use.
    max_translate: float = 0.0625  # translation, as a fraction of the image side (2 px at 32 px)
    max_rotation: float = 10.0  # degrees
    max_scale: float = 0.1  # zoom in [1 - max_scale, 1 + max_scale]
    seed: int = 0
    device: str = "auto"
    # channels_last trains 12% (width 32) to 23% (width 16) faster on a 2-core CPU (benchmarks/classifier_speed.py)
    channels_last: bool = True

    def __post_init__(self) -> None:
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"ClassifierConfig: steps must be at least 1 (or None for epochs), got {self.steps}")

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format


class JudgeNet(nn.Module):
    def __init__(self, channels: int, size: int, num_classes: int, width: int = 32, feature_dim: int = 128):
        super().__init__()
        self.shape = {"channels": channels, "size": size, "num_classes": num_classes, "width": width, "feature_dim": feature_dim}
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(2 * width * 16, feature_dim), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(feature_dim, num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _to_input(images: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    tensor = torch.as_tensor(images).to(device)
    return tensor.float() / 127.5 - 1


def random_affine(x: torch.Tensor, config: ClassifierConfig, generator: torch.Generator) -> torch.Tensor:
    """Each image shifted, rotated and zoomed at random within the config's bounds; the background
    stays -1 (black)."""
    if config.max_translate <= 0 and config.max_rotation <= 0 and config.max_scale <= 0:
        return x
    n = len(x)

    def uniform(bound: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator, dtype=torch.float64) * 2 - 1) * bound

    angle, scale = torch.deg2rad(uniform(config.max_rotation)), 1 + uniform(config.max_scale)
    shift = uniform(config.max_translate * 2), uniform(config.max_translate * 2)  # affine_grid spans [-1, 1]
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[0]], 1), torch.stack([sin, cos, shift[1]], 1)], 1).to(x)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x + 1, grid, align_corners=False, padding_mode="zeros") - 1


class Judge:
    """A trained classifier bound to its class names and device; every call is batched."""

    def __init__(self, net: JudgeNet, class_names: list[str], device: torch.device):
        self.net = net.to(device, memory_format=torch.channels_last).eval()  # as trained by default
        self.class_names = list(class_names)
        self.device = device

    @torch.no_grad()
    def _batched(self, images: np.ndarray, fn, batch_size: int = 512) -> np.ndarray:
        outputs = [
            fn(_to_input(images[i : i + batch_size], self.device).contiguous(memory_format=torch.channels_last)).float().cpu()
            for i in range(0, len(images), batch_size)
        ]
        return torch.cat(outputs).numpy() if outputs else np.zeros((0,), np.float32)

    def logits(self, images: np.ndarray) -> np.ndarray:
        return self._batched(images, self.net)

    def features(self, images: np.ndarray) -> np.ndarray:
        return self._batched(images, self.net.features)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Softmax over classes, in float64 (float32 saturates near 1, where thresholds are set)."""
        logits = torch.from_numpy(self.logits(images)).reshape(len(images), -1).double()
        return torch.softmax(logits, dim=1).numpy()

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self.logits(images).argmax(axis=1)

    def right(self, data: ImageData) -> np.ndarray:
        """1 for each image of `data` the judge classifies as labelled, else 0 (uint8)."""
        return (self.predict(data.images) == data.labels).astype(np.uint8)

    def accuracy(self, data: ImageData) -> float:
        return float(self.right(data).mean())

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}, str(path))
        path.with_suffix(".json").write_text(json.dumps({"shape": self.net.shape, "class_names": self.class_names}))
        return path

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> Judge:
        path = Path(path)
        meta = json.loads(path.with_suffix(".json").read_text())
        net = JudgeNet(**meta["shape"])
        net.load_state_dict(load_file(str(path)))
        return cls(net, meta["class_names"], choose_device(device))


class _Batches:
    """Endless shuffled batches of one set's indices: each pass over the set in a new order."""

    def __init__(self, size: int, generator: torch.Generator):
        self.size, self.generator = size, generator
        self.order, self.position = torch.randperm(size, generator=generator), 0

    def take(self, count: int) -> torch.Tensor:
        if count > self.size:  # a set smaller than its part of a batch: draw with replacement
            return torch.randint(0, self.size, (count,), generator=self.generator)
        if self.position + count > self.size:
            self.order, self.position = torch.randperm(self.size, generator=self.generator), 0
        self.position += count
        return self.order[self.position - count : self.position]


def classifier_steps(config: ClassifierConfig, n_images: int) -> int:
    """`config.steps` if set, else `config.epochs` passes over n images but at least `config.min_steps`."""
    if config.steps:
        return config.steps
    return max(config.epochs * max(1, n_images // min(config.batch_size, n_images)), config.min_steps)


@dataclass(frozen=True)
class BatchSource:
    """A set that makes up `share` of every training batch, with its hard labels or, with `probs`
    (N × classes, rows summing to 1), soft ones: the loss on its rows is then the cross-entropy
    against `probs` (KL divergence up to a constant) instead of against `labels`."""

    data: ImageData
    share: float
    probs: np.ndarray | None = None


class _Part:
    """One source's images, targets and batch indices on the device."""

    def __init__(self, source: BatchSource, count: int, device: torch.device, generator: torch.Generator):
        self.count, self.batches = count, _Batches(len(source.data), generator)
        self.images = _to_input(source.data.images, device)
        self.labels = torch.from_numpy(source.data.labels).to(device)
        self.probs = None if source.probs is None else torch.as_tensor(np.asarray(source.probs, np.float32)).to(device)

    def loss_sum(self, logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        if self.probs is None:
            return F.cross_entropy(logits, self.labels[index], reduction="sum")
        return -(self.probs[index] * F.log_softmax(logits, dim=1)).sum()


def _labelled_parts(data: ImageData, sources: Sequence[BatchSource], batch_size: int, device: torch.device, generator: torch.Generator) -> list[_Part]:
    """`data`'s part of every batch, drawn first (as without sources), then each source's share of it."""
    counts = [(s, int(round(s.share * batch_size))) for s in sources if len(s.data) and int(round(s.share * batch_size))]
    parts = [_Part(BatchSource(data, 1.0), batch_size - sum(count for _, count in counts), device, generator)]
    return parts + [_Part(source, count, device, generator) for source, count in counts]


def _draw_batch(parts: list[_Part], device: torch.device) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One batch's images from every part, and each part's indices for `_parts_loss`."""
    indices = [part.batches.take(part.count).to(device) for part in parts]
    return torch.cat([part.images[index] for part, index in zip(parts, indices)]), indices


def _parts_loss(parts: list[_Part], logits: torch.Tensor, indices: list[torch.Tensor]) -> torch.Tensor:
    """The summed loss of a batch drawn by `_draw_batch`: every row weighs the same, hard label or soft."""
    loss, start = logits.new_zeros(()), 0
    for part, index in zip(parts, indices):
        loss = loss + part.loss_sum(logits[start : start + len(index)], index)
        start += len(index)
    return loss


def _check_sources(data: ImageData, sources: list[BatchSource]) -> None:
    for source in sources:
        if source.data.class_names != data.class_names:
            raise ValueError(f"extra: class names {source.data.class_names[:5]} differ from the data's {data.class_names[:5]}")
        if source.probs is not None and np.shape(source.probs) != (len(source.data), data.num_classes):
            raise ValueError(f"probs: expected {len(source.data)} × {data.num_classes} class probabilities, got {np.shape(source.probs)}")
    if not all(0.0 <= source.share < 1.0 for source in sources) or sum(source.share for source in sources) >= 1.0:
        raise ValueError(f"extra_share: expected fractions in [0, 1) that leave part of each batch to the data, got {[s.share for s in sources]}")


def train_classifier(
    data: ImageData,
    config: ClassifierConfig | None = None,
    extra: ImageData | None = None,
    extra_share: float = 0.0,
    sources: tuple[BatchSource, ...] = (),
) -> Judge:
    """Train on `data` for `classifier_steps(config, len(data))` optimizer steps, with the config's
    classical augmentation. With `extra` (synthetic or pseudo-labelled images), `extra_share` of
    every batch comes from it; each of `sources` adds its own share (hard or soft labels); the rest
    comes from `data`. The step count and batch size stay those of `data` alone: only the batch's
    make-up changes."""
    config = config or ClassifierConfig()
    sources = [*([BatchSource(extra, extra_share)] if extra is not None else []), *sources]
    _check_sources(data, sources)
    device = choose_device(config.device)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    net = JudgeNet(data.channels, data.size, data.num_classes, config.width, config.feature_dim).to(device, memory_format=config.memory_format)
    batch_size = min(config.batch_size, len(data))
    parts = _labelled_parts(data, sources, batch_size, device, generator)
    total_steps = classifier_steps(config, len(data))
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=total_steps)
    net.train()
    for _ in range(total_steps):
        batch, indices = _draw_batch(parts, device)
        logits = net(random_affine(batch, config, generator).contiguous(memory_format=config.memory_format))
        optimizer.zero_grad(set_to_none=True)
        (_parts_loss(parts, logits, indices) / len(batch)).backward()
        optimizer.step()
        schedule.step()
    return Judge(net, data.class_names, device)
