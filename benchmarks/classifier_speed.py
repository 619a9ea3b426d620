"""Classifier training speed: `train_classifier` with the default channels_last memory format
against the same training in the contiguous format, on the same data, steps and seed, in one run.

The classifier is the uplift study's (width 16, batch 64, 32 px): the study trains it 10 to 19 ×
seeds times per GAN, so its step time sets the study's cost. Runs are interleaved (contiguous,
channels_last, contiguous, ...) and the best of each is kept, so machine noise hits both alike.
Last line: one JSON object with contiguous_ms_per_step, channels_last_ms_per_step and ratio
(contiguous ÷ channels_last; above 1: channels_last is faster).

    .venv/bin/python benchmarks/classifier_speed.py [--steps 100] [--repeats 3] [--width 16] [--device cpu]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

from gan_core.classifier import train_classifier
from gan_core.data import load_source
from gan_core.metrics.uplift import UPLIFT_CLASSIFIER


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--width", type=int, default=UPLIFT_CLASSIFIER.width)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    data = load_source({"kind": "builtin", "name": "mnist-5k"}, size=32, channels=1)
    base = dataclasses.replace(UPLIFT_CLASSIFIER, steps=args.steps, width=args.width, device=args.device)
    best = {"contiguous": float("inf"), "channels_last": float("inf")}
    for _ in range(args.repeats):
        for name in best:
            config = dataclasses.replace(base, channels_last=name == "channels_last")
            started = time.perf_counter()
            train_classifier(data, config)
            best[name] = min(best[name], time.perf_counter() - started)
    row = {f"{name}_ms_per_step": round(1000 * seconds / args.steps, 1) for name, seconds in best.items()}
    row |= {"ratio": round(best["contiguous"] / best["channels_last"], 3), "steps": args.steps, "width": args.width, "batch_size": base.batch_size}
    print(f"contiguous {row['contiguous_ms_per_step']} ms/step, channels_last {row['channels_last_ms_per_step']} ms/step")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
