"""What ``gapdiag plot`` and ``gapdiag report`` do, as library calls behind :func:`gapdiag.api.plot` and
:func:`gapdiag.api.report`: check the options, get the embeddings and the measurement, draw, write.

This module imports matplotlib (through :mod:`gapdiag.figures`): the api imports it only when a figure is drawn.
Nothing here prints: progress goes through the ``status`` callback, remarks for the user come back in ``notes``.
The api hands in its own ``embed``/``measure``/``load_data`` so that one code path serves the CLI and notebooks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gapdiag import figures as gplot
from gapdiag.errors import GapdiagError, InputError, ProvenanceError
from gapdiag.figures.interactive_map import build_interactive_map, interactive_map_html, item_labels
from gapdiag.metrics.sampling import check_sample_size
from gapdiag.options import EMBED_DEFAULTS, MODEL_OPTIONS, READER_OPTIONS, refuse_options, set_options
from gapdiag.outputs import check_outputs
from gapdiag.report import Report
from gapdiag.report.html import FIGURE_FORMATS, write_html

Status = Callable[[str], None] | None

#: The finest resolution figures are drawn at: print quality is 300-600 dpi, and 100,000 dpi asked the renderer
#: for gigabytes (a MemoryError from Agg, not one line).
MAX_DPI = 1200
#: The most pixels one figure may have (about 400 MB as RGBA), and per side Agg's own limit (< 2**16).
MAX_PIXELS = 100_000_000
MAX_SIDE = 2**16 - 1


#: The figures each figure option is drawn into: an option that none of the drawn figures uses is refused.
FIGURE_OPTION_KINDS: dict[str, tuple[str, ...]] = {
    "method": ("map",), "color_by": ("map",), "max_pairs": ("map", "gap"), "seed": ("map", "hist", "gap"),
    "reports": ("compare",), "labels": ("compare",), "shift": ("shift",),
}
#: The defaults of those options in :func:`plot_figures` and :func:`write_report_page` (a default is not "given").
FIGURE_DEFAULTS: dict[str, Any] = {"method": "umap", "color_by": "modality", "max_pairs": 2000, "seed": 0}


def refuse_unused_figure_options(kinds: Sequence[str], options: dict[str, Any], embed_options: dict[str, Any]) -> None:
    """Refuse a figure option that none of ``kinds`` uses (``--method`` without a map, ``--report`` without
    ``--kind compare``), and the data and model options when no figure is drawn from embeddings.

    Raises:
        InputError: Naming the options and the figures drawn.
    """
    unused = [name for name, used_by in FIGURE_OPTION_KINDS.items() if name in options and not set(used_by) & set(kinds)]
    names = set_options(options, unused, FIGURE_DEFAULTS)
    if not any(k in gplot.EMBEDDING_KINDS for k in kinds):
        names += set_options(embed_options, ("data", *MODEL_OPTIONS, *READER_OPTIONS, "device"), EMBED_DEFAULTS)
    refuse_options(names, f"the figures drawn ({', '.join(kinds)})",
                   "no figure drawn uses them (--kind picks the figures)")


def check_dpi(dpi: int | None) -> int:
    """``dpi`` (``None`` = :data:`gapdiag.figures.DEFAULT_DPI`) if it is a whole number in ``1..MAX_DPI``.

    Raises:
        InputError: Naming ``--dpi`` and the range.
    """
    if dpi is None:
        return gplot.DEFAULT_DPI
    if isinstance(dpi, bool) or not isinstance(dpi, int) or not 1 <= dpi <= MAX_DPI:
        raise InputError(f"--dpi {dpi!r} is outside 1..{MAX_DPI}",
                         hint=f"pass --dpi from 1 to {MAX_DPI} (default {gplot.DEFAULT_DPI}; 300-600 for print)")
    return dpi


def check_pixels(figures: dict[str, Any], dpi: int) -> None:
    """Refuse before rendering a figure that would be too large at ``dpi`` (a wide comparison or many pairs).

    Raises:
        InputError: Naming the figure, its size in pixels and the largest ``--dpi`` that fits.
    """
    for name, fig in figures.items():
        width, height = fig.get_size_inches()
        w, h = width * dpi, height * dpi
        if w * h > MAX_PIXELS or max(w, h) > MAX_SIDE:
            fits = int(min((MAX_PIXELS / (width * height)) ** 0.5, MAX_SIDE / max(width, height)))
            raise InputError(f"the {name} figure would be {w:.0f} x {h:.0f} pixels at --dpi {dpi} (at most "
                             f"{MAX_PIXELS:,} pixels and {MAX_SIDE} per side)", hint=f"pass --dpi {fits} or less")


@dataclass
class PlotResult:
    """The figure files written by :func:`gapdiag.api.plot`, and remarks for the user."""

    paths: list[Path]
    notes: list[str] = field(default_factory=list)


@dataclass
class ReportPage:
    """The HTML file written by :func:`gapdiag.api.report`: figures in it, metric count, remarks."""

    path: Path
    figures: list[str]
    metrics: int
    interactive: bool
    notes: list[str] = field(default_factory=list)


def plot_figures(
    embed: Callable[..., Any],
    kinds: Sequence[str] | None,
    *,
    out: Path,
    reports: Sequence[str | Path] = (),
    labels: Sequence[str] | None = None,
    shift: str | Path | None = None,
    method: str = "umap",
    color_by: str = "modality",
    format: str = "png",
    dpi: int | None = None,
    max_pairs: int = 2000,
    seed: int = 0,
    status: Status = None,
    **embed_options: Any,
) -> PlotResult:
    """Draw ``kinds`` into ``out`` (see :func:`gapdiag.api.plot`)."""
    dpi = check_dpi(dpi)
    gplot.check_options(method=method, color_by=color_by, format=format)
    kinds = gplot.parse_kinds(list(kinds) if kinds else None, have_shift=shift is not None, have_reports=bool(reports))
    refuse_unused_figure_options(kinds, {"method": method, "color_by": color_by, "max_pairs": max_pairs,
                                         "seed": seed, "reports": reports, "labels": labels, "shift": shift},
                                 embed_options)
    loaded = [Report.load(p) for p in reports]
    notes: list[str] = []
    if labels and len(labels) != len(loaded):
        raise InputError(f"{len(labels)} --label values for {len(loaded)} --report files",
                         hint="give one --label per --report")
    # Each figure file against what this command reads (a --shift saved as figs/shift.png): before any work.
    check_outputs({}, {"--report": list(reports), "--shift": shift, "--data": embed_options.get("data"),
                       "--model": embed_options.get("model"), "--pretrained": embed_options.get("pretrained")},
                  folders={"--out": (out, [f"{gplot.figure_stem(k, method)}.{format}" for k in kinds])})
    shift_result = gplot.load_shift_result(shift) if shift is not None else None
    gplot.ensure_output_dir(out)  # fail before embedding, not after
    es = embed(**embed_options) if any(k in gplot.EMBEDDING_KINDS for k in kinds) else None
    figures = gplot.make_figures(kinds, embeddings=es, shift_result=shift_result, reports=loaded,
                                 labels=list(labels or [Path(p).stem for p in reports]), method=method,
                                 color_by=color_by, max_pairs=max_pairs, seed=seed, status=status)
    check_pixels(figures, dpi)
    return PlotResult(gplot.save_figures(figures, out, format=format, dpi=dpi), notes)


def write_report_page(
    embed: Callable[..., Any],
    measure: Callable[..., Report],
    load_data: Callable[..., Any],
    out: Path,
    *,
    from_report: str | Path | None = None,
    metrics: Sequence[str] | None = None,
    sample: int | None = None,
    kinds: Sequence[str] | None = None,
    method: str = "umap",
    color_by: str = "modality",
    max_pairs: int = 2000,
    shift: str | Path | None = None,
    format: str = "png",
    format_option: str = "--format",
    dpi: int | None = None,
    title: str | None = None,
    interactive: bool = True,
    seed: int = 0,
    status: Status = None,
    **embed_options: Any,
) -> ReportPage:
    """Measure (or reuse ``from_report``), draw and write one self-contained HTML page (see :func:`gapdiag.api.report`).

    Long for a reason: it is the one sequence of the report (options, embeddings, measurement, figures, map,
    page), each step a call; cutting it would only scatter that order over helpers.
    """
    # --figure-format: the spelling before plot and report shared --format; the error names the one given.
    if format not in FIGURE_FORMATS:
        raise InputError(f"unknown {format_option} {format!r}", hint=f"choose one of: {', '.join(FIGURE_FORMATS)}")
    dpi = check_dpi(dpi)
    gplot.check_options(method=method, color_by=color_by)
    if any("compare" in value for value in kinds or []):
        raise InputError("gapdiag report does not draw comparisons (its --report is the one measurement to show)",
                         hint="use `gapdiag plot --kind compare --report A.json --report B.json`")
    kinds = gplot.parse_kinds(list(kinds or ["all"]), have_shift=shift is not None)
    # Measuring now uses the seed whatever the figures; a reused measurement has no use for --metrics/--sample.
    figure_options = {"method": method, "color_by": color_by, "max_pairs": max_pairs, "shift": shift,
                      **({"seed": seed} if from_report is not None else {})}
    refuse_unused_figure_options(kinds, figure_options, embed_options)
    if from_report is not None:
        refuse_options(set_options({"metrics": metrics, "sample": sample}, ("metrics", "sample"), {}),
                       f"a reused measurement (--report {from_report})", "the page shows that report's metrics")
    shift_result = gplot.load_shift_result(shift) if shift is not None else None
    measured = Report.load(from_report) if from_report is not None else None
    if measured is None:
        check_sample_size(sample)  # before embedding, as measure itself does
    gplot.ensure_output_dir(Path(out).parent)
    notes: list[str] = []
    needs_embeddings = measured is None or any(k in gplot.EMBEDDING_KINDS for k in kinds)
    es = embed(**embed_options) if needs_embeddings else None
    if measured is None:
        measured = measure(es, metrics=metrics, sample=sample, seed=seed,
                           device=embed_options.get("device", "auto"), progress=embed_options.get("progress", True))
        # The split is part of the result (the provenance of `measure` leaves it out); bundled data: test.
        split = embed_options.get("split") or ("test" if embed_options.get("data") is None else None)
        if split:
            measured.provenance.setdefault("dataset", {}).setdefault("split", split)
    elif es is not None:
        _check_same_dataset(measured, es.provenance, Path(from_report or ""))
        _check_same_model(measured, es.provenance, Path(from_report or ""))
    figures = gplot.make_figures(kinds, embeddings=es, shift_result=shift_result, method=method, color_by=color_by,
                                 max_pairs=max_pairs, seed=seed, status=status)
    interactive_html = None
    if interactive and "map" in kinds and es is not None:
        fig = build_interactive_map(es, method=method, max_pairs=max_pairs, seed=seed,
                                    labels=_hover_labels(load_data, embed_options, es), status=status)
        interactive_html = interactive_map_html(fig)
    if format == "png":
        check_pixels(figures, dpi)
    path = write_html(out, measured, figures, title=title, figure_format=format, dpi=dpi,
                      interactive=interactive_html)
    return ReportPage(path, list(figures), len(measured.metrics), interactive_html is not None, notes)


def _hover_labels(load_data: Callable[..., Any], options: dict[str, Any], es: Any) -> dict[str, list[str]] | None:
    """Captions and image paths for the interactive map's hover text, read from the dataset itself (the
    cache holds vectors only). None when the data cannot be read as a dataset (``--data`` names a cache
    entry): the map then shows modality, sample and class only."""
    embed_only = ("model", "pretrained", "device", "precision", "batch_size", "workers", "dtype",
                  "progress", "preprocess", "random_init")
    try:
        # cache_dir stays: load_data memoises the data's fingerprint under it (--cache-dir).
        return item_labels(load_data(**{k: v for k, v in options.items() if k not in embed_only}), es)
    except GapdiagError:
        return None


#: What tells two models apart in a provenance: a field both record and that differs means another model.
MODEL_IDENTITY = ("architecture", "pretrained", "checkpoint_sha256", "random_init")


def _check_same_model(report: Report, provenance: dict[str, Any], source: Path) -> None:
    """Refuse figures of one model next to the metrics of another (architecture, tag, checkpoint bytes)."""
    measured = report.provenance.get("model") or {}
    embedded = provenance.get("model") or {}
    differ = [key for key in MODEL_IDENTITY if key in measured and key in embedded and measured[key] != embedded[key]]
    if differ:
        raise ProvenanceError(
            f"{source} was measured with another model than --model gives ({measured.get('name')} vs "
            f"{embedded.get('name')}: {', '.join(differ)} differ)",
            hint="pass the -m/--model (and --pretrained) the report was measured with",
        )


def _check_same_dataset(report: Report, provenance: dict[str, Any], source: Path) -> None:
    """Refuse figures of one dataset next to the metrics of another (compared by dataset fingerprint)."""
    measured = (report.provenance.get("dataset") or {}).get("fingerprint")
    embedded = (provenance.get("dataset") or {}).get("fingerprint")
    if measured and embedded and measured != embedded:
        raise ProvenanceError(
            f"{source} was measured on another dataset than --data gives (fingerprint "
            f"{str(measured)[:12]} vs {str(embedded)[:12]})",
            hint="pass the --data/--split the report was measured on",
        )
