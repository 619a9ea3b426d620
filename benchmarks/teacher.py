"""Which teacher should label the pool? Holdout accuracy and wall time of each teacher recipe, side by
side on the same draws of k labelled images per class (the rest of the train split the unlabelled
pool, its labels discarded), as in benchmarks/uplift.py:

    supervised      the judge on the labelled images alone
    self_training   + one round with the pool images it is sure of (gan_core.semi.self_train)
    consistency     FixMatch-style weak/strong consistency on the pool (gan_core.consistency)

    .venv/bin/python benchmarks/teacher.py --data mnist-5k --k 10,20 --draws 3
    .venv/bin/python benchmarks/teacher.py --data fashion-mnist-5k --k 20 --draws 3 --set steps=3000

The 1,000-image holdout trains and chooses nothing. Gains of consistency over self-training carry a
95% interval from a paired bootstrap over draws and holdout images together. Last line: one JSON
object, e.g. fashion_k20_teacher_consistency (mean accuracy), ..._s (mean wall seconds),
fashion_k20_consistency_over_self_training(_ci_low, _ci_high).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import fields, replace

import numpy as np

from gan_core.classifier import ClassifierConfig, train_classifier
from gan_core.consistency import ConsistencyConfig
from gan_core.data import BUILTIN_DATASETS, load_source
from gan_core.metrics.intervals import paired_bootstrap_interval
from gan_core.semi import TEACHER_RECIPES, train_teacher
from gan_core.yaml_text import load_yaml

from common import short_name

RECIPES = ("supervised", *TEACHER_RECIPES)


def consistency_override(text: str) -> tuple[str, object]:
    field, sep, value = text.partition("=")
    names = {f.name for f in fields(ConsistencyConfig)}
    if not sep or field not in names:
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE with FIELD one of {sorted(names)}, got {text!r}")
    return field, load_yaml(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=BUILTIN_DATASETS, default="mnist-5k")
    parser.add_argument("--k", default="10,20", help="labelled images per class, comma-separated")
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--recipes", default=",".join(RECIPES), help=f"comma list of {list(RECIPES)}")
    parser.add_argument("--set", type=consistency_override, action="append", default=[], metavar="FIELD=VALUE", help="a ConsistencyConfig field")
    args = parser.parse_args()
    recipes = [name for name in args.recipes.split(",") if name]
    if unknown := sorted(set(recipes) - set(RECIPES)):
        parser.error(f"--recipes: unknown {unknown}; expected among {list(RECIPES)}")
    consistency = replace(ConsistencyConfig(), **dict(args.set))
    data = load_source({"kind": "builtin", "name": args.data}, size=32, channels=1)
    train_split, holdout = data.split(0.2, seed=0)
    print(f"{args.data}: {len(train_split)} train, {len(holdout)} holdout; {os.cpu_count()} CPU cores; {consistency}", flush=True)

    figures: dict[str, float] = {}
    print("| k | draw | " + " | ".join(f"{name} (accuracy, s)" for name in recipes) + " |", flush=True)
    print("| --- | --- | " + " | ".join("---" for _ in recipes) + " |", flush=True)
    for k in (int(value) for value in args.k.split(",")):
        correct: dict[str, list[np.ndarray]] = {name: [] for name in recipes}
        seconds: dict[str, list[float]] = {name: [] for name in recipes}
        for draw in range(args.draws):
            labelled, rest = train_split.labelled_and_rest(k, seed=draw)
            cells = []
            for name in recipes:
                started = time.perf_counter()
                config = ClassifierConfig(seed=draw)
                if name == "supervised":
                    teacher = train_classifier(labelled, config)
                else:
                    teacher = train_teacher(name, labelled, rest.images, config, consistency=consistency)
                seconds[name].append(time.perf_counter() - started)
                correct[name].append(teacher.right(holdout).astype(np.float64))
                cells.append(f"{correct[name][-1].mean():.4f}, {seconds[name][-1]:.0f}")
            print(f"| {k} | {draw} | " + " | ".join(cells) + " |", flush=True)
        prefix = f"{short_name(args.data)}_k{k}"
        for name in recipes:
            figures[f"{prefix}_teacher_{name}"] = float(np.mean(correct[name]))
            figures[f"{prefix}_teacher_{name}_s"] = float(np.mean(seconds[name]))
        if {"consistency", "self_training"} <= set(recipes):
            differences = np.stack(correct["consistency"]) - np.stack(correct["self_training"])  # draws × images
            key = f"{prefix}_consistency_over_self_training"
            figures[key] = float(differences.mean())
            figures[f"{key}_ci_low"], figures[f"{key}_ci_high"] = paired_bootstrap_interval(differences)
            print(f"k={k}: consistency − self-training {figures[key]:+.4f} [{figures[key + '_ci_low']:+.4f}, {figures[key + '_ci_high']:+.4f}]", flush=True)
    print(json.dumps({key: round(value, 4) for key, value in figures.items()}))


if __name__ == "__main__":
    main()
