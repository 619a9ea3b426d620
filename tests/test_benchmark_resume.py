"""benchmarks/uplift.py collects its protocol over several runs: each (dataset, k, draw) result is
saved under a digest of the code and the settings, and a rerun with the same ones reads it instead
of training. Run as a user runs it, from the command line, on result files of a real earlier run."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAVED = REPO / "benchmarks" / "results" / "uplift"
# Two draws of a real protocol run (mnist-5k, k=20, 3 seeds): what a resumed run has to read.
EARLIER = [SAVED / f"mnist-5k-k20-d{draw}-c74391140f7b8cd4.json" for draw in (0, 1)]


def _uplift(*arguments: str, results: Path, out: Path) -> str:
    command = [sys.executable, str(REPO / "benchmarks" / "uplift.py"), "--k", "20", "--draws", "2", "--results", str(results), "--out", str(out), *arguments]
    done = subprocess.run(
        command, cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(out.parent)}, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _digest(listing: str, results: Path) -> str:
    match = re.search(re.escape(str(results)) + r"/mnist-5k-kK-dD-([0-9a-f]{16})\.json", listing)
    assert match, listing
    return match.group(1)


def test_a_rerun_reads_the_saved_draws_and_a_changed_setting_trains_afresh(tmp_path):
    results, out = tmp_path / "results", tmp_path / "out"
    listing = _uplift("--seeds", "3", "--list", results=results, out=out)
    digest = _digest(listing, results)
    assert "k=20 draw 0: to train" in listing and "k=20 draw 1: to train" in listing

    # --jobs and --out change no result, so they keep the digest; --seeds does not.
    assert _digest(_uplift("--seeds", "3", "--jobs", "2", "--list", results=results, out=tmp_path / "elsewhere"), results) == digest
    assert _digest(_uplift("--seeds", "2", "--list", results=results, out=out), results) != digest

    results.mkdir()
    shutil.copyfile(EARLIER[0], results / f"mnist-5k-k20-d0-{digest}.json")
    listing = _uplift("--seeds", "3", "--list", results=results, out=out)
    assert f"k=20 draw 0: saved as {results}/mnist-5k-k20-d0-{digest}.json" in listing and "k=20 draw 1: to train" in listing

    shutil.copyfile(EARLIER[1], results / f"mnist-5k-k20-d1-{digest}.json")
    report = _uplift("--seeds", "3", results=results, out=out)  # every draw saved: it trains nothing
    assert report.count("(same code and settings)") == 2 and not out.exists()
    figures = json.loads(report.strip().splitlines()[-1])
    saved = [json.loads(path.read_text()) for path in EARLIER]
    assert figures["k20_real"] == round(float(np.mean([a for draw in saved for a in draw["real"]])), 4)
    assert figures["k20_pool_gan"] == round(float(np.mean([a for draw in saved for a in draw["pool_gan"]])), 4)
    assert figures["k20_recipe"] == ",".join(recipe for draw in saved for recipe in draw["pool_gan_recipe"])
    assert sorted(path.name for path in results.iterdir()) == [f"mnist-5k-k20-d{draw}-{digest}.json" for draw in (0, 1)]  # nothing rewritten beside them
