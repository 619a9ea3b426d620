"""Bulk synthetic datasets to Parquet: streaming, atomic, resumable, shardable and traceable.

Layout of a committed export (DESIGN.md, "Export format"):

    <destination>/data/part-NNNNN.parquet   rows sample_id, label, label_name, image{bytes,path}, [label_probs], seed, model_name, model_version
    <destination>/_manifest.json            counts, per-file rows and SHA-256 (parts and card), lineage, generator settings
    <destination>/README.md, samples.png    the dataset card (Hugging Face Hub layout) and its sample picture

Parts are written into a staging directory (one finished part = its file plus a sidecar JSON with
its checksum); the export becomes visible by one rename of the whole directory once every part is
there and verified. A crash leaves only staging behind, and a rerun with the same destination picks
up from the finished parts.

    plan.py    the plan, the schema and the errors
    png.py     the PNG encoder
    screen.py  the copy screen against the training images
    filter.py  the judge at export: the confidence filter (rows it accepts, each regenerable
               from its seed) and soft labels (its class probabilities of each row's image)
    writer.py  export_samples: generation and encoding overlapped, part by part into staging
    card.py    the dataset card, rendered from the manifest
    store.py   destinations, staging, the commit and the upload to object stores
    shards.py  one worker process per shard, then one commit
    reader.py  read_export and verify_export
"""

from .filter import ConfidenceFilter, SoftLabels, filtered_samples
from .layout import MANIFEST, read_manifest
from .plan import EXPORT_SCHEMA, IMAGE_FORMATS, SCHEMA_VERSION, SOFT_LABELS, export_schema, ExportError, ExportPlan, ExportResult, PlanError
from .png import encode_png, encode_pngs
from .reader import decode_images, export_schemas, read_export, verify_export
from .screen import CopyScreen
from .shards import export_in_processes
from .store import annotate_export, commit_export, export_exists
from .writer import export_samples

__all__ = [
    "EXPORT_SCHEMA",
    "IMAGE_FORMATS",
    "MANIFEST",
    "SCHEMA_VERSION",
    "SOFT_LABELS",
    "ConfidenceFilter",
    "CopyScreen",
    "ExportError",
    "ExportPlan",
    "ExportResult",
    "PlanError",
    "SoftLabels",
    "annotate_export",
    "commit_export",
    "decode_images",
    "encode_png",
    "encode_pngs",
    "export_exists",
    "export_in_processes",
    "export_samples",
    "export_schema",
    "export_schemas",
    "filtered_samples",
    "read_export",
    "read_manifest",
    "verify_export",
]
