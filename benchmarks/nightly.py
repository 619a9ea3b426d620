"""A night for many teams: N tiny specs, each with a nightly schedule, ticked at 02:00 and run to
the end of the graph (ingest, judge, train, evaluate, promote, export, uplift) against one Dagster
instance (the deployed dagster.yaml: one `gpu` slot) and one MLflow store.

The night runs twice in the same invocation: on `--workers` processes (what a deployment does),
and one run after another in one process (the baseline). It prints runs completed, failures, wall
time and peak memory of each: the summed resident memory of every process of the night sampled
together (`peak_rss_mb`), and the largest single process's peak beside it. Last line: one JSON object
with `runs`, `failures`, `wall_s`, `peak_rss_mb` (of the parallel night), the baseline's
`baseline_wall_s`, `baseline_peak_rss_mb`, and both `*_one_process` peaks.

    .venv/bin/python benchmarks/nightly.py [--teams 10] [--workers 2] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TICK = datetime.datetime(2026, 11, 23, 2, 0, tzinfo=datetime.timezone.utc)
RUN_CONFIG = {"ops": {"augmentation_report": {"config": {"classifier_steps": 50}}}}


def prepare(workdir: Path, teams: int) -> dict[str, str]:
    from pipelines.tiny import write_tiny_spec

    env = {"GANPIPE_HOME": str(workdir / "var"), "GANPIPE_SPECS": str(workdir / "specs"), "DAGSTER_HOME": str(workdir / "dagster")}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir / 'var' / 'mlflow.db'}"
    for path in ("var", "specs", "dagster"):
        (workdir / path).mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "deploy" / "dagster.yaml", workdir / "dagster" / "dagster.yaml")
    for team in range(1, teams + 1):
        write_tiny_spec(workdir / "specs", name=f"team-{team:02d}", extra='schedule: "0 2 * * *"\n')
    subprocess.run([str(Path(sys.executable).parent / "dagster"), "instance", "migrate"], env={**os.environ, **env}, check=True, capture_output=True)
    return env


def tick_schedules() -> list[tuple[str, dict[str, str]]]:
    """Evaluate every schedule at 02:00, as the daemon would: (partition, tags) per run request."""
    import dagster as dg

    from pipelines.definitions import build_definitions

    defs = build_definitions()
    requests = []
    with dg.DagsterInstance.get() as instance:
        for schedule in defs.schedules:
            context = dg.build_schedule_context(instance=instance, scheduled_execution_time=TICK, repository_def=defs.get_repository_def())
            for request in schedule.evaluate_tick(context).run_requests or []:
                requests.append((request.partition_key, {**request.tags, "dagster/schedule_name": schedule.name}))
    return requests


def run_one(partition: str, tags: dict[str, str], threads: int) -> tuple[str, bool, float]:
    import dagster as dg
    import torch

    torch.set_num_threads(threads)  # runs side by side share the cores: oversubscribed OpenMP threads spin

    from pipelines.definitions import JOB_NAME, build_definitions
    from pipelines.partitions import register_specs
    from pipelines.settings import Settings

    started = time.perf_counter()
    job = build_definitions().resolve_job_def(JOB_NAME)
    with dg.DagsterInstance.get() as instance:
        register_specs(instance, Settings.from_env().specs)
        result = job.execute_in_process(instance=instance, partition_key=partition, tags=tags, run_config=RUN_CONFIG, raise_on_error=False)
    return partition, result.success, time.perf_counter() - started  # a failed uplift gate fails no run


def night(workdir: Path, teams: int, workers: int) -> dict[str, float]:
    """One night in a fresh child process, so its peak RSS (and its workers') is its own."""
    code = "import json, sys; sys.path.insert(0, %r); import nightly; print(json.dumps(nightly.night_here(%r, %d, %d)))" % (
        str(ROOT / "benchmarks"),
        str(workdir),
        teams,
        workers,
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if completed.returncode != 0:
        raise SystemExit(f"night on {workers} worker(s) crashed:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _tree_rss_mb(root: int) -> float:
    """Resident memory of `root` and every process below it, read from /proc at one moment."""
    parents, rss = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            rss[int(entry.name)] = next(int(line.split()[1]) for line in (entry / "status").read_text().splitlines() if line.startswith("VmRSS:"))
        except (OSError, StopIteration, ValueError, IndexError):  # gone meanwhile, or a kernel thread
            continue
    tree, frontier = {root}, [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier and pid not in tree]
        tree.update(children)
        frontier = children
    return sum(rss.get(pid, 0) for pid in tree) / 1024


class _PeakSampler(threading.Thread):
    """The peak of the summed RSS of this process and its children (the workers), sampled every 0.2 s."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_mb, self._stop_event = 0.0, threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak_mb = max(self.peak_mb, _tree_rss_mb(os.getpid()))
            self._stop_event.wait(0.2)

    def stop(self) -> float:
        self._stop_event.set()
        self.join()
        return self.peak_mb


def night_here(workdir: str, teams: int, workers: int) -> dict[str, float]:
    os.environ.update(prepare(Path(workdir), teams))
    sampler = _PeakSampler()
    sampler.start()
    started = time.perf_counter()
    requests = tick_schedules()
    threads = max(1, (os.cpu_count() or 1) // workers)
    if workers > 1:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            outcomes = list(pool.map(run_one, *zip(*requests), [threads] * len(requests)))
    else:
        outcomes = [run_one(partition, tags, threads) for partition, tags in requests]
    wall = time.perf_counter() - started
    peak_all = sampler.stop()
    peak_one = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024
    for partition, success, seconds in outcomes:
        print(f"  {partition}: {'ok' if success else 'FAILED'} in {seconds:.1f} s", file=sys.stderr)
    return {
        "runs": sum(ok for _, ok, _ in outcomes),
        "failures": sum(not ok for _, ok, _ in outcomes),
        "requested": len(requests),
        "wall_s": wall,
        "peak_rss_mb": peak_all,
        "peak_rss_mb_one_process": peak_one,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teams", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None, help="kept for inspection; default: a temporary directory")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ganpipe-night-"))
    parallel = night(workdir, args.teams, args.workers)
    baseline = night(workdir.with_name(workdir.name + "-baseline"), args.teams, 1)
    for label, figures in ((f"{args.workers} worker processes", parallel), ("one after another (baseline)", baseline)):
        print(
            f"{label:30s} {figures['runs']:3d}/{figures['requested']} runs completed, {figures['failures']} failed, "
            f"{figures['wall_s']:6.1f} s wall, peak RSS {figures['peak_rss_mb']:6.0f} MB all processes together "
            f"({figures['peak_rss_mb_one_process']:.0f} MB the largest one)"
        )
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    shutil.rmtree(workdir.with_name(workdir.name + "-baseline"), ignore_errors=True)
    print(
        json.dumps(
            {
                "runs": parallel["runs"],
                "failures": parallel["failures"],
                "wall_s": round(parallel["wall_s"], 1),
                "peak_rss_mb": round(parallel["peak_rss_mb"]),
                "baseline_wall_s": round(baseline["wall_s"], 1),
                "baseline_peak_rss_mb": round(baseline["peak_rss_mb"]),
                "peak_rss_mb_one_process": round(parallel["peak_rss_mb_one_process"]),
                "baseline_peak_rss_mb_one_process": round(baseline["peak_rss_mb_one_process"]),
            }
        )
    )


if __name__ == "__main__":
    main()
