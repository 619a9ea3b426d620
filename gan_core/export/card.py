"""The dataset card: a `README.md` beside the parts in the Hugging Face Hub's layout (YAML front
matter with `configs` and `dataset_info`, then text for a person) and `samples.png`, one row per
class. Both are rendered from the manifest alone, so the card says what the manifest says; the
manifest lists their SHA-256 under `documents`, and a new manifest entry (the uplift verdict)
renders the card again."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow.parquet as pq
import yaml

from ..files import file_sha256
from .layout import CARD, GRID, PARTS
from .plan import ExportPlan, hf_features
from .png import decode_images

GRID_CLASSES, GRID_COLUMNS = 20, 10  # the picture shows at most 20 classes, 10 samples each


def write_documents(folder: Path, manifest: Mapping[str, Any], grid: bool = True) -> list[dict[str, Any]]:
    """Write the card (and, with `grid`, the sample picture from the parts) into `folder`; returns
    their entries for the manifest's `documents`."""
    if grid:
        _write_grid(folder, manifest)
    (folder / CARD).write_text(render_card(manifest, has_grid=(folder / GRID).is_file()), encoding="utf-8")
    return [{"path": name, "sha256": file_sha256(folder / name), "bytes": (folder / name).stat().st_size} for name in (CARD, GRID) if (folder / name).is_file()]


def _write_grid(folder: Path, manifest: Mapping[str, Any]) -> None:
    from ..sample import save_grid

    plan = ExportPlan.from_dict(manifest["generator"]["plan"])
    starts = np.concatenate([[0], np.cumsum(plan.counts)[:-1]])  # plans are class blocks
    wanted = [i for c in range(min(len(plan.class_names), GRID_CLASSES)) for i in range(starts[c], starts[c] + min(plan.counts[c], GRID_COLUMNS))]
    if not wanted:
        return
    rows = []
    for info in manifest["files"]:
        mine = [i for i in wanted if info["sample_id_start"] <= i < info["sample_id_stop"]]
        if mine:
            table = pq.read_table(folder / info["path"])
            ids = table.column("sample_id").to_numpy()
            rows.append(table.take(np.searchsorted(ids, mine)))
    images = np.concatenate([decode_images(table, manifest) for table in rows])
    # One row per class: a class with fewer than GRID_COLUMNS samples is padded with black images.
    grid = np.zeros((min(len(plan.class_names), GRID_CLASSES) * GRID_COLUMNS, *images.shape[1:]), np.uint8)
    position = 0
    for c in range(min(len(plan.class_names), GRID_CLASSES)):
        count = min(plan.counts[c], GRID_COLUMNS)
        grid[c * GRID_COLUMNS : c * GRID_COLUMNS + count] = images[position : position + count]
        position += count
    save_grid(grid, folder / GRID, columns=GRID_COLUMNS)


def hub_features(class_names: Sequence[str], image_format: str, soft_labels: bool = False) -> list[dict[str, Any]]:
    """`dataset_info.features` as the Hub's card metadata spells them: the Parquet schema's own
    `huggingface` features (plan.py), so a column added there reaches the card too."""

    def dtype(feature: Mapping[str, Any]) -> Any:
        kind = feature.get("_type")
        if kind == "Value":
            return feature["dtype"]
        if kind == "ClassLabel":
            return {"class_label": {"names": {str(i): name for i, name in enumerate(feature["names"])}}}
        if kind == "Image":
            return "image"
        return [{"name": name, "dtype": dtype(inner)} for name, inner in feature.items()]  # a struct

    def entry(name: str, feature: Mapping[str, Any]) -> dict[str, Any]:
        if feature.get("_type") == "Sequence":  # the card spells a fixed-size list as `sequence` and `length` beside the name
            return {"name": name, "sequence": feature["feature"]["dtype"], "length": feature["length"]}
        return {"name": name, "dtype": dtype(feature)}

    features = hf_features(class_names, image_format, soft_labels)["info"]["features"]
    return [entry(name, feature) for name, feature in features.items()]


def _size_category(rows: int) -> str:
    for bound, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if rows < bound:
            return name
    return "1M<n<10M"


def front_matter(manifest: Mapping[str, Any]) -> dict[str, Any]:
    lineage = manifest.get("lineage") or {}
    size = sum(int(info.get("bytes", 0)) for info in manifest["files"])
    return {
        "license": lineage.get("license") or "unknown",
        "pretty_name": f"ganpipe synthetic {lineage.get('spec', 'images')} (model {lineage.get('model_name')} v{lineage.get('model_version')})",
        "tags": ["synthetic", "gan", "ganpipe", "image-classification"],
        "task_categories": ["image-classification"],
        "size_categories": [_size_category(manifest["total_rows"])],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": PARTS}]}],
        "dataset_info": {
            "features": hub_features(manifest["class_names"], manifest["image_format"], bool(manifest.get("soft_labels"))),
            "splits": [{"name": "train", "num_bytes": size, "num_examples": manifest["total_rows"]}],
            "download_size": size,
            "dataset_size": size,
        },
    }


def render_card(manifest: Mapping[str, Any], has_grid: bool = True) -> str:
    """The card's text: front matter for the Hub, then provenance, licence, figures and verdicts."""
    lineage, model = manifest.get("lineage") or {}, manifest.get("model") or {}
    header = yaml.safe_dump(front_matter(manifest), sort_keys=False, allow_unicode=True, width=1000)
    title = f"# Synthetic images of spec `{lineage.get('spec', '?')}`, from {model.get('model_name')} version {model.get('model_version')}"
    lines = [f"---\n{header}---", "", title, ""]
    lines += [
        f"{manifest['total_rows']:,} labelled images generated by a class-conditional GAN trained by ganpipe, "
        f"{'×'.join(str(side) for side in manifest['image_shape'])} (C×H×W), as {manifest['image_format']} in the `image` column; "
        "`label` is the class the generator was conditioned on. Each row's `seed` regenerates exactly that image from the model.",
        *_soft_labels(manifest),
        "",
        "## Provenance",
        "",
        f"- Spec: `{lineage.get('spec', '?')}`; created {manifest['created_at']}; export schema version {manifest['schema_version']}.",
        f"- Model: MLflow model `{model.get('model_name')}` version {model.get('model_version')}, run `{model.get('run_id')}`"
        + (f" ({lineage['mlflow_run']})" if lineage.get("mlflow_run") else "")
        + ".",
    ]
    data = lineage.get("data") or {}
    if data:
        lines.append(
            f"- Trained on data `{str(data.get('content_hash', '?'))[:16]}`: {data.get('train_images')} labelled train images"
            f"{_unlabelled(data)}; {data.get('holdout_images')} holdout images kept out of training. The images themselves are not part of this card."
        )
    licence = lineage.get("license")
    lines.append(f"- Licence: {licence}." if licence else "- Licence: **not set** (the spec's `export.license`); ask the dataset's owners before reuse.")
    lines += ["", "## Classes", "", "| label | class | rows |" + (" accepted by the filter |" if manifest.get("filter") else ""), "| --- | --- | --- |"]
    lines[-1] += " --- |" if manifest.get("filter") else ""
    acceptance = (manifest.get("filter") or {}).get("acceptance_per_class", {})
    for index, name in enumerate(manifest["class_names"]):
        row = f"| {index} | {_cell(name)} | {manifest['counts_per_class'][name]:,} |"
        if manifest.get("filter"):
            row += f" {acceptance[name]:.3f} |" if name in acceptance else " |"
        lines.append(row)
    lines += ["", *_figures(manifest), "", *_utility(manifest), "", *_screen(manifest)]
    if has_grid:
        lines += ["", "## Samples", "", f"One row per class, in label order (the first {GRID_CLASSES} classes at most):", "", f"![samples]({GRID})"]
    lines += [
        "",
        "## Reading it",
        "",
        "```python",
        "import pandas as pd",
        "frame = pd.read_parquet('data')  # the parts; or datasets.load_dataset('<this folder>'), duckdb, polars, pyarrow on data/*.parquet",
        "```",
        "",
        "`_manifest.json` lists every file with its row count and SHA-256 (this card too), the model lineage and the figures above.",
        "",
    ]
    return "\n".join(lines)


def _soft_labels(manifest: Mapping[str, Any]) -> list[str]:
    soft = manifest.get("soft_labels")
    if not soft:
        return []
    accuracy = soft.get("teacher_holdout_accuracy")
    measured = f" (holdout accuracy {accuracy:.4f})" if accuracy is not None else ""
    return [
        f"`{soft['column']}` holds the teacher's class probabilities of each image{measured}, one float32 per class in label order: "
        "soft labels, for a loss such as KL divergence instead of cross-entropy on `label`."
    ]


def _unlabelled(data: Mapping[str, Any]) -> str:
    count = data.get("unlabelled_images") or 0
    return f" and {count} unlabelled images (pseudo-labelled by the judge where it was sure)" if count else ""


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def _figures(manifest: Mapping[str, Any]) -> list[str]:
    metrics = manifest.get("metrics") or {}
    names = [name for name in metrics if not name.endswith(("_baseline", "_std")) and not name.startswith("uplift_")]
    if not names:
        return ["## Evaluation", "", "No evaluation figures were recorded with this model version."]
    lines = ["## Evaluation", "", "Each figure beside its real-vs-real baseline (the train split against the holdout at the same N).", ""]
    lines += ["| metric | this model | real vs real |", "| --- | --- | --- |"]
    for name in sorted(names):
        baseline = metrics.get(f"{name}_baseline")
        lines.append(f"| {name} | {metrics[name]:.4g} | {'' if baseline is None else f'{baseline:.4g}'} |")
    return lines


def _utility(manifest: Mapping[str, Any]) -> list[str]:
    utility = manifest.get("utility")
    if not utility:
        return ["## Does it help a classifier?", "", "Not measured yet: the uplift study writes its verdict here when it has run."]
    verdict = "**Recommended**" if utility.get("recommended") else "**Not recommended**"
    lines = ["## Does it help a classifier?", "", f"{verdict}. {utility.get('verdict', '')}", ""]

    def gain(key: str) -> str:
        low, high = (utility.get(f"{key}_ci95") or [None, None])[:2]
        return f"{utility.get(key, 0):+.4f}" + (f" (95% interval {low:+.4f} to {high:+.4f})" if low is not None else "")

    if "recipe" in utility:
        over_ssl = f", over {utility['ssl']} {gain('gain_over_ssl')}" if utility.get("ssl") else ""
        lines.append(
            f"Recommended recipe: {utility['recipe']}. Gain in holdout accuracy over real only {gain('gain_over_real')}{over_ssl}, "
            f"over {utility.get('seeds')} seeds of a classifier trained {utility.get('classifier_steps')} steps, on {utility.get('holdout_images')} holdout images."
        )
        if utility.get("label_kind") == "soft":
            lines.append("")
            lines.append("It trains on the `label_probs` column (the teacher's soft labels, a KL term), not on `label`.")
    elif "share" in utility:  # a study from before the recipes
        lines.append(
            f"Recommended mix: {utility['share']:g} of every training batch synthetic, the rest real; gain in holdout accuracy over real only "
            f"{gain('gain')}, over {utility.get('seeds')} seeds of a classifier trained {utility.get('classifier_steps')} steps."
        )
    return lines


def _screen(manifest: Mapping[str, Any]) -> list[str]:
    screen = manifest.get("memorization")
    if not screen:
        return ["## Memorization", "", "Not screened."]
    return [
        "## Memorization",
        "",
        f"Every exported image was checked against the {screen.get('reference_images')} training images: "
        f"{screen.get('exact_copies')} exact copies, {screen.get('near_copies')} near copies "
        f"(fraction {screen.get('near_copy_fraction', 0):.4f}).",
    ]


def card_metadata(path: Path) -> dict[str, Any]:
    """The YAML front matter of a card file."""
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        raise ValueError(f"{path}: no YAML front matter")
    return yaml.safe_load(text[4 : text.index("\n---", 4)])
