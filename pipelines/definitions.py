"""The Dagster code location: assets partitioned by spec, checks, the nightly job, schedules,
the folder sensor and the resources."""

from __future__ import annotations

import os
import re
from pathlib import Path

import dagster as dg

from .assets import build_assets
from .resources import ComputeResource, MLflowResource, SpecsResource, StorageResource
from .schedules import build_schedules
from .sensors import build_folder_sensor
from .specs import load_specs

JOB_NAME = "ganpipe_nightly"
PARTITION_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def build_definitions(specs_dir: str | None = None, storage_root: str | None = None, tracking_uri: str | None = None) -> dg.Definitions:
    specs_dir = specs_dir or os.environ.get("GANPIPE_SPECS", "specs")
    storage_root = storage_root or os.environ.get("GANPIPE_HOME", "var")
    specs, errors = load_specs(specs_dir)
    for message in errors.values():  # bad specs are reported and left out; the good ones still load
        dg.get_dagster_logger().error(f"spec not loaded: {message}")
    # A bad spec keeps its partition: a run of it fails with the spec's error, naming file and field.
    broken = {Path(file).stem for file in errors if PARTITION_KEY.match(Path(file).stem)}
    partitions = dg.StaticPartitionsDefinition(sorted(set(specs) | broken))
    assets = build_assets(partitions)
    job = dg.define_asset_job(JOB_NAME, selection=dg.AssetSelection.assets(*assets), description="ingest, train, evaluate, promote, export")
    return dg.Definitions(
        executor=_executor(),
        assets=assets,
        jobs=[job],
        schedules=build_schedules(specs, job),
        sensors=[build_folder_sensor(job, specs_dir)],
        resources={
            "specs": SpecsResource(directory=specs_dir),
            "storage": StorageResource(root=storage_root),
            "mlflow_store": MLflowResource(tracking_uri=tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", ""), storage_root=storage_root),
            "compute": ComputeResource(
                device=os.environ.get("GANPIPE_DEVICE", "auto"),
                num_processes=int(os.environ.get("GANPIPE_PROCESSES", "1")),
                export_processes=int(os.environ.get("GANPIPE_EXPORT_PROCESSES", "1")),
            ),
        },
    )


def _executor():
    """GANPIPE_EXECUTOR=k8s: every step its own Kubernetes job, sized by its `dagster-k8s/config`
    tags (gan_model asks for a GPU); otherwise Dagster's default (multiprocess) executor."""
    choice = os.environ.get("GANPIPE_EXECUTOR", "default")
    if choice == "default":
        return None
    if choice == "k8s":
        from dagster_k8s import k8s_job_executor  # the `k8s` extra

        return k8s_job_executor
    raise ValueError(f"GANPIPE_EXECUTOR: expected 'default' or 'k8s', got {choice!r}")


defs = build_definitions()
