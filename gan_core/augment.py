"""DiffAugment (Zhao et al., 2020): differentiable color, translation and cutout applied to real and
fake images alike, each to a fraction p of the batch; and an ADA-style controller (Karras et al.,
2020) that moves p so the rate sign(D(real)) > 0 tracks a target."""

from __future__ import annotations

import torch
from torch.nn import functional as F

POLICIES = ("color", "translation", "cutout")


def parse_policy(policy: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in policy.split(",") if name.strip())
    unknown = [name for name in names if name not in POLICIES]
    if unknown:
        raise ValueError(f"augment_policy: unknown augmentation(s) {unknown}; expected a comma list of {POLICIES}")
    return names


def _chosen(x: torch.Tensor, p: float) -> torch.Tensor:
    """1 for the images this augmentation applies to, else 0, shaped to broadcast over N×C×H×W."""
    return (torch.rand(len(x), 1, 1, 1, device=x.device) < p).to(x.dtype)


def color(x: torch.Tensor, p: float) -> torch.Tensor:
    n = len(x)
    mask = _chosen(x, p)
    brightness = (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5) * mask
    x = x + brightness
    if x.shape[1] == 3:
        saturation = 1 + (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) * 2 - 1) * mask
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * saturation + mean
    contrast = 1 + (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5) * mask
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * contrast + mean


def translation(x: torch.Tensor, p: float, ratio: float = 0.125) -> torch.Tensor:
    """Shift by up to ratio × size with zero fill, as an integer roll of a padded image."""
    n, _, h, w = x.shape
    shift_h, shift_w = int(h * ratio + 0.5), int(w * ratio + 0.5)
    mask = _chosen(x, p).view(n, 1, 1).long()
    dy = torch.randint(-shift_h, shift_h + 1, (n, 1, 1), device=x.device) * mask
    dx = torch.randint(-shift_w, shift_w + 1, (n, 1, 1), device=x.device) * mask
    grid_b, grid_y, grid_x = torch.meshgrid(torch.arange(n, device=x.device), torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    grid_y = torch.clamp(grid_y + dy + 1, 0, h + 1)
    grid_x = torch.clamp(grid_x + dx + 1, 0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1])
    return padded.permute(0, 2, 3, 1)[grid_b, grid_y, grid_x].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, p: float, ratio: float = 0.5) -> torch.Tensor:
    """Zero a square of ratio × size at a random centre."""
    n, _, h, w = x.shape
    cut_h, cut_w = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = torch.randint(0, h, (n, 1, 1), device=x.device) - cut_h // 2
    left = torch.randint(0, w, (n, 1, 1), device=x.device) - cut_w // 2
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (ys >= top) & (ys < top + cut_h) & (xs >= left) & (xs < left + cut_w)
    return x * (1 - inside.unsqueeze(1).to(x.dtype) * _chosen(x, p))


_FUNCTIONS = {"color": color, "translation": translation, "cutout": cutout}


class DiffAugment:
    """Callable augmentation whose probability the controller (or a fixed setting) updates."""

    def __init__(self, policy: str = "color,translation,cutout", p: float = 0.0):
        self.policy = parse_policy(policy)
        self.p = p

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.p <= 0 or not self.policy:
            return x
        for name in self.policy:
            x = _FUNCTIONS[name](x, self.p)
        return x


class AdaptiveAugmentController:
    """Every `interval` D steps: p += sign(r_t − target) · (batch · interval) / (speed_kimg · 1000),
    where r_t = E[sign(D(real))] over the interval. Accumulates on the device; reads back once per
    interval so the inner loop has no host sync."""

    def __init__(self, augment: DiffAugment, target: float = 0.6, interval: int = 4, speed_kimg: float = 20.0, all_sum=None):
        self.augment = augment
        self.all_sum = all_sum or (lambda tensor: tensor)  # sums over training processes, so p stays the same on all
        self.target = target
        self.interval = interval
        self.speed_kimg = speed_kimg
        self.sign_sum: torch.Tensor | None = None
        self.count = 0
        self.last_rt = float("nan")

    def observe(self, real_logits: torch.Tensor) -> None:
        signs = torch.sign(real_logits.detach().float()).sum()
        self.sign_sum = signs if self.sign_sum is None else self.sign_sum + signs
        self.count += len(real_logits)
        if self.count >= self.interval * len(real_logits):
            signs, count = self.all_sum(torch.stack([self.sign_sum, torch.tensor(float(self.count), device=self.sign_sum.device)])).tolist()
            rt = signs / count
            step = count / (self.speed_kimg * 1000)
            self.augment.p = float(min(max(self.augment.p + step * (1 if rt > self.target else -1), 0.0), 1.0))
            self.last_rt = rt
            self.sign_sum, self.count = None, 0

    def state_dict(self) -> dict:
        return {
            "p": self.augment.p,
            "sign_sum": float(self.sign_sum) if self.sign_sum is not None else 0.0,
            "count": self.count,
            "last_rt": self.last_rt,
        }

    def load_state_dict(self, state: dict) -> None:
        self.augment.p = float(state["p"])
        self.count = int(state["count"])
        self.sign_sum = torch.tensor(float(state["sign_sum"])) if self.count else None
        self.last_rt = float(state["last_rt"])
