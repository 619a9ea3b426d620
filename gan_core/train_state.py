"""A training run's state and its checkpoints: the models, optimizers, augmentation controller,
random streams and data position, built once, saved atomically and continued exactly."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .augment import AdaptiveAugmentController, DiffAugment
from .checkpoint import CheckpointError, checkpoint_path, latest_checkpoint, load_checkpoint, prune_checkpoints, save_checkpoint
from .distributed import World
from .models import Generator, ModelConfig, build_models
from .train_config import TrainConfig

CHECKPOINT_FORMAT = 2  # 2: RNG states per rank and the world size


@dataclass(frozen=True)
class Session:
    """What stays fixed for a whole run: its settings, where it runs and what it learns from."""

    config: TrainConfig
    model_config: ModelConfig
    device: torch.device
    world: World
    memory_format: torch.memory_format
    checkpoint_dir: Path
    data_hash: str


@dataclass
class TrainState:
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


def new_state(session: Session, augment: DiffAugment, n_images: int) -> TrainState:
    """Models on the device (one start for all ranks), the EMA copy, optimizers, the augmentation
    controller and the random streams."""
    config, device, world = session.config, session.device, session.world
    generator, discriminator = build_models(session.model_config)
    for module in (generator, discriminator):
        module.to(device, memory_format=session.memory_format)
    world.broadcast([*generator.state_dict().values(), *discriminator.state_dict().values()])
    fused = device.type == "cuda"
    betas = (config.beta1, config.beta2)
    data_rng = torch.Generator().manual_seed(config.seed + 1)
    return TrainState(
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


def resume_state(state: TrainState, session: Session, resume: bool | str) -> str | None:
    """Continue from the latest checkpoint, if any: every rank reads the same file, so every rank
    decides alike. Returns why a checkpoint found was not used (resume="if-compatible") or None."""
    world = session.world
    found = world.broadcast_object(latest_checkpoint(session.checkpoint_dir) if world.is_main else None)
    if found is None:
        return None
    try:
        saved = _resumable(found, session)
    except CheckpointError as error:
        if resume != "if-compatible":
            raise
        return str(error)
    state.generator.load_state_dict(saved["G"])
    state.discriminator.load_state_dict(saved["D"])
    state.generator_ema.load_state_dict(saved["G_ema"])
    state.opt_g.load_state_dict(saved["opt_g"])
    state.opt_d.load_state_dict(saved["opt_d"])
    state.controller.load_state_dict(saved["augment"])
    torch.set_rng_state(saved["rng"]["torch"][world.rank])
    if session.device.type == "cuda" and saved["rng"]["cuda"][world.rank] is not None:
        torch.cuda.set_rng_state(saved["rng"]["cuda"][world.rank], session.device)
    state.data_rng.set_state(saved["rng"]["data"])
    state.latent_rng.set_state(saved["rng"]["latent"])
    state.order, state.position, state.step = saved["order"], int(saved["position"]), int(saved["step"])
    return None


def save_state(state: TrainState, session: Session) -> Path:
    """Checkpoint at `state.step`. Collective: every rank calls it (buffers averaged, RNG states
    gathered); rank 0 writes."""
    world, device = session.world, session.device
    world.average_floats([*state.generator.buffers(), *state.generator_ema.buffers()])
    rng_torch = world.gather_objects(torch.get_rng_state())
    rng_cuda = world.gather_objects(torch.cuda.get_rng_state(device) if device.type == "cuda" else None)
    path = checkpoint_path(session.checkpoint_dir, state.step)
    if not world.is_main:
        return path
    saved = {
        "format": CHECKPOINT_FORMAT,
        "world_size": world.size,
        "step": state.step,
        "model_config": session.model_config.to_dict(),
        "train_config": dataclasses.asdict(session.config),
        "data_hash": session.data_hash,
        "G": state.generator.state_dict(),
        "D": state.discriminator.state_dict(),
        "G_ema": state.generator_ema.state_dict(),
        "opt_g": state.opt_g.state_dict(),
        "opt_d": state.opt_d.state_dict(),
        "augment": state.controller.state_dict(),
        "rng": {"torch": rng_torch, "cuda": rng_cuda, "data": state.data_rng.get_state(), "latent": state.latent_rng.get_state()},
        "order": state.order,
        "position": state.position,
    }
    save_checkpoint(saved, path)
    prune_checkpoints(session.checkpoint_dir, session.config.keep_checkpoints)
    return path


def _resumable(found: Path, session: Session) -> dict[str, Any]:
    """The checkpoint's state if this run can continue it; a CheckpointError saying why not otherwise."""
    saved = load_checkpoint(found)
    if saved.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{found}: checkpoint format {saved.get('format')}, this version reads {CHECKPOINT_FORMAT}; cannot resume from it")
    if saved.get("model_config") != session.model_config.to_dict() or saved.get("data_hash") != session.data_hash:
        raise CheckpointError(f"{found}: was trained with another model config or dataset; cannot resume from it")
    if saved.get("world_size") != session.world.size:
        raise CheckpointError(f"{found}: was written by {saved.get('world_size')} process(es); resume it with the same number, not {session.world.size}")
    return saved
