"""Trainer throughput against a bare hand-written PyTorch loop doing the same per-step work
(same models, batch, hinge loss with the auxiliary class term, DiffAugment at a fixed
probability, EMA update), in one run.

Both sides use the same memory format, measured once contiguous and once channels_last. Runs are
interleaved (trainer, bare, trainer, bare, ...) and the best of each is kept, so machine noise hits
both alike. Last line: one JSON object with trainer_images_per_s, baseline_images_per_s and ratio
(trainer / baseline) in the trainer's default format on this device, and the same keys per format
(`_contiguous`, `_channels_last`).

With `--gpu-paths` (the default on CUDA) it instead compares, at 32 and 64 px, the trainer in fp32
eager mode (no autocast, no channels_last, no compile, the profile's batch) against its optimized
path (bf16 autocast, channels_last, fused Adam, torch.compile with CUDA graphs, a larger batch; the
dataset lives on the device and losses are read back once per log interval in both). Last line:
fp32_eager_images_per_s_32, optimized_images_per_s_32, ratio_32 and the same for 64.

    .venv/bin/python benchmarks/train_speed.py [--device cuda] [--size 32] [--steps 200] [--gpu-paths]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time

import torch
from torch.nn import functional as F

from gan_core.augment import DiffAugment
from gan_core.data import ImageData, load_source, normalise
from gan_core.device import autocast_for, choose_device
from gan_core.models import build_models
from gan_core.train import TrainConfig, train


def bare_loop(data: ImageData, config: TrainConfig, steps: int) -> float:
    """What a person would write by hand: no checkpoints, no progress, no guard. Returns images/s.
    Uses the memory format `config.channels_last` names ("on" or "off"), as the trainer does."""
    device = choose_device(config.device)
    memory_format = torch.channels_last if config.channels_last == "on" else torch.contiguous_format
    torch.manual_seed(config.seed)
    generator, discriminator = build_models(config.model_config(data))
    generator_ema = build_models(config.model_config(data))[0].eval().requires_grad_(False)
    generator_ema.load_state_dict(generator.state_dict())
    for module in (generator, discriminator, generator_ema):
        module.to(device, memory_format=memory_format)
    opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr_g, betas=(config.beta1, config.beta2))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr_d, betas=(config.beta1, config.beta2))
    augment = DiffAugment(config.augment_policy, p=config.augment_p)
    pixels = torch.from_numpy(data.images).to(device)
    labels_all = torch.from_numpy(data.labels).to(device)
    beta = 0.5 ** (config.batch_size / config.ema_halflife_images)
    started = time.perf_counter()
    for _ in range(steps):
        index = torch.randint(len(data), (config.batch_size,), device=device)
        real, labels = (pixels[index].float() / 127.5 - 1).contiguous(memory_format=memory_format), labels_all[index]
        z = torch.randn(config.batch_size, config.z_dim, device=device)
        with autocast_for(device, config.precision):
            fake = generator(z, labels)
            real_logits, real_classes = discriminator(augment(real), labels, with_classes=True)
            d_loss = F.relu(1 - real_logits).mean() + F.relu(1 + discriminator(augment(fake.detach()), labels)).mean()
            d_loss = d_loss + config.class_weight * F.cross_entropy(real_classes.float(), labels)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        with autocast_for(device, config.precision):
            fake_logits, fake_classes = discriminator(augment(fake), labels, with_classes=True)
            g_loss = -fake_logits.mean() + config.class_weight * F.cross_entropy(fake_classes.float(), labels)
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        with torch.no_grad():
            for ema_p, p in zip(generator_ema.parameters(), generator.parameters()):
                ema_p.lerp_(p, 1 - beta)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * config.batch_size / (time.perf_counter() - started)


def gpu_paths(device: str, profile: str, steps: int, optimized_batch: int, sizes: list[int]) -> dict[str, float]:
    """fp32 eager against the optimized path, one after the other at each size, best of two each."""
    figures = {}
    for size in sizes:
        data = normalise(load_source({"kind": "builtin", "name": "mnist-5k"}), size, 1)
        common = {"steps": steps, "augment": "on", "augment_p": 0.2, "device": device, "log_every": steps, "checkpoint_every": steps}
        eager = TrainConfig.from_profile(profile, **common, precision="fp32", channels_last="off", compile=False)
        fast = TrainConfig.from_profile(
            profile,
            **common,
            precision="bf16",
            channels_last="on",
            compile=True,
            compile_mode="max-autotune-no-cudagraphs" if choose_device(device).type != "cuda" else "reduce-overhead",
            batch_size=optimized_batch,
        )
        rates = {}
        for label, config in (("fp32_eager", eager), ("optimized", fast)):
            torch._dynamo.reset()  # compiled graphs are cached per code object: start each path clean
            with tempfile.TemporaryDirectory() as run_dir:
                train(data, dataclasses.replace(config, steps=max(10, steps // 10)), run_dir, progress_bar=False)  # compile and warm up
            best = 0.0
            for _ in range(2):
                with tempfile.TemporaryDirectory() as run_dir:
                    best = max(best, train(data, config, run_dir, progress_bar=False).images_per_s)
            rates[label] = best
        figures[f"fp32_eager_images_per_s_{size}"] = round(rates["fp32_eager"], 1)
        figures[f"optimized_images_per_s_{size}"] = round(rates["optimized"], 1)
        figures[f"ratio_{size}"] = round(rates["optimized"] / rates["fp32_eager"], 3)
        print(
            f"{size} px: fp32 eager {rates['fp32_eager']:.0f} images/s (batch {eager.batch_size}), optimized {rates['optimized']:.0f} images/s "
            f"(batch {fast.batch_size}), ratio {figures[f'ratio_{size}']:.2f}"
        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gpu-paths", action=argparse.BooleanOptionalAction, default=None, help="fp32 eager vs optimized at 32 and 64 px (default on CUDA)")
    parser.add_argument("--optimized-batch", type=int, default=1024)
    parser.add_argument("--gpu-sizes", default="32,64")
    args = parser.parse_args()
    if args.gpu_paths or (args.gpu_paths is None and choose_device(args.device).type == "cuda"):
        print(f"device {choose_device(args.device)}, profile {args.profile}, {args.steps} steps per measurement")
        print(json.dumps(gpu_paths(args.device, args.profile, args.steps, args.optimized_batch, [int(s) for s in args.gpu_sizes.split(",")])))
        return

    data = normalise(load_source({"kind": "builtin", "name": "mnist-5k"}), args.size, 1)
    base = TrainConfig.from_profile(args.profile, steps=args.steps, augment="on", augment_p=0.2, device=args.device)
    device = choose_device(args.device)
    default_format = "channels_last" if device.type in ("cuda", "cpu") else "contiguous"  # the trainer's "auto"
    print(f"device {device}, {args.size} px, profile {args.profile}, batch {base.batch_size}, {args.steps} steps × {args.repeats}, both memory formats")
    figures = {}
    for label, switch in (("contiguous", "off"), ("channels_last", "on")):
        # The same memory format on both sides, so the ratio is the trainer's own overhead.
        config = dataclasses.replace(base, channels_last=switch)
        bare_loop(data, config, 10)  # warm-up (allocator, kernels)
        trainer_rates, bare_rates = [], []
        for repeat in range(args.repeats):
            with tempfile.TemporaryDirectory() as run_dir:
                trainer_rates.append(train(data, config, run_dir, progress_bar=False).images_per_s)
            bare_rates.append(bare_loop(data, config, args.steps))
            print(f"{label} repeat {repeat + 1}: trainer {trainer_rates[-1]:.0f} images/s, bare loop {bare_rates[-1]:.0f} images/s")
        trainer, bare = max(trainer_rates), max(bare_rates)
        print(f"{label} best: trainer {trainer:.0f} images/s, bare loop {bare:.0f} images/s, ratio {trainer / bare:.3f}")
        figures.update(
            {f"trainer_images_per_s_{label}": round(trainer, 1), f"baseline_images_per_s_{label}": round(bare, 1), f"ratio_{label}": round(trainer / bare, 4)}
        )
    # The headline keys: the trainer's default format on this device, the same on both sides.
    headline = {
        "trainer_images_per_s": figures[f"trainer_images_per_s_{default_format}"],
        "baseline_images_per_s": figures[f"baseline_images_per_s_{default_format}"],
        "ratio": figures[f"ratio_{default_format}"],
    }
    print(json.dumps({**headline, "memory_format": default_format, **figures}))


if __name__ == "__main__":
    main()
