"""The `parquet` source: our export's schema (DESIGN.md), a part file or an export folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .loaders import decode_image
from .images import DataError, ImageData


def load_parquet(path: str | Path, skip_bad: bool = False) -> ImageData:
    """Our export schema (DESIGN.md): a part file or an export directory; `image.bytes` is PNG or raw."""
    import pyarrow.parquet as pq

    root = Path(path)
    try:
        root.stat()
    except OSError as error:
        raise DataError(f"source.path: cannot read '{root}': {error.strerror or error}") from error
    files = (sorted(root.glob("*.parquet")) or sorted(root.glob("data/*.parquet"))) if root.is_dir() else [root]  # an export keeps its parts in data/
    if not files:
        raise DataError(f"source.path: '{root}' holds no .parquet files")
    images, labels, names_by_label, skipped = [], [], {}, []
    for file in files:
        try:
            table = pq.read_table(file)
        except Exception as error:  # pyarrow raises ArrowInvalid, OSError...
            raise DataError(f"{file}: not a readable Parquet file ({error})") from error
        missing = {"label", "image"} - set(table.column_names)
        if missing:
            raise DataError(f"{file}: missing column(s) {sorted(missing)}; expected the export schema (label, image, ...)")
        image_type = table.schema.field("image").type
        if not (hasattr(image_type, "names") and "bytes" in image_type.names):
            raise DataError(f"{file}: column 'image' is {image_type}; expected struct<bytes: binary, path: string>")
        meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
        raw_shape = tuple(json.loads(meta["ganpipe.image_shape"])) if meta.get("ganpipe.image_format") == "raw" else None
        label_values = table.column("label").to_pylist()
        label_names = table.column("label_name").to_pylist() if "label_name" in table.column_names else [None] * len(label_values)
        payloads = table.column("image").combine_chunks().field("bytes").to_pylist()
        for row, (label, name, payload) in enumerate(zip(label_values, label_names, payloads)):
            where = f"{file} row {row}"
            try:
                if label is None or payload is None:
                    raise DataError(f"{where}: missing label or image bytes")
                images.append(decode_image(payload, where, raw_shape))
            except DataError as error:
                if not skip_bad:
                    raise
                skipped.append((where, str(error)))
                continue
            labels.append(int(label))
            if name is not None:
                names_by_label.setdefault(int(label), name)
    if not images:
        raise DataError(f"source.path: '{root}' holds no readable rows")
    shapes = {image.shape for image in images}
    if len(shapes) != 1:
        raise DataError(f"source.path: images in '{root}' have mixed shapes {sorted(shapes)}; expected one")
    label_array = np.array(labels, dtype=np.int64)
    class_names = [names_by_label.get(index, str(index)) for index in range(int(label_array.max()) + 1)]
    return ImageData(np.stack(images), label_array, class_names, skipped)
