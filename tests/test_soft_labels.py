"""Soft labels: every exported row's `label_probs` is the teacher's class probabilities of the very
image its seed regenerates; all five readers read the column; exports without it still read."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from gan_core.data import load_source
from gan_core.export import (
    EXPORT_SCHEMA,
    SOFT_LABELS,
    ConfidenceFilter,
    PlanError,
    SoftLabels,
    export_in_processes,
    export_samples,
    export_schema,
    read_export,
    read_manifest,
)
from gan_core.export.card import CARD, card_metadata
from gan_core.sample import generate
from helpers import bars_judge


def _soft_export(tmp_path, generator, plan, lineage, teacher, name="soft", **options):
    destination = tmp_path / "exports" / name
    export_samples(generator, plan, destination, lineage=lineage, root=tmp_path, soft_labels=SoftLabels(teacher, holdout_accuracy=0.875), **options)
    return destination


def test_label_probs_are_the_teachers_probabilities_of_each_rows_regenerated_image(tmp_path, tiny_generator, tiny_plan, lineage):
    teacher, generator, plan = bars_judge(), tiny_generator(), tiny_plan(rows_per_part=25)
    # With the confidence filter on too, so that rows come from later draws as well as the first.
    labels = plan.labels_for(0, plan.total)
    first = ConfidenceFilter(teacher, 0.0).confidence(generate(generator, labels, seeds=plan.seeds_for(0, plan.total)), labels)
    threshold = float(min(np.median(first[labels == c]) for c in range(3)))  # each class passes about half its draws
    destination = _soft_export(tmp_path, generator, plan, lineage, teacher, confidence=ConfidenceFilter(teacher, threshold))

    table, images = read_export(destination, decode=True)
    probs = np.stack(table.column(SOFT_LABELS).to_numpy(zero_copy_only=False))
    assert table.schema.field(SOFT_LABELS).type == pa.list_(pa.float32(), 3) and probs.dtype == np.float32 and probs.shape == (plan.total, 3)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-6) and (probs >= 0).all()
    seeds, labels = table.column("seed").to_numpy(), table.column("label").to_numpy()
    assert (seeds != plan.seeds_for(0, plan.total)).any()  # some rows are redrawn ones
    regenerated = generate(generator, labels, seeds=seeds)
    assert np.array_equal(regenerated, images)
    np.testing.assert_allclose(probs, teacher.probabilities(regenerated), atol=1e-6)
    for row in (0, 31, plan.total - 1):  # one image at a time: not an artefact of batching
        np.testing.assert_allclose(probs[row], teacher.probabilities(generate(generator, labels[row : row + 1], seeds=seeds[row : row + 1]))[0], atol=1e-6)
    assert (probs[np.arange(plan.total), labels] >= threshold - 1e-6).all()  # the filter's bar, in the probabilities it kept

    manifest = read_manifest(destination)
    assert manifest["soft_labels"]["column"] == SOFT_LABELS and manifest["soft_labels"]["teacher_holdout_accuracy"] == 0.875
    assert manifest["soft_labels"]["teacher_classes"] == list(plan.class_names) and manifest["schema_version"] == 2
    card = card_metadata(destination / CARD)
    assert {"name": SOFT_LABELS, "sequence": "float32", "length": 3} in card["dataset_info"]["features"]
    assert "`label_probs` holds the teacher's class probabilities of each image (holdout accuracy 0.8750)" in (destination / CARD).read_text()

    # Two shard processes write the same rows and the same probabilities.
    sharded = tmp_path / "exports" / "sharded"
    export_in_processes(
        generator,
        plan,
        sharded,
        processes=2,
        lineage=lineage,
        root=tmp_path,
        confidence=ConfidenceFilter(teacher, threshold),
        soft_labels=SoftLabels(teacher, 0.875),
    )
    again = read_export(sharded)
    assert again.column("seed").to_pylist() == seeds.tolist()
    np.testing.assert_allclose(np.stack(again.column(SOFT_LABELS).to_numpy(zero_copy_only=False)), probs, atol=1e-6)
    assert read_manifest(sharded)["soft_labels"] == manifest["soft_labels"]


def test_five_readers_read_label_probs(tmp_path, monkeypatch, tiny_generator, tiny_plan, lineage):
    datasets, duckdb, polars = (pytest.importorskip(name) for name in ("datasets", "duckdb", "polars"))
    teacher = bars_judge()
    destination = _soft_export(tmp_path, tiny_generator(), tiny_plan(), lineage, teacher)
    table = read_export(destination).sort_by("sample_id")
    expected = np.stack(table.column(SOFT_LABELS).to_numpy(zero_copy_only=False))

    frame = __import__("pandas").read_parquet(destination / "data").sort_values("sample_id")
    np.testing.assert_array_equal(np.stack(frame[SOFT_LABELS].to_numpy()), expected)
    arrow = ds.dataset(destination / "data", format="parquet").to_table().sort_by("sample_id")
    np.testing.assert_array_equal(np.stack(arrow.column(SOFT_LABELS).to_numpy(zero_copy_only=False)), expected)
    rows = duckdb.sql(f"SELECT {SOFT_LABELS} FROM read_parquet('{destination}/data/*.parquet') ORDER BY sample_id").fetchall()  # noqa: S608 - our own temp path
    np.testing.assert_allclose(np.array([row[0] for row in rows], np.float32), expected)
    polar = polars.read_parquet(f"{destination}/data/*.parquet").sort("sample_id")
    assert polar.schema[SOFT_LABELS] == polars.Array(polars.Float32, 3)
    np.testing.assert_array_equal(polar[SOFT_LABELS].to_numpy(), expected)

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    hub = datasets.load_dataset(str(destination), split="train", cache_dir=str(tmp_path / "cache")).sort("sample_id")
    feature = hub.features[SOFT_LABELS]
    assert feature.length == 3 and feature.feature == datasets.Value("float32")
    np.testing.assert_allclose(np.array(hub[SOFT_LABELS], np.float32), expected)
    assert hub.features["label"].names == list(tiny_plan().class_names)


def test_exports_without_soft_labels_keep_the_old_columns_and_both_load_as_sources(tmp_path, tiny_generator, tiny_plan, lineage):
    plain = tmp_path / "exports" / "plain"
    export_samples(tiny_generator(), tiny_plan(), plain, lineage=lineage, root=tmp_path)
    assert pq.read_schema(plain / "data" / "part-00000.parquet").remove_metadata().equals(EXPORT_SCHEMA) and read_manifest(plain)["soft_labels"] is None
    assert SOFT_LABELS not in json.loads(pq.read_schema(plain / "data" / "part-00000.parquet").metadata[b"huggingface"])["info"]["features"]
    soft = _soft_export(tmp_path, tiny_generator(), tiny_plan(), lineage, bars_judge())
    assert pq.read_schema(soft / "data" / "part-00000.parquet").remove_metadata().equals(export_schema(3))
    for path in (plain, soft):
        data = load_source({"kind": "parquet", "path": str(path)})
        assert data.images.shape == (75, 1, 8, 8) and data.class_names == ["zero", "one", "two"]
    with pytest.raises(PlanError, match="soft labels: the judge's classes"):
        _soft_export(tmp_path, tiny_generator(), tiny_plan(), lineage, bars_judge(("a", "b", "c")), name="other")
