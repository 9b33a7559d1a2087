"""``gapdiag track``: parsing and printing over :func:`gapdiag.api.track`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from gapdiag import api
from gapdiag.commands.common import (
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
    PrecisionOpt,
    PreprocessOpt,
    QuietOpt,
    SeedOpt,
    SkipBadOpt,
    SplitOpt,
    TemplateOpt,
    TextColumnOpt,
    WorkersOpt,
    console,
    print_json,
)
from gapdiag.commands.printing import print_skipped, print_table, show

_TRACK_EPILOG = (
    "Examples:\n\n"
    "`gapdiag track run/checkpoints -d val.csv --out track.json` (a `gapdiag train` or open_clip run)\n\n"
    "`gapdiag track 'logs/run/checkpoints/epoch_*.pt' -d val.csv --parquet track.parquet`\n\n"
    "`gapdiag plot --kind track --track track.json --metrics modality_gap,recall_at_1`")


def track(
    checkpoints: Annotated[list[str], typer.Argument(metavar="CKPT...",
        help="Checkpoint files, their folder (a training run folder: its checkpoints/) or a quoted glob "
             "('run/checkpoints/epoch_*.pt'); ordered by the step in the file name (epoch_3.pt) or stored in the "
             "checkpoint (epoch).", show_default=False)],
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="Architecture of checkpoints that do not say theirs (each is then measured as "
                              "`-m ARCH -p CKPT`); default: each says it (its safetensors metadata, "
                              "open_clip_config.json beside it, or its run folder's params.txt / run.json).",
        rich_help_panel="Model")] = None,
    metrics: Annotated[str | None, typer.Option(
        "--metrics", help="Comma-separated metric names (see docs/metrics.md); default: every metric that applies.")] = None,
    sample: Annotated[int | None, typer.Option(
        "--sample", help="Use this many samples (seeded) for the quadratic metrics; default exact.")] = None,
    seed: SeedOpt = 0,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", path_type=str, help="Write the track record (JSON: one report per checkpoint) here; "
                                           "`gapdiag plot --kind track --track FILE` draws it.")] = None,
    parquet: Annotated[Path | None, typer.Option(
        "--parquet", path_type=str, help="Write the table (one row per checkpoint, one column per metric) as "
                                         "Parquet here (the parquet extra: `pip install 'gapdiag[parquet]'`).")
    ] = None,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
    data: DataArg = None,
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
    """Measure a series of checkpoints (the epochs of a training run) on one dataset: every metric per step.

    Each checkpoint is measured as `gapdiag measure -m CKPT` measures it, and its vectors and report are cached:
    run it again after the next epoch and only the new checkpoint is embedded and measured.
    """
    embedding = EmbeddingOptions(
        data=data, split=split, image_column=image_column, text_column=text_column, label_column=label_column,
        class_name_column=class_name_column, template=template, image_root=image_root, device=device,
        precision=precision, batch_size=batch_size, workers=workers, cache_dir=cache_dir, dtype=dtype,
        skip_bad=skip_bad, data_format=data_format, preprocess=preprocess)
    options = embedding.api_kwargs(quiet=quiet or json_out, model=False)
    # Every checkpoint is the model's weights: track has no --pretrained or --random-init to pass on.
    del options["pretrained"], options["random_init"]
    result = api.track(checkpoints, model=model, metrics=api.parse_metric_list(metrics), sample=sample, seed=seed,
                       out=out, parquet=parquet, **options)
    for point in result.points:
        print_skipped([f"{point.checkpoint}: {row}" for row in point.report.provenance.get("skipped") or []])
    if json_out:
        print_json(result.to_dict(include_extras=False))
        return
    print_table(track_table(result), give_way=("family", "metric"))
    for label, path in (("track record", out), ("table", parquet)):
        if path is not None:
            console.print(f"{label} written to {path}")


def track_table(result: api.Track) -> Table:
    """Metrics as rows (grouped by family), one column per step: the series reads left to right."""
    dataset = (result.points[0].report.provenance.get("dataset") or {}).get("name", "?")
    table = Table(title=f"{len(result.points)} checkpoints on {dataset}",
                  caption=" · ".join(f"step {p.step}: {p.checkpoint}" for p in result.points))
    table.add_column("family", style="dim")
    table.add_column("metric")
    for point in result.points:
        table.add_column(f"step {point.step}", justify="right")
    table.add_column("better", justify="center")
    for name in show.order_metrics(result.metric_names):
        cells = [show.metric_family(name), name]
        cells += [show.format_number(p.report.metrics[name]) if name in p.report.metrics else ""
                  for p in result.points]
        cells.append(show.direction_arrow(show.higher_is_better(show.split_metric_name(name)[0])))
        table.add_row(*cells)
    return table


def register(app: typer.Typer) -> None:
    """Add ``track`` to the gapdiag app."""
    app.command(cls=Command, epilog=_TRACK_EPILOG)(track)
