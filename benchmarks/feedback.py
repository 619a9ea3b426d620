"""Does the export help the strongest competitor when fed back into it? DPT (You et al. 2023) trains
the semi-supervised classifier itself with the generator's samples beside the labelled images. Here
the competitor is the consistency teacher (FixMatch-style, gan_core.consistency), which beat both
the uplift study's ssl arm and its recommended recipe on Fashion-MNIST's t10k. Each arm is the
same consistency training on the same draw, seed and pool, for the same steps:

    consistency     the labelled images and the pool: the teacher of benchmarks/uplift.py
    + synthetic S   the pool GAN's filtered export joins the labelled stream at share S of each
                    labelled batch, under the labels the generator was conditioned on

The generators are those `benchmarks/uplift.py --out DIR` trained (DIR/k{k}-d{draw}-pool_gan), so
no GAN is trained here; the export is drawn exactly as uplift.py draws it (the teacher's filter at
0.9, 500 per class, the draw's seed). Every arm is scored on the whole 1,000-image holdout (nothing
here chooses) and, for fashion-mnist-5k, on t10k; gains carry a paired bootstrap interval over
draws and images.

    .venv/bin/python benchmarks/uplift.py --data fashion-mnist-5k --k 20 --draws 3 --seeds 3 --out /tmp/gans
    .venv/bin/python benchmarks/feedback.py --data fashion-mnist-5k --k 20 --draws 3 --gans /tmp/gans

Last line: one JSON object, e.g. fashion_k20_consistency, fashion_k20_synthetic_0.5,
fashion_k20_synthetic_0.5_gain (_ci_low, _ci_high), and the same with _t10k_ for the test split.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from gan_core.checkpoint import load_generator
from gan_core.classifier import BatchSource, ClassifierConfig
from gan_core.consistency import ConsistencyConfig, consistency_train
from gan_core.data import BUILTIN_DATASETS, ImageData, load_source
from gan_core.export import filtered_samples
from gan_core.metrics.intervals import paired_bootstrap_interval

from common import EXPORT_CONFIDENCE, SAMPLES_PER_CLASS, TEST_SPLITS, short_name, test_split


def arms_of_one_draw(args, train_split: ImageData, k: int, draw: int, scored: dict[str, ImageData]) -> dict[str, dict[str, np.ndarray]]:
    """arm → scoring set → right (1) or wrong (0) on each of its images, and each arm's seconds."""
    labelled, rest = train_split.labelled_and_rest(k, seed=draw)
    # A fixed step count, so that a larger labelled set does not train the supervised stage longer.
    config, consistency = ClassifierConfig(seed=draw, steps=args.supervised_steps), ConsistencyConfig(steps=args.consistency_steps)
    right: dict[str, dict[str, np.ndarray]] = {}
    started = time.perf_counter()
    teacher = consistency_train(labelled, rest.images, config, consistency)
    seconds = {"consistency": time.perf_counter() - started}
    right["consistency"] = {name: teacher.right(data) for name, data in scored.items()}
    generator, _ = load_generator(args.gans / f"k{k}-d{draw}-pool_gan" / "generator.safetensors")
    synthetic = filtered_samples(generator, teacher, SAMPLES_PER_CLASS, args.min_confidence, seed=draw)
    for share in args.shares:
        started = time.perf_counter()
        student = consistency_train(labelled, rest.images, config, consistency, (BatchSource(synthetic, share),))
        seconds[f"synthetic_{share}"] = time.perf_counter() - started
        right[f"synthetic_{share}"] = {name: student.right(data) for name, data in scored.items()}
    cells = ", ".join(f"{arm} {right[arm]['holdout'].mean():.4f} ({seconds[arm]:.0f} s)" for arm in right)
    print(f"  k={k} draw {draw}: {cells}", flush=True)
    return right


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=BUILTIN_DATASETS, default="fashion-mnist-5k")
    parser.add_argument("--k", type=int, default=20, help="labelled images per class")
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--gans", type=Path, required=True, help="benchmarks/uplift.py's --out folder, with k{k}-d{draw}-pool_gan/generator.safetensors")
    parser.add_argument("--shares", default="0.25,0.5", help="synthetic shares of each labelled batch, comma-separated, each in (0, 1)")
    parser.add_argument("--min-confidence", type=float, default=EXPORT_CONFIDENCE, help="the export filter's threshold (uplift.py's default)")
    parser.add_argument("--supervised-steps", type=int, default=ClassifierConfig().min_steps)
    parser.add_argument("--consistency-steps", type=int, default=ConsistencyConfig().steps)
    args = parser.parse_args()
    args.shares = [float(value) for value in args.shares.split(",") if value]
    if not args.shares or not all(0 < share < 1 for share in args.shares):
        parser.error(f"--shares: expected shares in (0, 1), comma-separated, got {args.shares}")
    missing = [draw for draw in range(args.draws) if not (args.gans / f"k{args.k}-d{draw}-pool_gan" / "generator.safetensors").is_file()]
    if missing:
        parser.error(
            f"--gans {args.gans}: no k{args.k}-d{{draw}}-pool_gan/generator.safetensors for draws {missing}; train them with benchmarks/uplift.py --out"
        )
    train_split, holdout = load_source({"kind": "builtin", "name": args.data}, size=32, channels=1).split(0.2, seed=0)
    scored = {"holdout": holdout, **({TEST_SPLITS[args.data]: test_split(TEST_SPLITS[args.data])} if args.data in TEST_SPLITS else {})}
    print(
        f"{args.data}, k={args.k}: scored on {', '.join(f'{name} ({len(data)})' for name, data in scored.items())}; {ConsistencyConfig(steps=args.consistency_steps)}",
        flush=True,
    )
    draws = [arms_of_one_draw(args, train_split, args.k, draw, scored) for draw in range(args.draws)]
    figures: dict[str, float] = {}
    prefix = f"{short_name(args.data)}_k{args.k}"
    for name in scored:
        key_of = lambda arm: f"{prefix}_{arm}" if name == "holdout" else f"{prefix}_{name}_{arm}"  # noqa: E731
        base = np.stack([draw["consistency"][name] for draw in draws]).astype(np.float64)  # draws × images
        figures[key_of("consistency")] = float(base.mean())
        print(f"{name}: consistency {base.mean():.4f}", flush=True)
        for arm in (f"synthetic_{share}" for share in args.shares):
            fed = np.stack([draw[arm][name] for draw in draws]).astype(np.float64)
            low, high = paired_bootstrap_interval(fed - base)
            figures[key_of(arm)], figures[key_of(arm) + "_gain"] = float(fed.mean()), float((fed - base).mean())
            figures[key_of(arm) + "_gain_ci_low"], figures[key_of(arm) + "_gain_ci_high"] = low, high
            print(f"{name}: + {arm} {fed.mean():.4f}, gain {(fed - base).mean():+.4f} [{low:+.4f}, {high:+.4f}]", flush=True)
    print(json.dumps({key: round(value, 4) for key, value in figures.items()}))


if __name__ == "__main__":
    main()
