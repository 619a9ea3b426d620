"""The boundaries the design promises: gan_core is a library of its own, without the orchestrator
or the tracking server."""

from __future__ import annotations

import json
import subprocess
import sys


def test_importing_gan_core_loads_neither_dagster_nor_mlflow():
    modules = ["gan_core.data", "gan_core.train", "gan_core.metrics", "gan_core.export", "gan_core.sample", "gan_core.distributed", "gan_core.demo"]
    probe = f"import json, sys\nfor name in {modules!r}:\n    __import__(name)\nprint(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('dagster', 'mlflow'))))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
    # The probe sees them where they are imported.
    done = subprocess.run(
        [sys.executable, "-c", probe.replace(repr(modules), repr(["dagster", "mlflow.tracking"]))], capture_output=True, text=True, check=True
    )
    assert {"dagster", "mlflow"} <= set(json.loads(done.stdout.strip().splitlines()[-1]))
