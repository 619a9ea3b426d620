"""Export throughput: ours against a naive afternoon-script baseline, with the parts that bound us.

For each size (default 100,000 and 1,000,000 samples of 32×32): samples/s, MB/s and peak RSS of
`gan_core.export.export_samples` and of the baseline (fold the generator once, generate batch by
batch, encode every image with Pillow's defaults, one pandas DataFrame of PNG bytes, `to_parquet`).
The generator is the quick profile trained on mnist-5k, trained once and cached under
`<GANPIPE_HOME>/bench/` (trained again when the code that trains it changes). Then the bounds: the
generator alone on all cores, PNG encoding alone on one core, and the ideal export rate
1 / (1/generation + 1/(encoding_per_core × cores)). Every measurement runs in a fresh process so
its peak RSS is its own. Last line: one JSON object with the figures.

"ours-sharded" is the same export written as the pipeline does with GANPIPE_EXPORT_PROCESSES set to
the number of cores: one single-threaded shard writer per core, then one commit.

    .venv/bin/python benchmarks/export_speed.py [--sizes 100000,1000000]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gan_core.checkpoint import load_generator, save_generator
from gan_core.export import ExportPlan, encode_pngs, export_samples
from gan_core.models import FoldedGenerator, Generator
from gan_core.sample import generate
from gan_core.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]

CLASSES = [str(d) for d in range(10)]
BATCH = ExportPlan.__dataclass_fields__["batch_size"].default  # the same generation batch for all


# The digits a user exports come from a trained model: an untrained one draws near-flat grey images,
# whose PNGs are larger (463 B against 269 B) and cost more to encode.
TRAINED_FROM = ("models.py", "train.py", "losses.py", "augment.py", "data.py")


def cached_generator_path() -> Path:
    """The quick profile trained once on mnist-5k's train split, under the storage root's bench folder;
    a change to the code that trains it trains it again."""
    digest = hashlib.sha256()
    for name in TRAINED_FROM:
        digest.update((ROOT / "gan_core" / name).read_bytes())
    home = Path(os.environ.get("GANPIPE_HOME", ROOT / "var"))
    return home / "bench" / "export-speed" / f"quick-{digest.hexdigest()[:12]}" / "generator.safetensors"


def ensure_trained_generator() -> Path:
    path = cached_generator_path()
    if not path.exists():
        from gan_core.data import load_source

        print(f"training the quick model once (cached at {path.parent})")
        train_split, _ = load_source({"kind": "builtin", "name": "mnist-5k"}, size=32, channels=1).split(0.2, seed=0)
        with tempfile.TemporaryDirectory() as run_dir:
            result = train(train_split, TrainConfig.from_profile("quick"), run_dir, progress_bar=False)
        save_generator(result.generator, path)
    return path


def quick_generator() -> Generator:
    generator, _ = load_generator(cached_generator_path())
    return generator.eval()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


LINEAGE = {"model_name": "bench", "model_version": "1"}


def run_ours(n: int, work: Path) -> dict:
    """One process: generation on all cores' torch threads, encoding overlapped in threads."""
    plan = ExportPlan.from_total(CLASSES, n, seed=0)
    destination = work / "exports" / "ours"
    started = time.perf_counter()
    export_samples(quick_generator(), plan, destination, root=work, lineage=LINEAGE)
    wall = time.perf_counter() - started
    return {"wall_s": wall, "bytes": directory_bytes(destination)}


def sharded_plan(n: int, shards: int) -> ExportPlan:
    return ExportPlan.from_total(CLASSES, n, seed=0, rows_per_part=-(-n // (2 * shards)))  # two parts per writer


def run_ours_sharded(n: int, work: Path) -> dict:
    """The pipeline's GANPIPE_EXPORT_PROCESSES=cores: `export_in_processes`, one single-threaded
    shard writer per core, then one commit. Peak RSS: the writers' peaks and this process's, summed."""
    from gan_core.export import export_in_processes

    shards = os.cpu_count() or 1
    started = time.perf_counter()
    _, reports = export_in_processes(quick_generator(), sharded_plan(n, shards), work / "exports" / "ours", processes=shards, lineage=LINEAGE, root=work)
    wall = time.perf_counter() - started
    return {"wall_s": wall, "bytes": directory_bytes(work / "exports" / "ours"), "peak_rss_mb_total": sum(r["peak_rss_mb"] for r in reports) + peak_rss_mb()}


def run_baseline(n: int, work: Path) -> dict:
    import pandas as pd
    from PIL import Image

    generator = FoldedGenerator(quick_generator())  # folded once, as a user calling the public API once per export would
    labels = np.arange(n) % 10
    started = time.perf_counter()
    rows = []
    for start in range(0, n, BATCH):
        batch = generate(generator, labels[start : start + BATCH], seed=start, batch_size=BATCH)
        for image in batch:
            buffer = io.BytesIO()
            Image.fromarray(image[0]).save(buffer, format="PNG")
            rows.append(buffer.getvalue())
    frame = pd.DataFrame({"label": labels, "image": rows})
    frame.to_parquet(work / "baseline.parquet")
    wall = time.perf_counter() - started
    return {"wall_s": wall, "bytes": (work / "baseline.parquet").stat().st_size}


def run_generation(n: int, work: Path) -> dict:
    """Best of three passes: a bound should not carry one pass's noise from a shared machine."""
    generator = quick_generator()
    labels = np.arange(n) % 10
    generate(generator, labels[:BATCH], batch_size=BATCH)  # warm-up
    walls = []
    for repeat in range(3):
        started = time.perf_counter()
        generate(generator, labels, seed=1 + repeat, batch_size=BATCH)
        walls.append(time.perf_counter() - started)
    return {"wall_s": min(walls)}


def run_encoding(n: int, work: Path) -> dict:
    images = generate(quick_generator(), np.arange(n) % 10, batch_size=BATCH)
    started = time.perf_counter()
    for start in range(0, n, BATCH):  # batch by batch, as the export encodes
        encode_pngs(images[start : start + BATCH])
    return {"wall_s": time.perf_counter() - started}


MODES = {"ours": run_ours, "ours-sharded": run_ours_sharded, "baseline": run_baseline, "generation": run_generation, "encoding": run_encoding}


def measure(mode: str, n: int) -> dict:
    """Run one measurement in a fresh process; returns its wall time, bytes and peak RSS."""
    out = subprocess.run([sys.executable, __file__, "--worker", mode, str(n)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--worker", nargs=2, metavar=("MODE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        mode, n = args.worker[0], int(args.worker[1])
        if mode == "encoding":
            torch.set_num_threads(1)
        with tempfile.TemporaryDirectory() as work:
            result = MODES[mode](n, Path(work))
        print(json.dumps({"n": n, "peak_rss_mb": peak_rss_mb(), **result}))
        return

    sizes = [int(s) for s in args.sizes.split(",")]
    cores = os.cpu_count() or 1
    print(f"generator: the quick profile trained on mnist-5k, {ensure_trained_generator()}")
    generation = measure("generation", 20_000)
    encoding = measure("encoding", 20_000)
    generation_rate = generation["n"] / generation["wall_s"]
    encoding_rate = encoding["n"] / encoding["wall_s"]
    ideal = 1 / (1 / generation_rate + 1 / (encoding_rate * cores))
    print(f"generator alone, {cores} cores: {generation_rate:.0f} images/s")
    print(f"PNG encoding alone, 1 core: {encoding_rate:.0f} images/s")
    print(f"ideal export rate: {ideal:.0f} samples/s")
    figures: dict[str, float] = {"generation_images_per_s": generation_rate, "encoding_images_per_s_per_core": encoding_rate, "ideal_samples_per_s": ideal}
    for n in sizes:
        for mode in ("ours", "ours-sharded", "baseline"):
            result = measure(mode, n)
            result["peak_rss_mb"] = result.pop("peak_rss_mb_total", result["peak_rss_mb"])
            rate = n / result["wall_s"]
            print(
                f"{mode:8s} {n:>9,d} samples: {rate:8.0f} samples/s  {result['bytes'] / 1e6 / result['wall_s']:6.2f} MB/s  peak RSS {result['peak_rss_mb']:7.0f} MB  ({result['wall_s']:.1f} s)"
            )
            label = {100_000: "100k", 1_000_000: "1m"}.get(n, str(n))
            key = mode.replace("-", "_")
            figures[f"{key}_samples_per_s_{label}"] = rate
            figures[f"{key}_mb_per_s_{label}"] = result["bytes"] / 1e6 / result["wall_s"]
            figures[f"{key}_peak_rss_mb_{label}"] = result["peak_rss_mb"]
    largest = {100_000: "100k", 1_000_000: "1m"}.get(sizes[-1], str(sizes[-1]))
    figures[f"efficiency_{largest}"] = figures[f"ours_samples_per_s_{largest}"] / ideal
    figures[f"speedup_vs_baseline_{largest}"] = figures[f"ours_samples_per_s_{largest}"] / figures[f"baseline_samples_per_s_{largest}"]
    figures[f"sharded_speedup_vs_baseline_{largest}"] = figures[f"ours_sharded_samples_per_s_{largest}"] / figures[f"baseline_samples_per_s_{largest}"]
    print(
        f"at {sizes[-1]:,}: {figures[f'speedup_vs_baseline_{largest}']:.2f}× the baseline, {figures[f'efficiency_{largest}']:.0%} of the ideal rate; "
        f"one shard writer per core: {figures[f'sharded_speedup_vs_baseline_{largest}']:.2f}× the baseline"
    )
    print(json.dumps({key: round(value, 3) for key, value in figures.items()}))


if __name__ == "__main__":
    main()
