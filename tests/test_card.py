"""The dataset card: every export carries a README.md in the Hugging Face Hub's layout and its
sample picture, both covered by the manifest's checksums, rendered anew when the uplift verdict
lands; `datasets.load_dataset(<export folder>)` reads the export through the card alone."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from gan_core.export import ExportError, annotate_export, export_samples, read_export, read_manifest, verify_export
from gan_core.export.card import CARD, GRID, card_metadata
from gan_core.files import file_sha256
from gan_core.sample import generate


def test_a_fresh_export_loads_through_its_card_alone(tmp_path, monkeypatch, tiny_generator, tiny_plan, lineage):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    destination = tmp_path / "exports" / "spec" / "v3" / "e"
    generator = tiny_generator()
    export_samples(generator, tiny_plan(), destination, lineage={**lineage, "spec": "spec", "license": "cc-by-4.0"}, root=tmp_path)
    manifest = read_manifest(destination)

    dataset = datasets.load_dataset(str(destination), split="train", cache_dir=str(tmp_path / "cache"))  # no other argument
    assert len(dataset) == manifest["total_rows"] == 75
    assert isinstance(dataset.features["image"], datasets.Image) and dataset.features["label"].names == ["zero", "one", "two"]
    row = dataset.sort("sample_id")[33]
    np.testing.assert_array_equal(np.asarray(row["image"]), generate(generator, np.array([row["label"]]), seeds=np.array([row["seed"]]))[0, 0])

    card = card_metadata(destination / CARD)
    assert card["license"] == "cc-by-4.0" and card["configs"][0]["data_files"][0]["path"] == "data/part-*.parquet"
    assert card["dataset_info"]["splits"][0]["num_examples"] == manifest["total_rows"]
    names = card["dataset_info"]["features"][1]["dtype"]["class_label"]["names"]
    assert [names[str(i)] for i in range(3)] == manifest["class_names"]
    text = (destination / CARD).read_text()
    for name, count in manifest["counts_per_class"].items():
        assert f"| {name} | {count:,} |" in text
    assert "Not measured yet" in text and "fid_domain | 1.5 |" in text and "Licence: cc-by-4.0" in text
    documents = {entry["path"]: entry["sha256"] for entry in manifest["documents"]}
    assert documents == {CARD: file_sha256(destination / CARD), GRID: file_sha256(destination / GRID)}
    assert Image.open(destination / GRID).size == (10 * 10 + 2, 3 * 10 + 2)  # one row of 10 per class, 8 px + 2 px borders


def test_the_card_follows_the_verdict_and_a_changed_card_fails_verification(tmp_path, tiny_generator, tiny_plan, lineage):
    destination = tmp_path / "exports" / "e"
    export_samples(tiny_generator(), tiny_plan(), destination, lineage=lineage, root=tmp_path)
    picture = file_sha256(destination / GRID)
    utility = {
        "recommended": True,
        "verdict": "recommended: best share 0.25",
        "share": 0.25,
        "gain": 0.0123,
        "gain_ci95": [0.004, 0.02],
        "seeds": 5,
        "classifier_steps": 600,
    }
    manifest = annotate_export(destination, "utility", utility)
    text = (destination / CARD).read_text()
    assert "**Recommended**. recommended: best share 0.25" in text and "+0.0123 (95% interval +0.0040 to +0.0200)" in text
    assert {e["path"]: e["sha256"] for e in manifest["documents"]} == {CARD: file_sha256(destination / CARD), GRID: picture}
    assert verify_export(destination)["utility"] == utility and "No license" not in text
    assert "Licence: **not set**" in text and card_metadata(destination / CARD)["license"] == "unknown"  # unset, and shown as such
    recipe = {
        **utility,
        "recipe": "ssl + synthetic, 0.5 of each batch, the teacher's soft labels",
        "label_kind": "soft",
        "ssl": "ssl (pool under the teacher's hard labels)",
        "gain_over_real": 0.031,
        "gain_over_real_ci95": [0.02, 0.04],
        "gain_over_ssl": 0.006,
        "gain_over_ssl_ci95": [0.001, 0.011],
        "holdout_images": 500,
    }
    annotate_export(destination, "utility", recipe)
    with_recipe = (destination / CARD).read_text()
    assert "Recommended recipe: ssl + synthetic, 0.5 of each batch, the teacher's soft labels." in with_recipe
    assert (
        "over real only +0.0310 (95% interval +0.0200 to +0.0400), over ssl (pool under the teacher's hard labels) +0.0060 (95% interval +0.0010 to +0.0110)"
        in with_recipe
    )
    assert "on 500 holdout images" in with_recipe and "`label_probs` column" in with_recipe
    manifest = annotate_export(destination, "utility", utility)
    with pytest.raises(ExportError, match="describes the parts"):
        annotate_export(destination, "documents", [])

    (destination / CARD).write_text(text.replace("Recommended", "Great"))
    with pytest.raises(ExportError, match="README.md: missing, or its SHA-256 does not match"):
        read_export(destination)


def test_exports_without_a_card_still_read_and_annotate(tmp_path, tiny_generator, tiny_plan, lineage):
    """An export written before cards: parts at the top, no documents entry."""
    destination = tmp_path / "exports" / "old"
    export_samples(tiny_generator(), tiny_plan(), destination, lineage=lineage, root=tmp_path)
    manifest = read_manifest(destination)
    for entry in manifest["files"]:
        (destination / entry["path"]).rename(destination / entry["path"].removeprefix("data/"))
        entry["path"] = entry["path"].removeprefix("data/")
    for document in manifest.pop("documents"):
        (destination / document["path"]).unlink()
    (destination / "data").rmdir()
    (destination / "_manifest.json").write_text(json.dumps(manifest))
    assert read_export(destination).num_rows == 75
    annotate_export(destination, "utility", {"recommended": False})
    assert not (destination / CARD).exists() and verify_export(destination)["utility"] == {"recommended": False}
