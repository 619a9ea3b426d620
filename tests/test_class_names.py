"""Beyond digits: the builtin Fashion-MNIST set, and class names that are names, never path
segments (`T-shirt/top`, `..`, spaces, non-ASCII letters) through the whole graph and every reader."""

from __future__ import annotations

import json

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest

from gan_core.classifier import ClassifierConfig, train_classifier
from gan_core.data import FASHION_MNIST_CLASSES, FASHION_MNIST_ENV, DataError, fashion_mnist_dir, load_source
from gan_core.export import ConfidenceFilter, ExportError, ExportPlan, export_samples, read_export, read_manifest
from pipelines.tiny import write_tiny_npz, write_tiny_spec

AWKWARD = ("T-shirt/top", "../../escape", "Größe S, ü-Stück")


@pytest.fixture
def fashion(unavailable):
    if not (fashion_mnist_dir() / "train-images-idx3-ubyte.gz").is_file():
        unavailable(f"Debian's dataset-fashion-mnist is not installed ({fashion_mnist_dir()} has no train split)")


def test_fashion_mnist_5k_is_the_same_500_per_class_everywhere(fashion):
    first = load_source({"kind": "builtin", "name": "fashion-mnist-5k"})
    again = load_source({"kind": "builtin", "name": "fashion-mnist-5k"}, size=32, channels=1)
    assert (
        first.class_names == FASHION_MNIST_CLASSES == ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    )
    assert first.class_counts() == dict.fromkeys(FASHION_MNIST_CLASSES, 500)
    assert first.images.shape == (5000, 1, 28, 28) and again.images.shape == (5000, 1, 32, 32)  # padded like mnist-5k
    assert first.content_hash() == load_source({"kind": "builtin", "name": "fashion-mnist-5k"}).content_hash()
    assert len({image.tobytes() for image in first.images}) == 5000  # 5,000 distinct images, not one repeated
    assert np.array_equal(again.images[:, :, 2:30, 2:30], first.images)
    labelled, pool = again.split(0.2, seed=0)[0].keep_labels_per_class(20, seed=0)  # labels_per_class works as on mnist-5k
    assert labelled.class_counts() == dict.fromkeys(FASHION_MNIST_CLASSES, 20) and len(pool) == 3800


def test_a_missing_fashion_mnist_package_names_it_and_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path))  # an empty folder, as on a machine without the package
    with pytest.raises(DataError, match=r"dataset-fashion-mnist.*`apt-get install dataset-fashion-mnist`.*GANPIPE_FASHION_MNIST_DIR"):
        load_source({"kind": "builtin", "name": "fashion-mnist-5k"})
    with pytest.raises(DataError, match="expected one of mnist-5k, fashion-mnist-5k"):
        load_source({"kind": "builtin", "name": "fashion"})


def test_a_stuck_class_is_named_as_written(tmp_path, tiny_generator):
    data = load_source({"kind": "npz", "path": str(write_tiny_npz(tmp_path / "awkward.npz", class_names=AWKWARD))})
    judge = train_classifier(data, ClassifierConfig(min_steps=20))
    plan = ExportPlan.per_class(AWKWARD, 4, seed=0, batch_size=16)
    refusing = ConfidenceFilter(judge, min_confidence=0.999999, max_draws=2)  # an untrained generator never gets there
    with pytest.raises(ExportError, match=r"class '(T-shirt/top|\.\./\.\./escape|Größe S, ü-Stück)': \d+ row\(s\) still below"):
        export_samples(tiny_generator(), plan, tmp_path / "out", lineage={"model_name": "m", "model_version": "1"}, root=tmp_path, confidence=refusing)
    assert not (tmp_path / "out").exists() and not (tmp_path / "T-shirt").exists()


def test_awkward_class_names_pass_through_the_whole_graph_and_every_reader(ganpipe_env, materialize_tiny, mlflow_client):
    env = ganpipe_env
    write_tiny_npz(env["specs"] / "tiny.npz", class_names=AWKWARD)
    write_tiny_spec(env["specs"], source="{kind: npz, path: tiny.npz}", export=", min_confidence: 0.05")
    result = materialize_tiny(
        env, instance=dg.DagsterInstance.local_temp(str(env["dagster_home"])), raise_on_error=False
    )  # the uplift gate fails a 20-step GAN
    names = list(AWKWARD)

    def metadata(asset: str) -> dict:
        return {k: v.value for k, v in result.asset_materializations_for_node(asset)[0].metadata.items()}

    # Dagster metadata: counts, the filter's acceptance, per-class accuracy and the grids' captions.
    assert set(metadata("real_images")["class_counts"]) == set(names)  # Dagster sorts JSON keys
    assert "Rows, top to bottom: T\\-shirt/top, \\.\\./\\.\\./escape, Größe S, ü\\-Stück" in metadata("gan_model")["sample_grid"]
    assert set(metadata("gan_evaluation")["label_accuracy_per_class"]) == set(names)
    assert "Rows, top to bottom: T\\-shirt/top" in metadata("gan_evaluation")["samples"]
    exported = metadata("synthetic_dataset")
    assert set(exported["counts_per_class"]) == set(exported["acceptance_per_class"]) == set(names)

    # MLflow: the version's class names tag and description.
    client = mlflow_client(env)
    version = client.get_model_version_by_alias("gan-tiny", "champion")
    assert json.loads(version.tags["class_names"]) == names
    assert "classes T-shirt/top, ../../escape, Größe S, ü-Stück" in version.description and "T-shirt/top" in version.tags["trained"]

    # The export, through every reader: ours, pandas, pyarrow, DuckDB, Hugging Face, and back as a source.
    path = next((env["home"] / "exports" / "tiny").glob("v*/*"))
    manifest = read_manifest(path)
    assert manifest["counts_per_class"] == dict.fromkeys(names, 10) and manifest["class_names"] == names  # the list gives the label order
    assert set(manifest["filter"]["acceptance_per_class"]) == set(names)
    table, images = read_export(path, decode=True)
    assert set(table.column("label_name").to_pylist()) == set(names) and len(images) == 30
    frame = pd.read_parquet(path / "data")
    assert {frame.label_name[frame.label == i].iloc[0] for i in range(3)} == set(names)
    assert all(frame.label_name[frame.label == i].eq(name).all() for i, name in enumerate(names))
    assert set(ds.dataset(path / "data").to_table().column("label_name").to_pylist()) == set(names)
    counted = dict(duckdb.sql(f"SELECT label_name, count(*) FROM '{path}/data/*.parquet' GROUP BY 1").fetchall())  # noqa: S608 - our own temp path
    assert counted == dict.fromkeys(names, 10)
    from datasets import load_dataset

    hub = load_dataset(str(path), split="train")  # through the dataset card's configs
    assert hub.features["label"].names == names and hub.features["label"].int2str(0) == "T-shirt/top"
    assert load_source({"kind": "parquet", "path": str(path)}).class_names == names

    # No class name became a file or folder anywhere the run wrote, nor outside it.
    written = {part for file in env["root"].rglob("*") for part in file.relative_to(env["root"]).parts}
    assert not written & {"T-shirt", "top", "escape", "Größe S, ü-Stück"}
    assert not (env["root"].parent / "escape").exists()
