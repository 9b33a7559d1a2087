"""``gapdiag plot`` (figure files) and ``gapdiag report`` (one self-contained HTML file).

Parsing and printing only: embeddings come from :func:`gapdiag.api.embed` (a cache hit after ``measure``
or ``embed``), measurements from :func:`gapdiag.api.measure`, figures from :mod:`gapdiag.plot`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from gapdiag.commands._common import (
    EmbeddingOptions,
    JsonOpt,
    QuietOpt,
    SeedOpt,
    console,
    embedding_options,
    err_console,
    print_json,
)

_FIGURES = "Figures"

KindOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--kind",
        "-k",
        help="Figures to draw: map, hist, spectrum, gap, shift, compare or all; repeat the option or give a comma list. "
        "Default: map,hist,spectrum (or shift/compare when only --shift/--report are given).",
        rich_help_panel=_FIGURES,
    ),
]
MethodOpt = Annotated[
    str,
    typer.Option(
        "--method",
        help="2-D projection of the map: umap (as in Liang et al.; first fit compiles for ~10 s) or pca.",
        rich_help_panel=_FIGURES,
    ),
]
ColorByOpt = Annotated[
    str,
    typer.Option(
        "--color-by",
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
        min=1,
        help="Resolution of PNG figures in dots per inch; default 150, the same for plot and report.",
        show_default=False,
        rich_help_panel=_FIGURES,
    ),
]
ShiftFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--shift",
        help="Shift result JSON written by `gapdiag shift --out` (for --kind shift).",
        rich_help_panel=_FIGURES,
    ),
]


def _status(quiet: bool) -> Any:
    """Progress messages on stderr (UMAP's first fit is slow), nothing when quiet."""
    if quiet:
        return None
    return lambda message: err_console.print(f"[dim]{message}[/]", highlight=False)


def _embeddings(needed: bool, options: dict[str, Any]) -> Any:
    """The embeddings of the shared data/model options (a cache hit after measure/embed), or None if unneeded."""
    from gapdiag import api

    return api.embed(**options) if needed else None


@embedding_options()
def plot(
    kind: KindOpt = None,
    method: MethodOpt = "umap",
    color_by: ColorByOpt = "modality",
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="File format: png, svg or pdf.", rich_help_panel=_FIGURES)
    ] = "png",
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Output directory (created if missing).", rich_help_panel=_FIGURES),
    ] = Path("gapdiag-plots"),
    dpi: DpiOpt = None,
    seed: SeedOpt = 0,
    max_pairs: MaxPairsOpt = 2000,
    shift: ShiftFileOpt = None,
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
            help="Label of each --report in the comparison (default: file names). Labels such as "
            "'epoch 3' or 'step_1000' draw lines over training instead of bars.",
            rich_help_panel=_FIGURES,
        ),
    ] = None,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
    *,
    embedding: EmbeddingOptions,
) -> None:
    """Draw figures of the embedding space into a directory: the modality-gap map, pair-similarity histograms,
    singular-value spectra, the embedding-shift landscape and report comparisons.

    Files are named `<kind>[-<method>].<format>` (map-umap.png, hist.png, spectrum.png, gap.png, shift.png,
    compare.png); the paths written are printed, one per line (or a JSON list with --json).
    """
    from gapdiag import plot as gplot
    from gapdiag.report import Report

    gplot.check_options(method=method, color_by=color_by, format=fmt)
    reports = [Report.load(p) for p in report or []]
    kinds = gplot.parse_kinds(kind, have_shift=shift is not None, have_reports=bool(reports))
    if reports and "compare" not in kinds:
        err_console.print("[yellow]note:[/] --report is only used by --kind compare", highlight=False)
    if label and len(label) != len(reports):
        from gapdiag.errors import InputError

        raise InputError(
            f"{len(label)} --label values for {len(reports)} --report files",
            hint="give one --label per --report",
        )
    shift_result = gplot.load_shift_result(shift) if shift is not None else None
    gplot.ensure_output_dir(out)  # fail before embedding, not after
    es = _embeddings(
        any(k in gplot.EMBEDDING_KINDS for k in kinds),
        embedding.api_kwargs(quiet=quiet or json_out),
    )
    figures = gplot.make_figures(
        kinds,
        embeddings=es,
        shift_result=shift_result,
        reports=reports,
        labels=label or [p.stem for p in report or []],
        method=method,
        color_by=color_by,
        max_pairs=max_pairs,
        seed=seed,
        status=_status(quiet or json_out),
    )
    paths = gplot.save_figures(figures, out, format=fmt, dpi=dpi or gplot.DEFAULT_DPI)
    if json_out:
        print_json([str(p) for p in paths])
        return
    for p in paths:
        console.print(str(p), highlight=False, soft_wrap=True)


@embedding_options()
def report(
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")] = Path("report.html"),
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
            "--sample", min=1, help="Use this many samples (seeded) for the quadratic metrics; default exact."
        ),
    ] = None,
    kind: KindOpt = None,
    method: MethodOpt = "umap",
    color_by: ColorByOpt = "modality",
    max_pairs: MaxPairsOpt = 2000,
    shift: ShiftFileOpt = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
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
            help="Add the interactive map (hover for caption / image path / class, toggles, pair lines on "
            "click) when the map is drawn; it inlines plotly.js (~4.8 MB) so the page still works offline.",
            rich_help_panel=_FIGURES,
        ),
    ] = True,
    seed: SeedOpt = 0,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
    *,
    embedding: EmbeddingOptions,
) -> None:
    """Write one self-contained HTML report: a summary in words, the metric table beside published reference
    values, every figure and an interactive map embedded, and the provenance (nothing fetched; opens offline).
    """
    from gapdiag import api
    from gapdiag import plot as gplot
    from gapdiag.errors import InputError
    from gapdiag.html_report import FIGURE_FORMATS, write_html
    from gapdiag.report import Report

    # --figure-format: the spelling before plot and report shared --format; the error names the one given.
    option, fmt = ("--figure-format", figure_format) if figure_format is not None else ("--format", fmt)
    if fmt not in FIGURE_FORMATS:
        raise InputError(f"unknown {option} {fmt!r}", hint=f"choose one of: {', '.join(FIGURE_FORMATS)}")
    gplot.check_options(method=method, color_by=color_by)
    if any("compare" in value for value in kind or []):
        raise InputError(
            "gapdiag report does not draw comparisons (its --report is the one measurement to show)",
            hint="use `gapdiag plot --kind compare --report A.json --report B.json`",
        )
    kinds = gplot.parse_kinds(kind or ["all"], have_shift=shift is not None)
    shift_result = gplot.load_shift_result(shift) if shift is not None else None
    measured = Report.load(from_report) if from_report is not None else None
    gplot.ensure_output_dir(out.parent)
    silent = quiet or json_out
    if measured is not None and (metrics or sample):
        err_console.print("[yellow]note:[/] --metrics/--sample are ignored with --report", highlight=False)
    needs_embeddings = measured is None or any(k in gplot.EMBEDDING_KINDS for k in kinds)
    es = _embeddings(
        needs_embeddings,
        embedding.api_kwargs(quiet=silent),
    )
    if measured is None:
        measured = api.measure(
            es,
            metrics=[m.strip() for m in metrics.split(",") if m.strip()] if metrics else None,
            sample=sample,
            seed=seed,
            device=embedding.device,
            progress=not silent,
        )
        # The split is part of the result (the provenance of `measure` leaves it out); bundled data: test.
        split = embedding.split or ("test" if embedding.data is None else None)
        if split:
            measured.provenance.setdefault("dataset", {}).setdefault("split", split)
    elif es is not None:
        _check_same_dataset(measured, es.provenance, from_report)
    figures = gplot.make_figures(
        kinds,
        embeddings=es,
        shift_result=shift_result,
        method=method,
        color_by=color_by,
        max_pairs=max_pairs,
        seed=seed,
        status=_status(silent),
    )
    interactive_html = None
    if interactive and "map" in kinds and es is not None:
        from gapdiag.interactive_map import build_interactive_map, interactive_map_html

        fig = build_interactive_map(
            es,
            method=method,
            max_pairs=max_pairs,
            seed=seed,
            labels=_hover_labels(embedding.api_kwargs(quiet=True), es),
            status=_status(silent),
        )
        interactive_html = interactive_map_html(fig)
    path = write_html(
        out,
        measured,
        figures,
        title=title,
        figure_format=fmt,
        dpi=dpi or gplot.DEFAULT_DPI,
        interactive=interactive_html,
    )
    if json_out:
        print_json(
            {
                "path": str(path),
                "figures": list(figures),
                "metrics": len(measured.metrics),
                "interactive": interactive_html is not None,
            }
        )
        return
    console.print(str(path), highlight=False, soft_wrap=True)


def _hover_labels(options: dict[str, Any], es: Any) -> dict[str, list[str]] | None:
    """Captions and image paths for the interactive map's hover text, read from the dataset itself (the
    cache holds vectors only). None when the data cannot be read as a dataset (``--data`` names a cache
    entry): the map then shows modality, sample and class only."""
    from gapdiag import api
    from gapdiag.errors import GapdiagError
    from gapdiag.interactive_map import item_labels

    embed_only = ("model", "pretrained", "device", "precision", "batch_size", "workers", "cache_dir", "dtype",
                  "progress")
    try:
        return item_labels(api.load_data(**{k: v for k, v in options.items() if k not in embed_only}), es)
    except GapdiagError:
        return None


def _check_same_dataset(report: Any, provenance: dict[str, Any], source: Path) -> None:
    """Refuse figures of one dataset next to the metrics of another (compared by dataset fingerprint)."""
    from gapdiag.errors import ProvenanceError

    measured = (report.provenance.get("dataset") or {}).get("fingerprint")
    embedded = (provenance.get("dataset") or {}).get("fingerprint")
    if measured and embedded and measured != embedded:
        raise ProvenanceError(
            f"{source} was measured on another dataset than --data gives (fingerprint "
            f"{str(measured)[:12]} vs {str(embedded)[:12]})",
            hint="pass the --data/--split the report was measured on",
        )


def register(app: typer.Typer) -> None:
    """Add ``plot`` and ``report`` to the gapdiag app."""
    app.command(
        "plot",
        epilog=(
            "Examples:\n\n"
            "`gapdiag plot` (bundled tiny CLIP on digits: map-umap.png, hist.png, spectrum.png in ./gapdiag-plots)\n\n"
            "`gapdiag plot -d captions.csv -m ViT-B-32 -p openai --kind map --method pca --format svg`\n\n"
            "`gapdiag plot --shift shift.json`\n\n"
            "`gapdiag plot --report epoch1.json --report epoch5.json --label 'epoch 1' --label 'epoch 5'`"
        ),
    )(plot)
    app.command(
        "report",
        epilog=(
            "Examples:\n\n"
            "`gapdiag report --out report.html`\n\n"
            "`gapdiag report -d coco.json -m ViT-B-32 -p openai --report measured.json --shift shift.json`"
        ),
    )(report)
