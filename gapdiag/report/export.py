"""Embeddings, 2-D map coordinates and item metadata as one table for other tools (``gapdiag export``).

One row per embedded item, every modality stacked (in the order of the embedding set):

========== ============================ ================================================================
column     type                         meaning
========== ============================ ================================================================
modality   string                       ``image``, ``text``, ... (the modality the item belongs to)
sample_id  int64                        the sample (pair) of the item: an image and its captions share it
content    string (null)                the image path or the caption; null for precomputed embeddings
label      int64 (null)                 class label of the sample, when the data has classes
class_name string (null)                ``class_names[label]``
x, y       float32                      the 2-D map of ``gapdiag plot --kind map`` (PCA or UMAP, all
                                        modalities projected together, unit-normalised first)
vector     fixed_size_list<float32>[d]  the raw embedding as stored in the cache (not normalised)
========== ============================ ================================================================

The file is plain Parquet, read by pandas, polars, DuckDB and embedding viewers such as Apple's
embedding-atlas (``embedding-atlas out.parquet --x x --y y --text content``). The schema metadata ``gapdiag``
holds the provenance (model, dataset fingerprint) and the projection as JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from gapdiag.data.base import PairedDataset
from gapdiag.data.parquet import arrow
from gapdiag.errors import InputError
from gapdiag.fsutil import atomic_path
from gapdiag.outputs import write_error
from gapdiag.vectors import EmbeddingSet

if TYPE_CHECKING:
    import pyarrow as pa

#: Projections of the x, y columns (those of the map figure).
MAP_METHODS = ("pca", "umap")


def check_method(method: str) -> None:
    """Refuse an unknown projection before any embedding work."""
    if method not in MAP_METHODS:
        raise InputError(f"unknown --map {method!r}", hint=f"choose one of: {', '.join(MAP_METHODS)}")


def export_table(es: EmbeddingSet, dataset: PairedDataset | None = None, *, xy: NDArray[np.floating],
                 method: str = "pca", seed: int = 0, vectors: bool = True) -> pa.Table:
    """The export table of ``es`` (columns in the module docstring).

    Args:
        es: The embeddings (all modalities are exported, one row per item, modality after modality).
        dataset: The dataset ``es`` was embedded from, item for item, for the ``content`` column; ``None``
            (or a precomputed dataset) leaves it null.
        xy: ``(n_items, 2)`` map coordinates of those rows, in that order
            (:func:`gapdiag.figures.embedding_map.item_coordinates`).
        method, seed: How ``xy`` was projected, recorded in the schema metadata.
        vectors: Include the ``vector`` column.

    Raises:
        MissingExtraError: pyarrow (the ``parquet`` extra) is not installed.
    """
    pa = arrow()

    check_method(method)
    names = es.modality_names
    xy = np.asarray(xy, dtype=np.float32)
    if xy.shape != (sum(es.counts().values()), 2):
        raise ValueError(f"xy has shape {xy.shape}: one row of two coordinates per item is needed")
    samples = np.concatenate([np.asarray(es.sample_index[m], dtype=np.int64) for m in names])
    modality = np.concatenate([np.full(es.vectors[m].shape[0], m, dtype=object) for m in names])
    columns: dict[str, Any] = {
        "modality": pa.array(modality, type=pa.string()),
        "sample_id": pa.array(samples, type=pa.int64()),
        "content": pa.array(_contents(es, dataset), type=pa.string()),
    }
    if es.labels is not None:
        labels = np.asarray(es.labels, dtype=np.int64)[samples]
        columns["label"] = pa.array(labels, type=pa.int64())
        if es.class_names:
            columns["class_name"] = pa.array([es.class_names[i] if 0 <= i < len(es.class_names) else None
                                              for i in labels.tolist()], type=pa.string())
    columns["x"] = pa.array(xy[:, 0])
    columns["y"] = pa.array(xy[:, 1])
    if vectors:
        stacked = np.vstack([np.asarray(es.vectors[m], dtype=np.float32) for m in names])
        columns["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(stacked.reshape(-1)), stacked.shape[1])
    meta = {"provenance": es.provenance, "map": {"method": method, "seed": seed}}
    return pa.table(columns).replace_schema_metadata({"gapdiag": json.dumps(meta, default=str)})


def _contents(es: EmbeddingSet, dataset: PairedDataset | None) -> list[str | None]:
    """Per row: the image path or caption the vector came from, where the dataset gives it item for item."""
    out: list[str | None] = []
    for m in es.modality_names:
        n = es.vectors[m].shape[0]
        modality = dataset.modalities.get(m) if dataset is not None else None
        if modality is None or modality.kind == "embedding" or len(modality) != n:
            out += [None] * n
        else:
            out += [str(item) for item in modality.items]
    return out


def write_parquet(table: pa.Table, path: str | Path) -> Path:
    """Write ``table`` to ``path`` atomically (:func:`gapdiag.fsutil.atomic_path`; parents created)."""
    pq = arrow("pyarrow.parquet", path)
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
    except OSError as e:
        raise write_error(path, e, what="Parquet file") from None
    return path
