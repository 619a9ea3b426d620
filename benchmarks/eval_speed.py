"""Evaluation speed and memory.

1. Our `evaluate()` against the script a user would write instead, on the same generated samples
   (same generator, labels and seeds) and the same real images at the same N, on the same device:
   - ours: `evaluate(..., backbone="inception", metrics=["fid", "kid", "is_inception"],
     per_class_fid=False)`: generation, one Inception pass over samples, train and holdout, and each
     figure with its real-vs-real baseline;
   - plain: torchmetrics' documented usage, FrechetInceptionDistance + KernelInceptionDistance +
     InceptionScore, each metric object with its own Inception network fed the images (train images
     as real, the samples as fake), after generating the samples.
   Then the full `evaluate()` (every registered metric, per-class FID, figures) on the same inputs,
   with the seconds each stage and metric took: what the extra time buys. Inception has random
   weights of the right structure (speed does not depend on them; none can be downloaded here).
   On CPU Inception runs at about 6 images/s on 2 cores, so N defaults to 128 there (10,000 on CUDA).
2. Peak RSS of one full `evaluate()` call for N = 10,000 and 50,000, each in a fresh process. On CPU
   the domain backbone is used for this part (Inception at 299 px would take hours for 50,000 on 2
   cores); `--memory-backbone inception` forces Inception (use it on a GPU).
3. With `--fid-samples N` (default 50,000 on CUDA, off on CPU): the wall time of Inception FID on N
   generated samples against the real set (generation, features of both sets, the Fréchet distance),
   the figure to hold against torch-fidelity's 2 min 26 s for its metrics on 50k CIFAR images (P100).

Last line: one JSON object with ours_fid_kid_is_s, plain_fid_kid_is_s, ratio (plain ÷ ours, above 1:
ours is faster), evaluate_total_s, per_metric_s (seconds per stage and metric of the full
evaluate()), n, peak_rss_mb_10k, peak_rss_mb_50k (and fid_wall_s_<N> when measured).

    .venv/bin/python benchmarks/eval_speed.py [--device cuda] [--n 128] [--sizes 10000,50000] [--fid-samples 50000]
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


def comparison_inputs(device: str, n: int, n_real: int, weights_file: str | None):
    """The train split's first n_real images, n holdout images (so every sample is compared), a judge,
    a generator and random Inception weights in `scratch` (a TemporaryDirectory the caller removes)."""
    from gan_core.classifier import ClassifierConfig, train_classifier
    from gan_core.data import load_source
    from gan_core.metrics import write_random_inception_weights
    from gan_core.models import Generator, ModelConfig

    train, holdout = load_source({"kind": "builtin", "name": "mnist-5k"}, size=32, channels=1).split(0.2, seed=0)
    train, holdout = train.subset(np.arange(min(n_real, len(train)))), holdout.subset(np.arange(min(n, len(holdout))))
    judge = train_classifier(train, ClassifierConfig(steps=20, width=8, device=device))
    torch.manual_seed(0)
    generator = Generator(ModelConfig(32, 1, 10, 64, 16, 16)).to(choose_device(device)).eval()
    scratch = tempfile.TemporaryDirectory()
    weights = Path(weights_file) if weights_file else write_random_inception_weights(Path(scratch.name) / "random.pth")
    return train, holdout, judge, generator, weights, scratch


def ours(generator, train, holdout, judge, weights: Path, n: int, batch_size: int, device: str, full: bool):
    from gan_core.metrics import EvaluationConfig, evaluate, resolve_inception_weights

    with tempfile.TemporaryDirectory() as out:
        resolved = resolve_inception_weights(weights, allow_unverified=True)
        started = time.perf_counter()
        report = evaluate(
            generator,
            train,
            holdout,
            judge,
            out,
            EvaluationConfig(
                n_samples=n,
                backbone="inception",
                inception_weights=resolved,
                allow_unverified_weights=True,
                batch_size=batch_size,
                metrics=None if full else ["fid", "kid", "is_inception"],
                per_class_fid=full,
            ),
        )
        _synchronize(device)
        return time.perf_counter() - started, report


def plain(generator, train, labels: np.ndarray, seeds: np.ndarray, weights: Path, batch_size: int, device: str) -> tuple[float, dict[str, float]]:
    """What a user would write: three torchmetrics objects, each fed the images."""
    from torchmetrics.image.fid import FrechetInceptionDistance, NoTrainInceptionV3
    from torchmetrics.image.inception import InceptionScore
    from torchmetrics.image.kid import KernelInceptionDistance

    from gan_core.models import FoldedGenerator
    from gan_core.sample import generate

    dev = choose_device(device)
    started = time.perf_counter()
    # KID and IS take no weights path: each gets its own network built from the file, as FID does.
    fid = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(weights)).to(dev)
    kid = KernelInceptionDistance(feature=NoTrainInceptionV3("inception-v3-compat", ["2048"], str(weights)), subset_size=min(1000, len(labels), len(train))).to(
        dev
    )
    inception_score = InceptionScore(feature=NoTrainInceptionV3("inception-v3-compat", ["logits_unbiased"], str(weights))).to(dev)
    folded = FoldedGenerator(generator)
    rgb = lambda x: torch.from_numpy(x).to(dev).expand(-1, 3, -1, -1)  # noqa: E731 - grey digits as 3 channels
    for start in range(0, len(train), batch_size):
        batch = rgb(train.images[start : start + batch_size])
        fid.update(batch, real=True)
        kid.update(batch, real=True)
    for start in range(0, len(labels), batch_size):
        batch = rgb(generate(folded, labels[start : start + batch_size], seeds=seeds[start : start + batch_size], batch_size=batch_size))
        fid.update(batch, real=False)
        kid.update(batch, real=False)
        inception_score.update(batch)
    figures = {"fid": float(fid.compute()), "kid": float(kid.compute()[0]), "is": float(inception_score.compute()[0])}
    _synchronize(device)
    return time.perf_counter() - started, figures


def _synchronize(device: str) -> None:
    if choose_device(device).type == "cuda":
        torch.cuda.synchronize()


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
    from gan_core.metrics import EvaluationConfig, evaluate, resolve_inception_weights, write_random_inception_weights
    from gan_core.models import Generator, ModelConfig

    data = load_source({"kind": "builtin", "name": "mnist-5k"}, size=32, channels=1)
    train, holdout = data.split(0.2, seed=0)
    judge = train_classifier(train, ClassifierConfig(epochs=1, min_steps=0, width=16, device=device))
    torch.manual_seed(0)
    generator = Generator(ModelConfig(32, 1, 10, 64, 16, 16)).to(choose_device(device)).eval()
    with tempfile.TemporaryDirectory() as scratch:
        weights = None
        if backbone == "inception":
            weights = resolve_inception_weights(write_random_inception_weights(Path(scratch) / "r.pth"), allow_unverified=True)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        started = time.perf_counter()
        evaluate(
            generator,
            train,
            holdout,
            judge,
            Path(scratch) / "report",
            EvaluationConfig(n_samples=n, backbone=backbone, inception_weights=weights, allow_unverified_weights=True),
        )
        wall = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    feature_dim = 2048 if backbone == "inception" else judge.net.shape["feature_dim"]
    print(json.dumps({"n": n, "peak_rss_mb": peak, "rss_before_eval_mb": before, "feature_mb": n * (feature_dim + 10) * 4 / 2**20, "wall_s": wall}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--n", type=int, default=None, help="samples (and holdout images) compared (default 10,000 on CUDA, 128 on CPU)")
    parser.add_argument("--real", type=int, default=None, help="train images used as the real set (default 4,000 on CUDA, N on CPU)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--weights", default=None, help="an Inception weights file to use (default: random weights written for this run)")
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
    n = args.n or (10_000 if device.type == "cuda" else 128)
    train, holdout, judge, generator, weights, scratch = comparison_inputs(args.device, n, args.real or (4_000 if device.type == "cuda" else n), args.weights)
    with scratch:
        from gan_core.sample import sample_seeds

        ours(generator, train, holdout, judge, weights, 16, args.batch_size, args.device, full=False)  # warm-up: kernels, allocator
        ours_s, bare = ours(generator, train, holdout, judge, weights, n, args.batch_size, args.device, full=False)
        labels = np.repeat(np.arange(train.num_classes), np.round(np.bincount(train.labels, minlength=train.num_classes) / len(train) * n).astype(int))
        plain_s, plain_figures = plain(generator, train, labels, sample_seeds(0, len(labels)), weights, args.batch_size, args.device)
        total_s, full = ours(generator, train, holdout, judge, weights, n, args.batch_size, args.device, full=True)
    print(
        f"device {device}: {len(labels):,} samples against {len(train):,} train images ({len(holdout):,} holdout), Inception at 299 px, batch {args.batch_size}"
    )
    print(
        f"FID + KID + IS, ours (evaluate, with real-vs-real baselines): {ours_s:.1f} s; plain torchmetrics script: {plain_s:.1f} s; ratio plain/ours {plain_s / ours_s:.3f}"
    )
    print(
        f"  same figures: FID {bare.metrics['fid_inception']:.3f} vs {plain_figures['fid']:.3f}, KID {bare.metrics['kid_inception']:.5f} vs {plain_figures['kid']:.5f}, "
        f"IS {bare.metrics['is_inception']:.4f} vs {plain_figures['is']:.4f}"
    )
    print(f"full evaluate(): {total_s:.1f} s; seconds per stage and metric:")
    timings = full.timings
    for stage, seconds in sorted(timings.items(), key=lambda item: -item[1]):
        print(f"  {stage:32s} {seconds:8.2f}")
    figures = {"ours_fid_kid_is_s": ours_s, "plain_fid_kid_is_s": plain_s, "ratio": plain_s / ours_s, "evaluate_total_s": total_s, "n": n}
    per_metric = {stage: round(seconds, 3) for stage, seconds in timings.items()}
    backbone = args.memory_backbone or ("inception" if device.type == "cuda" else "domain")
    for n in (int(s) for s in args.sizes.split(",")):
        out = subprocess.run([sys.executable, __file__, "--worker", str(n), backbone, args.device], check=True, capture_output=True, text=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        label = {10_000: "10k", 50_000: "50k"}.get(n, str(n))
        figures[f"peak_rss_mb_{label}"] = result["peak_rss_mb"]
        print(
            f"evaluate() on {n:,} samples ({backbone} backbone): peak RSS {result['peak_rss_mb']:.0f} MB, {result['rss_before_eval_mb']:.0f} MB before it "
            f"(features and logits {result['feature_mb']:.1f} MB), {result['wall_s']:.0f} s"
        )
    fid_samples = args.fid_samples if args.fid_samples is not None else (50_000 if device.type == "cuda" else 0)
    if fid_samples:
        wall, fid = fid_wall(args.device, fid_samples, args.fid_batch_size)
        figures[f"fid_wall_s_{fid_samples}"] = wall
        print(f"Inception FID of {fid_samples:,} generated samples against 4,000 real ones on {device}: {wall:.1f} s wall (FID {fid:.1f}, random weights)")
    print(json.dumps({**{key: round(value, 3) for key, value in figures.items()}, "per_metric_s": per_metric}))


if __name__ == "__main__":
    main()
