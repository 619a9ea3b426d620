"""The whole asset graph for one spec two ways, in the same session: through the users' door (the
`dagster asset materialize` CLI with Dagster's default multiprocess executor, from a fresh working
directory holding only `workspace.yaml` and `specs/`, with nothing set but DAGSTER_HOME) and through
`make demo`'s path (`python -m pipelines.demo`: one process, everything preset). Both start from an
empty storage root and use the same launchpad config, so the ratio is the cost of the users' path.

Prints both wall times and their ratio (target ≤ 1.15 on 2 cores).
Last line: one JSON object with cli_s, demo_s, ratio.

    .venv/bin/python benchmarks/ui_path.py                 # mnist-5k, quick profile (about 15 minutes on 2 cores)
    .venv/bin/python benchmarks/ui_path.py --steps 200     # a shorter look
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipelines.demo import demo_run_config

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _fresh_instance(directory: Path) -> Path:
    directory.mkdir(parents=True)
    (directory / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return directory


def _timed(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> float:
    started = time.perf_counter()
    with open(log, "w") as out:
        completed = subprocess.run(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - started
    # A failed uplift gate ends the run after all the work (the export stays, not recommended).
    if completed.returncode != 0 and "uplift_gate" not in log.read_text():
        raise SystemExit(f"{' '.join(command[:4])} … failed with exit code {completed.returncode}; see {log}")
    return wall


def run_cli(scratch: Path, spec: str, run_config: dict) -> float:
    """The users' path: their own directory, their own environment, Dagster's default executor."""
    workdir = scratch / "cli"
    workdir.mkdir()
    shutil.copy(REPO / "workspace.yaml", workdir)
    shutil.copytree(REPO / "specs", workdir / "specs")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GANPIPE_", "MLFLOW_"))}
    env["DAGSTER_HOME"] = str(_fresh_instance(scratch / "cli-dagster"))
    command = [str(BIN / "dagster"), "asset", "materialize", "-m", "pipelines", "--select", "*", "--partition", spec, "--config-json", json.dumps(run_config)]
    wall = _timed(command, workdir, env, scratch / "cli.log")
    if (workdir / "mlflow.db").exists():
        raise SystemExit("the CLI run wrote ./mlflow.db in its working directory")
    return wall


def run_demo(scratch: Path, spec: str, samples_per_class: int, steps: int | None) -> float:
    """`make demo`'s path: one process, the environment the Makefile sets."""
    home = scratch / "demo-var"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(_fresh_instance(home / "dagster")),
        "GANPIPE_HOME": str(home),
        "GANPIPE_SPECS": str(REPO / "specs"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
    }
    command = [
        sys.executable,
        "-m",
        "pipelines.demo",
        "--spec",
        spec,
        "--samples-per-class",
        str(samples_per_class),
        *(["--steps", str(steps)] if steps else []),
    ]
    return _timed(command, REPO, env, scratch / "demo.log")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default="mnist-5k")
    parser.add_argument("--samples-per-class", type=int, default=200, help="as make demo exports")
    parser.add_argument("--steps", type=int, default=None, help="override the spec's training steps on both paths")
    parser.add_argument("--keep", type=Path, default=None, help="keep both storage roots and logs here")
    args = parser.parse_args()

    run_config = demo_run_config(args.samples_per_class, args.steps)
    with tempfile.TemporaryDirectory(prefix="ui-path-") as tmp:
        scratch = args.keep or Path(tmp)
        scratch.mkdir(parents=True, exist_ok=True)
        print(f"spec {args.spec}, {os.cpu_count()} cores; logs under {scratch}")
        demo_s = run_demo(scratch, args.spec, args.samples_per_class, args.steps)
        print(f"make demo's path (in-process):           {demo_s:7.1f} s")
        cli_s = run_cli(scratch, args.spec, run_config)
        print(f"dagster asset materialize (multiprocess): {cli_s:7.1f} s")
    ratio = cli_s / demo_s
    print(f"ratio CLI / demo: {ratio:.3f} (target ≤ 1.15)")
    print(json.dumps({"cli_s": round(cli_s, 1), "demo_s": round(demo_s, 1), "ratio": round(ratio, 3), "spec": args.spec, "steps": args.steps}))


if __name__ == "__main__":
    main()
