"""The MLflow model registry as the pipeline uses it: one registered model per spec, a version per
trained generator, with tags and descriptions a person reads on the model page."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from gan_core.checkpoint import save_generator

from .specs import Spec

MODEL_CODE = str(Path(__file__).with_name("mlflow_model.py"))


def model_name(spec: str) -> str:
    return f"gan-{spec}"


def log_generator(generator, spec: Spec) -> str:
    """Log the generator (safetensors weights and their JSON config, served by `mlflow_model.py`) to
    the active MLflow run and register it; returns the new version."""
    import mlflow

    with tempfile.TemporaryDirectory() as scratch:
        model_dir = Path(scratch) / "generator"
        save_generator(generator, model_dir / "generator.safetensors", extra={"spec": spec.name})
        info = mlflow.pyfunc.log_model(
            name="generator",
            python_model=MODEL_CODE,
            artifacts={"generator": str(model_dir)},
            registered_model_name=model_name(spec.name),
            pip_requirements=["torch", "safetensors", "numpy", "pandas", "pillow"],
            signature=_model_signature(),
            input_example=pd.DataFrame({"label": [0], "seed": [0]}),
        )
    return str(info.registered_model_version)


def load_registered_generator(name: str, version_or_alias: str):
    """The generator behind a registered version (`"3"`) or alias (`"@champion"`): the registry is
    the source of truth."""
    import mlflow

    uri = f"models:/{name}@{version_or_alias[1:]}" if version_or_alias.startswith("@") else f"models:/{name}/{version_or_alias}"
    return mlflow.pyfunc.load_model(uri).unwrap_python_model().generator


def tag_metrics(client, name: str, version: str, metrics: dict[str, float]) -> None:
    """Each figure at full precision (`repr`), as `metric.<name>` on the version."""
    for key, value in metrics.items():
        client.set_model_version_tag(name, version, f"metric.{key}", repr(float(value)))


def version_metrics(version) -> dict[str, float]:
    return {key[len("metric.") :]: float(value) for key, value in version.tags.items() if key.startswith("metric.")}


def tag_yardstick(client, name: str, version: str, yardstick: dict[str, Any]) -> None:
    client.set_model_version_tag(name, version, "yardstick_id", yardstick["id"])
    client.set_model_version_tag(name, version, "yardstick", json.dumps(yardstick, sort_keys=True))


def model_description(spec: Spec) -> str:
    """What a person reads on the MLflow model page."""
    return (
        f"Class-conditional GAN trained by ganpipe on spec '{spec.name}' ({spec.source.kind} source, "
        f"{spec.image.size}×{spec.image.size}×{spec.image.channels} images). Each version says its data, steps, quality gate "
        "and key figures beside their real-vs-real baselines. Alias `champion`: the version that passed its gate and beat the "
        "one before; synthetic exports are made from it."
    )


def data_summary(spec: Spec, real_images: dict[str, Any], names: list[str]) -> str:
    shown = ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
    return (
        f"spec {spec.name}, data {real_images['content_hash'][:12]} ({real_images['train_images']} train / "
        f"{real_images['holdout_images']} holdout images; classes {shown})"
    )


def evaluated_description(trained: str, passed: bool, gates: dict[str, tuple[bool, str]], metrics: dict[str, float], primary: str, backbone: str) -> str:
    """The version's description after evaluation: how it was trained, the gate verdict, and label
    accuracy with coverage and recall (diversity) and the primary metric, beside their baselines."""
    verdict = "passed" if passed else "FAILED"
    checked = "; ".join(text for _, text in gates.values()) or "no gates configured"
    figures = []
    for name in dict.fromkeys(["label_accuracy", f"coverage_{backbone}", f"recall_{backbone}", primary]):
        if name in metrics:
            baseline = metrics.get(f"{name}_baseline")
            figures.append(f"{name} {metrics[name]:.4g}" + ("" if baseline is None else f" (real vs real {baseline:.4g})"))
    return f"{trained}. Quality gate {verdict} ({checked}). " + ", ".join(figures) + "."


def _model_signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    ids = [ColSpec("long", "label"), ColSpec("long", "seed")]
    return ModelSignature(inputs=Schema(ids), outputs=Schema([*ids, ColSpec("binary", "image")]))
