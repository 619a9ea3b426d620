"""`make demo-train`: the GAN alone, without Dagster or MLflow. Trains the quick profile on
mnist-5k and writes a sample grid (one row per class)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .data import load_source
from .sample import class_grid, save_grid
from .train import TrainConfig, train


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("var/demo"))
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--steps", type=int, default=None)
    args = parser.parse_args(argv)

    data = load_source({"kind": "builtin", "name": "mnist-5k"}, size=32, channels=1)
    train_split, holdout = data.split(0.2, seed=0)
    overrides = {"steps": args.steps} if args.steps else {}
    config = TrainConfig.from_profile(args.profile, **overrides)
    print(f"mnist-5k: {len(train_split)} train / {len(holdout)} holdout images, 32×32; profile {args.profile}, {config.steps} steps")
    result = train(train_split, config, args.out / "run", progress_bar=True)
    grid_path = args.out / "samples.png"
    save_grid(class_grid(result.generator, per_class=10), grid_path, columns=10)
    print(f"trained {result.steps} steps in {result.wall_s:.0f} s ({result.images_per_s:.0f} images/s)")
    print(f"generator: {result.generator_path}")
    print(f"sample grid (one row per digit): {grid_path}")


if __name__ == "__main__":
    main()
