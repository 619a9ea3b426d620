"""Does synthetic data help a team with k labelled images per class and a pool of unlabelled ones,
more than what the team would do with the pool alone?

A builtin dataset (`--data`: mnist-5k, the default, or fashion-mnist-5k): the 1,000-image holdout is
split off first and never trains anything; its selection half chooses each study's recipes, its
scoring half scores every arm. From the 4,000-image train split, k labelled images per class are
drawn (`--draws` times); the rest is the unlabelled pool, its labels discarded. A teacher
(`--teacher`: consistency, the default and the pipeline's, or self_training) learns from the
labelled images and the pool; it pseudo-labels the pool for the pool GAN and gives the study's ssl arms and soft labels. For each
GAN, gan_core's uplift study (the pipeline's `augmentation_report`: real, ssl under the teacher's
hard or soft labels or by consistency training on the pool, ssl (and with `--mixes real,ssl` real) + synthetic at `--shares` (0.25, 0.5,
0.75 unless told) with hard or soft labels, synthetic only: the arms the first full study did not show dominated;
the same classifier, steps and classical augmentation in every arm, `--seeds` seeds) runs with:

    labelled_gan       a GAN trained on the labelled images only (filtered by a judge trained on them;
                         left out unless `--skip ''`)
    pool_gan           a GAN that also learns from the pool under the teacher's pseudo-labels
                         (filtered by the teacher)
and beside them, scored on the same images:
    self_training      the same classifier self-trained on the pool, no GAN
    pool_true_labels   (with --ceiling) + the pool itself with its true labels in place of synthetic:
                         what labelling the whole pool by hand would give, the headroom

The competitor is the stronger (by mean) of the study's ssl arm and self-training: a gain over it is
the generator's own.

Where the dataset has its own test split (`--test`, default auto: fashion-mnist-5k's t10k, 10,000
images), every classifier is also scored on it, beside the holdout, never instead: it trains nothing
and chooses nothing (the recipes, the competitor's ssl candidate and the best GAN arm are the
holdout's choices). One draw's 500 scoring images cannot show a gain smaller than about 2.8 points;
10,000 can show a fraction of one. Its table adds the gain over the teacher itself, the
consistency-trained network a team could use as its classifier without us; its intervals are a
paired bootstrap over the (draw, seed) rows and the test images together.

    .venv/bin/python benchmarks/uplift.py --k 10,20 --draws 3 --teacher consistency
    .venv/bin/python benchmarks/uplift.py --k 10 --draws 1 --set g_width=32 --set steps=4000   # a GAN variant
    python benchmarks/uplift.py --k 10 --draws 3 --jobs 3   # on a GPU machine: draws side by side
    .venv/bin/python benchmarks/uplift.py --k 20 --draws 3 --skip labelled_gan,pool_gan --ceiling   # the headroom alone
    .venv/bin/python benchmarks/uplift.py --data fashion-mnist-5k --k 10,20 --draws 3 --ceiling   # Fashion-MNIST
    .venv/bin/python benchmarks/uplift.py --k 20 --labels hard --shares 0.5   # a shorter study still

Each (dataset, k, draw) result is saved under --results as it finishes (the file name holds a digest of
gan_core's code, this script and every setting that changes a result), and a rerun with the same
code and settings reads it instead of training again: a protocol that takes hours can be stopped
and resumed, or collected over several runs (`--draws 3` after `--draws 1` trains draws 1 and 2 only);
`--list` says which are saved and which are still to train.

Last line: one JSON object, keys per k (means over draws and seeds): k20_real, k20_ssl (the
competitor's accuracy; k20_competitor names it), k20_best_synthetic (the better GAN arm's
recommended recipe; k20_recipe names each draw's), k20_gain_over_ssl with _ci_low and _ci_high
(paired over every (draw, seed)), k20_synthetic_only, k20_teacher (the teacher's accuracy) and
k20_teacher_s; per arm k20_pool_gan, k20_gain_pool_gan (over real, with its interval),
k20_pool_gan_gain_over_ssl, _share, _synthetic_only, _gan_train_s, _study_s. With --data, every key
starts with the dataset's short name: mnist_k20_real, fashion_k20_gain_over_ssl, ... With a test
split: k20_t10k_real, k20_t10k_ssl, k20_t10k_competitor, k20_t10k_best_synthetic,
k20_t10k_gain_over_ssl and k20_t10k_gain_over_teacher (each with _ci_low, _ci_high),
k20_t10k_synthetic_only, k20_t10k_teacher, and per arm as above with t10k_ in front."""

from __future__ import annotations

import argparse
import base64
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

from gan_core.classifier import ClassifierConfig, train_classifier
from gan_core.data import BUILTIN_DATASETS, ImageData, load_source
from gan_core.device import choose_device
from gan_core.export import filtered_samples
from gan_core.files import atomic_write
from gan_core.metrics import UPLIFT_LABEL_KINDS, UPLIFT_MIXES, Uplift, augmentation_uplift, paired_interval, uplift_classifier
from gan_core.metrics.intervals import paired_bootstrap_interval
from gan_core.metrics.uplift import TeacherPool, selection_mask
from gan_core.semi import PSEUDO_LABEL_CONFIDENCE, TEACHER_RECIPES, pseudo_labelled, self_train, train_teacher
from gan_core.train import TrainConfig, train
from gan_core.yaml_text import load_yaml

from common import EXPORT_CONFIDENCE, SAMPLES_PER_CLASS, TEST_SPLITS, short_name, test_split

RESULT_SETTINGS = (
    "data", "seeds", "classifier_steps", "profile", "set", "samples_per_class", "min_confidence", "pseudo_confidence", "skip", "ceiling", "teacher", "shares", "mixes", "labels", "test",
)  # fmt: skip
# The protocol's study leaves out the arms the first full study (fashion-mnist-5k, k=20, draw 0, 3 seeds, 19 arms,
# 39 min) showed dominated: shares 0.1 and 0.9 (below 0.25-0.75 in every mix and label kind) and real + synthetic
# (at or below ssl + synthetic at every share). 10 arms instead of 19; the pipeline's nightly study keeps them all.
PROTOCOL_SHARES = (0.25, 0.5, 0.75)
PROTOCOL_MIXES = ("ssl",)
GAN_ARMS = {"labelled_gan": "+ GAN on the labelled images", "pool_gan": "+ GAN on labelled + pool"}
COMPETITORS = {"study_ssl": "ssl: the pool under the teacher's labels, or consistency training on it", "self_training": "self-training, no GAN"}
ARMS = {**COMPETITORS, **GAN_ARMS, "pool_true_labels": "ceiling: + the pool, true labels"}


def study_results(arm: str, uplift: Uplift) -> dict[str, list]:
    """Per-seed accuracies (on the holdout's scoring half) of an arm's recommended recipe (the best
    with synthetic data, chosen by the selection half), its recipe and share, the study's ssl arm,
    synthetic only and real only."""
    results = {
        arm: uplift.per_seed[uplift.recommended],
        f"{arm}_recipe": [uplift.recommended],
        f"{arm}_share": [uplift.best_share],
        f"{arm}_synthetic_only": uplift.per_seed["synthetic"],
        "real": uplift.per_seed["real"],
    }
    if uplift.ssl is not None:
        results["study_ssl"], results["study_ssl_recipe"] = uplift.per_seed[uplift.ssl], [uplift.ssl]
    if uplift.test_correct:  # the same arms, image by image on the test split
        for key, study_arm in ((arm, uplift.recommended), (f"{arm}_synthetic_only", "synthetic"), ("real", "real"), ("study_ssl", uplift.ssl)):
            if study_arm is not None:
                results[f"test_{key}"] = [packed(row) for row in uplift.test_correct[study_arm]]
    return results


def packed(right: np.ndarray) -> str:
    """One classifier's right (1) or wrong (0) on every test image, as base64 of the bits: 10,000 images in 1.7 kB of JSON."""
    return base64.b64encode(np.packbits(np.asarray(right, bool))).decode()


def unpacked(text: str, n_images: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(base64.b64decode(text), np.uint8), count=n_images)


def one_draw(args, gan_config: TrainConfig, train_split: ImageData, holdout: ImageData, k: int, draw: int, out: Path) -> dict[str, list]:
    """Per-seed holdout accuracies of every arm for one draw of k labels per class; with `--test`, each
    arm's right and wrong on every test image too (keys test_*)."""
    test = test_split(args.test)
    labelled, pool_true = train_split.labelled_and_rest(k, seed=draw)
    pool = pool_true.images  # its labels discarded: only the ceiling arm sees them
    classifier = uplift_classifier(args.classifier_steps)
    seeds = list(range(args.seeds))
    # The arms without a study are scored on the images the studies score with (the other half of the holdout chooses their recipes).
    scoring = holdout.subset(np.flatnonzero(~selection_mask(len(holdout))))
    results: dict[str, list] = {}

    started = time.perf_counter()
    judge = train_classifier(labelled, ClassifierConfig(seed=draw))
    judge_s = time.perf_counter() - started
    started = time.perf_counter()
    teacher = train_teacher(args.teacher, labelled, pool, ClassifierConfig(seed=draw), args.pseudo_confidence)
    results["teacher_s"] = [time.perf_counter() - started]
    results["teacher"] = [teacher.accuracy(scoring)]
    if test is not None:
        results["test_images"], results["test_teacher"] = [len(test)], [packed(teacher.right(test))]
    guesses = pseudo_labelled(teacher, pool, args.pseudo_confidence)
    teacher_pool = TeacherPool(pool, teacher.probabilities(pool), args.pseudo_confidence)
    print(
        f"  k={k} draw {draw}: judge {judge.accuracy(scoring):.4f} ({judge_s:.0f} s), {args.teacher} teacher {results['teacher'][0]:.4f} "
        f"({results['teacher_s'][0]:.0f} s) on the {len(scoring)} scoring images; {len(guesses.data)}/{len(pool)} pool images pseudo-labelled at ≥{args.pseudo_confidence}",
        flush=True,
    )

    arms = {
        "labelled_gan": (labelled, judge),
        "pool_gan": (
            ImageData(np.concatenate([labelled.images, guesses.data.images]), np.concatenate([labelled.labels, guesses.data.labels]), labelled.class_names),
            teacher,
        ),
    }
    for arm in args.skip:
        arms.pop(arm)
    for arm, (gan_data, arm_judge) in arms.items():
        started = time.perf_counter()
        generator = train(gan_data, replace(gan_config, seed=draw), out / f"k{k}-d{draw}-{arm}", progress_bar=False).generator
        results[f"{arm}_gan_train_s"] = [time.perf_counter() - started]
        synthetic = filtered_samples(generator, arm_judge, args.samples_per_class, args.min_confidence, seed=draw)
        started = time.perf_counter()
        uplift = augmentation_uplift(
            labelled, holdout, synthetic, seeds, classifier, args.shares, pool=teacher_pool, synthetic_probs=teacher.probabilities(synthetic.images),
            mixes=args.mixes, labels=args.labels, test=test,
        )  # fmt: skip
        results[f"{arm}_study_s"] = [time.perf_counter() - started]
        results.update(study_results(arm, uplift))
        print(
            f"  k={k} draw {draw} {arm}: GAN {results[f'{arm}_gan_train_s'][0]:.0f} s on {len(gan_data)} images, study {results[f'{arm}_study_s'][0]:.0f} s",
            flush=True,
        )
        print("    " + uplift.table().replace("\n", "\n    "), flush=True)
    if args.ceiling:
        uplift = augmentation_uplift(labelled, holdout, pool_true, seeds, classifier, args.shares, test=test)
        results.update({key: value for key, value in study_results("pool_true_labels", uplift).items() if not key.startswith("study_ssl")})
        print(f"  k={k} draw {draw} ceiling, the {len(pool_true)} pool images with their true labels:", flush=True)
        print("    " + uplift.table().replace("\n", "\n    "), flush=True)
    if "real" not in results:  # every arm that trains it left out
        reals = [train_classifier(labelled, replace(classifier, seed=seed)) for seed in seeds]
        results["real"] = [real.accuracy(scoring) for real in reals]
        if test is not None:
            results["test_real"] = [packed(real.right(test)) for real in reals]
    self_trained = [self_train(labelled, pool, replace(classifier, seed=seed), args.pseudo_confidence) for seed in seeds]
    results["self_training"] = [student.accuracy(scoring) for student in self_trained]
    if test is not None:
        results["test_self_training"] = [packed(student.right(test)) for student in self_trained]
    print(f"  k={k} draw {draw} self-training: {np.mean(results['self_training']):.4f} ± {np.std(results['self_training']):.4f}", flush=True)
    atomic_write(saved_result(args, k, draw), lambda temp: temp.write_text(json.dumps(results)))
    return results


def settings_digest(args, device: torch.device) -> str:
    """What a saved result depends on: gan_core's code, this script and its common.py, the settings
    that change a result (not --jobs or --out) and the device type (CUDA's numbers differ from the CPU's)."""
    digest = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for path in sorted(here.parent.glob("gan_core/**/*.py")) + [Path(__file__).resolve(), here / "common.py"]:
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


def shares_list(text: str) -> list[float]:
    shares = [float(value) for value in text.split(",") if value]
    if not shares or not all(0 < share < 1 for share in shares):
        raise argparse.ArgumentTypeError(f"expected synthetic shares in (0, 1), comma-separated, got {text!r}")
    return shares


def choices_list(known: tuple[str, ...]):
    def parse(text: str) -> list[str]:
        values = [value for value in text.split(",") if value]
        if not values or not set(values) <= set(known):
            raise argparse.ArgumentTypeError(f"expected one or more of {','.join(known)}, comma-separated, got {text!r}")
        return values

    return parse


def training_override(text: str) -> tuple[str, object]:
    """`FIELD=VALUE` → (field, value read as YAML: 32 an int, 0.5 a float, off the augment mode, as in a
    spec). `TrainConfig.from_profile` names an unknown field; the GAN's seed is each draw's, so it is refused."""
    field, sep, value = text.partition("=")
    if not sep or not field or field == "seed":
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE with FIELD a TrainConfig field other than seed (the draw's), got {text!r}")
    return field, load_yaml(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=BUILTIN_DATASETS, default=None, help="builtin dataset (default mnist-5k; naming it prefixes the JSON keys)")
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
    parser.add_argument("--samples-per-class", type=int, default=SAMPLES_PER_CLASS)
    parser.add_argument("--min-confidence", type=float, default=EXPORT_CONFIDENCE, help="export filter threshold")
    parser.add_argument("--pseudo-confidence", type=float, default=PSEUDO_LABEL_CONFIDENCE)
    parser.add_argument(
        "--teacher",
        choices=TEACHER_RECIPES,
        default="consistency",
        help="how the teacher learns from the pool (it labels the pool for the GAN, the ssl arms and the soft labels)",
    )
    parser.add_argument(
        "--shares",
        type=shares_list,
        default=list(PROTOCOL_SHARES),
        help="synthetic shares of each batch in the study, comma-separated (the pipeline's: 0.1,0.25,0.5,0.75,0.9)",
    )
    parser.add_argument(
        "--mixes",
        type=choices_list(UPLIFT_MIXES),
        default=list(PROTOCOL_MIXES),
        help="what the synthetic images join in the study's arms: real, ssl or both (the pipeline's)",
    )
    parser.add_argument(
        "--labels",
        type=choices_list(UPLIFT_LABEL_KINDS),
        default=list(UPLIFT_LABEL_KINDS),
        help="the synthetic images' labels in the study's arms: hard, soft or both",
    )
    parser.add_argument(
        "--skip",
        default="labelled_gan",
        type=gan_arms,
        help="GAN arms to leave out (default labelled_gan, which the pipeline trains only without a pool, and which was within noise of pool_gan "
        "in the earlier protocol's Fashion-MNIST draws; --skip '' trains both)",
    )
    parser.add_argument(
        "--test",
        default="auto",
        choices=("auto", "none", *sorted(set(TEST_SPLITS.values()))),
        help="also score every arm on the dataset's own test split: t10k (fashion-mnist-5k's 10,000 images), none, or auto (t10k where the dataset has one)",
    )
    parser.add_argument("--ceiling", action="store_true", help="add the pool with its true labels as an arm: the headroom")
    parser.add_argument("--out", type=Path, default=None, help="work folder of the GAN runs (default a new temporary one)")
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/uplift"), help="where each (dataset, k, draw) result is saved and found again")
    parser.add_argument("--jobs", type=int, default=1, help="(k, draw) pairs trained side by side in worker processes (a few, on a GPU machine)")
    parser.add_argument(
        "--list",
        action="store_true",
        help="say which (k, draw) results are saved for this code and these settings, and which are still to train; train nothing",
    )
    args = parser.parse_args()
    try:
        gan_config = TrainConfig.from_profile(args.profile, **dict(args.set))
    except ValueError as error:
        parser.error(str(error))
    if args.jobs < 1:
        parser.error(f"--jobs: expected at least 1, got {args.jobs}")
    ks = [int(value) for value in args.k.split(",")]
    prefix = f"{short_name(args.data)}_" if args.data else ""
    args.data = args.data or "mnist-5k"
    args.test = TEST_SPLITS.get(args.data) if args.test == "auto" else None if args.test == "none" else args.test
    if args.test is not None and TEST_SPLITS.get(args.data) != args.test:
        parser.error(f"--test {args.test}: {args.data} has no such split (splits: {TEST_SPLITS.get(args.data) or 'none'})")
    args.skip = sorted(args.skip)
    device = choose_device()
    args.digest = settings_digest(args, device)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{os.cpu_count()} CPU cores"
    print(f"device: {device.type} ({device_name}); profile {args.profile}; {args.jobs} job(s); results saved as {saved_result(args, 'K', 'D')}", flush=True)
    if args.list:
        for k, draw in ((k, draw) for k in ks for draw in range(args.draws)):
            path = saved_result(args, k, draw)
            print(f"  k={k} draw {draw}: " + (f"saved as {path}" if path.is_file() else "to train"))
        return
    out = args.out or Path(tempfile.mkdtemp(prefix="ganpipe-uplift-"))
    data = load_source({"kind": "builtin", "name": args.data}, size=32, channels=1)
    train_split, holdout = data.split(0.2, seed=0)
    print(f"{args.data}: {len(train_split)} train, {len(holdout)} holdout (never trains anything); work in {out}", flush=True)

    figures: dict[str, float | str] = {}
    for k, draws in every_draw(args, gan_config, train_split, holdout, ks, out).items():
        figures.update(k_figures(k, draws))
    print(
        f"\n{args.draws} draw(s) × {args.seeds} seed(s) per k; mean ± std accuracy on the holdout's scoring half; gains [95% interval, paired by draw and seed]"
    )
    print("| k | arm | accuracy | gain over real only | gain over the competitor | recipe | synthetic only |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for k in ks:
        f = {key[len(f"k{k}_") :]: value for key, value in figures.items() if key.startswith(f"k{k}_")}
        print(f"| {k} | real only | {f['real']:.4f} ± {f['real_std']:.4f} | | | | |")
        print(f"| {k} | {args.teacher} teacher (width 32, not the study's classifier) | {f['teacher']:.4f} | | | {f['teacher_s']:.0f} s | |")
        for arm in (arm for arm in ARMS if arm in f):
            over_real = f"{f['gain_' + arm]:+.4f} [{f['gain_' + arm + '_ci_low']:+.4f}, {f['gain_' + arm + '_ci_high']:+.4f}]"
            over_ssl = (
                f"{f[arm + '_gain_over_ssl']:+.4f} [{f[arm + '_gain_over_ssl_ci_low']:+.4f}, {f[arm + '_gain_over_ssl_ci_high']:+.4f}]"
                if arm + "_gain_over_ssl" in f
                else ""
            )
            mark = " (**competitor**)" if arm == f.get("competitor") else ""
            alone = f"{f[arm + '_synthetic_only']:.4f}" if arm + "_synthetic_only" in f else ""
            print(f"| {k} | {ARMS[arm]}{mark} | {f[arm]:.4f} ± {f[arm + '_std']:.4f} | {over_real} | {over_ssl} | {f.get(arm + '_recipe', '')} | {alone} |")
    if test_images := next((value for key, value in figures.items() if key.endswith("_t10k_images")), None):
        print(
            f"\nOn the {args.test} split ({test_images:.0f} images no classifier trained on, nor chose a recipe); "
            "gains [95% interval, paired bootstrap over (draw, seed) and images]"
        )
        print("| k | arm | accuracy | gain over real only | gain over the competitor | gain over the teacher |")
        print("| --- | --- | --- | --- | --- | --- |")
        for k in ks:
            f = {key[len(f"k{k}_t10k_") :]: value for key, value in figures.items() if key.startswith(f"k{k}_t10k_")}
            for arm in ("real", "teacher", *(arm for arm in ARMS if arm in f)):
                name = ARMS.get(arm, {"real": "real only", "teacher": f"{args.teacher} teacher"}.get(arm))
                mark = " (**competitor**)" if arm == f["competitor"] else ""
                gains = [
                    f"{f[key]:+.4f} [{f[key + '_ci_low']:+.4f}, {f[key + '_ci_high']:+.4f}]" if key in f else ""
                    for key in (f"gain_{arm}", f"{arm}_gain_over_ssl", f"{arm}_gain_over_teacher")
                ]
                print(f"| {k} | {name}{mark} | {f[arm]:.4f} | " + " | ".join(gains) + " |")
    print(json.dumps({prefix + key: round(value, 4) if isinstance(value, float) else value for key, value in figures.items()}))


def k_figures(k: int, draws: list[dict[str, list]]) -> dict[str, float | str]:
    """One k's flat figures over its draws: each arm's mean and std, its gain over real only and over
    the competitor (the stronger of ssl and self-training by mean, so the gain is the generator's own)
    with paired 95% intervals over (draw, seed), and the best GAN arm as best_synthetic."""
    pooled: dict[str, list] = {}
    for result in draws:
        for key, values in result.items():
            pooled.setdefault(key, []).extend(values)
    f: dict[str, float | str] = {"teacher": float(np.mean(pooled["teacher"])), "teacher_s": float(np.mean(pooled["teacher_s"]))}
    arms = [arm for arm in ARMS if arm in pooled]
    for arm in ["real", *arms]:
        f[arm], f[f"{arm}_std"] = float(np.mean(pooled[arm])), float(np.std(pooled[arm]))
    competitor = max((arm for arm in COMPETITORS if arm in pooled), key=lambda arm: f[arm])
    f["competitor"] = competitor
    for arm in arms:
        for baseline, name in (("real", f"gain_{arm}"), (competitor, f"{arm}_gain_over_ssl")):
            if arm in COMPETITORS and baseline != "real":
                continue
            differences = list(np.subtract(pooled[arm], pooled[baseline]))
            f[name] = float(np.mean(differences))
            f[f"{name}_ci_low"], f[f"{name}_ci_high"] = paired_interval(differences)
        for key in ("share", "synthetic_only", "gan_train_s", "study_s"):
            if f"{arm}_{key}" in pooled:
                f[f"{arm}_{key}"] = float(np.mean(pooled[f"{arm}_{key}"]))
        if f"{arm}_recipe" in pooled:
            f[f"{arm}_recipe"] = ",".join(pooled[f"{arm}_recipe"])  # one per draw
    if gans := [arm for arm in GAN_ARMS if arm in pooled]:
        best = max(gans, key=lambda arm: f[arm])
        f.update(
            ssl=f[competitor], best_synthetic=f[best], best_synthetic_arm=best, recipe=f[f"{best}_recipe"], synthetic_only=f[f"{best}_synthetic_only"],
            gain_over_ssl=f[f"{best}_gain_over_ssl"], gain_over_ssl_ci_low=f[f"{best}_gain_over_ssl_ci_low"], gain_over_ssl_ci_high=f[f"{best}_gain_over_ssl_ci_high"],
        )  # fmt: skip
    if all("test_images" in result for result in draws):
        f.update(test_figures(draws, f.get("best_synthetic_arm")))
    return {f"k{k}_{key}": value for key, value in f.items()}


def test_figures(draws: list[dict[str, list]], best_arm: str | None) -> dict[str, float | str]:
    """The same comparisons on the test split (keys t10k_*): each arm's accuracy over every (draw,
    seed), and each GAN arm's gain over real only, over the competitor (the stronger of ssl and
    self-training on the test split) and over the teacher itself, with 95% intervals from a paired
    bootstrap over the (draw, seed) rows and the test images together. The teacher (one per draw)
    is paired with each of its draw's seeds."""
    rows: dict[str, list[np.ndarray]] = {}
    for result in draws:
        n_images, n_seeds = result["test_images"][0], len(result["real"])
        for key, values in result.items():
            if key.startswith("test_") and key != "test_images":
                right = np.stack([unpacked(text, n_images) for text in values])
                rows.setdefault(key[len("test_") :], []).append(np.repeat(right, n_seeds, axis=0) if key == "test_teacher" else right)
    correct = {arm: np.concatenate(parts) for arm, parts in rows.items()}
    f: dict[str, float | str] = {f"t10k_{arm}": float(right.mean()) for arm, right in correct.items()}
    competitor = max((arm for arm in COMPETITORS if arm in correct), key=lambda arm: f[f"t10k_{arm}"])
    f["t10k_competitor"], f["t10k_images"] = competitor, float(draws[0]["test_images"][0])
    for arm in (arm for arm in ARMS if arm in correct and arm not in COMPETITORS):
        for baseline, name in (("real", f"t10k_gain_{arm}"), (competitor, f"t10k_{arm}_gain_over_ssl"), ("teacher", f"t10k_{arm}_gain_over_teacher")):
            differences = correct[arm].astype(np.float64) - correct[baseline]
            f[name] = float(differences.mean())
            f[f"{name}_ci_low"], f[f"{name}_ci_high"] = paired_bootstrap_interval(differences)
    if best_arm is not None and best_arm in correct:  # the arm the holdout found best, as in the holdout's summary
        f["t10k_ssl"], f["t10k_best_synthetic"], f["t10k_synthetic_only"] = f[f"t10k_{competitor}"], f[f"t10k_{best_arm}"], f[f"t10k_{best_arm}_synthetic_only"]
        for over in ("ssl", "teacher"):
            for tail in ("", "_ci_low", "_ci_high"):
                f[f"t10k_gain_over_{over}{tail}"] = f[f"t10k_{best_arm}_gain_over_{over}{tail}"]
    return f


if __name__ == "__main__":
    main()
