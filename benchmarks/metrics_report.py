"""Quality figures of a model of a builtin dataset (mnist-5k, or fashion-mnist-5k with --data): domain FID/KID with the real-vs-real baseline, label
accuracy, precision/recall/density/coverage, memorization, and augmentation uplift, both on the
full train split and in a scarce setting (a GAN trained on k real images per class only).

    .venv/bin/python benchmarks/metrics_report.py --generator RUN/generator.safetensors [--k 20]
    .venv/bin/python benchmarks/metrics_report.py --profile quick        # trains the model first

Last line: one JSON object with the figures; with --data, each key starts with the dataset's short
name (fashion_fid_domain, ...).

    .venv/bin/python benchmarks/metrics_report.py --profile quick --data fashion-mnist-5k
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from gan_core.checkpoint import load_generator
from gan_core.classifier import train_classifier
from gan_core.data import BUILTIN_DATASETS, ImageData, load_source
from gan_core.metrics import UPLIFT_CLASSIFIER, EvaluationConfig, augmentation_uplift, evaluate
from gan_core.sample import generate
from gan_core.train import TrainConfig, train

from common import short_name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=BUILTIN_DATASETS, default=None, help="builtin dataset (default mnist-5k; naming it prefixes the JSON keys)")
    parser.add_argument("--generator", type=Path, default=None)
    parser.add_argument("--profile", default="quick", help="profile to train when --generator is not given, and for the scarce GAN")
    parser.add_argument("--n-samples", type=int, default=10_000)
    parser.add_argument("--k", type=int, default=20, help="real images per class in the scarce setting")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--scarce-profile", default="quick", help="profile of the GAN trained on k images per class")
    parser.add_argument("--skip-scarce", action="store_true", help="only the figures of the given model")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="ganpipe-metrics-"))

    data = load_source({"kind": "builtin", "name": args.data or "mnist-5k"}, size=32, channels=1)
    train_split, holdout = data.split(0.2, seed=0)
    judge = train_classifier(train_split)
    if args.generator:
        generator, _ = load_generator(args.generator)
    else:
        generator = train(train_split, TrainConfig.from_profile(args.profile), out / "run").generator
    seeds = list(range(args.seeds))
    report = evaluate(
        generator,
        train_split,
        holdout,
        judge,
        out / "report",
        EvaluationConfig(n_samples=args.n_samples, backbone="domain", uplift_seeds=seeds, uplift_classifier=UPLIFT_CLASSIFIER),
    )
    m = report.metrics
    print(f"judge holdout accuracy {m['label_accuracy_baseline']:.4f}")
    print(f"fid_domain {m['fid_domain']:.3f} (real-vs-real baseline {m['fid_domain_baseline']:.3f}) at N={report.n_compare}")
    print(f"kid_domain {m['kid_domain']:.4f} (baseline {m['kid_domain_baseline']:.4f})")
    print(f"label accuracy {m['label_accuracy']:.4f} over {report.n_synthetic} samples")
    for key in ("precision", "recall", "density", "coverage"):
        print(f"{key}_domain {m[f'{key}_domain']:.4f} (baseline {m[f'{key}_domain_baseline']:.4f})")
    print(
        f"memorization: {m['memorization_fraction_features']:.4f} of samples are near-copies in feature space, {m['memorization_fraction_pixels']:.4f} in pixel space"
    )
    u = report.uplift  # the recommended mix: the best share's figures
    print(f"uplift (full train split, {len(train_split)} real + {report.n_synthetic} synthetic):\n{u['table']}")

    figures = {
        **{
            key: m[key]
            for key in (
                "fid_domain",
                "fid_domain_baseline",
                "kid_domain",
                "kid_domain_baseline",
                "label_accuracy",
                "precision_domain",
                "recall_domain",
                "density_domain",
                "coverage_domain",
                "memorization_fraction_features",
                "memorization_fraction_pixels",
            )
        },
        "uplift_real_only": u["real_only"],
        "uplift_real_plus_synthetic": u["real_plus_synthetic"],
        "uplift_synthetic_only": u["synthetic_only"],
        "uplift_best_share": u["share"],
    }
    if not args.skip_scarce:
        figures.update(scarce_figures(args, train_split, holdout, seeds, out))
    print(f"report: {out / 'report' / 'report.md'}")
    prefix = short_name(args.data) + "_" if args.data else ""
    print(json.dumps({prefix + key: round(float(value), 4) for key, value in figures.items()}))


def scarce_figures(args, train_split: ImageData, holdout: ImageData, seeds: list[int], out: Path) -> dict[str, float]:
    """A GAN trained on k real images per class only, and the uplift it gives those k."""
    scarce = train_split.take_per_class(args.k, seed=0)
    scarce_generator = train(scarce, TrainConfig.from_profile(args.scarce_profile), out / "scarce-run").generator
    labels = np.repeat(np.arange(train_split.num_classes), 100)
    synthetic = ImageData(generate(scarce_generator, labels, seed=1), labels, train_split.class_names)
    scarce_uplift = augmentation_uplift(scarce, holdout, synthetic, seeds, UPLIFT_CLASSIFIER)
    print(
        f"uplift at k={args.k} per class ({len(scarce)} real + {len(synthetic)} synthetic from a GAN trained on those {len(scarce)}): "
        f"real {scarce_uplift.real_only[0]:.4f}±{scarce_uplift.real_only[1]:.4f}, real+synthetic {scarce_uplift.real_plus_synthetic[0]:.4f}±{scarce_uplift.real_plus_synthetic[1]:.4f}, "
        f"synthetic {scarce_uplift.synthetic_only[0]:.4f}±{scarce_uplift.synthetic_only[1]:.4f}"
    )
    return {
        f"scarce_k{args.k}_real_only": scarce_uplift.real_only[0],
        f"scarce_k{args.k}_real_plus_synthetic": scarce_uplift.real_plus_synthetic[0],
        f"scarce_k{args.k}_synthetic_only": scarce_uplift.synthetic_only[0],
    }


if __name__ == "__main__":
    main()
