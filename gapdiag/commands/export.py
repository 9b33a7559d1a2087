"""``gapdiag export``: embeddings, 2-D map and item metadata as Parquet for other tools.

Parsing and printing only: :func:`gapdiag.api.export` builds the table (columns: :mod:`gapdiag.report.export`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gapdiag import api
from gapdiag.commands.common import (
    FLAG,
    BatchSizeOpt,
    CacheDirOpt,
    ClassNameColumnOpt,
    Command,
    DataArg,
    DataFormatOpt,
    DeviceOpt,
    DtypeOpt,
    EmbeddingOptions,
    ImageColumnOpt,
    ImageRootOpt,
    JsonOpt,
    LabelColumnOpt,
    ModelOpt,
    PrecisionOpt,
    PreprocessOpt,
    PretrainedOpt,
    QuietOpt,
    RandomInitOpt,
    SkipBadOpt,
    SplitOpt,
    TemplateOpt,
    TextColumnOpt,
    WorkersOpt,
    console,
    one_of,
    print_json,
)


def export(
    out: Annotated[Path, typer.Option("--out", "-o", path_type=str, help="Parquet file to write.")] = Path(
        "gapdiag-export.parquet"),
    map_method: Annotated[str, typer.Option(
        "--map", metavar=one_of("pca", "umap"), help="Projection of the x, y columns, as in `gapdiag plot --kind map`: pca (deterministic) "
                      "or umap (seeded; the first fit compiles for ~10 s).")] = "pca",
    seed: Annotated[int, typer.Option("--seed", help="Random seed of UMAP.")] = 0,
    vectors: Annotated[bool, typer.Option(
        "--vectors/--no-vectors", metavar=FLAG, help="Include the raw embedding of every item (vector column).")] = True,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
    data: DataArg = None,
    model: ModelOpt = None,
    pretrained: PretrainedOpt = None,
    random_init: RandomInitOpt = False,
    split: SplitOpt = None,
    image_column: ImageColumnOpt = None,
    text_column: TextColumnOpt = None,
    label_column: LabelColumnOpt = None,
    class_name_column: ClassNameColumnOpt = None,
    template: TemplateOpt = None,
    image_root: ImageRootOpt = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "fp32",
    batch_size: BatchSizeOpt = 64,
    workers: WorkersOpt = 0,
    cache_dir: CacheDirOpt = None,
    dtype: DtypeOpt = "float32",
    skip_bad: SkipBadOpt = False,
    data_format: DataFormatOpt = None,
    preprocess: PreprocessOpt = "auto",
) -> None:
    """Write one Parquet row per item: modality, sample_id, content (image path or caption), label,
    class_name, x, y (the 2-D map) and the vector, for pandas, polars, DuckDB or an embedding viewer.

    The vectors come from the cache when `embed`/`measure` ran before. Columns: docs/cli.md. Needs the
    parquet extra: `pip install 'gapdiag[parquet]'`.
    """
    embedding = EmbeddingOptions(
        data=data, model=model, pretrained=pretrained, random_init=random_init, split=split,
        image_column=image_column, text_column=text_column, label_column=label_column,
        class_name_column=class_name_column, template=template, image_root=image_root, device=device,
        precision=precision, batch_size=batch_size, workers=workers, cache_dir=cache_dir, dtype=dtype,
        skip_bad=skip_bad, data_format=data_format, preprocess=preprocess)
    path = api.export(out=out, method=map_method, seed=seed, vectors=vectors,
                      **embedding.api_kwargs(quiet=quiet or json_out))
    rows, columns = api.parquet_shape(path)
    if json_out:
        print_json({"path": str(path), "rows": rows, "columns": columns})
        return
    for line in (f"{rows} rows ({', '.join(columns)}) written to {path}",
                 f"view it: embedding-atlas {path} --x x --y y --text content"):
        console.print(line, highlight=False, soft_wrap=True)


_EXAMPLES = ("Examples:\n\n"
             "`gapdiag export` (bundled tiny CLIP on digits: gapdiag-export.parquet)\n\n"
             "`gapdiag export -d captions.csv -m ViT-B-32 -p openai --map umap --out vectors.parquet`")


def register(app: typer.Typer) -> None:
    """Add ``export`` to the gapdiag app."""
    app.command("export", cls=Command, epilog=_EXAMPLES)(export)
