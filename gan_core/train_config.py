"""What a training run is told and what it reports: `TrainConfig` and its profiles, the `Progress`
line and the `TrainResult`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data import ImageData
from .models import Generator, ModelConfig
from .progress import time_left

SMALL_DATASET = 50_000  # augmentation defaults on below this many images


class TrainingDiverged(RuntimeError):
    def __init__(self, step: int, d_loss: float, g_loss: float):
        super().__init__(f"training diverged at step {step}: d_loss={d_loss}, g_loss={g_loss} (non-finite loss)")
        self.step = step


@dataclass
class TrainConfig:
    profile: str = "quick"
    steps: int = 2000
    batch_size: int = 64
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.0
    beta2: float = 0.99
    z_dim: int = 64
    g_width: int = 32
    d_width: int = 32
    loss: str = "hinge"
    r1_gamma: float = 0.0
    class_weight: float = 0.0  # auxiliary classifier term (AC-GAN style) beside the projection
    ema_halflife_images: int = 10_000  # EMA half-life, ramped up over the first 10× as many images
    augment: str = "auto"  # auto (on for small datasets) | on | off
    augment_policy: str = "color,translation,cutout"
    augment_p: float | None = None  # fixed probability; None lets the ADA controller adapt it
    ada_target: float = 0.6
    ada_interval: int = 4
    ada_kimg: float = 20.0  # images (thousands) for p to move by 1
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 elsewhere
    channels_last: str = "auto"  # auto: on CUDA and CPU | on | off
    compile: bool = False
    compile_mode: str = "default"  # torch.compile mode; "reduce-overhead" uses CUDA graphs (small, launch-bound models)
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 50  # progress callback and loss read-back interval
    g_norm_groups: int = 1  # generator batch norm over this many equal parts of a batch (N processes: at least N)
    debug_nan_at_step: int | None = None  # for tests: poison the loss at this (1-based) step

    def __post_init__(self) -> None:
        if isinstance(self.augment, bool):  # YAML 1.1 reads an unquoted `augment: off` as false
            self.augment = "on" if self.augment else "off"
        self._check_numbers()
        checks = {
            "steps": self.steps >= 1,
            "batch_size": self.batch_size >= 1,
            "lr_g": self.lr_g > 0,
            "lr_d": self.lr_d > 0,
            "checkpoint_every": self.checkpoint_every >= 1,
            "log_every": self.log_every >= 1,
            "g_norm_groups": self.g_norm_groups >= 1,
            "augment": self.augment in ("auto", "on", "off"),
            "ada_target": 0 < self.ada_target < 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"TrainConfig: invalid value for {bad[0]}: {getattr(self, bad[0])!r}")

    def _check_numbers(self) -> None:
        """A numeric field holds a number (an int field an int): anything else is an error naming it,
        not a TypeError in a comparison."""
        for entry in dataclasses.fields(self):
            default, value = entry.default, getattr(self, entry.name)
            if isinstance(default, bool) or not isinstance(default, (int, float)):
                continue
            allowed = int if isinstance(default, int) else (int, float)
            if isinstance(value, bool) or not isinstance(value, allowed):
                raise ValueError(f"TrainConfig: {entry.name} must be {'an int' if allowed is int else 'a number'}, got {value!r}")

    @classmethod
    def from_profile(cls, profile: str = "quick", **overrides: Any) -> TrainConfig:
        if profile not in PROFILES:
            raise ValueError(f"training.profile: expected one of {sorted(PROFILES)}, got {profile!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"training: unknown field(s) {unknown}; expected TrainConfig fields")
        return cls(**{**PROFILES[profile], **overrides, "profile": profile})

    def model_config(self, data: ImageData) -> ModelConfig:
        return ModelConfig(data.size, data.channels, data.num_classes, self.z_dim, self.g_width, self.d_width)


# quick: under 5 minutes per GAN on a 2-core CPU; full: the nightly GPU run. The auxiliary class term
# is what lifts label fidelity within the quick budget (see benchmarks/quality.py); 3,000 steps
# rather than 2,000 is what lifted the uplift within it (benchmarks/uplift.py --set steps=...).
PROFILES: dict[str, dict[str, Any]] = {
    "quick": {"steps": 3000, "batch_size": 64, "g_width": 16, "d_width": 16, "class_weight": 1.0, "checkpoint_every": 500},
    "full": {
        "steps": 10000,
        "batch_size": 64,
        "g_width": 24,
        "d_width": 24,
        "class_weight": 1.0,
        "ema_halflife_images": 20_000,
        "checkpoint_every": 1000,
        "log_every": 200,
    },
}


@dataclass
class Progress:
    step: int
    total_steps: int
    d_loss: float
    g_loss: float
    images_per_s: float
    augment_p: float
    real_sign_rate: float
    seconds_left: float = 0.0  # at this run's pace so far

    def line(self) -> str:
        """The progress log line, the same wherever training runs: one plain line, no bar."""
        return (
            f"step {self.step}/{self.total_steps} d_loss {self.d_loss:.3f} g_loss {self.g_loss:.3f} "
            f"{self.images_per_s:.0f} images/s augment p {self.augment_p:.2f}, {time_left(self.seconds_left)} left"
        )


@dataclass
class TrainResult:
    generator: Generator  # the EMA generator, in eval mode
    model_config: ModelConfig
    config: TrainConfig
    steps: int
    resumed_from: int
    wall_s: float
    images_per_s: float
    augment_p: float
    generator_path: Path
    checkpoint: Path
    history: list[Progress] = field(default_factory=list)
    not_resumed: str | None = None  # with resume="if-compatible": why the checkpoint found was not used
    processes: int = 1  # ranks that trained it (torchrun)
