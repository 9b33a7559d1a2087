"""The verbs that draw: :func:`plot` (figure files) and :func:`report` (one self-contained HTML page).

Each checks its options, gets the embeddings and the measurement (through :mod:`gapdiag.api.embedding` and
:mod:`gapdiag.api.measuring`, with its settings and device resolved once), then hands the data to the figures
and the page. The figures load matplotlib and the page Plotly: both are imported inside the verbs, so that a
cache hit of ``measure`` never loads them. Nothing here prints: progress goes through the ``status`` callback,
remarks for the user come back in ``notes``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gapdiag import device as devices
from gapdiag import settings
from gapdiag.api.embedding import read_dataset, vectors_of
from gapdiag.api.measuring import inputs_of, measure_source
from gapdiag.api.options import (
    EMBED_DEFAULTS,
    MODEL_OPTIONS,
    READER_OPTIONS,
    EmbedOptions,
    check_seed,
    refuse_options,
    set_options,
)
from gapdiag.data.base import PairedDataset
from gapdiag.errors import (
    INTERACTIVE_MAP,
    GapdiagError,
    InputError,
    MissingExtraError,
    ProvenanceError,
    require,
)
from gapdiag.metrics.sampling import check_sample_size
from gapdiag.outputs import check_outputs, ensure_output_dir, output_folder
from gapdiag.report import Report
from gapdiag.report.track import Track
from gapdiag.settings import Settings
from gapdiag.vectors import EmbeddingSet

Status = Callable[[str], None] | None

#: The figures each figure option is drawn into: an option that none of the drawn figures uses is refused.
FIGURE_OPTION_KINDS: dict[str, tuple[str, ...]] = {
    "method": ("map",), "color_by": ("map",), "max_pairs": ("map", "gap"), "seed": ("map", "hist", "gap"),
    "reports": ("compare",), "labels": ("compare", "track"), "shift": ("shift",), "interventions": ("interventions",),
    "track": ("track",), "track_metrics": ("track",),
}
#: The defaults of those options in :func:`plot` and :func:`report` (a default is not "given").
FIGURE_DEFAULTS: dict[str, Any] = {"method": "umap", "color_by": "modality", "max_pairs": 2000, "seed": 0}


@dataclass
class PlotResult:
    """The figure files written by :func:`plot`, and remarks for the user."""

    paths: list[Path]
    notes: list[str] = field(default_factory=list)


@dataclass
class ReportPage:
    """The HTML file written by :func:`report`: figures in it, metric count, remarks."""

    path: Path
    figures: list[str]
    metrics: int
    interactive: bool
    notes: list[str] = field(default_factory=list)


def refuse_unused_figure_options(kinds: Sequence[str], figure_options: dict[str, Any], options: dict[str, Any], *,
                                 from_embeddings: bool) -> None:
    """Refuse a figure option that none of ``kinds`` uses (``--method`` without a map, ``--report`` without
    ``--kind compare``), and the data and model options when no figure is drawn from embeddings
    (``from_embeddings`` false).

    Raises:
        InputError: Naming the options and the figures drawn.
    """
    unused = [name for name, used_by in FIGURE_OPTION_KINDS.items()
              if name in figure_options and not set(used_by) & set(kinds)]
    names = set_options(figure_options, unused, FIGURE_DEFAULTS)
    if not from_embeddings:
        names += set_options(options, ("data", *MODEL_OPTIONS, *READER_OPTIONS, "device"), EMBED_DEFAULTS)
    refuse_options(names, f"the figures drawn ({', '.join(kinds)})",
                   "no figure drawn uses them (--kind picks the figures)")


# Over 80 lines only by its 37 options and their documentation; the code is about 40 lines.
def plot(
    kinds: Sequence[str] | None = None,
    *,
    out: str | Path = "gapdiag-plots",
    reports: Sequence[str | Path] = (),
    labels: Sequence[str] | None = None,
    shift: str | Path | None = None,
    interventions: str | Path | None = None,
    track: str | Path | Sequence[str | Path] | None = None,
    track_metrics: Sequence[str] | None = None,
    method: str = "umap",
    color_by: str = "modality",
    format: str = "png",
    dpi: int | None = None,
    max_pairs: int = 2000,
    seed: int = 0,
    status: Status = None,
    data: str | Path | PairedDataset | EmbeddingSet | None = None,
    model: str | Path | None = None,
    pretrained: str | None = None,
    random_init: bool = False,
    split: str | None = None,
    data_format: str | None = None,
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
) -> PlotResult:
    """Draw figures of the embedding space into ``out`` (what ``gapdiag plot`` does).

    Args:
        kinds: map, hist, spectrum, gap, shift, interventions, compare or all (comma lists allowed); ``None`` = the
            default set.
        out: Output directory (created if missing).
        reports, labels: Report JSON files (and their labels) for ``compare``.
        shift: A shift result JSON (``gapdiag shift --out``) for ``shift``.
        interventions: An intervention result JSON (``gapdiag intervene --out``) for ``interventions``.
        track, track_metrics: Track records (``gapdiag track --out``; several are drawn side by side, named by
            ``labels`` or their file names) and the metrics drawn against step (base or full names; ``None``: the
            gap, Cos_TP, angular value, uniformity, effective rank, R@1) for ``track``.
        method, color_by, max_pairs, seed: The map (``umap``/``pca``; ``modality``/``class``), the pairs drawn
            and the seed of the draw and of UMAP.
        format, dpi: File format (png, svg, pdf) and PNG resolution.
        status: Called with a message before slow steps (UMAP's first fit).
        data, model, pretrained, ..., progress: As for :func:`gapdiag.api.embed`, for the figures drawn from
            embeddings; ``data_format`` is its ``format`` (the reader's name): ``format`` here is the figures'.

    Returns:
        A :class:`PlotResult`: the paths written, in order, and remarks for the user.
    """
    # gapdiag.figures imports matplotlib: only when a figure is drawn, never on a cache hit of measure.
    from gapdiag import figures

    options = EmbedOptions(
        pretrained=pretrained, random_init=random_init, split=split, format=data_format, image_column=image_column,
        text_columns=text_columns, label_column=label_column, class_name_column=class_name_column,
        attribute_columns=attribute_columns, templates=templates, image_root=image_root, skip_bad=skip_bad,
        device=device, precision=precision, preprocess=preprocess, batch_size=batch_size, workers=workers,
        dtype=dtype, chunk_size=chunk_size, cache_dir=cache_dir, progress=progress)
    check_seed(seed)
    folder = output_folder(out, "--out")
    dpi = figures.check_dpi(dpi)
    figures.check_options(method=method, color_by=color_by, format=format)
    tracks = [] if track is None else [track] if isinstance(track, (str, Path)) else list(track)
    kinds = figures.parse_kinds(list(kinds) if kinds else None, have_shift=shift is not None,
                                have_reports=bool(reports), have_interventions=interventions is not None,
                                have_track=bool(tracks))
    from_embeddings = any(k in figures.EMBEDDING_KINDS for k in kinds)
    refuse_unused_figure_options(kinds, {"method": method, "color_by": color_by, "max_pairs": max_pairs,
                                         "seed": seed, "reports": reports, "labels": labels, "shift": shift,
                                         "interventions": interventions, "track": tracks,
                                         "track_metrics": track_metrics},
                                 {"data": data, "model": model, **options.given()}, from_embeddings=from_embeddings)
    loaded = [Report.load(p) for p in reports]
    if labels and len(labels) != len(loaded) and not (tracks and not reports):
        raise InputError(f"{len(labels)} --label values for {len(loaded)} --report files",
                         hint="give one --label per --report")
    # Each figure file against what this command reads (a --shift saved as figs/shift.png): before any work.
    check_outputs({}, {"--report": list(reports), "--shift": shift, "--interventions": interventions,
                       "--track": tracks, **inputs_of(data, model, options)},
                  folders={"--out": (out, [f"{figures.figure_stem(k, method)}.{format}" for k in kinds])})
    shift_result = figures.load_shift_result(shift) if shift is not None else None
    interventions_result = figures.load_interventions_result(interventions) if interventions is not None else None
    series, track_labels = load_tracks(tracks, labels if not reports else None, track_metrics)
    ensure_output_dir(folder)  # fail before embedding, not after
    es = None
    if from_embeddings:
        es = vectors_of(data, model, options, settings.resolve(cache_dir), devices.resolve(device))
    drawn = figures.make_figures(kinds, embeddings=es, shift_result=shift_result,
                                 interventions_result=interventions_result, reports=loaded,
                                 labels=list(labels or [Path(p).stem for p in reports]), track=series or None,
                                 track_metrics=track_metrics, track_labels=track_labels, method=method,
                                 color_by=color_by, max_pairs=max_pairs, seed=seed, status=status)
    figures.check_pixels(drawn, dpi)
    return PlotResult(figures.save_figures(drawn, folder, format=format, dpi=dpi))


def load_tracks(tracks: Sequence[str | Path], labels: Sequence[str] | None,
                metrics: Sequence[str] | None) -> tuple[list[Track], list[str]]:
    """The track records to draw and their names (``labels``, default the file names), checked before any
    drawing: one label per record, and ``metrics`` that the first record has.

    Raises:
        InputError: A record that cannot be read, a label count that differs, or an unknown metric.
    """
    from gapdiag.figures import chosen_metrics  # matplotlib, as the figures themselves

    series = [Track.load(t) for t in tracks]
    names = list(labels) if labels else [Path(t).stem for t in tracks]
    if series:
        chosen_metrics(series[0], metrics)
        if len(names) != len(series):
            raise InputError(f"{len(names)} --label values for {len(series)} --track files",
                             hint="give one --label per --track")
    return series, names


# Over 80 lines only by its 40 options and their documentation; the code is about 65 lines.
def report(
    out: str | Path = "report.html",
    *,
    from_report: str | Path | None = None,
    metrics: Sequence[str] | None = None,
    sample: int | None = None,
    kinds: Sequence[str] | None = None,
    method: str = "umap",
    color_by: str = "modality",
    max_pairs: int = 2000,
    shift: str | Path | None = None,
    interventions: str | Path | None = None,
    track: str | Path | None = None,
    format: str = "png",
    format_option: str = "--format",
    dpi: int | None = None,
    title: str | None = None,
    interactive: bool = True,
    seed: int = 0,
    status: Status = None,
    data: str | Path | PairedDataset | EmbeddingSet | None = None,
    model: str | Path | None = None,
    pretrained: str | None = None,
    random_init: bool = False,
    split: str | None = None,
    data_format: str | None = None,
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
) -> ReportPage:
    """Write one self-contained HTML report (what ``gapdiag report`` does): measure (or reuse ``from_report``),
    draw, and write the page.

    Args:
        out: The HTML file.
        from_report: Reuse this measurement (``gapdiag measure --out``) instead of measuring again.
        metrics, sample: What to measure (as for :func:`gapdiag.api.measure`).
        kinds, method, color_by, max_pairs, shift, interventions, dpi, seed, status: The figures (as for
            :func:`plot`).
        track: A track record (``gapdiag track --out``) of the same dataset: the page gets a section "Over
            training" (the default metrics against step, figure and table).
        format: Figure format inside the page, png or svg; ``format_option`` is the option's name in messages.
        title: Page title (default: model and dataset).
        interactive: Add the interactive map (Plotly) when the map is drawn. Without plotly (the
            ``interactive`` extra) the page has every other section and says in the map's place how to add
            it; so do the result's ``notes``.
        data, model, pretrained, ..., progress: As for :func:`gapdiag.api.embed` (``data_format`` is its
            ``format``: ``format`` here is the figures').

    Returns:
        A :class:`ReportPage`: path, figures, number of metrics, whether the interactive map is in.
    """
    from gapdiag import figures  # matplotlib, as in plot()
    from gapdiag.report.html import FIGURE_FORMATS, write_html

    options = EmbedOptions(
        pretrained=pretrained, random_init=random_init, split=split, format=data_format, image_column=image_column,
        text_columns=text_columns, label_column=label_column, class_name_column=class_name_column,
        attribute_columns=attribute_columns, templates=templates, image_root=image_root, skip_bad=skip_bad,
        device=device, precision=precision, preprocess=preprocess, batch_size=batch_size, workers=workers,
        dtype=dtype, chunk_size=chunk_size, cache_dir=cache_dir, progress=progress)
    check_seed(seed)
    check_outputs({"--out": out}, {"--report": from_report, "--shift": shift, "--interventions": interventions,
                                   "--track": track,
                                   **inputs_of(data, model, options)})
    # --figure-format: the spelling before plot and report shared --format; the error names the one given.
    if format not in FIGURE_FORMATS:
        raise InputError(f"unknown {format_option} {format!r}", hint=f"choose one of: {', '.join(FIGURE_FORMATS)}")
    dpi = figures.check_dpi(dpi)
    figures.check_options(method=method, color_by=color_by)
    if any("compare" in value for value in kinds or []):
        raise InputError("gapdiag report does not draw comparisons (its --report is the one measurement to show)",
                         hint="use `gapdiag plot --kind compare --report A.json --report B.json`")
    kinds = figures.parse_kinds(list(kinds or ["all"]), have_shift=shift is not None,
                                have_interventions=interventions is not None, have_track=track is not None)
    if track is not None and "track" not in kinds:
        kinds.append("track")  # the page's section "Over training" whatever figures --kind picks
    # Measuring now uses the seed whatever the figures; a reused measurement has no use for --metrics/--sample.
    figure_options = {"method": method, "color_by": color_by, "max_pairs": max_pairs, "shift": shift,
                      "interventions": interventions,
                      **({"seed": seed} if from_report is not None else {})}
    from_embeddings = any(k in figures.EMBEDDING_KINDS for k in kinds)
    refuse_unused_figure_options(kinds, figure_options, {"data": data, "model": model, **options.given()},
                                 from_embeddings=from_embeddings)
    if from_report is not None:
        refuse_options(set_options({"metrics": metrics, "sample": sample}, ("metrics", "sample"), {}),
                       f"a reused measurement (--report {from_report})", "the page shows that report's metrics")
    shift_result = figures.load_shift_result(shift) if shift is not None else None
    interventions_result = figures.load_interventions_result(interventions) if interventions is not None else None
    series = Track.load(track) if track is not None else None
    measured = Report.load(from_report) if from_report is not None else None
    if measured is None:
        check_sample_size(sample)  # before embedding, as measure itself does
    ensure_output_dir(Path(out).parent)
    at, resolved = settings.resolve(cache_dir), devices.resolve(device)
    es = None
    if measured is None or from_embeddings:
        es = vectors_of(data, model, options, at, resolved)
    if measured is None:
        measured = measure_source(es, None, EmbedOptions(progress=progress), at, resolved, metrics=metrics,
                                  sample=sample, seed=seed)
        # The split is part of the result (the provenance of `measure` leaves it out); bundled data: test.
        measured_split = split or ("test" if data is None else None)
        if measured_split:
            measured.provenance.setdefault("dataset", {}).setdefault("split", measured_split)
    elif es is not None:
        check_same_dataset(measured, es.provenance, Path(from_report or ""))
        check_same_model(measured, es.provenance, Path(from_report or ""))
    if series is not None:
        check_same_dataset(series.points[0].report, measured.provenance, Path(track or ""))
    drawn = figures.make_figures(kinds, embeddings=es, shift_result=shift_result,
                                 interventions_result=interventions_result, track=series, method=method,
                                 color_by=color_by, max_pairs=max_pairs, seed=seed, status=status)
    interactive_html, missing = None, None
    if interactive and "map" in kinds and es is not None:
        try:
            require("plotly.graph_objects", INTERACTIVE_MAP)  # before the hover labels are read for nothing
            fig = figures.build_interactive_map(es, method=method, max_pairs=max_pairs, seed=seed,
                                                labels=hover_labels(data, options, at, es), status=status)
            interactive_html = figures.interactive_map_html(fig)
        except MissingExtraError as e:  # plotly is an extra: the rest of the page is still worth having
            missing = e.one_line()
    if format == "png":
        figures.check_pixels(drawn, dpi)
    path = write_html(out, measured, drawn, title=title, figure_format=format, dpi=dpi, interactive=interactive_html,
                      interactive_missing=missing, track=series)
    notes = [f"the page has no interactive map: {missing}"] if missing else []
    return ReportPage(path, list(drawn), len(measured.metrics), interactive_html is not None, notes)


def hover_labels(data: Any, options: EmbedOptions, at: Settings, es: EmbeddingSet) -> dict[str, list[str]] | None:
    """Captions and image paths for the interactive map's hover text, read from the dataset itself (the cache
    holds vectors only). None when the data cannot be read as a dataset (``data`` names a cache entry or holds
    vectors): the map then shows modality, sample and class only."""
    from gapdiag.figures import item_labels  # matplotlib, as the map itself

    if isinstance(data, EmbeddingSet):
        return None
    try:
        # The fingerprint memo stays under the settings' cache root (--cache-dir).
        return item_labels(read_dataset(data, options, at), es)
    except GapdiagError:
        return None


#: What tells two models apart in a provenance: a field both record and that differs means another model.
MODEL_IDENTITY = ("architecture", "pretrained", "checkpoint_sha256", "random_init")


def check_same_model(report: Report, provenance: dict[str, Any], source: Path) -> None:
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


def check_same_dataset(report: Report, provenance: dict[str, Any], source: Path) -> None:
    """Refuse figures of one dataset next to the metrics of another (compared by dataset fingerprint)."""
    measured = (report.provenance.get("dataset") or {}).get("fingerprint")
    embedded = (provenance.get("dataset") or {}).get("fingerprint")
    if measured and embedded and measured != embedded:
        raise ProvenanceError(
            f"{source} was measured on another dataset than --data gives (fingerprint "
            f"{str(measured)[:12]} vs {str(embedded)[:12]})",
            hint="pass the --data/--split the report was measured on",
        )
