"""Augmentation uplift: does a classifier trained with the synthetic images beat what a team would
get without them?

The same small classifier, the same optimizer steps and the same classical augmentation in every
arm (a recipe): real only; with a pool of unlabelled images, `ssl` (the pool under the teacher's
hard pseudo-labels, or under its probabilities, or consistency training on it: the best of the
three is the competitor); real + synthetic and ssl + synthetic (hard labels, and the teacher's soft
labels when the export has them) at several synthetic shares of every batch; and synthetic only. The best recipe with synthetic data
is the recommended one, and the gate compares it with the best recipe without.

The holdout is split in two, once: one half chooses (the ssl candidate, the recommended recipe),
the other scores, so that picking the best of many arms does not inflate the gain it reports. A
gain's interval is a paired bootstrap over the scoring images and the seeds together: the holdout a
team has is a sample too, and 40 images cannot show a one-point gain however many seeds are trained."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np

from ..classifier import BatchSource, ClassifierConfig, Judge, classifier_steps, train_classifier
from ..consistency import ConsistencyConfig, consistency_train
from ..data import ImageData
from ..progress import time_left
from ..semi import POOL_SHARE  # of what each ssl batch leaves to real images, drawn from the teacher-labelled pool
from .errors import MetricsError
from .intervals import paired_bootstrap_interval
from .recipes import LABEL_KINDS, MIXES, Recipe, share_arm, study_recipes


UPLIFT_CLASSIFIER = ClassifierConfig(steps=600, width=16)
UPLIFT_SHARES = (0.1, 0.25, 0.5, 0.75, 0.9)  # synthetic images per batch
UPLIFT_SEEDS = 5
MIN_DETECTABLE_IMAGES = 4  # d images more right, all else equal: the interval clears 0 once d/N > 1.96·√d/N
SELECTION_FRACTION = 0.5  # of the holdout, to choose the recipes; the rest scores them
POOL_KINDS = ("hard", "soft", "consistency")  # the ssl candidates: the pool under the teacher's hard or soft labels, or consistency training on it
# Of a consistency arm's optimizer steps, those of consistency after the supervised ones: the
# teacher's measured 400 of 1,000, so that the arm trains no longer than the others.
CONSISTENCY_STEP_SHARE = 0.4
BASELINES = ("ssl", "real")  # what the gate compares with: the best recipe without synthetic data, or real only


def uplift_classifier(steps: int | None = None) -> ClassifierConfig:
    """The uplift study's classifier, with `steps` optimizer steps instead of its default."""
    return UPLIFT_CLASSIFIER if steps is None else replace(UPLIFT_CLASSIFIER, steps=steps)


@dataclass
class TeacherPool:
    """The unlabelled pool as the teacher labels it: its probabilities of every image, and the
    threshold above which an image joins under a hard pseudo-label."""

    images: np.ndarray
    probs: np.ndarray
    min_confidence: float

    def hard(self, class_names: list[str]) -> ImageData:
        keep = np.flatnonzero(self.probs.max(axis=1) >= self.min_confidence)
        return ImageData(self.images[keep], self.probs[keep].argmax(axis=1), class_names)

    def source(self, kind: str, class_names: list[str], share: float) -> BatchSource:
        if kind == "hard":
            return BatchSource(self.hard(class_names), share)
        return BatchSource(ImageData(self.images, self.probs.argmax(axis=1), class_names), share, self.probs)


def selection_mask(n_images: int, seed: int = 0, fraction: float = SELECTION_FRACTION) -> np.ndarray:
    """True for the holdout images that choose recipes, False for those that score them: a fixed
    shuffle, the same for every arm and seed."""
    mask = np.zeros(n_images, bool)
    mask[np.random.default_rng(seed).permutation(n_images)[: int(round(n_images * fraction))]] = True
    return mask


@dataclass
class Uplift:
    correct: dict[str, np.ndarray]  # arm → seeds × holdout images (all of them), 1 where the classifier was right
    shares: list[float]
    seeds: list[int]
    n_real: int
    n_synthetic: int
    classifier_steps: int
    recipes: dict[str, Recipe] = field(default_factory=dict)  # arm → what it trains on (default: real, share_<s>, synthetic)
    selection: np.ndarray | None = None  # holdout images that choose (default: none; every image scores)
    n_pool: int = 0
    baseline: str = "ssl"
    # arm → seeds × test images: a labelled set beside the holdout that scores only (a benchmark's
    # larger test split); it chooses nothing, and no figure, gate or summary of the study reads it.
    test_correct: dict[str, np.ndarray] = field(default_factory=dict)
    _intervals: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.baseline not in BASELINES:
            raise MetricsError(f"uplift baseline: expected one of {list(BASELINES)}, got {self.baseline!r}")
        defaults = {"real": Recipe("real"), "synthetic": Recipe("synthetic", None, "hard", 1.0)}
        defaults.update({share_arm(s): Recipe(share_arm(s), None, "hard", s) for s in self.shares})
        self.recipes = {arm: self.recipes.get(arm) or defaults[arm] for arm in self.correct}
        if self.selection is None:
            self.selection = np.zeros(next(iter(self.correct.values())).shape[1], bool)

    def _scored(self, arm: str) -> np.ndarray:
        return self.correct[arm][:, ~self.selection]

    def _chooses(self, arm: str) -> float:
        rows = self.correct[arm][:, self.selection] if self.selection.any() else self.correct[arm]
        return float(rows.mean())

    @property
    def holdout_images(self) -> int:  # the images that score the arms (the others only chose)
        return int((~self.selection).sum())

    @property
    def selection_images(self) -> int:
        return int(self.selection.sum())

    @property
    def per_seed(self) -> dict[str, list[float]]:
        """Arm → one accuracy on the scoring images per seed."""
        return {arm: [float(row.mean()) for row in self._scored(arm)] for arm in self.correct}

    def arm(self, name: str) -> tuple[float, float]:
        """(mean, std) accuracy of one arm on the scoring images over the seeds."""
        values = self.per_seed[name]
        return float(np.mean(values)), float(np.std(values))

    def _best(self, arms: list[str]) -> str | None:
        """The arm the selection images rank first (the first of equals); without them, the scoring images."""
        return max(arms, key=lambda arm: self._chooses(arm), default=None)

    @property
    def ssl(self) -> str | None:
        """The competitor's recipe with the pool: the better ssl candidate (none without a pool)."""
        return self._best([arm for arm, r in self.recipes.items() if r.pool and r.synthetic is None])

    @property
    def without_synthetic(self) -> str:
        """The arm the gate compares with: the best of real and ssl, or real when the baseline is real."""
        return "real" if self.baseline == "real" or self.ssl is None else self._best(["real", self.ssl])

    @property
    def recommended(self) -> str:
        """The best recipe with synthetic data: the recommended one."""
        return self._best([arm for arm, r in self.recipes.items() if r.synthetic is not None])

    real_only = property(lambda self: self.arm("real"))
    synthetic_only = property(lambda self: self.arm("synthetic"))

    @property
    def best_share(self) -> float:
        return self.recipes[self.recommended].share

    @property
    def real_plus_synthetic(self) -> tuple[float, float] | None:
        """The best real + synthetic share (no pool, the generator's labels); None when the study left those arms out."""
        best = self._best([share_arm(s) for s in self.shares if share_arm(s) in self.correct])
        return None if best is None else self.arm(best)

    @property
    def gain(self) -> float:
        """The recommended recipe over the gate's baseline, on the scoring images."""
        return self.gain_over(self.without_synthetic)

    def gain_over(self, baseline: str, arm: str | None = None) -> float:
        return self.arm(arm or self.recommended)[0] - self.arm(baseline)[0]

    def gain_at(self, share: float) -> float:
        return self.gain_over("real", share_arm(share))

    def gain_interval(self, confidence: float = 0.95, share: float | None = None, baseline: str | None = None, arm: str | None = None) -> tuple[float, float]:
        """A `confidence` interval of `arm` (default the recommended; with `share`, real + synthetic at
        that share) over `baseline` (default the gate's): a bootstrap over scoring images and seeds,
        paired by image and seed (each seed trains every arm from the same start and every arm is
        scored on the same images). Computed once per pair."""
        arm = share_arm(share) if share is not None else (arm or self.recommended)
        baseline = baseline or self.without_synthetic
        key = (arm, baseline, confidence)
        if key not in self._intervals:
            differences = self._scored(arm).astype(np.float64) - self._scored(baseline)
            self._intervals[key] = paired_bootstrap_interval(differences, confidence)
        return self._intervals[key]

    @property
    def min_detectable_gain(self) -> float:
        """The half-width of the gate's interval, and at least 4 images' worth of the scoring images
        (even with every other image and seed agreeing, fewer than 4 more right never lift a 95%
        interval above 0): a smaller gain cannot be shown with this holdout and these seeds."""
        low, high = self.gain_interval()
        return max((high - low) / 2, MIN_DETECTABLE_IMAGES / max(self.holdout_images, 1))

    def figures(self) -> dict[str, float]:
        """Every figure of the study by its metric name, at full precision: what the registry's
        `uplift_*` metrics, the pipeline's report and its gate all read. `uplift_gain` is the
        recommended recipe over the gate's baseline (`uplift_baseline_accuracy`)."""
        low, high = self.gain_interval()
        real_low, real_high = self.gain_interval(baseline="real")
        figures = {
            "uplift_real_only": self.real_only[0],
            "uplift_recommended": self.arm(self.recommended)[0],
            "uplift_baseline_accuracy": self.arm(self.without_synthetic)[0],
            "uplift_synthetic_only": self.synthetic_only[0],
            "uplift_gain": self.gain,
            "uplift_gain_ci_low": low,
            "uplift_gain_ci_high": high,
            "uplift_gain_over_real": self.gain_over("real"),
            "uplift_gain_over_real_ci_low": real_low,
            "uplift_gain_over_real_ci_high": real_high,
            "uplift_best_share": self.best_share,
            "uplift_min_detectable_gain": self.min_detectable_gain,
            "uplift_holdout_images": float(self.holdout_images),
            "uplift_selection_images": float(self.selection_images),
            **{f"uplift_gain_{share_arm(share)}": self.gain_at(share) for share in self.shares if share_arm(share) in self.correct},
        }
        if self.real_plus_synthetic is not None:
            figures["uplift_real_plus_synthetic"] = self.real_plus_synthetic[0]
        if self.ssl is not None:
            ssl_low, ssl_high = self.gain_interval(baseline=self.ssl)
            figures.update(
                uplift_ssl=self.arm(self.ssl)[0],
                uplift_gain_over_ssl=self.gain_over(self.ssl),
                uplift_gain_over_ssl_ci_low=ssl_low,
                uplift_gain_over_ssl_ci_high=ssl_high,
            )
        return figures

    def summary(self) -> dict[str, Any]:
        """The recommended recipe, as the manifest's `utility` entry and the model version's tags hold it."""
        recipe, figures = self.recipes[self.recommended], self.figures()
        ssl = self.recipes[self.ssl] if self.ssl else None
        return {
            "recipe": recipe.describe(),
            "arm": recipe.name,
            "share": recipe.share,
            "label_kind": recipe.synthetic,
            "with_pool": recipe.pool is not None,
            "baseline": self.recipes[self.without_synthetic].describe(),
            "gain": self.gain,
            "gain_ci95": [figures["uplift_gain_ci_low"], figures["uplift_gain_ci_high"]],
            "gain_over_real": figures["uplift_gain_over_real"],
            "gain_over_real_ci95": [figures["uplift_gain_over_real_ci_low"], figures["uplift_gain_over_real_ci_high"]],
            "ssl": None if ssl is None else ssl.describe(),
            "gain_over_ssl": figures.get("uplift_gain_over_ssl"),
            "gain_over_ssl_ci95": [figures["uplift_gain_over_ssl_ci_low"], figures["uplift_gain_over_ssl_ci_high"]] if ssl else None,
            "real_only": self.real_only[0],
            "recommended_accuracy": figures["uplift_recommended"],
            "synthetic_only": self.synthetic_only[0],
            "seeds": len(self.seeds),
            "holdout_images": self.holdout_images,
            "selection_images": self.selection_images,
            "min_detectable_gain": self.min_detectable_gain,
            "classifier_steps": self.classifier_steps,
            "n_real": self.n_real,
            "n_synthetic": self.n_synthetic,
            "n_pool": self.n_pool,
        }

    def table(self) -> str:
        """Markdown: every arm's accuracy (mean ± std) and its gain over real only and over ssl, with 95% intervals."""
        baselines = ["real", *([self.ssl] if self.ssl else [])]
        header = " | ".join(f"gain over {'real only' if b == 'real' else 'ssl'} (95% interval)" for b in baselines)
        lines = [f"| training data | accuracy (mean ± std) | {header} |", "| --- | --- |" + " --- |" * len(baselines)]
        for arm, recipe in self.recipes.items():
            marks = [text for text, hit in (("recommended", arm == self.recommended), ("competitor", arm == self.ssl)) if hit]
            mean, std = self.arm(arm)
            cells = []
            for baseline in baselines:
                if arm == baseline or (recipe.synthetic is None and baseline != "real") or (arm == "real"):
                    cells.append("")
                    continue
                low, high = self.gain_interval(arm=arm, baseline=baseline)
                cells.append(f"{self.gain_over(baseline, arm):+.4f} ({low:+.4f} to {high:+.4f})")
            label = recipe.describe() + (f" (**{', '.join(marks)}**)" if marks else "")
            lines.append(f"| {label} | {mean:.4f} ± {std:.4f} | " + " | ".join(cells) + " |")
        chose = f"{self.selection_images} other holdout images chose the recipes; " if self.selection_images else ""
        return "\n".join(lines) + (
            f"\n\n{len(self.seeds)} seeds, {self.classifier_steps} optimizer steps in every arm, scored on {self.holdout_images} holdout images "
            f"({chose}intervals are a paired bootstrap over the scoring images and the seeds), so the smallest gain this study can show is about "
            f"{self.min_detectable_gain:+.4f}."
        )

    def to_dict(self) -> dict[str, Any]:
        fields = {key: value for key, value in asdict(self).items() if key not in ("correct", "recipes", "selection", "test_correct", "_intervals")}
        return {**fields, "per_seed": self.per_seed, **self.summary(), "table": self.table()}


def _check_study(seeds: Sequence[int], classifier: ClassifierConfig, shares: Sequence[float], select_fraction: float, mixes, labels) -> None:
    if len(seeds) < 1:
        raise MetricsError("seeds: expected at least one seed")
    if not shares or not all(0 < share < 1 for share in shares):
        raise MetricsError(f"shares: expected synthetic shares of a batch in (0, 1), got {list(shares)}")
    if not 0 <= select_fraction < 1:
        raise MetricsError(f"select_fraction: expected a fraction of the holdout in [0, 1), got {select_fraction}")
    for name, values, known in (("mixes", mixes, MIXES), ("labels", labels, LABEL_KINDS)):
        if not values or not set(values) <= set(known):
            raise MetricsError(f"{name}: expected one or more of {list(known)}, got {list(values)}")
    if not classifier.steps:
        # Epochs would give the larger real+synthetic set more optimizer steps than real only.
        raise MetricsError("uplift classifier: expected a fixed number of optimizer steps (ClassifierConfig.steps), the same for every training set")


def _check_inputs(real_train: ImageData, holdout: ImageData, synthetic: ImageData, synthetic_probs: np.ndarray | None, test: ImageData | None) -> None:
    if synthetic_probs is not None and np.shape(synthetic_probs) != (len(synthetic), real_train.num_classes):
        raise MetricsError(f"synthetic_probs: expected {len(synthetic)} × {real_train.num_classes} class probabilities, got {np.shape(synthetic_probs)}")
    if test is not None and (test.class_names != holdout.class_names or test.images.shape[1:] != holdout.images.shape[1:]):
        raise MetricsError(
            f"test: expected images of the holdout's shape {holdout.images.shape[1:]} and classes {holdout.class_names}, "
            f"got {test.images.shape[1:]} and {test.class_names}"
        )


def _consistency_arm(real_train: ImageData, pool: np.ndarray, config: ClassifierConfig, exported: tuple[BatchSource, ...]) -> Judge:
    """Consistency training on the pool for the arm's own step count, split between the supervised
    and the consistency stage; the export (if any) joins the labelled stream of both (DPT)."""
    steps = classifier_steps(config, len(real_train))
    later = int(round(CONSISTENCY_STEP_SHARE * steps))
    return consistency_train(real_train, pool, replace(config, steps=steps - later), ConsistencyConfig(steps=later), exported)


def augmentation_uplift(
    real_train: ImageData,
    holdout: ImageData,
    synthetic: ImageData,
    seeds: Sequence[int] = tuple(range(UPLIFT_SEEDS)),
    classifier: ClassifierConfig | None = None,
    shares: Sequence[float] = UPLIFT_SHARES,
    progress: Callable[[str], None] | None = None,
    pool: TeacherPool | None = None,
    synthetic_probs: np.ndarray | None = None,
    baseline: str = "ssl",
    select_fraction: float = SELECTION_FRACTION,
    mixes: Sequence[str] = MIXES,
    labels: Sequence[str] = LABEL_KINDS,
    test: ImageData | None = None,
) -> Uplift:
    """Every recipe of `study_recipes` trained with each seed and tested on the real holdout: real
    only, the ssl candidates with the `pool` (when given, non-empty), real + synthetic and ssl +
    synthetic at each of `shares` of every batch (with the generator's labels, and with the
    teacher's `synthetic_probs` when given), and synthetic only; `mixes` and `labels` leave some of
    the arms with synthetic data out (see `study_recipes`). `select_fraction` of the holdout
    chooses, the rest scores; `test`, when given, is predicted too (`Uplift.test_correct`) and
    decides nothing. `progress` gets one line per arm done (time left)."""
    base = classifier or UPLIFT_CLASSIFIER
    _check_study(seeds, base, shares, select_fraction, mixes, labels)
    _check_inputs(real_train, holdout, synthetic, synthetic_probs, test)
    pool = pool if pool is not None and len(pool.images) else None
    pool_kinds = list(POOL_KINDS) if pool is not None else []
    recipes = study_recipes(shares, pool_kinds, synthetic_probs is not None, mixes, labels)
    selection = selection_mask(len(holdout), fraction=select_fraction)
    names = real_train.class_names

    def train(recipe: Recipe, seed: int, pool_kind: str | None) -> tuple[np.ndarray, np.ndarray | None]:
        config = replace(base, seed=int(seed))
        mixed = recipe.synthetic and recipe.share < 1  # synthetic only trains on the export itself, below
        exported = (BatchSource(synthetic, recipe.share, synthetic_probs if recipe.synthetic == "soft" else None),) if mixed else ()
        if recipe.share >= 1:
            judge = train_classifier(synthetic, config)
        elif pool_kind == "consistency":
            judge = _consistency_arm(real_train, pool.images, config, exported)
        else:
            sources = []
            if pool_kind:
                sources.append(pool.source(pool_kind, names, POOL_SHARE * (1 - recipe.share)))
            judge = train_classifier(real_train, config, sources=(*sources, *exported))
        return judge.right(holdout), None if test is None else judge.right(test)

    correct, test_correct = {}, {}  # arm → seeds × images of the holdout, of the test split
    chosen: dict[str, Recipe] = {}
    started = time.perf_counter()
    for done, recipe in enumerate(recipes, 1):
        pool_kind = recipe.pool
        if pool_kind == "best":  # the ssl candidate the selection images rank first, known once both are trained
            ssl = max((f"ssl_{kind}" for kind in pool_kinds), key=lambda arm: correct[arm][:, selection].mean() if selection.any() else correct[arm].mean())
            pool_kind = chosen[ssl].pool
            recipe = replace(recipe, name=share_arm(recipe.share, pool_kind, recipe.synthetic), pool=pool_kind)
        on_holdout, on_test = zip(*(train(recipe, seed, pool_kind) for seed in seeds))
        correct[recipe.name] = np.stack(on_holdout)
        if test is not None:
            test_correct[recipe.name] = np.stack(on_test)
        chosen[recipe.name] = recipe
        if progress is not None:
            left = (time.perf_counter() - started) / done * (len(recipes) - done)
            progress(
                f"uplift: {recipe.describe()}: {correct[recipe.name].mean():.4f} ({done}/{len(recipes)} arms × {len(seeds)} seeds), {time_left(left)} left"
            )
    return Uplift(
        correct,
        [float(s) for s in shares],
        [int(s) for s in seeds],
        len(real_train),
        len(synthetic),
        base.steps,
        recipes=chosen,
        selection=selection,
        n_pool=0 if pool is None else len(pool.images),
        baseline=baseline,
        test_correct=test_correct,
    )
