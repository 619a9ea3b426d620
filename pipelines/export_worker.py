"""One shard of a pipeline export, in its own process: `synthetic_dataset` starts one per shard
when the compute resource asks for several export processes, then commits them all at once.

    python -m pipelines.export_worker --job job.json --shard I
"""

from __future__ import annotations

import argparse
import json
import os

import torch

from gan_core.checkpoint import load_generator
from gan_core.data import load_source
from gan_core.export import CopyScreen, ExportPlan, export_samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--job", required=True, help="JSON: generator, plan, destination, root, lineage, shards, threads, screen")
    parser.add_argument("--shard", type=int, required=True)
    args = parser.parse_args(argv)
    with open(args.job) as handle:
        job = json.load(handle)
    torch.set_num_threads(job["threads"])  # the shards share the machine's cores
    generator, _ = load_generator(job["generator"])
    plan = ExportPlan.from_dict(job["plan"])
    screen = None
    if job.get("screen"):
        train = load_source({"kind": "npz", "path": job["screen"]["train_npz"]})
        screen = CopyScreen(train.images, threshold=job["screen"]["threshold"], max_near_copy_fraction=job["screen"]["max_near_copy_fraction"])
    export_samples(
        generator, plan, job["destination"], lineage=job["lineage"], root=job["root"], shard=(args.shard, job["shards"]), commit=False, workers=job["threads"], screen=screen
    )
    print(json.dumps({"shard": args.shard, "pid": os.getpid(), "parts": plan.shards(job["shards"])[args.shard]}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
