"""The uplift study's arms: what each one trains on (a `Recipe`), its name, and which arms a study runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

MIXES = ("real", "ssl")  # what the synthetic images join in a batch: the real images alone, or ssl's (real + the teacher-labelled pool)
LABEL_KINDS = ("hard", "soft")  # the synthetic images' labels: the generator's, or the teacher's probabilities


def share_arm(share: float, pool: str | None = None, labels: str = "hard") -> str:
    """The arm name of real (or, with `pool`, ssl) + synthetic at `share` of each batch."""
    if pool is None and labels == "hard":
        return f"share_{share:g}"  # the name the study always had
    return f"{'ssl' if pool else 'real'}+synthetic_{labels}_share_{share:g}"


@dataclass(frozen=True)
class Recipe:
    """What one arm trains on: the real labelled images, plus the pool (`pool`: under the
    teacher's hard or soft labels, or `consistency`: consistency training on it), plus the export
    at `share` of each batch (`synthetic`: hard or soft labels); share 1 is synthetic only."""

    name: str
    pool: str | None = None
    synthetic: str | None = None
    share: float = 0.0

    def describe(self) -> str:
        base = {
            None: "real",
            "hard": "ssl (pool under the teacher's hard labels)",
            "soft": "ssl (pool under the teacher's soft labels)",
            "consistency": "ssl (consistency training on the pool)",
        }[self.pool]
        if self.synthetic is None:
            return "real only" if self.pool is None else base
        if self.share >= 1:
            return "synthetic only"
        label = "the generator's labels" if self.synthetic == "hard" else "the teacher's soft labels"
        mix = f"{'ssl' if self.pool else 'real'} + synthetic, {self.share:g} of each batch, {label}"
        return mix + (", with consistency training on the pool" if self.pool == "consistency" else "")


def study_recipes(
    shares: Sequence[float],
    pool_kinds: Sequence[str] = (),
    soft_synthetic: bool = False,
    mixes: Sequence[str] = MIXES,
    labels: Sequence[str] = LABEL_KINDS,
) -> list[Recipe]:
    """Every arm of the study, in the order they are trained and shown. `pool_kinds` holds the ssl
    candidates (hard, soft, consistency); the ssl + synthetic arms use whichever of them the
    selection images rank first, so they are listed with pool `best`. `mixes` and `labels` choose the arms with
    synthetic data: what the synthetic images join (real, ssl) and under which labels (hard, soft:
    only with `soft_synthetic`). Without a pool the only mix is real + synthetic, with the soft
    labels too; real only, the ssl candidates and synthetic only are always in."""
    kinds = [kind for kind in LABEL_KINDS if kind in labels and (kind == "hard" or soft_synthetic)] or ["hard"]
    recipes = [Recipe("real"), *(Recipe(f"ssl_{kind}", kind) for kind in pool_kinds)]
    if not pool_kinds or "real" in mixes:
        real_kinds = ["hard"] if pool_kinds and "hard" in kinds else kinds  # with a pool, the soft labels go with ssl
        recipes += [Recipe(share_arm(s, None, kind), None, kind, s) for kind in real_kinds for s in shares]
    if pool_kinds and "ssl" in mixes:
        recipes += [Recipe(share_arm(s, "best", kind), "best", kind, s) for kind in kinds for s in shares]
    return recipes + [Recipe("synthetic", None, "hard", 1.0)]
