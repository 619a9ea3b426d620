"""How many GAN steps does label fidelity need, at each learning rate? Trains the quick profile on
mnist-5k's train split (or --data) once per learning rate (lr_g = lr_d), checkpointing every
--every steps, and scores each checkpoint's EMA generator: label accuracy of 1,000 conditional
samples (100 per class) under a judge trained on the same split. This sized `make demo`'s GAN.

Last line: one JSON object, {"lr_0.0002": {"200": 0.114, ...}, ..., "<lr>_images_per_s": ...}.

    .venv/bin/python benchmarks/gan_steps.py --steps 2000 --every 200 --lr 2e-4,5e-4
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from gan_core.checkpoint import list_checkpoints, load_checkpoint
from gan_core.classifier import ClassifierConfig, train_classifier
from gan_core.data import BUILTIN_DATASETS, load_source
from gan_core.models import Generator, ModelConfig
from gan_core.sample import generate
from gan_core.train import TrainConfig, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=BUILTIN_DATASETS, default="mnist-5k")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--every", type=int, default=200, help="checkpoint (and score) every this many steps")
    parser.add_argument("--judge-steps", type=int, default=400)
    parser.add_argument("--lr", default="2e-4,5e-4", help="learning rates, comma-separated (lr_g = lr_d)")
    args = parser.parse_args()
    rates = [float(rate) for rate in args.lr.split(",")]

    data = load_source({"kind": "builtin", "name": args.data}, size=32, channels=1)
    train_split, holdout = data.split(0.2, seed=0)
    judge = train_classifier(train_split, ClassifierConfig(steps=args.judge_steps))
    print(f"judge holdout accuracy {judge.accuracy(holdout):.4f}", flush=True)
    labels = np.repeat(np.arange(data.num_classes), 100)
    figures: dict = {}
    for rate in rates:
        config = TrainConfig.from_profile("quick", steps=args.steps, checkpoint_every=args.every, keep_checkpoints=args.steps, lr_g=rate, lr_d=rate)
        run = Path(tempfile.mkdtemp(prefix="ganpipe-gan-steps-")) / "run"
        result = train(train_split, config, run, progress_bar=None)
        curve = {}
        for path in list_checkpoints(run / "checkpoints"):  # where train() keeps them
            saved = load_checkpoint(path)
            generator = Generator(ModelConfig(**saved["model_config"]))
            generator.load_state_dict(saved["G_ema"])
            predicted = judge.predict(generate(generator.eval(), labels, seed=12345))
            curve[str(saved["step"])] = round(float((predicted == labels).mean()), 4)
        figures[f"lr_{rate:g}"] = curve
        figures[f"lr_{rate:g}_images_per_s"] = round(result.images_per_s, 1)
        print(f"lr {rate:g} ({result.images_per_s:.0f} images/s): " + ", ".join(f"{step} {acc:.3f}" for step, acc in curve.items()), flush=True)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
