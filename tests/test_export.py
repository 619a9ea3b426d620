"""Export: round trips, schema and metadata, readers, crash and resume, sharding, refusals."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import torch

from gan_core.classifier import Judge
from gan_core.data import load_source
from gan_core.export import (
    EXPORT_SCHEMA,
    ConfidenceFilter,
    ExportError,
    ExportPlan,
    PlanError,
    commit_export,
    export_in_processes,
    export_samples,
    read_export,
    verify_export,
)
from gan_core.sample import generate
from helpers import bars_judge

CLASSES = ("zero", "one", "two")  # the classes of the `tiny_plan` fixture


@pytest.mark.parametrize("image_format", ["png", "raw"])
@pytest.mark.parametrize("channels", [1, 3])
def test_round_trip_is_exact(tmp_path, image_format, channels, tiny_generator, tiny_plan, lineage):
    generator = tiny_generator(channels)
    plan = tiny_plan(image_format=image_format)
    destination = tmp_path / "exports" / "spec" / "v3" / "e1"
    result = export_samples(generator, plan, destination, lineage=lineage, root=tmp_path, workers=2)
    assert result.rows == 75 and len(result.files) == 2
    assert sorted(p.relative_to(destination).as_posix() for p in destination.rglob("*")) == [
        "README.md",
        "_manifest.json",
        "data",
        "data/part-00000.parquet",
        "data/part-00001.parquet",
        "samples.png",
    ]
    table, images = read_export(destination, decode=True)
    expected_labels = np.repeat([0, 1, 2], [30, 20, 25])
    np.testing.assert_array_equal(table.column("label").to_numpy(), expected_labels)
    np.testing.assert_array_equal(table.column("sample_id").to_numpy(), np.arange(75))
    np.testing.assert_array_equal(images, generate(generator, expected_labels, seed=7))
    # Each row regenerates alone from its seed.
    seeds = table.column("seed").to_numpy()
    np.testing.assert_array_equal(generate(generator, expected_labels[40:41], seeds=seeds[40:41])[0], images[40])
    assert not any(p.name.startswith("export-") for p in (tmp_path / "staging").iterdir())


def test_schema_metadata_and_manifest(tmp_path, tiny_generator, tiny_plan, lineage):
    destination = tmp_path / "exports" / "e"
    export_samples(tiny_generator(), tiny_plan(), destination, lineage=lineage, root=tmp_path)
    schema = pq.read_schema(destination / "data" / "part-00000.parquet")
    assert schema.remove_metadata().equals(EXPORT_SCHEMA)
    meta = {k.decode(): v.decode() for k, v in schema.metadata.items()}
    features = json.loads(meta["huggingface"])["info"]["features"]
    assert features["image"] == {"_type": "Image"}
    assert features["label"] == {"names": list(CLASSES), "_type": "ClassLabel"}
    assert json.loads(meta["ganpipe.lineage"])["run_id"] == "abc123"
    manifest = verify_export(destination)
    assert manifest["counts_per_class"] == {"zero": 30, "one": 20, "two": 25}
    assert manifest["model"] == {"model_name": "gan-test", "model_version": "3", "run_id": "abc123"}
    assert manifest["metrics"] == {"fid_domain": 1.5}
    assert [f["rows"] for f in manifest["files"]] == [40, 35]
    assert manifest["generator"]["seed"] == 7 and manifest["generator"]["model"]["size"] == 8
    row_groups = pq.ParquetFile(destination / "data" / "part-00000.parquet").metadata.num_row_groups
    assert row_groups >= 2  # 40 rows in groups of 16


def test_readers_pandas_pyarrow_dataset_duckdb_and_training_loader(tmp_path, tiny_generator, tiny_plan, lineage):
    duckdb = pytest.importorskip("duckdb")
    destination = tmp_path / "exports" / "e"
    export_samples(tiny_generator(), tiny_plan(), destination, lineage=lineage, root=tmp_path)
    frame = read_export(destination, as_pandas=True)
    assert list(frame.columns) == EXPORT_SCHEMA.names and len(frame) == 75
    assert frame["label_name"].iloc[0] == "zero" and frame["model_version"].iloc[-1] == "3"
    assert ds.dataset(destination / "data", format="parquet").count_rows() == 75 and len(pd.read_parquet(destination / "data")) == 75
    rows = duckdb.sql(f"SELECT label_name, count(*) FROM read_parquet('{destination}/data/*.parquet') GROUP BY 1 ORDER BY 1").fetchall()  # noqa: S608 - our own temp path
    assert rows == [("one", 20), ("two", 25), ("zero", 30)]
    data = load_source({"kind": "parquet", "path": str(destination)})
    assert data.images.shape == (75, 1, 8, 8) and data.class_names == list(CLASSES)


def test_refuses_to_overwrite_and_outside_root(tmp_path, tiny_generator, tiny_plan):
    destination = tmp_path / "exports" / "e"
    export_samples(tiny_generator(), tiny_plan(), destination, root=tmp_path)
    with pytest.raises(ExportError, match="already exists"):
        export_samples(tiny_generator(), tiny_plan(), destination, root=tmp_path)
    outside = tmp_path.parent / f"{tmp_path.name}-elsewhere" / "e"
    with pytest.raises(ExportError, match="outside the storage root"):
        export_samples(tiny_generator(), tiny_plan(), outside, root=tmp_path)
    with pytest.raises(ExportError, match="outside the storage root"):
        export_samples(tiny_generator(), tiny_plan(), tmp_path / "exports" / ".." / ".." / "escape", root=tmp_path)
    assert not outside.exists()


def test_bad_plans():
    with pytest.raises(PlanError, match="non-negative"):
        ExportPlan.per_class(CLASSES, {"zero": -1})
    with pytest.raises(PlanError, match="unknown label 'three'"):
        ExportPlan.per_class(CLASSES, {"three": 5})
    with pytest.raises(PlanError, match="no samples"):
        ExportPlan.per_class(CLASSES, 0)
    with pytest.raises(PlanError, match="image_format"):
        ExportPlan.per_class(CLASSES, 1, image_format="gif")
    with pytest.raises(PlanError, match="batch_size"):
        ExportPlan.per_class(CLASSES, 1, batch_size=0)
    with pytest.raises(PlanError, match="proportions"):
        ExportPlan.from_total(CLASSES, 10, proportions=[1, 1])
    plan = ExportPlan.from_total(CLASSES, 10, proportions=[2, 1, 1])
    assert plan.counts == (5, 3, 2) or plan.counts == (5, 2, 3)
    assert sum(plan.counts) == 10


def test_plan_class_count_must_match_the_generator(tmp_path, tiny_generator):
    plan = ExportPlan.per_class(["a", "b"], 3)
    with pytest.raises(PlanError, match="trained on 3"):
        export_samples(tiny_generator(), plan, tmp_path / "exports" / "e", root=tmp_path)


def test_checksum_mismatch_and_missing_files_are_detected(tmp_path, tiny_generator, tiny_plan):
    destination = tmp_path / "exports" / "e"
    export_samples(tiny_generator(), tiny_plan(), destination, root=tmp_path)
    part = destination / "data" / "part-00001.parquet"
    raw = bytearray(part.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    part.write_bytes(bytes(raw))
    with pytest.raises(ExportError, match="part-00001.parquet: SHA-256 does not match"):
        read_export(destination)
    part.unlink()
    with pytest.raises(ExportError, match="missing"):
        read_export(destination)
    with pytest.raises(ExportError, match="not a complete export"):
        read_export(tmp_path / "nothing-here")


def test_shards_in_separate_processes_then_one_commit(tmp_path, tiny_plan, export_writer):
    plan = tiny_plan(rows_per_part=10, batch_size=4)
    destination = tmp_path / "exports" / "sharded"
    assert sorted(p for shard in plan.shards(2) for p in shard) == list(range(plan.num_parts))
    processes = [export_writer(plan, tmp_path, destination, shard=i, shards=2) for i in range(2)]
    assert [p.wait(timeout=120) for p in processes] == [0, 0]
    assert not destination.exists()  # shards never commit on their own
    manifest = commit_export(plan, destination, root=tmp_path)
    table = read_export(destination)
    assert table.num_rows == 75 == manifest["total_rows"]
    assert len(set(table.column("sample_id").to_pylist())) == 75


def test_export_in_processes_writes_disjoint_shards_and_commits_once(tmp_path, tiny_generator, tiny_plan, lineage):
    plan = tiny_plan(rows_per_part=10)
    destination = tmp_path / "exports" / "processes"
    manifest, reports = export_in_processes(tiny_generator(), plan, destination, processes=2, lineage=lineage, root=tmp_path)
    assert sorted(part for report in reports for part in report["parts"]) == list(range(plan.num_parts))
    assert len({report["pid"] for report in reports}) == 2 and all(report["peak_rss_mb"] > 0 for report in reports)
    single = export_samples(tiny_generator(), plan, tmp_path / "exports" / "one", lineage=lineage, root=tmp_path)
    assert read_export(destination).equals(read_export(single.destination))  # the same rows, byte for byte
    assert manifest["total_rows"] == 75 and not list((tmp_path / "staging").glob("*"))


def test_resume_refuses_other_weights(tmp_path, tiny_generator, tiny_plan):
    destination = tmp_path / "exports" / "e"
    plan = tiny_plan()
    export_samples(tiny_generator(), plan, destination, root=tmp_path, shard=(0, 2), commit=False)
    other = tiny_generator()
    with torch.no_grad():
        other.stem.bias.add_(1)
    with pytest.raises(ExportError, match="another plan or lineage"):
        export_samples(other, plan, destination, root=tmp_path)


def test_memory_filesystem_destination(tmp_path, tiny_generator, tiny_plan, lineage):
    import fsspec

    export_samples(tiny_generator(), tiny_plan(), "memory://bucket/exports/e", lineage=lineage, root=tmp_path)
    fs = fsspec.filesystem("memory")
    names = sorted(p.removeprefix("/bucket/exports/e/") for p in fs.find("/bucket/exports/e"))
    assert names == ["README.md", "_manifest.json", "data/part-00000.parquet", "data/part-00001.parquet", "samples.png"]
    manifest = json.loads(fs.cat("/bucket/exports/e/_manifest.json"))
    assert manifest["total_rows"] == 75


def test_hugging_face_datasets_decodes_images_and_labels(tmp_path, monkeypatch, tiny_generator, tiny_plan, lineage):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    destination = tmp_path / "exports" / "hf"
    generator = tiny_generator()
    export_samples(generator, tiny_plan(), destination, lineage=lineage, root=tmp_path)
    dataset = datasets.load_dataset("parquet", data_files=str(destination / "data" / "*.parquet"), split="train", cache_dir=str(tmp_path / "cache"))
    assert isinstance(dataset.features["image"], datasets.Image)
    assert dataset.features["label"].names == list(CLASSES)
    row = dataset.sort("sample_id")[40]
    expected = generate(generator, np.array([row["label"]]), seeds=np.array([row["seed"]]))[0, 0]
    np.testing.assert_array_equal(np.asarray(row["image"]), expected)


@pytest.mark.parametrize("channels", [1, 3])
def test_png_encoder_round_trips_through_pillow(channels):
    import io

    from PIL import Image

    from gan_core.export import encode_png, encode_pngs

    rng = np.random.default_rng(channels)
    for height, width in ((1, 1), (5, 7), (32, 32)):
        images = rng.integers(0, 256, (3, channels, height, width), dtype=np.uint8)
        batch = encode_pngs(images)
        assert batch[1] == encode_png(images[1])  # one image encodes as it does within a batch
        for image, png in zip(images, batch):
            decoded = Image.open(io.BytesIO(png))
            decoded.load()  # checks every chunk's CRC and the zlib stream
            assert decoded.mode == ("L" if channels == 1 else "RGB") and decoded.size == (width, height)
            array = np.asarray(decoded)
            np.testing.assert_array_equal(array[None] if channels == 1 else array.transpose(2, 0, 1), image)


def _median_confidence(judge: Judge, generator, plan: ExportPlan) -> float:
    """A threshold every class passes about half the time with the unfiltered draws."""
    labels = plan.labels_for(0, plan.total)
    first = generate(generator, labels, seeds=plan.seeds_for(0, plan.total))
    confidence = ConfidenceFilter(judge, 0.0).confidence(first, labels)
    return float(min(np.median(confidence[labels == c]) for c in range(len(plan.class_names))))


def test_confidence_filter_keeps_only_accepted_rows_each_regenerable_from_its_seed(tmp_path, tiny_generator, tiny_plan, lineage):
    judge, generator, plan = bars_judge(), tiny_generator(), tiny_plan(rows_per_part=25)
    threshold = _median_confidence(judge, generator, plan)
    destination = tmp_path / "exports" / "filtered"
    export_samples(generator, plan, destination, lineage=lineage, root=tmp_path, confidence=ConfidenceFilter(judge, threshold))
    table, images = read_export(destination, decode=True)
    labels, seeds = table.column("label").to_numpy(), table.column("seed").to_numpy()
    assert table.num_rows == plan.total and (ConfidenceFilter(judge, threshold).confidence(images, labels) >= threshold).all()
    assert np.array_equal(generate(generator, labels, seeds=seeds), images)  # the seed contract holds for redrawn rows too
    assert (seeds != plan.seeds_for(0, plan.total)).any() and (seeds == plan.seeds_for(0, plan.total)).any()
    recorded = json.loads((destination / "_manifest.json").read_text())["filter"]
    assert recorded["min_confidence"] == threshold and set(recorded["acceptance_per_class"]) == set(CLASSES)
    rates = recorded["acceptance_per_class"].values()
    assert all(0 < rate <= 1 for rate in rates) and min(rates) < 1
    assert recorded["draws_per_class"] == {name: round(plan.counts[i] / recorded["acceptance_per_class"][name]) for i, name in enumerate(CLASSES)}

    # Draws depend on the plan only: two shard processes write the same rows.
    sharded = tmp_path / "exports" / "sharded"
    export_in_processes(generator, plan, sharded, processes=2, lineage=lineage, root=tmp_path, confidence=ConfidenceFilter(judge, threshold))
    assert read_export(sharded).column("seed").to_pylist() == seeds.tolist()


def test_confidence_filter_refuses_a_class_it_rejects_too_often(tmp_path, tiny_generator, tiny_plan):
    judge, generator, plan = bars_judge(), tiny_generator(), tiny_plan()
    threshold = _median_confidence(judge, generator, plan)
    destination = tmp_path / "exports" / "refused"
    with pytest.raises(ExportError, match=r"class '(zero|one|two)': acceptance 0\.\d+ at min_confidence .* below export.min_acceptance 0.95"):
        export_samples(generator, plan, destination, root=tmp_path, confidence=ConfidenceFilter(judge, threshold, min_acceptance=0.95))
    assert not destination.exists() and not list((tmp_path / "staging").glob("export-*"))
    with pytest.raises(ExportError, match=r"class '(zero|one|two)': \d+ row\(s\) still below min_confidence 0.9999 after 2 draws"):
        export_samples(generator, plan, tmp_path / "exports" / "never", root=tmp_path, confidence=ConfidenceFilter(judge, 0.9999, max_draws=2))
    with pytest.raises(PlanError, match="min_confidence: expected a probability"):
        ConfidenceFilter(judge, 1.5)
    with pytest.raises(PlanError, match="the judge's classes"):
        export_samples(generator, plan, tmp_path / "exports" / "other", root=tmp_path, confidence=ConfidenceFilter(bars_judge(("a", "b", "c")), 0.5))
