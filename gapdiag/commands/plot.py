"""``gapdiag plot`` (figure files) and ``gapdiag report`` (one self-contained HTML file).

Parsing and printing only: :func:`gapdiag.api.plot` and :func:`gapdiag.api.report` do the work (embeddings
from the cache after ``measure`` or ``embed``, figures from :mod:`gapdiag.figures`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

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
    SeedOpt,
    SkipBadOpt,
    SplitOpt,
    TemplateOpt,
    TextColumnOpt,
    WorkersOpt,
    console,
    err_console,
    one_of,
    print_json,
)
from gapdiag.commands.printing import print_labelled

_FIGURES = "Figures"

KindOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--kind",
        "-k",
        metavar=one_of("map", "hist", "spectrum", "gap", "shift", "interventions", "compare", "track", "all"),
        help="Figures to draw: map, hist, spectrum, gap, shift, interventions, compare, track or all; repeat the "
        "option or give a comma list. Default: map,hist,spectrum (or shift/interventions/compare/track when only "
        "--shift/--interventions/--report/--track are given).",
        rich_help_panel=_FIGURES,
    ),
]
ReportKindOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--kind",
        "-k",
        metavar=one_of("map", "hist", "spectrum", "gap", "shift", "interventions", "track", "all"),
        help="Figures on the page: map, hist, spectrum, gap, shift, interventions, track or all; repeat the option "
        "or give a comma list. Default: all (map, hist and spectrum, and shift/interventions/track when --shift/"
        "--interventions/--track is given; gap only when named).",
        rich_help_panel=_FIGURES,
    ),
]
MethodOpt = Annotated[
    str,
    typer.Option(
        "--method",
        metavar=one_of("umap", "pca"),
        help="2-D projection of the map: umap (as in Liang et al.; first fit compiles for ~10 s) or pca.",
        rich_help_panel=_FIGURES,
    ),
]
ColorByOpt = Annotated[
    str,
    typer.Option(
        "--color-by",
        metavar=one_of("modality", "class"),
        help="Colour map points by `modality` (a colour per modality) or `class` (a colour per class label); "
        "the marker always shows the modality.",
        rich_help_panel=_FIGURES,
    ),
]
MaxPairsOpt = Annotated[
    int,
    typer.Option(
        "--max-pairs",
        min=1,
        help="Draw at most this many samples (true pairs) on the map, chosen with --seed.",
        rich_help_panel=_FIGURES,
    ),
]
DpiOpt = Annotated[
    int | None,
    typer.Option(
        "--dpi",
        help="Resolution of PNG figures in dots per inch, 1 to 1200; default 150, the same for plot and report.",
        show_default=False,
        rich_help_panel=_FIGURES,
    ),
]
PlotSeedOpt = Annotated[int, typer.Option(
    "--seed", help="Random seed of the drawn pairs (--max-pairs: map, gap; the non-matching pairs of hist) and of UMAP.")]
ShiftFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--shift",
        help="Shift result JSON written by `gapdiag shift --out` (for --kind shift).",
        rich_help_panel=_FIGURES,
    ),
]
InterventionsFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--interventions",
        help="Intervention result JSON written by `gapdiag intervene --out` (for --kind interventions).",
        rich_help_panel=_FIGURES,
    ),
]
TrackFileOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--track",
        help="Track record JSON written by `gapdiag track --out` (for --kind track); repeat to draw several runs "
             "side by side (named by --label, default their file names).",
        rich_help_panel=_FIGURES,
    ),
]
TrackMetricsOpt = Annotated[
    str | None,
    typer.Option(
        "--metrics",
        help="For --kind track: comma-separated metrics to draw against step, base names (modality_gap: every "
             "pair) or full names (recall_at_1/image_to_text). Default: modality_gap, cos_tp, angular_value, "
             "uniformity_wang_isola, effective_rank, recall_at_1.",
        rich_help_panel=_FIGURES,
    ),
]


def _status(quiet: bool) -> Any:
    """Progress messages on stderr (UMAP's first fit is slow), nothing when quiet."""
    if quiet:
        return None
    return lambda message: err_console.print(f"[dim]{message}[/]", highlight=False)


def plot(
    kind: KindOpt = None,
    method: MethodOpt = "umap",
    color_by: ColorByOpt = "modality",
    fmt: Annotated[
        str, typer.Option("--format", "-f", metavar=one_of("png", "svg", "pdf"), help="File format: png, svg or pdf.", rich_help_panel=_FIGURES)
    ] = "png",
    out: Annotated[
        Path,
        typer.Option("--out", "-o", path_type=str, help="Output directory (created if missing).",
                     rich_help_panel=_FIGURES),
    ] = Path("gapdiag-plots"),
    dpi: DpiOpt = None,
    seed: PlotSeedOpt = 0,
    max_pairs: MaxPairsOpt = 2000,
    shift: ShiftFileOpt = None,
    interventions: InterventionsFileOpt = None,
    track: TrackFileOpt = None,
    metrics: TrackMetricsOpt = None,
    report: Annotated[
        list[Path] | None,
        typer.Option(
            "--report",
            "-r",
            help="Report JSON from `gapdiag measure --out`; repeat for --kind compare.",
            rich_help_panel=_FIGURES,
        ),
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option(
            "--label",
            "-l",
            help="Label of each --report in the comparison, or of each --track (default: file names). Labels such "
            "as 'epoch 3' or 'step_1000' draw the comparison as lines over training instead of bars.",
            rich_help_panel=_FIGURES,
        ),
    ] = None,
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
    """Draw figures of the embedding space into a directory: the modality-gap map, pair-similarity histograms,
    singular-value spectra, the embedding-shift landscape, the post-hoc interventions, report comparisons and
    metrics over training steps.

    Files are named `<kind>[-<method>].<format>` (map-umap.png, hist.png, spectrum.png, gap.png, shift.png,
    interventions.png, compare.png, track.png); the paths written are printed, one per line (or a JSON list with
    --json).
    """
    embedding = EmbeddingOptions(
        data=data, model=model, pretrained=pretrained, random_init=random_init, split=split,
        image_column=image_column, text_column=text_column, label_column=label_column,
        class_name_column=class_name_column, template=template, image_root=image_root, device=device,
        precision=precision, batch_size=batch_size, workers=workers, cache_dir=cache_dir, dtype=dtype,
        skip_bad=skip_bad, data_format=data_format, preprocess=preprocess)
    result = api.plot(kind, out=out, reports=report or [], labels=label, shift=shift, interventions=interventions,
                      track=track, track_metrics=api.parse_metric_list(metrics), method=method,
                      color_by=color_by, format=fmt, dpi=dpi, max_pairs=max_pairs, seed=seed,
                      status=_status(quiet or json_out),
                      **embedding.api_kwargs(quiet=quiet or json_out, format_keyword="data_format"))
    print_labelled("note", result.notes)
    paths = result.paths
    if json_out:
        print_json([str(p) for p in paths])
        return
    for p in paths:
        console.print(str(p), highlight=False, soft_wrap=True)


def report(
    out: Annotated[Path, typer.Option("--out", "-o", path_type=str, help="HTML file to write.")] = Path(
        "report.html"),
    from_report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            "-r",
            help="Reuse this measurement (from `gapdiag measure --out`) instead of measuring again; "
            "figures still come from the embeddings of --data/--model (cache).",
        ),
    ] = None,
    metrics: Annotated[
        str | None,
        typer.Option("--metrics", help="Comma-separated metric names to measure (default: all that apply)."),
    ] = None,
    sample: Annotated[
        int | None,
        typer.Option(
            "--sample", help="Use this many samples (seeded) for the quadratic metrics; default exact."
        ),
    ] = None,
    kind: ReportKindOpt = None,
    method: MethodOpt = "umap",
    color_by: ColorByOpt = "modality",
    max_pairs: MaxPairsOpt = 2000,
    shift: ShiftFileOpt = None,
    interventions: InterventionsFileOpt = None,
    track: Annotated[Path | None, typer.Option(
        "--track", help="Track record JSON written by `gapdiag track --out` on the same data: adds a section "
                        "'Over training' (metrics against step, figure and table).", rich_help_panel=_FIGURES)] = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            metavar=one_of("png", "svg"),
            help="Figure format inside the page: png (base64 images) or svg (inline vector graphics).",
            rich_help_panel=_FIGURES,
        ),
    ] = "png",
    figure_format: Annotated[
        str | None, typer.Option("--figure-format", hidden=True, help="Old spelling of --format.")
    ] = None,
    dpi: DpiOpt = None,
    title: Annotated[
        str | None, typer.Option("--title", help="Page title (default: model and dataset).")
    ] = None,
    interactive: Annotated[
        bool,
        typer.Option(
            "--interactive/--no-interactive",
            metavar=FLAG,
            help="Add the interactive map (hover for caption / image path / class, toggles, pair lines on "
            "click) when the map is drawn; it inlines plotly.js (~4.8 MB) so the page still works offline. "
            "Needs the interactive extra (`pip install 'gapdiag[interactive]'`); without it the page says so "
            "in the map's place.",
            rich_help_panel=_FIGURES,
        ),
    ] = True,
    seed: SeedOpt = 0,
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
    """Write one self-contained HTML report: a summary in words, the metric table beside published reference
    values, every figure and an interactive map embedded, and the provenance (nothing fetched; opens offline).
    """
    embedding = EmbeddingOptions(
        data=data, model=model, pretrained=pretrained, random_init=random_init, split=split,
        image_column=image_column, text_column=text_column, label_column=label_column,
        class_name_column=class_name_column, template=template, image_root=image_root, device=device,
        precision=precision, batch_size=batch_size, workers=workers, cache_dir=cache_dir, dtype=dtype,
        skip_bad=skip_bad, data_format=data_format, preprocess=preprocess)
    # --figure-format: the spelling before plot and report shared --format; the error names the one given.
    option, fmt = ("--figure-format", figure_format) if figure_format is not None else ("--format", fmt)
    silent = quiet or json_out
    page = api.report(out, from_report=from_report, metrics=api.parse_metric_list(metrics), sample=sample,
                      kinds=kind, method=method, color_by=color_by, max_pairs=max_pairs, shift=shift,
                      interventions=interventions, track=track, format=fmt,
                      format_option=option, dpi=dpi, title=title, interactive=interactive, seed=seed,
                      status=_status(silent), **embedding.api_kwargs(quiet=silent, format_keyword="data_format"))
    print_labelled("note", page.notes)
    if json_out:
        print_json(
            {
                "path": str(page.path),
                "figures": page.figures,
                "metrics": page.metrics,
                "interactive": page.interactive,
            }
        )
        return
    console.print(str(page.path), highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add ``plot`` and ``report`` to the gapdiag app."""
    app.command(
        "plot",
        cls=Command,
        epilog=(
            "Examples:\n\n"
            "`gapdiag plot` (bundled tiny CLIP on digits: map-umap.png, hist.png, spectrum.png in ./gapdiag-plots)\n\n"
            "`gapdiag plot -d captions.csv -m ViT-B-32 -p openai --kind map --method pca --format svg`\n\n"
            "`gapdiag plot --shift shift.json`\n\n"
            "`gapdiag plot --interventions interventions.json` (from `gapdiag intervene --out`)\n\n"
            "`gapdiag plot --report epoch1.json --report epoch5.json --label 'epoch 1' --label 'epoch 5'`"
        ),
    )(plot)
    app.command(
        "report",
        cls=Command,
        epilog=(
            "Examples:\n\n"
            "`gapdiag report --out report.html`\n\n"
            "`gapdiag report -d coco.json -m ViT-B-32 -p openai --report measured.json --shift shift.json`"
        ),
    )(report)
