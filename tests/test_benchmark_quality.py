"""benchmarks/quality.py as a user runs it, from the command line: a 20-step GAN on Fashion-MNIST,
judged, its coverage and recall beside their real-vs-real baselines, and the JSON line with the
dataset's prefix. (It once crashed after training, when evaluate() took its options as a config.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quality_prints_its_figures_and_the_prefixed_json(tmp_path):
    command = [sys.executable, str(REPO / "benchmarks" / "quality.py"), "--data", "fashion-mnist-5k", "--steps", "20", "--out", str(tmp_path / "out")]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["profile"] == "quick" and "wall_s" not in figures and figures["fashion_wall_s"] > 0
    assert 0.5 < figures["fashion_judge_holdout_accuracy"] <= 1
    assert 0 <= figures["fashion_recall"] < figures["fashion_recall_baseline"] <= 1  # 20 steps cover nothing like real images do
    assert 0 <= figures["fashion_coverage"] < figures["fashion_coverage_baseline"] <= 1
    assert (tmp_path / "out" / "samples.png").stat().st_size > 0 and "T-shirt/top" in done.stdout
