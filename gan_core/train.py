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
import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .augment import DiffAugment
from .checkpoint import latest_checkpoint, list_checkpoints, save_generator, weights_digest
from .data import ImageData, load_source
from .device import autocast_for, choose_device
from .distributed import device_for, init_world, world_from_env
from .losses import GANLoss
from .train_config import PROFILES, SMALL_DATASET, Progress, TrainConfig, TrainingDiverged, TrainResult
from .train_state import Session, TrainState, new_state, resume_state, save_state

__all__ = ["PROFILES", "Progress", "TrainConfig", "TrainResult", "TrainingDiverged", "parse_cli", "train"]


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

    # Set up: the device and the world of processes, the models and optimizers, the data on the device.
    session = _open_session(data, config, run_dir)
    loop = _Loop.build(data, session)
    world = session.world

    # Continue the latest checkpoint, or start afresh without the old run's checkpoints.
    not_resumed = resume_state(loop.state, session, resume) if resume else None
    start_step = loop.state.step
    if start_step == 0 and world.is_main:
        for stale in list_checkpoints(session.checkpoint_dir):
            stale.unlink()
    world.barrier()
    if start_step == 0:  # a resumed run continues its own random stream
        torch.manual_seed(config.seed + 7919 * world.rank)  # augmentation draws differ between ranks
    last_checkpoint = latest_checkpoint(session.checkpoint_dir) if start_step else None
    quiet = not world.is_main or (progress_bar is not None and not progress_bar)
    bar = tqdm(total=config.steps, initial=start_step, disable=True if quiet else None, desc="train")
    clock = _Clock(start_step)

    # Train: one D step and one G step (on the same fake batch) per iteration, then the EMA.
    for step in range(start_step + 1, config.steps + 1):
        loop.state.step = step
        real, labels, z = loop.next_batch()
        loop.losses.append(loop.gan_step(real, labels, z))
        loop.update_ema(step)
        bar.update(1)
        checkpoint_due = step % config.checkpoint_every == 0 or step == config.steps
        if step % config.log_every == 0 or checkpoint_due:
            try:
                event = loop.report(step, clock)
            except TrainingDiverged:
                bar.close()
                raise
            bar.set_postfix(d=f"{event.d_loss:.3f}", g=f"{event.g_loss:.3f}", p=f"{event.augment_p:.2f}")
            if callback is not None and world.is_main:
                callback(event)
        if checkpoint_due:
            last_checkpoint = save_state(loop.state, session)
    bar.close()

    # Save the EMA generator (its batch-norm statistics averaged over ranks).
    wall_s = time.perf_counter() - clock.started
    if last_checkpoint is None:  # resumed at the final step: nothing left to run
        last_checkpoint = latest_checkpoint(session.checkpoint_dir)
    world.average_floats(loop.state.generator_ema.buffers())
    generator_path = run_dir / "generator.safetensors"
    if world.is_main:
        extra = {"steps": config.steps, "train_config": dataclasses.asdict(config), "data_hash": session.data_hash}
        save_generator(loop.state.generator_ema, generator_path, extra=extra)
    world.barrier()
    return TrainResult(
        generator=loop.state.generator_ema,
        model_config=session.model_config,
        config=config,
        steps=config.steps,
        resumed_from=start_step,
        wall_s=wall_s,
        images_per_s=(config.steps - start_step) * loop.batch_size / max(wall_s, 1e-9),
        augment_p=loop.augment.p,
        generator_path=generator_path,
        checkpoint=last_checkpoint,
        history=loop.history,
        not_resumed=not_resumed,
        processes=world.size,
    )


def _open_session(data: ImageData, config: TrainConfig, run_dir: Path) -> Session:
    device = choose_device(config.device)
    world = init_world(device)  # a world of one unless launched by torchrun
    device = device_for(world, device)
    # channels_last is faster on CUDA and, measured here, on CPU too (about 20% for the quick model).
    channels_last = device.type in ("cuda", "cpu") if config.channels_last == "auto" else config.channels_last == "on"
    return Session(
        config=config,
        model_config=config.model_config(data),
        device=device,
        world=world,
        memory_format=torch.channels_last if channels_last else torch.contiguous_format,
        checkpoint_dir=run_dir / "checkpoints",
        data_hash=data.content_hash(),
    )


@dataclass
class _Clock:
    """Wall time since the run (re)started and since the last report, for images/s and time left."""

    start_step: int
    started: float = field(default_factory=time.perf_counter)
    window_started: float = 0.0
    window_start_step: int = 0

    def __post_init__(self) -> None:
        self.window_started, self.window_start_step = self.started, self.start_step


@dataclass
class _Loop:
    """The training iteration's parts: the state, the loss, augmentation, and this rank's batches."""

    session: Session
    state: TrainState
    augment: DiffAugment
    adaptive: bool  # the ADA controller moves the augmentation probability
    gan_loss: GANLoss
    g_forward: torch.nn.Module  # the generator, compiled when asked
    d_forward: torch.nn.Module
    pixels: torch.Tensor  # the whole dataset on the device as uint8: a batch is an index gather
    labels: torch.Tensor
    batch_size: int  # global
    mine: slice  # this rank's share of every batch
    local_groups: int  # generator batch-norm groups on this rank
    ema_pairs: tuple[list[torch.Tensor], list[torch.Tensor]] = ((), ())  # (EMA, live) generator parameters, listed once
    losses: list[torch.Tensor] = field(default_factory=list)  # per-step (d_loss, g_loss) on the device, read back at each report
    history: list[Progress] = field(default_factory=list)

    @classmethod
    def build(cls, data: ImageData, session: Session) -> _Loop:
        config, world, device = session.config, session.world, session.device
        torch.manual_seed(config.seed)
        use_augment = config.augment == "on" or (config.augment == "auto" and len(data) < SMALL_DATASET)
        augment = DiffAugment(config.augment_policy if use_augment else "", p=config.augment_p or 0.0)
        state = new_state(session, augment, len(data))
        forwards = (state.generator, state.discriminator)
        if config.compile:
            forwards = tuple(torch.compile(module, mode=config.compile_mode) for module in forwards)
        batch_size = min(config.batch_size, len(data))
        groups = max(config.g_norm_groups, world.size)
        if groups % world.size or batch_size % groups:
            raise ValueError(f"batch_size {batch_size} must split into g_norm_groups={groups} equal parts, a multiple of the {world.size} process(es)")
        local_size = batch_size // world.size
        return cls(
            session=session,
            state=state,
            augment=augment,
            adaptive=use_augment and config.augment_p is None,
            gan_loss=GANLoss(config.loss, config.r1_gamma, class_weight=config.class_weight),
            g_forward=forwards[0],
            d_forward=forwards[1],
            pixels=torch.from_numpy(data.images).to(device),
            labels=torch.from_numpy(data.labels).to(device),
            batch_size=batch_size,
            mine=slice(world.rank * local_size, (world.rank + 1) * local_size),
            local_groups=groups // world.size,
            ema_pairs=(list(state.generator_ema.parameters()), list(state.generator.parameters())),
        )

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """This rank's part of the next global batch: real images in [-1, 1], their labels, latents."""
        state, session = self.state, self.session
        if state.position + self.batch_size > len(state.order):
            state.order, state.position = torch.randperm(len(self.pixels), generator=state.data_rng), 0
        index = state.order[state.position : state.position + self.batch_size][self.mine].to(session.device, non_blocking=True)
        state.position += self.batch_size
        real = (self.pixels[index].float() / 127.5 - 1).contiguous(memory_format=session.memory_format)
        z = torch.randn(self.batch_size, session.model_config.z_dim, device=session.device, generator=state.latent_rng)[self.mine]
        return real, self.labels[index], z

    def gan_step(self, real: torch.Tensor, labels: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """One D step, then one G step on the same fake batch (one G forward per iteration); the
        detached (d_loss, g_loss)."""
        state, config, device, world = self.state, self.session.config, self.session.device, self.session.world
        with autocast_for(device, config.precision):
            if self.local_groups == 1:
                fake = self.g_forward(z, labels)
            else:
                fake = torch.cat([self.g_forward(zs, ls) for zs, ls in zip(z.chunk(self.local_groups), labels.chunk(self.local_groups))])
            d_loss, real_logits = self.gan_loss.discriminator_loss(self.d_forward, real, fake, labels, self.augment)
        if config.debug_nan_at_step == state.step:
            d_loss = d_loss * float("nan")
        state.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        world.average_gradients(state.discriminator.parameters())
        state.opt_d.step()
        if self.adaptive:
            state.controller.observe(real_logits)

        with autocast_for(device, config.precision):
            g_loss = self.gan_loss.generator_loss(self.d_forward, fake, labels, self.augment)
        state.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        world.average_gradients(state.generator.parameters())
        state.opt_g.step()
        return torch.stack([d_loss.detach().float(), g_loss.detach().float()])

    def update_ema(self, step: int) -> None:
        """EMA of the generator, with a half-life ramped up from the start of training."""
        config, state = self.session.config, self.state
        halflife = min(config.ema_halflife_images, step * self.batch_size * 0.1)
        beta = 0.5 ** (self.batch_size / max(halflife, 1e-8))
        with torch.no_grad():
            torch._foreach_lerp_(*self.ema_pairs, 1.0 - beta)
            for ema_buffer, buffer in zip(state.generator_ema.buffers(), state.generator.buffers()):
                ema_buffer.copy_(buffer)

    def report(self, step: int, clock: _Clock) -> Progress:
        """The one host sync per window: the losses' mean over ranks (so every rank sees a
        divergence), checked finite, and the progress since the last report."""
        world, config = self.session.world, self.session.config
        losses = (world.all_sum(torch.stack(self.losses)) / world.size).cpu().numpy()
        bad = np.flatnonzero(~np.isfinite(losses).all(axis=1))
        if len(bad):
            first = int(bad[0])
            raise TrainingDiverged(step - len(self.losses) + 1 + first, *map(float, losses[first]))
        now = time.perf_counter()
        event = Progress(
            step=step,
            total_steps=config.steps,
            d_loss=float(losses[-1, 0]),
            g_loss=float(losses[-1, 1]),
            images_per_s=(step - clock.window_start_step) * self.batch_size / max(now - clock.window_started, 1e-9),
            augment_p=self.augment.p,
            real_sign_rate=self.state.controller.last_rt,
            seconds_left=(now - clock.started) / (step - clock.start_step) * (config.steps - step),
        )
        self.history.append(event)
        self.losses, clock.window_started, clock.window_start_step = [], now, step
        return event


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
