"""Evaluation speed and memory.

1. Feature-extraction throughput of our evaluation (`InceptionBackbone.extract`, batched) against
   calling torchmetrics' FrechetInceptionDistance.update directly on the same uint8 tensors, in the
   same run. Inception has random weights of the right structure (speed does not depend on them).
2. Peak RSS of one `gan_core.metrics.evaluate` call (generate N samples, features, FID/KID/IS,
   PRDC, label accuracy, memorization) for N = 10,000 and 50,000, each in a fresh process. On CPU the domain
   backbone is used for this part (Inception at 299 px would take an hour for 50,000 on 2 cores);
   `--memory-backbone inception` forces Inception (use it on a GPU).

3. With `--fid-samples N` (default 50,000 on CUDA, off on CPU): the wall time of Inception FID on N
   generated samples against the real set (generation, features of both sets, the Fréchet distance),
   the figure to hold against torch-fidelity's 2 min 26 s for its metrics on 50k CIFAR images (P100).

Last line: one JSON object with ours_images_per_s, torchmetrics_images_per_s, ratio,
peak_rss_mb_10k, peak_rss_mb_50k (and fid_wall_s_<N> when measured).

    .venv/bin/python benchmarks/eval_speed.py [--device cuda] [--images 256] [--fid-samples 50000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gan_core.device import choose_device


def throughput(device: str, n_images: int, batch_size: int, repeats: int) -> tuple[float, float]:
    from torchmetrics.image.fid import FrechetInceptionDistance

    from gan_core.metrics import InceptionBackbone, resolve_inception_weights, write_random_inception_weights

    with tempfile.TemporaryDirectory() as scratch:
        weights = write_random_inception_weights(Path(scratch) / "random.pth")
        ours = InceptionBackbone(resolve_inception_weights(weights, allow_unverified=True), device=device)
        dev = choose_device(device)
        reference = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(weights)).to(dev)
    images = np.random.default_rng(0).integers(0, 256, (n_images, 3, 32, 32), dtype=np.uint8)
    ours.extract(images[:batch_size], batch_size)  # warm-up
    ours_times, reference_times = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        features, _ = ours.extract(images, batch_size)
        ours_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        for start in range(0, n_images, batch_size):
            reference.update(torch.from_numpy(images[start : start + batch_size]).to(dev), real=True)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        reference_times.append(time.perf_counter() - started)
    return n_images / min(ours_times), n_images / min(reference_times)


def fid_wall(device: str, n: int, batch_size: int) -> tuple[float, float]:
    """(seconds, FID) for FID of n generated samples against mnist-5k's train split, Inception backbone."""
    from gan_core.data import load_source
    from gan_core.metrics import InceptionBackbone, fid_from_features, resolve_inception_weights, write_random_inception_weights
    from gan_core.models import FoldedGenerator, Generator, ModelConfig
    from gan_core.sample import generate

    real = load_source({"kind": "builtin", "name": "mnist-5k"}, size=32, channels=1).split(0.2, seed=0)[0]
    torch.manual_seed(0)
    generator = FoldedGenerator(Generator(ModelConfig(32, 1, 10, 64, 16, 16)).to(choose_device(device)))
    with tempfile.TemporaryDirectory() as scratch:
        backbone = InceptionBackbone(resolve_inception_weights(write_random_inception_weights(Path(scratch) / "r.pth"), allow_unverified=True), device=device)
    backbone.extract(real.images[:batch_size], batch_size)  # warm-up: kernels and allocator
    dev = choose_device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    labels = np.arange(n) % 10
    synthetic_features = []
    for start in range(0, n, batch_size):  # generate and extract batch by batch, as evaluate() does
        images = generate(generator, labels[start : start + batch_size], seed=start, batch_size=batch_size)
        synthetic_features.append(backbone.extract(images, batch_size)[0])
    real_features, _ = backbone.extract(real.images, batch_size)
    fid = fid_from_features(real_features, np.concatenate(synthetic_features))
    return time.perf_counter() - started, fid


def memory_worker(n: int, backbone: str, device: str) -> None:
    """Peak RSS of one `evaluate()` call on n samples (no uplift), in this fresh process."""
    from gan_core.classifier import ClassifierConfig, train_classifier
    from gan_core.data import load_source
    from gan_core.metrics import evaluate, resolve_inception_weights, write_random_inception_weights
    from gan_core.models import Generator, ModelConfig

    data = load_source({"kind": "builtin", "name": "mnist-5k"}, size=32, channels=1)
    train, holdout = data.split(0.2, seed=0)
    judge = train_classifier(train, ClassifierConfig(epochs=1, width=16, device=device))
    torch.manual_seed(0)
    generator = Generator(ModelConfig(32, 1, 10, 64, 16, 16)).to(choose_device(device)).eval()
    with tempfile.TemporaryDirectory() as scratch:
        weights = None
        if backbone == "inception":
            weights = resolve_inception_weights(write_random_inception_weights(Path(scratch) / "r.pth"), allow_unverified=True)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        started = time.perf_counter()
        evaluate(generator, train, holdout, judge, Path(scratch) / "report", n_samples=n, backbone=backbone, inception_weights=weights, allow_unverified_weights=True)
        wall = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    feature_dim = 2048 if backbone == "inception" else judge.net.shape["feature_dim"]
    print(json.dumps({"n": n, "peak_rss_mb": peak, "rss_before_eval_mb": before, "feature_mb": n * (feature_dim + 10) * 4 / 2**20, "wall_s": wall}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--images", type=int, default=256, help="images for the throughput comparison")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--memory-backbone", default=None, help="domain (default on CPU) or inception (default on CUDA)")
    parser.add_argument("--sizes", default="10000,50000")
    parser.add_argument("--fid-samples", type=int, default=None, help="time Inception FID on this many samples (default: 50000 on CUDA, 0 on CPU)")
    parser.add_argument("--fid-batch-size", type=int, default=500)
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        memory_worker(int(args.worker[0]), args.worker[1], args.worker[2])
        return

    device = choose_device(args.device)
    ours, reference = throughput(args.device, args.images, args.batch_size, args.repeats)
    print(f"device {device}: Inception feature extraction, {args.images} images of 32×32 → 299 px")
    print(f"ours {ours:.1f} images/s, torchmetrics FID.update {reference:.1f} images/s, ratio {ours / reference:.3f}")
    figures = {"ours_images_per_s": ours, "torchmetrics_images_per_s": reference, "ratio": ours / reference}
    backbone = args.memory_backbone or ("inception" if device.type == "cuda" else "domain")
    for n in (int(s) for s in args.sizes.split(",")):
        out = subprocess.run([sys.executable, __file__, "--worker", str(n), backbone, args.device], check=True, capture_output=True, text=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        label = {10_000: "10k", 50_000: "50k"}.get(n, str(n))
        figures[f"peak_rss_mb_{label}"] = result["peak_rss_mb"]
        print(f"evaluate() on {n:,} samples ({backbone} backbone): peak RSS {result['peak_rss_mb']:.0f} MB, {result['rss_before_eval_mb']:.0f} MB before it "
              f"(features and logits {result['feature_mb']:.1f} MB), {result['wall_s']:.0f} s")
    fid_samples = args.fid_samples if args.fid_samples is not None else (50_000 if device.type == "cuda" else 0)
    if fid_samples:
        wall, fid = fid_wall(args.device, fid_samples, args.fid_batch_size)
        figures[f"fid_wall_s_{fid_samples}"] = wall
        print(f"Inception FID of {fid_samples:,} generated samples against 4,000 real ones on {device}: {wall:.1f} s wall (FID {fid:.1f}, random weights)")
    print(json.dumps({key: round(value, 3) for key, value in figures.items()}))


if __name__ == "__main__":
    main()
