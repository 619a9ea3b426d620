"""Does synthetic data help a team with k labelled images per class and a pool of unlabelled ones?

A builtin dataset (`--data`: mnist-5k, the default, or fashion-mnist-5k): the 1,000-image holdout is
split off first and never trains anything. From the 4,000-image
train split, k labelled images per class are drawn (`--draws` times); the rest of the train split is
the unlabelled pool, its labels discarded. Arms, all scored on the holdout with the same uplift
classifier (same steps, same classical augmentation, `--seeds` seeds):

    real               the k labelled images only
    labelled_gan       + synthetic from a GAN trained on the labelled images only (filtered by a
                         judge trained on them; best share of each batch)
    pool_gan           + synthetic from a GAN that also learns from the pool under the self-trained
                         judge's pseudo-labels (filtered by that judge; best share)
    self_training      the competitor without a GAN: the same classifier self-trained on the pool
    pool_true_labels   (with --ceiling) + the pool itself with its true labels in place of synthetic
                         (best share): what labelling the whole pool by hand would give, the
                         headroom a GAN that learns from that pool works within

    .venv/bin/python benchmarks/uplift.py --k 10,20,50 --draws 3
    .venv/bin/python benchmarks/uplift.py --k 10 --draws 1 --set g_width=32 --set steps=4000   # a GAN variant
    python benchmarks/uplift.py --k 10 --draws 3 --jobs 3   # on a GPU machine: draws side by side
    .venv/bin/python benchmarks/uplift.py --k 20 --draws 3 --skip labelled_gan,pool_gan --ceiling   # the headroom alone
    .venv/bin/python benchmarks/uplift.py --data fashion-mnist-5k --k 10,20 --draws 3 --ceiling   # Fashion-MNIST

Each (dataset, k, draw) result is saved under --results as it finishes (the file name holds a digest of
gan_core's code, this script and every setting that changes a result), and a rerun with the same
code and settings reads it instead of training again: a protocol that takes hours can be stopped
and resumed, or collected over several runs (`--draws 3` after `--draws 1` trains draws 1 and 2 only).

Last line: one JSON object, keys per k: k20_real, k20_labelled_gan, k20_pool_gan, k20_self_training
(mean accuracies over draws and seeds), k20_gain_pool_gan and k20_gain_pool_gan_ci_low (gain over
real only and the lower bound of its 95% interval, over every (draw, seed) pair, paired), the same
for labelled_gan and self_training; k20_pool_gan_share (mean best share), k20_pool_gan_synthetic_only and
k20_pool_gan_gan_train_s (the same for labelled_gan); with --ceiling, the same keys for pool_true_labels. With --data, every key starts with the dataset's
short name: mnist_k20_real, fashion_k20_pool_gan, ...
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
import yaml

from gan_core.classifier import ClassifierConfig, train_classifier
from gan_core.data import ImageData, load_source
from gan_core.device import choose_device
from gan_core.export import filtered_samples
from gan_core.files import atomic_write
from gan_core.metrics import Uplift, augmentation_uplift, paired_interval, uplift_classifier
from gan_core.metrics.uplift import selection_mask
from gan_core.semi import PSEUDO_LABEL_CONFIDENCE, pseudo_labelled, self_train
from gan_core.train import TrainConfig, train

EXPORT_CONFIDENCE = 0.9  # the spec default of export.min_confidence
DATASETS = {"mnist-5k": "mnist", "fashion-mnist-5k": "fashion"}  # builtin name: short name in the JSON keys
RESULT_SETTINGS = ("data", "seeds", "classifier_steps", "profile", "set", "samples_per_class", "min_confidence", "pseudo_confidence", "skip", "ceiling")
ARMS = {
    "labelled_gan": "+ GAN on the labelled images",
    "pool_gan": "+ GAN on labelled + pool",
    "self_training": "self-training, no GAN",
    "pool_true_labels": "ceiling: + the pool, true labels",
}


def best_share(arm: str, uplift: Uplift) -> dict[str, list[float]]:
    """Per-seed accuracies of an arm's recommended recipe (the best with synthetic data, chosen by the
    holdout's selection half and scored on the other), its share, its synthetic-only arm and real only."""
    return {
        arm: uplift.per_seed[uplift.recommended],
        f"{arm}_share": [uplift.best_share],
        f"{arm}_synthetic_only": uplift.per_seed["synthetic"],
        "real": uplift.per_seed["real"],
    }


def one_draw(args, gan_config: TrainConfig, train_split: ImageData, holdout: ImageData, k: int, draw: int, out: Path) -> dict[str, list[float]]:
    """Per-seed holdout accuracies of every arm for one draw of k labels per class."""
    labelled, pool_true = train_split.labelled_and_rest(k, seed=draw)
    pool = pool_true.images  # its labels discarded: only the ceiling arm sees them
    classifier = uplift_classifier(args.classifier_steps)
    seeds = list(range(args.seeds))
    # The arms without a study are scored on the images the studies score with (the other half of the holdout chooses their recipes).
    scoring = holdout.subset(np.flatnonzero(~selection_mask(len(holdout))))
    results: dict[str, list[float]] = {}
    timings: dict[str, float] = {}

    started = time.perf_counter()
    judge = train_classifier(labelled, ClassifierConfig(seed=draw))
    self_trained_judge = self_train(labelled, pool, ClassifierConfig(seed=draw), args.pseudo_confidence)
    guesses = pseudo_labelled(self_trained_judge, pool, args.pseudo_confidence)
    timings["judges_s"] = time.perf_counter() - started
    print(
        f"  k={k} draw {draw}: judge {judge.accuracy(holdout):.4f}, self-trained judge {self_trained_judge.accuracy(holdout):.4f}; "
        f"{len(guesses.data)}/{len(pool)} pool images pseudo-labelled at ≥{args.pseudo_confidence}",
        flush=True,
    )

    arms = {
        "labelled_gan": (labelled, judge),
        "pool_gan": (
            ImageData(np.concatenate([labelled.images, guesses.data.images]), np.concatenate([labelled.labels, guesses.data.labels]), labelled.class_names),
            self_trained_judge,
        ),
    }
    for arm in args.skip:
        arms.pop(arm)
    for arm, (gan_data, arm_judge) in arms.items():
        started = time.perf_counter()
        generator = train(gan_data, replace(gan_config, seed=draw), out / f"k{k}-d{draw}-{arm}", progress_bar=False).generator
        timings[f"{arm}_train_s"] = time.perf_counter() - started
        synthetic = filtered_samples(generator, arm_judge, args.samples_per_class, args.min_confidence, seed=draw)
        uplift = augmentation_uplift(labelled, holdout, synthetic, seeds, classifier)
        results.update(best_share(arm, uplift))
        results[f"{arm}_gan_train_s"] = [timings[f"{arm}_train_s"]]
        print(f"  k={k} draw {draw} {arm}: GAN {timings[f'{arm}_train_s']:.0f} s on {len(gan_data)} images", flush=True)
        print("    " + uplift.table().replace("\n", "\n    "), flush=True)
    if args.ceiling:
        uplift = augmentation_uplift(labelled, holdout, pool_true, seeds, classifier)
        results.update(best_share("pool_true_labels", uplift))
        print(f"  k={k} draw {draw} ceiling, the {len(pool_true)} pool images with their true labels:", flush=True)
        print("    " + uplift.table().replace("\n", "\n    "), flush=True)
    if "real" not in results:  # every arm that trains it left out
        results["real"] = [train_classifier(labelled, replace(classifier, seed=seed)).accuracy(scoring) for seed in seeds]
    results["self_training"] = [self_train(labelled, pool, replace(classifier, seed=seed), args.pseudo_confidence).accuracy(scoring) for seed in seeds]
    print(f"  k={k} draw {draw} self-training: {np.mean(results['self_training']):.4f} ± {np.std(results['self_training']):.4f}", flush=True)
    atomic_write(saved_result(args, k, draw), lambda temp: temp.write_text(json.dumps(results)))
    return results


def settings_digest(args, device: torch.device) -> str:
    """What a saved result depends on: gan_core's code, this script, the settings that change a
    result (not --jobs or --out) and the device type (CUDA's numbers differ from the CPU's)."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).resolve().parent.parent.glob("gan_core/**/*.py")) + [Path(__file__).resolve()]:
        digest.update(path.name.encode() + path.read_bytes())
    settings = {name: getattr(args, name) for name in RESULT_SETTINGS}
    digest.update(json.dumps({**settings, "device": device.type}, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def saved_result(args, k: int, draw: int) -> Path:
    return args.results / f"{args.data}-k{k}-d{draw}-{args.digest}.json"


def every_draw(args, gan_config: TrainConfig, train_split: ImageData, holdout: ImageData, ks: list[int], out: Path) -> dict[int, list[dict[str, list[float]]]]:
    """Each k's per-draw results, in draw order. With `--jobs` above 1 the (k, draw) pairs train side by
    side in worker processes, for a GPU that one draw leaves partly idle. The GAN times they report then
    include the wait for the device. On one H200 a 3,000-step quick GAN takes about 45 s alone (15 ms a
    step, timed over 300) and took 81 to 85 s with 2 jobs; 15 jobs kept it 99% busy without one GAN
    finishing in 500 s. Use a few."""
    pairs = [(k, draw) for k in ks for draw in range(args.draws)]
    saved = {pair: json.loads(saved_result(args, *pair).read_text()) for pair in pairs if saved_result(args, *pair).is_file()}
    for k, draw in saved:
        print(f"  k={k} draw {draw}: read from {saved_result(args, k, draw)} (same code and settings)", flush=True)
    pairs = [pair for pair in pairs if pair not in saved]
    if args.jobs == 1 or not pairs:
        results = [one_draw(args, gan_config, train_split, holdout, k, draw, out) for k, draw in pairs]
    else:
        threads = max(1, (os.cpu_count() or 1) // args.jobs)  # each worker its share of the cores
        # spawn: a forked child cannot use CUDA once the parent has touched it
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(args.jobs, mp_context=spawn, initializer=torch.set_num_threads, initargs=(threads,)) as pool:
            results = list(pool.map(partial(one_draw, args, gan_config, train_split, holdout), *zip(*pairs), [out] * len(pairs)))
    done = {**saved, **dict(zip(pairs, results))}
    return {k: [done[(k, draw)] for draw in range(args.draws)] for k in ks}


def gan_arms(text: str) -> list[str]:
    arms = [arm for arm in text.split(",") if arm]
    if unknown := sorted(set(arms) - {"labelled_gan", "pool_gan"}):
        raise argparse.ArgumentTypeError(f"expected GAN arms among labelled_gan,pool_gan, got {','.join(unknown)}")
    return arms


def training_override(text: str) -> tuple[str, object]:
    """`FIELD=VALUE` → (field, value read as YAML: 32 an int, 0.5 a float, off the augment mode, as in a
    spec). `TrainConfig.from_profile` names an unknown field; the GAN's seed is each draw's, so it is refused."""
    field, sep, value = text.partition("=")
    if not sep or not field or field == "seed":
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE with FIELD a TrainConfig field other than seed (the draw's), got {text!r}")
    return field, yaml.safe_load(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=sorted(DATASETS), default=None, help="builtin dataset (default mnist-5k; naming it prefixes the JSON keys)")
    parser.add_argument("--k", default="10,20,50", help="labelled images per class, comma-separated")
    parser.add_argument("--draws", type=int, default=3, help="draws of the labelled images per k")
    parser.add_argument("--seeds", type=int, default=5, help="uplift classifier seeds per draw")
    parser.add_argument("--classifier-steps", type=int, default=None, help="uplift classifier steps (default gan_core's)")
    parser.add_argument("--profile", default="quick")
    parser.add_argument(
        "--set",
        type=training_override,
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a TrainConfig field of both GANs instead of the profile's, e.g. --set steps=3000 (repeatable)",
    )
    parser.add_argument("--samples-per-class", type=int, default=500)
    parser.add_argument("--min-confidence", type=float, default=EXPORT_CONFIDENCE, help="export filter threshold")
    parser.add_argument("--pseudo-confidence", type=float, default=PSEUDO_LABEL_CONFIDENCE)
    parser.add_argument("--skip", default="", type=gan_arms, help="GAN arms to leave out (exploration only), e.g. labelled_gan,pool_gan")
    parser.add_argument("--ceiling", action="store_true", help="add the pool with its true labels as an arm: the headroom")
    parser.add_argument("--out", type=Path, default=None, help="work folder of the GAN runs (default a new temporary one)")
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/uplift"), help="where each (dataset, k, draw) result is saved and found again")
    parser.add_argument("--jobs", type=int, default=1, help="(k, draw) pairs trained side by side in worker processes (a few, on a GPU machine)")
    args = parser.parse_args()
    try:
        gan_config = TrainConfig.from_profile(args.profile, **dict(args.set))
    except ValueError as error:
        parser.error(str(error))
    if args.jobs < 1:
        parser.error(f"--jobs: expected at least 1, got {args.jobs}")
    ks = [int(value) for value in args.k.split(",")]
    prefix = f"{DATASETS[args.data]}_" if args.data else ""
    args.data = args.data or "mnist-5k"
    args.skip = sorted(args.skip)
    out = args.out or Path(tempfile.mkdtemp(prefix="ganpipe-uplift-"))
    data = load_source({"kind": "builtin", "name": args.data}, size=32, channels=1)
    train_split, holdout = data.split(0.2, seed=0)
    device = choose_device()
    args.digest = settings_digest(args, device)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{os.cpu_count()} CPU cores"
    print(f"{args.data}: {len(train_split)} train, {len(holdout)} holdout (never trains anything); work in {out}", flush=True)
    print(f"device: {device.type} ({device_name}); profile {args.profile}; {args.jobs} job(s); results saved as {saved_result(args, 'K', 'D')}", flush=True)

    figures: dict[str, float] = {}
    rows = []
    for k, draws in every_draw(args, gan_config, train_split, holdout, ks, out).items():
        pooled: dict[str, list[float]] = {}
        for result in draws:
            for key, values in result.items():
                pooled.setdefault(key, []).extend(values)
        arms = [arm for arm in ARMS if arm in pooled]
        for arm in ["real", *arms]:
            figures[f"k{k}_{arm}"] = float(np.mean(pooled[arm]))
            figures[f"k{k}_{arm}_std"] = float(np.std(pooled[arm]))
        for arm in arms:
            differences = list(np.subtract(pooled[arm], pooled["real"]))
            figures[f"k{k}_gain_{arm}"] = float(np.mean(differences))
            figures[f"k{k}_gain_{arm}_ci_low"], figures[f"k{k}_gain_{arm}_ci_high"] = paired_interval(differences)
            if f"{arm}_share" in pooled:
                figures[f"k{k}_{arm}_share"] = float(np.mean(pooled[f"{arm}_share"]))
                figures[f"k{k}_{arm}_synthetic_only"] = float(np.mean(pooled[f"{arm}_synthetic_only"]))
            if f"{arm}_gan_train_s" in pooled:
                figures[f"k{k}_{arm}_gan_train_s"] = float(np.mean(pooled[f"{arm}_gan_train_s"]))
        rows.append(k)

    print(f"\n{args.draws} draw(s) × {args.seeds} seed(s) per k; mean ± std holdout accuracy; gain over real only [95% interval, paired]")
    print("| k | arm | holdout accuracy | gain over real only [95% interval] | best share | synthetic only |")
    print("| --- | --- | --- | --- | --- | --- |")
    for k in rows:
        f = {key[len(f"k{k}_") :]: value for key, value in figures.items() if key.startswith(f"k{k}_")}
        print(f"| {k} | real only | {f['real']:.4f} ± {f['real_std']:.4f} | | | |")
        for arm in (arm for arm in ARMS if arm in f):
            share = f"{f[arm + '_share']:g}" if arm + "_share" in f else ""
            alone = f"{f[arm + '_synthetic_only']:.4f}" if arm + "_synthetic_only" in f else ""
            gain = f"{f['gain_' + arm]:+.4f} [{f['gain_' + arm + '_ci_low']:+.4f}, {f['gain_' + arm + '_ci_high']:+.4f}]"
            print(f"| {k} | {ARMS[arm]} | {f[arm]:.4f} ± {f[arm + '_std']:.4f} | {gain} | {share} | {alone} |")
    print(json.dumps({prefix + key: round(value, 4) for key, value in figures.items()}))


if __name__ == "__main__":
    main()
