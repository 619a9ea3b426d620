"""Train a profile on a builtin dataset (mnist-5k, or fashion-mnist-5k with --data) at 32 px and
judge its conditional samples.

Prints the GAN's training wall time and images/s, the judge's accuracy on the real holdout, the
label accuracy of 1,000 conditional samples (100 per class) as judged by it, and coverage and recall
(diversity, in the judge's feature space) beside their real-vs-real baselines (train vs holdout at
the same N).
Last line: one JSON object with profile, wall_s, images_per_s, label_accuracy, judge_holdout_accuracy,
coverage, coverage_baseline, recall, recall_baseline; with --data, each key after the profile starts
with the dataset's short name (fashion_wall_s, ...).

    .venv/bin/python benchmarks/quality.py --profile quick
    .venv/bin/python benchmarks/quality.py --profile quick --data fashion-mnist-5k --out docs/fashion
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from gan_core.classifier import train_classifier
from gan_core.data import BUILTIN_DATASETS, load_source
from gan_core.metrics import EvaluationConfig, evaluate
from gan_core.sample import class_grid, generate, save_grid
from gan_core.train import TrainConfig, train

from common import short_name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=BUILTIN_DATASETS, default=None, help="builtin dataset (default mnist-5k; naming it prefixes the JSON keys)")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--steps", type=int, default=None, help="override the profile's step count")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=None, help="keep the run and a sample grid here")
    args = parser.parse_args()

    data = load_source({"kind": "builtin", "name": args.data or "mnist-5k"}, size=32, channels=1)
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

    labels = np.repeat(np.arange(data.num_classes), 100)
    predicted = judge.predict(generate(result.generator, labels, seed=12345))
    label_accuracy = float((predicted == labels).mean())
    per_class = [float((predicted[labels == c] == c).mean()) for c in range(data.num_classes)]
    print(f"label accuracy of {len(labels)} conditional samples: {label_accuracy:.4f}")
    print("per class: " + ", ".join(f"{name} {a:.2f}" for name, a in zip(data.class_names, per_class)))
    diversity = evaluate(
        result.generator,
        train_split,
        holdout,
        judge,
        out / "evaluation",
        EvaluationConfig(n_samples=len(holdout), backbone="domain", metrics=["coverage_domain", "recall_domain"]),
    ).metrics
    for name in ("coverage", "recall"):
        print(f"{name} {diversity[name + '_domain']:.4f} (real vs real {diversity[name + '_domain_baseline']:.4f})")
    save_grid(class_grid(result.generator), out / "samples.png", columns=10)
    print(f"sample grid: {out / 'samples.png'} (rows: {', '.join(data.class_names)})")
    prefix = short_name(args.data) + "_" if args.data else ""
    figures = {
        "wall_s": round(result.wall_s, 2),
        "images_per_s": round(result.images_per_s, 1),
        "label_accuracy": label_accuracy,
        "judge_holdout_accuracy": judge_accuracy,
        **{f"{name}{end}": diversity[f"{name}_domain{end}"] for name in ("coverage", "recall") for end in ("", "_baseline")},
    }
    print(json.dumps({"profile": args.profile, **{prefix + key: value for key, value in figures.items()}}))


if __name__ == "__main__":
    main()
