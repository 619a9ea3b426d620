"""An export written by several processes: one worker per shard (disjoint parts), then one commit.
Small convolutions scale better as processes than as threads of one process.

    python -m gan_core.export.shards --job job.json --shard I     (what each worker runs)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..checkpoint import load_generator, save_generator
from ..classifier import Judge
from .filter import ConfidenceFilter, SoftLabels
from .plan import ExportError, ExportPlan
from .screen import CopyScreen
from .store import commit_export
from .writer import export_samples


def export_in_processes(
    generator,
    plan: ExportPlan,
    destination: str | Path,
    *,
    processes: int,
    lineage: Mapping[str, Any] | None = None,
    root: str | Path,
    screen: CopyScreen | None = None,
    confidence: ConfidenceFilter | None = None,
    soft_labels: SoftLabels | None = None,
    threads: int | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Write `plan` with `processes` workers sharing the machine's cores (`threads` each), then commit.
    Returns the manifest and each worker's report (shard, pid, parts, peak_rss_mb). A failed shard
    raises ExportError; its finished parts stay in staging for a rerun."""
    root = Path(root)
    (root / "staging").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root / "staging", prefix="export-job-") as scratch:
        job = {
            "generator": str(save_generator(generator, Path(scratch) / "generator.safetensors")),
            "plan": plan.to_dict(),
            "destination": str(destination),
            "root": str(root),
            "lineage": dict(lineage or {}),
            "shards": processes,
            "threads": threads or max(1, (os.cpu_count() or 1) // processes),
            "screen": None,
        }
        if screen is not None:
            np.save(Path(scratch) / "screen.npy", screen.train_images)
            job["screen"] = {
                "images": str(Path(scratch) / "screen.npy"),
                "threshold": screen.threshold,
                "max_near_copy_fraction": screen.max_near_copy_fraction,
            }
        job["filter"] = None
        if confidence is not None:
            judge = str(confidence.judge.save(Path(scratch) / "judge.safetensors"))
            job["filter"] = {
                "judge": judge,
                "min_confidence": confidence.min_confidence,
                "min_acceptance": confidence.min_acceptance,
                "max_draws": confidence.max_draws,
            }
        job["soft_labels"] = None
        if soft_labels is not None:
            teacher = str(soft_labels.teacher.save(Path(scratch) / "teacher.safetensors"))
            job["soft_labels"] = {"teacher": teacher, "holdout_accuracy": soft_labels.holdout_accuracy}
        (Path(scratch) / "job.json").write_text(json.dumps(job))
        command = [sys.executable, "-m", "gan_core.export.shards", "--job", str(Path(scratch) / "job.json")]
        workers = [subprocess.Popen([*command, "--shard", str(shard)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for shard in range(processes)]
        outputs = [worker.communicate() for worker in workers]
    for shard, (worker, (_, err)) in enumerate(zip(workers, outputs)):
        if worker.returncode != 0:
            last = err.strip().splitlines()[-1] if err.strip() else "no output"
            raise ExportError(f"export shard {shard} of {processes} failed (finished parts stay in staging for a rerun): {last}")
    reports = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    return commit_export(plan, destination, root=root), reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--job", required=True, help="JSON: generator, plan, destination, root, lineage, shards, threads, screen")
    parser.add_argument("--shard", type=int, required=True)
    args = parser.parse_args(argv)
    job = json.loads(Path(args.job).read_text())
    torch.set_num_threads(job["threads"])  # the shards share the machine's cores
    generator, _ = load_generator(job["generator"])
    plan = ExportPlan.from_dict(job["plan"])
    screen = None
    if job["screen"]:
        images = np.load(job["screen"]["images"], allow_pickle=False)
        screen = CopyScreen(images, threshold=job["screen"]["threshold"], max_near_copy_fraction=job["screen"]["max_near_copy_fraction"])
    confidence = None
    if job["filter"]:
        settings = {key: value for key, value in job["filter"].items() if key != "judge"}
        confidence = ConfidenceFilter(Judge.load(job["filter"]["judge"], device="cpu"), **settings)
    soft_labels = None
    if job["soft_labels"]:
        soft_labels = SoftLabels(Judge.load(job["soft_labels"]["teacher"], device="cpu"), job["soft_labels"]["holdout_accuracy"])
    export_samples(
        generator,
        plan,
        job["destination"],
        lineage=job["lineage"],
        root=job["root"],
        shard=(args.shard, job["shards"]),
        commit=False,
        workers=job["threads"],
        screen=screen,
        confidence=confidence,
        soft_labels=soft_labels,
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"shard": args.shard, "pid": os.getpid(), "parts": plan.shards(job["shards"])[args.shard], "peak_rss_mb": peak}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
