"""Deployment configs in deploy/ are real: the Kubernetes instance and run config validate against
Dagster's schemas, and the k8s executor reads gan_model's GPU request from its tags."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_kubernetes_instance_and_run_config_validate_and_training_asks_for_a_gpu(ganpipe_env, monkeypatch):
    pytest.importorskip("dagster_k8s")
    import dagster as dg
    from dagster._core.instance.config import dagster_instance_config
    from dagster_k8s.job import get_user_defined_k8s_config

    from pipelines.definitions import build_definitions

    for key in ("GANPIPE_PG_HOST", "GANPIPE_PG_PORT", "GANPIPE_PG_USER", "GANPIPE_PG_PASSWORD", "GANPIPE_PG_DAGSTER_DB", "GANPIPE_IMAGE"):
        monkeypatch.setenv(key, "5432" if key.endswith("PORT") else "x")
    instance_config, _ = dagster_instance_config(str(ROOT / "deploy" / "k8s"), "dagster.yaml")
    assert instance_config["run_launcher"]["class"] == "K8sRunLauncher"

    monkeypatch.setenv("GANPIPE_EXECUTOR", "k8s")
    defs = build_definitions(str(ganpipe_env["specs"]), str(ganpipe_env["home"]))
    job = defs.resolve_job_def("ganpipe_nightly")
    assert job.executor_def.name == "k8s"
    validated = dg.validate_run_config(job, yaml.safe_load((ROOT / "deploy" / "k8s" / "run_config.yaml").read_text()))
    assert validated["execution"]["k8s"]["job_namespace"] == "ganpipe"

    steps = {a.key.path[-1]: get_user_defined_k8s_config(a.op.tags) for a in defs.assets}
    assert steps["gan_model"].container_config["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert steps["gan_model"].pod_spec_config["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert "resources" not in steps["synthetic_dataset"].container_config  # only training takes a GPU

    monkeypatch.setenv("GANPIPE_EXECUTOR", "slurm")
    with pytest.raises(ValueError, match="GANPIPE_EXECUTOR"):
        build_definitions(str(ganpipe_env["specs"]), str(ganpipe_env["home"]))


def test_settings_are_read_from_the_environment_in_one_place(ganpipe_env, monkeypatch, tmp_path):
    import dagster as dg

    from pipelines.definitions import build_definitions
    from pipelines.settings import ENVIRONMENT, Settings, SettingsError

    settings = Settings.from_env({"GANPIPE_HOME": str(tmp_path), "GANPIPE_EXPORT_PROCESSES": "3", "GANPIPE_SPECS": ""})
    assert settings.root == tmp_path and settings.export_processes == 3 and settings.specs == "specs"  # empty means unset
    for variable, value in (("GANPIPE_PROCESSES", "two"), ("GANPIPE_EXPORT_PROCESSES", "0"), ("GANPIPE_EXECUTOR", "slurm")):
        with pytest.raises(SettingsError, match=f"{variable}: expected .*{value!r}"):
            Settings.from_env({variable: value})
    # What the environment says reaches the resources the assets get.
    monkeypatch.setenv("GANPIPE_EXPORT_PROCESSES", "2")
    monkeypatch.setenv("GANPIPE_EXPORT_URI", "memory://exports")
    resources = build_definitions(str(ganpipe_env["specs"]), str(ganpipe_env["home"])).resources
    assert resources["compute"].export_processes == 2 and resources["storage"].export_uri == "memory://exports"
    assert isinstance(resources["storage"], dg.ConfigurableResource)
    # No other module of the pipeline reads the environment, and gan_core knows none of these variables.
    readers = {str(path.relative_to(ROOT)) for path in (ROOT / "pipelines").rglob("*.py") if "os.environ" in path.read_text() or "getenv" in path.read_text()}
    assert readers == {"pipelines/settings.py"}
    named = {str(path.relative_to(ROOT)) for path in (ROOT / "gan_core").rglob("*.py") if any(name in path.read_text() for name in ENVIRONMENT.values())}
    assert named == set()


def test_the_code_location_does_nothing_at_import_and_says_its_stores_at_load(ganpipe_env, tmp_path):
    """Importing the code location prints, reads and writes nothing: Dagster loads `defs` when it
    needs it. Loading it registers the spec files as partitions of an existing instance and says
    which stores it uses."""
    import subprocess
    import sys

    from pipelines.tiny import write_tiny_spec

    write_tiny_spec(ganpipe_env["specs"])
    before = sorted(ganpipe_env["home"].rglob("*"))
    probe = "import pipelines, pipelines.definitions, pipelines.defs.checks, pipelines.defs.sensors, pipelines.demo"
    imported = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert (imported.stdout, imported.stderr) == ("", "")
    assert not (ganpipe_env["dagster_home"] / "history").exists() and sorted(ganpipe_env["home"].rglob("*")) == before
    (ganpipe_env["dagster_home"] / "history").mkdir(parents=True)  # an instance a command already made
    load = "import dagster as dg; from pipelines import defs; defs(); print(dg.DagsterInstance.get().get_dynamic_partitions('specs'))"
    loaded = subprocess.run([sys.executable, "-c", load], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "['tiny']"
    assert f"ganpipe: specs {ganpipe_env['specs']}, storage root {ganpipe_env['home']}" in loaded.stderr
