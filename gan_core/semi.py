"""Learning from unlabelled images: the judge labels the pool, and only the images it is sure of
join training, under the judge's own guess of their class (pseudo-labels).

`self_train` is the classic recipe: train on the labelled images, pseudo-label the pool, train again
with the confident part of the pool in every batch. The GAN then learns from the labelled images
plus the pool under the final judge's pseudo-labels (`pseudo_labelled`). No holdout image is ever
passed here: callers hand in the labelled train split and the pool only.

`check_teacher` is the one use of the holdout: it decides nothing about training, only whether the
finished teacher may be used at all (pseudo-labels, the export's filter, soft labels)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .classifier import ClassifierConfig, Judge, train_classifier
from .consistency import ConsistencyConfig, consistency_train
from .data import DataError, ImageData

# A pseudo-labelled image joins training only above this judge probability of its class; chosen with
# benchmarks/uplift.py (see the README's figures).
PSEUDO_LABEL_CONFIDENCE = 0.9
POOL_SHARE = 0.5  # of each self-training batch, drawn from the confident pool
TEACHER_ALPHA = 0.05  # a teacher is used only if it beats the majority class at this significance


@dataclass(frozen=True)
class TeacherCheck:
    """Is the teacher shown better than chance and than always answering the holdout's majority class?"""

    accuracy: float
    holdout_images: int
    majority_share: float  # the accuracy of always answering the most common holdout class (at least 1/classes)
    p_value: float  # one-sided binomial test of the correct answers against majority_share
    alpha: float = TEACHER_ALPHA

    @property
    def useful(self) -> bool:
        return self.p_value < self.alpha

    def reason(self) -> str:
        measured = (
            f"holdout accuracy {self.accuracy:.4f} on {self.holdout_images} images against {self.majority_share:.4f} "
            f"for always answering the majority class (one-sided binomial p = {self.p_value:.3g})"
        )
        if self.useful:
            return f"teacher used: {measured}"
        return f"teacher not used (not shown better than chance or the majority class at p < {self.alpha:g}): {measured}"


def check_teacher(judge: Judge, holdout: ImageData, alpha: float = TEACHER_ALPHA) -> TeacherCheck:
    """The teacher's holdout accuracy tested against the better of chance and the majority class."""
    from scipy import stats

    if not len(holdout):
        raise DataError("check_teacher: the holdout is empty; a teacher cannot be shown useful without one")
    correct = int((judge.predict(holdout.images) == holdout.labels).sum())  # judge: anything with predict()
    shares = np.bincount(holdout.labels, minlength=holdout.num_classes) / len(holdout)
    baseline = float(max(shares.max(), 1.0 / holdout.num_classes))
    p_value = float(stats.binomtest(correct, len(holdout), baseline, alternative="greater").pvalue)
    return TeacherCheck(correct / len(holdout), len(holdout), baseline, p_value, alpha)


@dataclass
class PseudoLabels:
    data: ImageData  # the confident part of the pool, labelled with the judge's guesses
    confidence: np.ndarray  # the judge's probability of every pool image's guessed class
    min_confidence: float

    @property
    def acceptance(self) -> float:
        return float(len(self.data)) / max(len(self.confidence), 1)

    def summary(self) -> dict[str, float | int]:
        return {"pool_images": len(self.confidence), "pseudo_labelled": len(self.data), "min_confidence": self.min_confidence}


def pseudo_labelled(judge: Judge, pool: np.ndarray, min_confidence: float = PSEUDO_LABEL_CONFIDENCE) -> PseudoLabels:
    """The pool images the judge gives some class at least `min_confidence`, labelled with that class."""
    if not 0.0 <= min_confidence < 1.0:
        raise DataError(f"pseudo_label_confidence: expected a probability in [0, 1), got {min_confidence}")
    probabilities = judge.probabilities(pool) if len(pool) else np.zeros((0, len(judge.class_names)))
    guess, confidence = probabilities.argmax(axis=1), probabilities.max(axis=1)
    keep = np.flatnonzero(confidence >= min_confidence)
    return PseudoLabels(ImageData(pool[keep], guess[keep], judge.class_names), confidence, min_confidence)


def self_train(
    labelled: ImageData,
    pool: np.ndarray,
    config: ClassifierConfig | None = None,
    min_confidence: float = PSEUDO_LABEL_CONFIDENCE,
    rounds: int = 1,
) -> Judge:
    """A classifier trained on `labelled`, then `rounds` times again with the pool images its last
    version was sure of making up `POOL_SHARE` of every batch. Without a pool it is the first one."""
    judge = train_classifier(labelled, config)
    for _ in range(rounds if len(pool) else 0):
        guesses = pseudo_labelled(judge, pool, min_confidence)
        if not len(guesses.data):
            break
        judge = train_classifier(labelled, config, extra=guesses.data, extra_share=POOL_SHARE)
    return judge


TEACHER_RECIPES = ("self_training", "consistency")


def train_teacher(
    recipe: str,
    labelled: ImageData,
    pool: np.ndarray,
    config: ClassifierConfig | None = None,
    min_confidence: float = PSEUDO_LABEL_CONFIDENCE,
    consistency: ConsistencyConfig | None = None,
) -> Judge:
    """The judge by one of `TEACHER_RECIPES`: self-training (pseudo-labels above `min_confidence`) or
    weak/strong consistency on the pool (gan_core.consistency, its own confidence threshold)."""
    if recipe == "self_training":
        return self_train(labelled, pool, config, min_confidence)
    if recipe == "consistency":
        return consistency_train(labelled, pool, config, consistency)
    raise ValueError(f"teacher: expected one of {TEACHER_RECIPES}, got {recipe!r}")
