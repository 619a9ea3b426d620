"""The training loop: `TrainConfig`, profiles, EMA generator, DiffAugment + ADA, AMP on CUDA,
atomic checkpoints with exact resume, a divergence guard, a progress callback, and several
processes when launched by torchrun (`python -m gan_core.train`, see `main`).

Read `train()` top to bottom: set up, maybe resume, then one D step and one G step per iteration.

With N processes, `batch_size` stays the global batch: every rank draws the same global batch
indices and latents and works on its own 1/N of them; gradients are averaged over ranks before
each optimizer step. So N processes train the same model as one process with
`g_norm_groups=N` (the generator's batch norm then normalises each 1/N of the batch on its own, as
each rank does), up to floating-point summation order, when augmentation is off. Augmentation
draws differ per rank; batch-norm running statistics are averaged over ranks at checkpoints."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .progress import time_left
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
    weights_digest,
)
from .data import ImageData, load_source
from .device import autocast_for, choose_device
from .distributed import device_for, init_world, world_from_env
from .losses import GANLoss
from .models import Generator, ModelConfig, build_models

SMALL_DATASET = 50_000  # augmentation defaults on below this many images
CHECKPOINT_FORMAT = 2  # 2: RNG states per rank and the world size


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


@dataclass
class _Run:
    """Everything a checkpoint holds: the models, their optimizers, the augmentation controller, the
    random streams and the position in the shuffled data."""

    generator: Generator
    discriminator: torch.nn.Module
    generator_ema: Generator
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    controller: AdaptiveAugmentController
    data_rng: torch.Generator  # the same order on every rank
    latent_rng: torch.Generator  # the same global latents on every rank
    order: torch.Tensor
    position: int = 0
    step: int = 0


def train(
    data: ImageData,
    config: TrainConfig,
    run_dir: str | Path,
    *,
    resume: bool | str = False,
    callback: Callable[[Progress], None] | None = None,
    progress_bar: bool | None = None,
) -> TrainResult:
    if resume not in (False, True, "if-compatible"):
        raise ValueError(f"resume: expected False, True or 'if-compatible', got {resume!r}")
    run_dir = Path(run_dir)
    checkpoint_dir = run_dir / "checkpoints"
    device = choose_device(config.device)
    world = init_world(device)  # a world of one unless launched by torchrun
    device = device_for(world, device)
    # channels_last is faster on CUDA and, measured here, on CPU too (about 20% for the quick model).
    channels_last = device.type in ("cuda", "cpu") if config.channels_last == "auto" else config.channels_last == "on"
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    torch.manual_seed(config.seed)

    model_config = config.model_config(data)
    use_augment = config.augment == "on" or (config.augment == "auto" and len(data) < SMALL_DATASET)
    augment = DiffAugment(config.augment_policy if use_augment else "", p=config.augment_p or 0.0)
    adaptive = use_augment and config.augment_p is None
    run = _set_up(config, model_config, augment, len(data), device, memory_format, world)
    g_step, d_step = (
        (torch.compile(run.generator, mode=config.compile_mode), torch.compile(run.discriminator, mode=config.compile_mode))
        if config.compile
        else (run.generator, run.discriminator)
    )
    gan_loss = GANLoss(config.loss, config.r1_gamma, class_weight=config.class_weight)

    # Small datasets live on the device as uint8; a batch is an index gather, no host copy per step.
    pixels = torch.from_numpy(data.images).to(device)
    labels_all = torch.from_numpy(data.labels).to(device)
    batch_size = min(config.batch_size, len(data))
    groups = max(config.g_norm_groups, world.size)
    if groups % world.size or batch_size % groups:
        raise ValueError(f"batch_size {batch_size} must split into g_norm_groups={groups} equal parts, a multiple of the {world.size} process(es)")
    local_size, local_groups = batch_size // world.size, groups // world.size
    mine = slice(world.rank * local_size, (world.rank + 1) * local_size)  # this rank's share of every batch
    data_hash = data.content_hash()
    not_resumed = _resume(run, resume, checkpoint_dir, model_config, data_hash, world, device) if resume else None
    if run.step == 0 and world.is_main:
        for stale in list_checkpoints(checkpoint_dir):  # a fresh run must not mix with an old one's checkpoints
            stale.unlink()
    world.barrier()
    if run.step == 0:  # a resumed run continues its own random stream
        torch.manual_seed(config.seed + 7919 * world.rank)  # augmentation draws differ between ranks

    def save(step: int) -> Path:
        return _save(run, step, checkpoint_dir, config, model_config, data_hash, world, device)

    ema_params = list(run.generator_ema.parameters())
    live_params = list(run.generator.parameters())
    window: list[torch.Tensor] = []  # per-step (d_loss, g_loss) on the device, read back every log_every
    history: list[Progress] = []
    start_step = run.step
    last_checkpoint = latest_checkpoint(checkpoint_dir) if start_step else None
    quiet = not world.is_main or (progress_bar is not None and not progress_bar)
    bar = tqdm(total=config.steps, initial=start_step, disable=True if quiet else None, desc="train")
    started = window_started = time.perf_counter()
    window_start_step = start_step

    for step in range(start_step + 1, config.steps + 1):
        run.step = step
        if run.position + batch_size > len(run.order):
            run.order, run.position = torch.randperm(len(data), generator=run.data_rng), 0
        index = run.order[run.position : run.position + batch_size][mine].to(device, non_blocking=True)
        run.position += batch_size
        real = (pixels[index].float() / 127.5 - 1).contiguous(memory_format=memory_format)
        labels = labels_all[index]
        z = torch.randn(batch_size, model_config.z_dim, device=device, generator=run.latent_rng)[mine]

        # Discriminator step; the same fake batch then trains G (one G forward per iteration).
        with autocast_for(device, config.precision):
            if local_groups == 1:
                fake = g_step(z, labels)
            else:
                fake = torch.cat([g_step(zs, ls) for zs, ls in zip(z.chunk(local_groups), labels.chunk(local_groups))])
            d_loss, real_logits = gan_loss.discriminator_loss(d_step, real, fake, labels, augment)
        if config.debug_nan_at_step == step:
            d_loss = d_loss * float("nan")
        run.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        world.average_gradients(run.discriminator.parameters())
        run.opt_d.step()
        if adaptive:
            run.controller.observe(real_logits)

        # Generator step.
        with autocast_for(device, config.precision):
            g_loss = gan_loss.generator_loss(d_step, fake, labels, augment)
        run.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        world.average_gradients(run.generator.parameters())
        run.opt_g.step()

        # EMA of the generator, with a half-life ramped up from the start of training.
        images_seen = step * batch_size
        halflife = min(config.ema_halflife_images, images_seen * 0.1)
        beta = 0.5 ** (batch_size / max(halflife, 1e-8))
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, live_params, 1.0 - beta)
            for ema_buffer, buffer in zip(run.generator_ema.buffers(), run.generator.buffers()):
                ema_buffer.copy_(buffer)

        window.append(torch.stack([d_loss.detach().float(), g_loss.detach().float()]))
        bar.update(1)
        checkpoint_due = step % config.checkpoint_every == 0 or step == config.steps
        if step % config.log_every == 0 or checkpoint_due:
            # The one host sync per window; the mean over ranks, so every rank sees a divergence.
            losses = (world.all_sum(torch.stack(window)) / world.size).cpu().numpy()
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
                real_sign_rate=run.controller.last_rt,
                seconds_left=(now - started) / (step - start_step) * (config.steps - step),
            )
            history.append(event)
            bar.set_postfix(d=f"{event.d_loss:.3f}", g=f"{event.g_loss:.3f}", p=f"{event.augment_p:.2f}")
            if callback is not None and world.is_main:
                callback(event)
            window, window_started, window_start_step = [], now, step
        if checkpoint_due:
            last_checkpoint = save(step)
    bar.close()

    wall_s = time.perf_counter() - started
    if last_checkpoint is None:  # resumed at the final step: nothing left to run
        last_checkpoint = latest_checkpoint(checkpoint_dir)
    world.average_floats(run.generator_ema.buffers())
    generator_path = run_dir / "generator.safetensors"
    if world.is_main:
        save_generator(run.generator_ema, generator_path, extra={"steps": config.steps, "train_config": dataclasses.asdict(config), "data_hash": data_hash})
    world.barrier()
    return TrainResult(
        generator=run.generator_ema,
        model_config=model_config,
        config=config,
        steps=config.steps,
        resumed_from=start_step,
        wall_s=wall_s,
        images_per_s=(config.steps - start_step) * batch_size / max(wall_s, 1e-9),
        augment_p=augment.p,
        generator_path=generator_path,
        checkpoint=last_checkpoint,
        history=history,
        not_resumed=not_resumed,
        processes=world.size,
    )


def _set_up(config: TrainConfig, model_config: ModelConfig, augment: DiffAugment, n_images: int, device: torch.device, memory_format, world) -> _Run:
    """Models on the device (one start for all ranks), the EMA copy, optimizers, the augmentation
    controller and the random streams."""
    generator, discriminator = build_models(model_config)
    for module in (generator, discriminator):
        module.to(device, memory_format=memory_format)
    world.broadcast([*generator.state_dict().values(), *discriminator.state_dict().values()])
    fused = device.type == "cuda"
    betas = (config.beta1, config.beta2)
    data_rng = torch.Generator().manual_seed(config.seed + 1)
    return _Run(
        generator=generator,
        discriminator=discriminator,
        generator_ema=copy.deepcopy(generator).eval().requires_grad_(False),
        opt_g=torch.optim.Adam(generator.parameters(), lr=config.lr_g, betas=betas, fused=fused),
        opt_d=torch.optim.Adam(discriminator.parameters(), lr=config.lr_d, betas=betas, fused=fused),
        controller=AdaptiveAugmentController(augment, config.ada_target, config.ada_interval, config.ada_kimg, all_sum=world.all_sum),
        data_rng=data_rng,
        latent_rng=torch.Generator(device=device).manual_seed(config.seed + 2),
        order=torch.randperm(n_images, generator=data_rng),
    )


def _resume(run: _Run, resume: bool | str, checkpoint_dir: Path, model_config: ModelConfig, data_hash: str, world, device: torch.device) -> str | None:
    """Continue from the latest checkpoint, if any: every rank reads the same file, so every rank
    decides alike. Returns why a checkpoint found was not used (resume="if-compatible") or None."""
    found = world.broadcast_object(latest_checkpoint(checkpoint_dir) if world.is_main else None)
    if found is None:
        return None
    try:
        state = _resumable_state(found, model_config, data_hash, world.size)
    except CheckpointError as error:
        if resume != "if-compatible":
            raise
        return str(error)
    run.generator.load_state_dict(state["G"])
    run.discriminator.load_state_dict(state["D"])
    run.generator_ema.load_state_dict(state["G_ema"])
    run.opt_g.load_state_dict(state["opt_g"])
    run.opt_d.load_state_dict(state["opt_d"])
    run.controller.load_state_dict(state["augment"])
    torch.set_rng_state(state["rng"]["torch"][world.rank])
    if device.type == "cuda" and state["rng"]["cuda"][world.rank] is not None:
        torch.cuda.set_rng_state(state["rng"]["cuda"][world.rank], device)
    run.data_rng.set_state(state["rng"]["data"])
    run.latent_rng.set_state(state["rng"]["latent"])
    run.order, run.position, run.step = state["order"], int(state["position"]), int(state["step"])
    return None


def _save(run: _Run, step: int, checkpoint_dir: Path, config: TrainConfig, model_config: ModelConfig, data_hash: str, world, device: torch.device) -> Path:
    """Collective: every rank calls it (buffers averaged, RNG states gathered); rank 0 writes."""
    world.average_floats([*run.generator.buffers(), *run.generator_ema.buffers()])
    rng_torch = world.gather_objects(torch.get_rng_state())
    rng_cuda = world.gather_objects(torch.cuda.get_rng_state(device) if device.type == "cuda" else None)
    path = checkpoint_path(checkpoint_dir, step)
    if not world.is_main:
        return path
    state = {
        "format": CHECKPOINT_FORMAT,
        "world_size": world.size,
        "step": step,
        "model_config": model_config.to_dict(),
        "train_config": dataclasses.asdict(config),
        "data_hash": data_hash,
        "G": run.generator.state_dict(),
        "D": run.discriminator.state_dict(),
        "G_ema": run.generator_ema.state_dict(),
        "opt_g": run.opt_g.state_dict(),
        "opt_d": run.opt_d.state_dict(),
        "augment": run.controller.state_dict(),
        "rng": {"torch": rng_torch, "cuda": rng_cuda, "data": run.data_rng.get_state(), "latent": run.latent_rng.get_state()},
        "order": run.order,
        "position": run.position,
    }
    save_checkpoint(state, path)
    prune_checkpoints(checkpoint_dir, config.keep_checkpoints)
    return path


def _resumable_state(found: Path, model_config: ModelConfig, data_hash: str, world_size: int) -> dict[str, Any]:
    """The checkpoint's state if this run can continue it; a CheckpointError saying why not otherwise."""
    state = load_checkpoint(found)
    if state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{found}: checkpoint format {state.get('format')}, this version reads {CHECKPOINT_FORMAT}; cannot resume from it")
    if state.get("model_config") != model_config.to_dict() or state.get("data_hash") != data_hash:
        raise CheckpointError(f"{found}: was trained with another model config or dataset; cannot resume from it")
    if state.get("world_size") != world_size:
        raise CheckpointError(f"{found}: was written by {state.get('world_size')} process(es); resume it with the same number, not {world_size}")
    return state


def parse_cli(argv: list[str] | None = None, description: str | None = None) -> tuple[ImageData, TrainConfig, Path, bool | str]:
    """(data, config, run directory, resume) from `--data --run-dir --config --resume [if-compatible]`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", required=True, help="an .npz of images and labels (gan_core.data's npz loader)")
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--config", default="{}", help="TrainConfig fields as JSON, profile included")
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        choices=[True, "if-compatible"],
        help="continue the run directory's last checkpoint; with if-compatible, start afresh when it cannot be continued",
    )
    args = parser.parse_args(argv)
    fields = json.loads(args.config)
    config = TrainConfig.from_profile(fields.pop("profile", "quick"), **fields)
    return load_source({"kind": "npz", "path": args.data}), config, Path(args.run_dir), args.resume


def main(argv: list[str] | None = None) -> int:
    """`torchrun --nproc_per_node=N -m gan_core.train --data train.npz --run-dir DIR [--config JSON]`
    (or plain `python -m`): progress as JSON lines and a summary from rank 0."""
    data, config, run_dir, resume = parse_cli(argv, main.__doc__)

    def emit(payload: dict) -> None:  # one write per line: ranks share stdout, and short writes to a pipe do not interleave
        os.write(1, (json.dumps(payload) + "\n").encode())

    def report(progress: Progress) -> None:
        emit({"progress": dataclasses.asdict(progress)})

    result = train(data, config, run_dir, resume=resume, callback=report, progress_bar=False)
    # Every rank reports its own digest of the weights: they must all be the same.
    world = world_from_env()
    summary = {
        "rank": world.rank,
        "weights_sha256": weights_digest(result.generator),
        "augment_p": result.augment_p,
        "steps": result.steps,
        "resumed_from": result.resumed_from,
    }
    if world.is_main:
        summary.update(generator_path=str(result.generator_path), checkpoint=str(result.checkpoint), wall_s=result.wall_s, images_per_s=result.images_per_s)
    emit({"result": summary})
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
