"""The verb :func:`export`: the embeddings, their 2-D map and item metadata as one Parquet table."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gapdiag import device as devices
from gapdiag import settings
from gapdiag.api.embedding import vectors_with_items
from gapdiag.api.measuring import inputs_of, status_printer
from gapdiag.api.options import EmbedOptions, check_seed, refuse_options, set_options
from gapdiag.data.base import PairedDataset
from gapdiag.data.parquet import arrow, read_schema, readable
from gapdiag.outputs import check_outputs
from gapdiag.report import export as exporter
from gapdiag.vectors import EmbeddingSet


def export(
    data: str | Path | PairedDataset | EmbeddingSet | None = None,
    model: str | Path | None = None,
    *,
    out: str | Path = "gapdiag-export.parquet",
    method: str = "pca",
    seed: int = 0,
    vectors: bool = True,
    pretrained: str | None = None,
    random_init: bool = False,
    split: str | None = None,
    format: str | None = None,
    image_column: str | None = None,
    text_columns: Sequence[str] | None = None,
    label_column: str | None = None,
    class_name_column: str | None = None,
    attribute_columns: Sequence[str] | None = None,
    templates: Sequence[str] | None = None,
    image_root: str | Path | None = None,
    skip_bad: bool = False,
    device: str = "auto",
    precision: str = "fp32",
    preprocess: str = "auto",
    batch_size: int = 64,
    workers: int = 0,
    dtype: str = "float32",
    chunk_size: int | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Write the embeddings, their 2-D map and item metadata as Parquet, one row per item (see
    :mod:`gapdiag.report.export` for the columns), for pandas, polars, DuckDB or embedding viewers.

    Args:
        data, model: As for :func:`gapdiag.api.embed` (the vectors come from the cache when they are there).
        out: The Parquet file to write.
        method: ``"pca"`` or ``"umap"``: the projection of the ``x``/``y`` columns, as in the map figure.
        seed: Seeds UMAP.
        vectors: Include the raw vectors (``vector`` column).
        pretrained, ..., progress: As for :func:`gapdiag.api.embed`.

    Returns:
        The path written.

    Raises:
        MissingExtraError: pyarrow is not installed (``pip install 'gapdiag[parquet]'``); said before any
            embedding work.
    """
    # The map's figures module imports matplotlib, and pyarrow writes the table: only when exporting.
    from gapdiag.figures.embedding_map import item_coordinates

    options = EmbedOptions(
        pretrained=pretrained, random_init=random_init, split=split, format=format, image_column=image_column,
        text_columns=text_columns, label_column=label_column, class_name_column=class_name_column,
        attribute_columns=attribute_columns, templates=templates, image_root=image_root, skip_bad=skip_bad,
        device=device, precision=precision, preprocess=preprocess, batch_size=batch_size, workers=workers,
        dtype=dtype, chunk_size=chunk_size, cache_dir=cache_dir, progress=progress)
    exporter.check_method(method)  # before any embedding work
    arrow("pyarrow.parquet", out)  # the parquet extra: without it, say so before embedding anything
    check_seed(seed)
    if method != "umap":
        refuse_options(set_options({"seed": seed}, ("seed",), {"seed": 0}), f"--map {method}",
                       "it is deterministic; only UMAP is seeded")
    check_outputs({"--out": out}, inputs_of(data, model, options))
    es, dataset = vectors_with_items(data, model, options, settings.resolve(cache_dir), devices.resolve(device))
    xy = item_coordinates(es, method=method, seed=seed, status=status_printer(progress))
    return exporter.write_parquet(exporter.export_table(es, dataset, xy=xy, method=method, seed=seed,
                                                       vectors=vectors), out)


def parquet_shape(path: str | Path) -> tuple[int, list[str]]:
    """The number of rows and the column names of a Parquet file such as :func:`export` writes (its footer
    only), for the CLI's summary line.

    Raises:
        DatasetError: Not a readable Parquet file.
        MissingExtraError: pyarrow is not installed (``pip install 'gapdiag[parquet]'``).
    """
    path = Path(path)
    metadata = readable(path, arrow("pyarrow.parquet", path).read_metadata)
    return metadata.num_rows, list(read_schema(path).names)
