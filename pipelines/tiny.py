"""A tiny but real dataset and spec: three classes of 8×8 images (bars at the top, middle and
bottom) and a spec that trains, evaluates and exports them in seconds. The tests and benchmarks
run the whole graph on it; it is also a quick first try of a fresh install."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

TINY_TRAINING = "{profile: quick, steps: 20, batch_size: 16, z_dim: 8, g_width: 4, d_width: 4, checkpoint_every: 10, log_every: 10}"


TINY_CLASSES = ("top", "middle", "bottom")


def write_tiny_npz(path: Path, per_class: int = 20, class_names: tuple[str, ...] = TINY_CLASSES) -> Path:
    """Three visually distinct classes of 8×8 images: bars at the top, middle and bottom (named
    `class_names`)."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 40, (3 * per_class, 1, 8, 8)).astype(np.uint8)
    labels = np.repeat(np.arange(3), per_class)
    for label, rows in enumerate((slice(0, 3), slice(3, 5), slice(5, 8))):
        images[labels == label, :, rows, :] += 200
    np.savez(path, images=images, labels=labels, class_names=np.array(list(class_names)))
    return path


def write_noisy_bars_npz(path: Path, per_class: int, seed: int = 0, class_names: tuple[str, ...] = TINY_CLASSES) -> Path:
    """A harder cousin of the tiny bars: a short bright bar (2 rows, 2 to 4 columns, anywhere along
    the row) at a jittered height among heavy noise. A few labels per class leave a classifier near
    0.85; a pool of them, pseudo-labelled and learnt by a GAN, lifts it: the uplift gate's pass path
    at 8×8 in about a minute."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), per_class)
    images = rng.integers(0, 100, (len(labels), 1, 8, 8))
    for i, label in enumerate(labels):
        row = int(np.clip((0, 3, 6)[label] + rng.integers(-1, 2), 0, 6))
        start, length = rng.integers(0, 5), rng.integers(2, 5)
        images[i, 0, row : row + 2, start : start + length] += 90
    np.savez(path, images=np.clip(images, 0, 255).astype(np.uint8), labels=labels, class_names=np.array(list(class_names)))
    return path


def write_tiny_spec(
    specs_dir: Path, name: str = "tiny", gates: str = "{min_label_accuracy: 0.0}", extra: str = "", source: str | None = None, export: str = ""
) -> Path:
    specs_dir.mkdir(parents=True, exist_ok=True)
    if "min_confidence" not in export:
        export += ", min_confidence: 0"  # a 20-step generator's samples would not pass the judge's default bar
    if source is None:
        write_tiny_npz(specs_dir / f"{name}.npz")
        source = f"{{kind: npz, path: {name}.npz}}"
    path = specs_dir / f"{name}.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            name: {name}
            source: {source}
            image: {{size: 8, channels: 1}}
            holdout_fraction: 0.2
            training: {TINY_TRAINING}
            evaluation: {{backbone: domain, n_samples: 60, gates: {gates}, uplift_seeds: 2, uplift_shares: [0.25, 0.5], uplift_classifier_steps: 100}}
            export: {{samples_per_class: 10, rows_per_part: 12{export}}}
            """
        )
        + extra
    )
    return path
