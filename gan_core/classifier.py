"""The judge: a small CNN trained on the real train split.

It scores label fidelity of conditional samples and, through its penultimate features, serves as
the domain backbone for FID/KID. The same network, trained on other mixes of real and synthetic
data, measures augmentation uplift."""

from __future__ import annotations

import json
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
    batch_size: int = 64
    lr: float = 2e-3
    width: int = 32
    feature_dim: int = 128
    max_shift: int = 2  # random translation in pixels while training
    seed: int = 0
    device: str = "auto"


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


def _random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    if max_shift <= 0:
        return x
    padded = F.pad(x, [max_shift] * 4, value=-1.0)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2,), generator=generator).tolist()
    return padded[:, :, dy : dy + x.shape[2], dx : dx + x.shape[3]]


class Judge:
    """A trained classifier bound to its class names and device; every call is batched."""

    def __init__(self, net: JudgeNet, class_names: list[str], device: torch.device):
        self.net = net.to(device).eval()
        self.class_names = list(class_names)
        self.device = device

    @torch.no_grad()
    def _batched(self, images: np.ndarray, fn, batch_size: int = 512) -> np.ndarray:
        outputs = [fn(_to_input(images[i : i + batch_size], self.device)).float().cpu() for i in range(0, len(images), batch_size)]
        return torch.cat(outputs).numpy() if outputs else np.zeros((0,), np.float32)

    def logits(self, images: np.ndarray) -> np.ndarray:
        return self._batched(images, self.net)

    def features(self, images: np.ndarray) -> np.ndarray:
        return self._batched(images, self.net.features)

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self.logits(images).argmax(axis=1)

    def accuracy(self, data: ImageData) -> float:
        return float((self.predict(data.images) == data.labels).mean())

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


def train_classifier(data: ImageData, config: ClassifierConfig | None = None) -> Judge:
    """Train on `data`: `config.steps` optimizer steps if set (equal work whatever the data size,
    as comparisons between training sets need), else `config.epochs` passes over the data."""
    config = config or ClassifierConfig()
    device = choose_device(config.device)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    net = JudgeNet(data.channels, data.size, data.num_classes, config.width, config.feature_dim).to(device)
    batch_size = min(config.batch_size, len(data))
    total_steps = config.steps or config.epochs * max(1, len(data) // batch_size)
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=total_steps)
    images = _to_input(data.images, device)
    labels = torch.from_numpy(data.labels).to(device)
    net.train()
    order, position = torch.randperm(len(data), generator=generator), 0
    for _ in range(total_steps):
        if position + batch_size > len(order):
            order, position = torch.randperm(len(data), generator=generator), 0
        index = order[position : position + batch_size].to(device)
        position += batch_size
        batch = _random_shift(images[index], config.max_shift, generator)
        loss = F.cross_entropy(net(batch), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return Judge(net, data.class_names, device)
