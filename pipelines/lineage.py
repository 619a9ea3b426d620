"""The data behind an MLflow run, as MLflow datasets: each input names its content hash (the
digest), the spec's source it came from and the Dagster run that logged it, so a person on the
run's page sees which data trained and judged the model. Only metadata is logged, never images."""

from __future__ import annotations

import json
from typing import Any

from gan_core.data import ImageData

from .specs import Spec

DIGEST_CHARS = 32  # MLflow's dataset digest column holds 36 characters; the full hash is a tag


def log_data_input(spec: Spec, data: ImageData, context: str, dagster_run_id: str) -> str:
    """Log `data` to the active MLflow run as a dataset input with `context` (training, unlabelled,
    holdout); returns its content hash."""
    import mlflow
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.meta_dataset import MetaDataset

    class ImageSnapshot(MetaDataset):
        """A MetaDataset with a profile (rows and classes) for the run page."""

        def __init__(self, profile: dict[str, Any], **kwargs: Any):
            super().__init__(**kwargs)
            self._profile = profile

        @property
        def profile(self) -> dict[str, Any]:
            return self._profile

        def to_dict(self) -> dict[str, str]:
            return {**super().to_dict(), "profile": json.dumps(self._profile, ensure_ascii=False)}

    content_hash = data.content_hash()
    source = spec.unlabelled if context == "unlabelled" else spec.source
    profile = {"num_rows": len(data), "image_shape": list(data.images.shape[1:]), "class_counts": data.class_counts()}
    dataset = ImageSnapshot(
        profile,
        source=CodeDatasetSource({"spec": spec.name, "source": source.model_dump(exclude_none=True) if source else {}}),
        name=f"{spec.name}-{context}",
        digest=content_hash[:DIGEST_CHARS],
    )
    mlflow.log_input(dataset, context=context, tags={"content_hash": content_hash, "dagster.run_id": dagster_run_id})
    return content_hash
