"""Train a profile on mnist-5k at 32 px and judge its conditional samples.

Prints the GAN's training wall time and images/s, the judge's accuracy on the real holdout and the
label accuracy of 1,000 conditional samples (100 per digit) as judged by it.
Last line: one JSON object with profile, wall_s, images_per_s, label_accuracy, judge_holdout_accuracy.

    .venv/bin/python benchmarks/quality.py --profile quick
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from gan_core.classifier import train_classifier
from gan_core.data import load_source
from gan_core.sample import class_grid, generate, save_grid
from gan_core.train import TrainConfig, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--steps", type=int, default=None, help="override the profile's step count")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=None, help="keep the run and a sample grid here")
    args = parser.parse_args()

    data = load_source({"kind": "builtin", "name": "mnist-5k"}, size=32, channels=1)
    train_split, holdout = data.split(0.2, seed=0)
    started = time.perf_counter()
    judge = train_classifier(train_split)
    judge_accuracy = judge.accuracy(holdout)
    print(f"judge: trained in {time.perf_counter() - started:.0f} s, holdout accuracy {judge_accuracy:.4f}")

    overrides = {"device": args.device, **({"steps": args.steps} if args.steps else {})}
    config = TrainConfig.from_profile(args.profile, **overrides)
    out = args.out or Path(tempfile.mkdtemp(prefix="ganpipe-quality-"))
    result = train(train_split, config, out / "run", progress_bar=None)
    print(f"gan: profile {args.profile}, {result.steps} steps, {result.wall_s:.1f} s, {result.images_per_s:.0f} images/s")

    labels = np.repeat(np.arange(10), 100)
    predicted = judge.predict(generate(result.generator, labels, seed=12345))
    label_accuracy = float((predicted == labels).mean())
    per_class = [float((predicted[labels == c] == c).mean()) for c in range(10)]
    print(f"label accuracy of 1000 conditional samples: {label_accuracy:.4f}")
    print("per digit: " + " ".join(f"{c}:{a:.2f}" for c, a in enumerate(per_class)))
    save_grid(class_grid(result.generator), out / "samples.png", columns=10)
    print(f"sample grid: {out / 'samples.png'}")
    print(
        json.dumps(
            {
                "profile": args.profile,
                "wall_s": round(result.wall_s, 2),
                "images_per_s": round(result.images_per_s, 1),
                "label_accuracy": label_accuracy,
                "judge_holdout_accuracy": judge_accuracy,
            }
        )
    )


if __name__ == "__main__":
    main()
