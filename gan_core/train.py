"""The training loop: `TrainConfig`, profiles, EMA generator, DiffAugment + ADA, AMP on CUDA,
atomic checkpoints with exact resume, a divergence guard and a progress callback.

Read `train()` top to bottom: set up, maybe resume, then one D step and one G step per iteration."""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .augment import AdaptiveAugmentController, DiffAugment
from .checkpoint import (
    CheckpointError,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
    save_generator,
)
from .data import ImageData
from .device import autocast_for, choose_device
from .losses import GANLoss
from .models import Generator, ModelConfig, build_models

SMALL_DATASET = 50_000  # augmentation defaults on below this many images
CHECKPOINT_FORMAT = 1


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
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 50  # progress callback and loss read-back interval
    debug_nan_at_step: int | None = None  # for tests: poison the loss at this (1-based) step

    def __post_init__(self) -> None:
        checks = {
            "steps": self.steps >= 1,
            "batch_size": self.batch_size >= 1,
            "lr_g": self.lr_g > 0,
            "lr_d": self.lr_d > 0,
            "checkpoint_every": self.checkpoint_every >= 1,
            "log_every": self.log_every >= 1,
            "augment": self.augment in ("auto", "on", "off"),
            "ada_target": 0 < self.ada_target < 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"TrainConfig: invalid value for {bad[0]}: {getattr(self, bad[0])!r}")

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


# quick: minutes on a 2-core CPU; full: the nightly GPU run. The auxiliary class term is what
# lifts label fidelity within the quick budget (see benchmarks/quality.py).
PROFILES: dict[str, dict[str, Any]] = {
    "quick": {"steps": 2000, "batch_size": 64, "g_width": 16, "d_width": 16, "class_weight": 1.0, "checkpoint_every": 500},
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


def train(
    data: ImageData,
    config: TrainConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    callback: Callable[[Progress], None] | None = None,
    progress_bar: bool | None = None,
) -> TrainResult:
    run_dir = Path(run_dir)
    checkpoint_dir = run_dir / "checkpoints"
    device = choose_device(config.device)
    # channels_last is faster on CUDA and, measured here, on CPU too (about 20% for the quick model).
    channels_last = device.type in ("cuda", "cpu") if config.channels_last == "auto" else config.channels_last == "on"
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    torch.manual_seed(config.seed)

    model_config = config.model_config(data)
    generator, discriminator = build_models(model_config)
    generator_ema = copy.deepcopy(generator).eval().requires_grad_(False)
    for module in (generator, discriminator, generator_ema):
        module.to(device, memory_format=memory_format)
    fused = device.type == "cuda"
    betas = (config.beta1, config.beta2)
    opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr_g, betas=betas, fused=fused)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr_d, betas=betas, fused=fused)
    g_step, d_step = (torch.compile(generator), torch.compile(discriminator)) if config.compile else (generator, discriminator)

    use_augment = config.augment == "on" or (config.augment == "auto" and len(data) < SMALL_DATASET)
    augment = DiffAugment(config.augment_policy if use_augment else "", p=config.augment_p or 0.0)
    adaptive = use_augment and config.augment_p is None
    controller = AdaptiveAugmentController(augment, config.ada_target, config.ada_interval, config.ada_kimg)
    gan_loss = GANLoss(config.loss, config.r1_gamma, class_weight=config.class_weight)

    # Small datasets live on the device as uint8; a batch is an index gather, no host copy per step.
    pixels = torch.from_numpy(data.images).to(device)
    labels_all = torch.from_numpy(data.labels).to(device)
    batch_size = min(config.batch_size, len(data))
    data_rng = torch.Generator().manual_seed(config.seed + 1)
    order, position = torch.randperm(len(data), generator=data_rng), 0
    data_hash = data.content_hash()

    start_step = 0
    if not resume:
        for stale in list_checkpoints(checkpoint_dir):  # a fresh run must not mix with an old one's checkpoints
            stale.unlink()
    elif (found := latest_checkpoint(checkpoint_dir)) is not None:
        state = load_checkpoint(found)
        if state.get("model_config") != model_config.to_dict() or state.get("data_hash") != data_hash:
            raise CheckpointError(f"{found}: was trained with another model config or dataset; cannot resume from it")
        generator.load_state_dict(state["G"])
        discriminator.load_state_dict(state["D"])
        generator_ema.load_state_dict(state["G_ema"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        controller.load_state_dict(state["augment"])
        torch.set_rng_state(state["rng"]["torch"])
        if device.type == "cuda" and state["rng"]["cuda"] is not None:
            torch.cuda.set_rng_state(state["rng"]["cuda"], device)
        data_rng.set_state(state["rng"]["data"])
        order, position = state["order"], int(state["position"])
        start_step = int(state["step"])

    def save(step: int) -> Path:
        state = {
            "format": CHECKPOINT_FORMAT,
            "step": step,
            "model_config": model_config.to_dict(),
            "train_config": dataclasses.asdict(config),
            "data_hash": data_hash,
            "G": generator.state_dict(),
            "D": discriminator.state_dict(),
            "G_ema": generator_ema.state_dict(),
            "opt_g": opt_g.state_dict(),
            "opt_d": opt_d.state_dict(),
            "augment": controller.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                "data": data_rng.get_state(),
            },
            "order": order,
            "position": position,
        }
        path = save_checkpoint(state, checkpoint_path(checkpoint_dir, step))
        prune_checkpoints(checkpoint_dir, config.keep_checkpoints)
        return path

    ema_params = [p for p in generator_ema.parameters()]
    live_params = [p for p in generator.parameters()]
    window: list[torch.Tensor] = []  # per-step (d_loss, g_loss) on the device, read back every log_every
    history: list[Progress] = []
    last_checkpoint = latest_checkpoint(checkpoint_dir) if start_step else None
    bar = tqdm(total=config.steps, initial=start_step, disable=None if progress_bar is None else not progress_bar, desc="train")
    started = window_started = time.perf_counter()
    window_start_step = start_step

    for step in range(start_step + 1, config.steps + 1):
        if position + batch_size > len(order):
            order, position = torch.randperm(len(data), generator=data_rng), 0
        index = order[position : position + batch_size].to(device, non_blocking=True)
        position += batch_size
        real = (pixels[index].float() / 127.5 - 1).contiguous(memory_format=memory_format)
        labels = labels_all[index]
        z = torch.randn(batch_size, model_config.z_dim, device=device)

        # Discriminator step; the same fake batch then trains G (one G forward per iteration).
        with autocast_for(device, config.precision):
            fake = g_step(z, labels)
            d_loss, real_logits = gan_loss.discriminator_loss(d_step, real, fake, labels, augment)
        if config.debug_nan_at_step == step:
            d_loss = d_loss * float("nan")
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        if adaptive:
            controller.observe(real_logits)

        # Generator step.
        with autocast_for(device, config.precision):
            g_loss = gan_loss.generator_loss(d_step, fake, labels, augment)
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()

        # EMA of the generator, with a half-life ramped up from the start of training.
        images_seen = step * batch_size
        halflife = min(config.ema_halflife_images, images_seen * 0.1)
        beta = 0.5 ** (batch_size / max(halflife, 1e-8))
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, live_params, 1.0 - beta)
            for ema_buffer, buffer in zip(generator_ema.buffers(), generator.buffers()):
                ema_buffer.copy_(buffer)

        window.append(torch.stack([d_loss.detach().float(), g_loss.detach().float()]))
        bar.update(1)
        checkpoint_due = step % config.checkpoint_every == 0 or step == config.steps
        if step % config.log_every == 0 or checkpoint_due:
            losses = torch.stack(window).cpu().numpy()  # the one host sync per window
            bad = np.flatnonzero(~np.isfinite(losses).all(axis=1))
            if len(bad):
                bar.close()
                first = int(bad[0])
                raise TrainingDiverged(step - len(window) + 1 + first, *map(float, losses[first]))
            now = time.perf_counter()
            event = Progress(
                step=step,
                total_steps=config.steps,
                d_loss=float(losses[-1, 0]),
                g_loss=float(losses[-1, 1]),
                images_per_s=(step - window_start_step) * batch_size / max(now - window_started, 1e-9),
                augment_p=augment.p,
                real_sign_rate=controller.last_rt,
            )
            history.append(event)
            bar.set_postfix(d=f"{event.d_loss:.3f}", g=f"{event.g_loss:.3f}", p=f"{event.augment_p:.2f}")
            if callback is not None:
                callback(event)
            window, window_started, window_start_step = [], now, step
        if checkpoint_due:
            last_checkpoint = save(step)
    bar.close()

    wall_s = time.perf_counter() - started
    steps_run = config.steps - start_step
    if last_checkpoint is None:  # resumed at the final step: nothing left to run
        last_checkpoint = latest_checkpoint(checkpoint_dir)
    generator_path = save_generator(
        generator_ema,
        run_dir / "generator.safetensors",
        extra={"steps": config.steps, "train_config": dataclasses.asdict(config), "data_hash": data_hash},
    )
    return TrainResult(
        generator=generator_ema,
        model_config=model_config,
        config=config,
        steps=config.steps,
        resumed_from=start_step,
        wall_s=wall_s,
        images_per_s=steps_run * batch_size / max(wall_s, 1e-9),
        augment_p=augment.p,
        generator_path=generator_path,
        checkpoint=last_checkpoint,
        history=history,
    )

