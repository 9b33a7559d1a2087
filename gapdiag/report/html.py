"""One self-contained HTML file per measurement: provenance, metric table and every figure.

The file references nothing outside itself (no URL, stylesheet, script or font to fetch): figures are
embedded as base64 PNG ``<img>`` tags (default) or inline SVG, and the style sheet is inline. It opens
offline, can be attached to a CI run or an e-mail, and renders the same everywhere.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from gapdiag.errors import InputError
from gapdiag.fsutil import atomic_write_text
from gapdiag.metrics import REGISTRY
from gapdiag.outputs import ensure_output_dir, write_error
from gapdiag.report.diagnostics import diagnostics_section
from gapdiag.report.presentation import (
    DEFAULT_DPI,
    describe_provenance,
    direction_text,
    format_interval,
    format_number,
    group_by_family,
    summarize,
)
from gapdiag.report.record import Report, split_metric_name
from gapdiag.report.references import ReferencePoint, references_for
from gapdiag.report.track import Track

FIGURE_FORMATS = ("png", "svg")

#: What to look for in each figure, shown under it (keys are figure kinds; see gapdiag.figures.KINDS).
CAPTIONS: dict[str, str] = {
    "map": "All modalities projected together; a grey line joins each true pair. Two separate clouds joined by "
    "long parallel lines are the modality gap (Liang et al. 2022, Fig. 1).",
    "hist": "Cosine similarity of true pairs against random non-matching pairs. Bars: samples of pairs (the "
    "legend says how many of how many); dashed lines: the means over every pair, cos_tp and cos_nonmatching "
    "in the table. The further apart the two histograms, the better the alignment.",
    "spectrum": "Singular values of the normalised embeddings (log scale); dashed lines mark the effective rank "
    "(Roy & Vetterli 2007). A fast drop-off means a collapsed, low-rank space.",
    "shift": "Shifting the modalities along the gap (λ = 0: the trained space). Where the loss is minimal at "
    "λ ≈ 0 the gap is what the contrastive loss prefers at that temperature (Liang et al. 2022, Sec. 4.2).",
    "interventions": "Post-hoc interventions fitted on one part of the items, measured on the held-out rest: each "
    "panel is one metric, the dashed line its value before, a bar per method its value after (labelled with the "
    "change). A method that closes the centroid gap but not the shape gap moves the first panel only.",
    "gap": "The joint set on the gap direction Δ̂ (x) and the residual's first principal direction (y), with each "
    "modality's histogram of the Δ̂ projection on top: separate histograms are the gap. Bars: the dimensions that "
    "carry ‖Δ‖².",
    "compare": "Metric values of several reports side by side (lines when the labels are training steps).",
    "track": "Metrics against the training step of each checkpoint (gapdiag track): a marker at every checkpoint "
    "measured, nothing interpolated between them.",
}

#: Shown above the interactive map.
INTERACTIVE_HELP = (
    "Hover over a point for its caption, image path and class. Click a legend title to hide a modality, a "
    "legend entry to hide one class of it; the menu shows one class in every modality. Click a point to draw "
    "the lines to the other items of its sample (its true pairs). The static map above is the one for papers."
)

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 2rem auto;
       max-width: 1100px; padding: 0 1rem; color: #1a1a1a; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
.meta { color: #555; font-size: .9rem; }
table { border-collapse: collapse; font-size: .9rem; margin: .5rem 0; }
th, td { border: 1px solid #ddd; padding: .25rem .6rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.base-start td { border-top: 2px solid #bbb; } tr.family-start td { border-top: 3px solid #888; }
td.family { font-weight: 600; color: #555; } td.ref { font-size: .85rem; color: #333; }
.summary { background: #f6f8fa; border-left: 4px solid #0072B2; padding: .4rem 1rem; margin: 1rem 0; }
.summary p { margin: .35rem 0; }
table.references { width: 100%; font-size: .85rem; } table.references td.long { overflow-wrap: anywhere; }
table.references td { white-space: normal; } table.references td.nowrap { white-space: nowrap; }
figure { margin: 1.5rem 0; } figure img, figure svg { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #444; font-size: .9rem; margin-top: .3rem; }
"""


def figure_to_png_base64(fig: Figure, *, dpi: int = DEFAULT_DPI) -> str:
    """The figure as a base64-encoded PNG (for a ``data:image/png;base64,...`` URI)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def figure_to_inline_svg(fig: Figure) -> str:
    """The figure as an ``<svg>`` element for inline HTML, without anything that names an external URL.

    Matplotlib's SVG starts with an XML prolog, a DOCTYPE pointing at w3.org, RDF metadata and namespace
    declarations. The HTML parser gives inline ``<svg>`` (and ``xlink:href``) their namespaces itself, so
    all of these are dropped and the report holds no ``http(s)://`` string at all.
    """
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.DOTALL)
    return re.sub(r'\s+xmlns(?::\w+)?="[^"]*"', "", svg)


def _format_value(value: Any) -> str:
    """Numbers with the one display format of :func:`gapdiag.report.presentation.format_number`; text as is."""
    if value is None or isinstance(value, (int, float)):
        return format_number(value)
    return str(value)


def _flatten(prefix: str, value: Any) -> list[tuple[str, str]]:
    """Nested provenance -> ``("model.name", "ViT-B-32")`` rows; short dicts of scalars stay on one row."""
    if isinstance(value, Mapping):
        if (
            value
            and all(not isinstance(v, (Mapping, list)) for v in value.values())
            and len(value) <= 4
            and prefix
        ):
            return [(prefix, ", ".join(f"{k}: {_format_value(v)}" for k, v in value.items()))]
        rows: list[tuple[str, str]] = []
        for k, v in value.items():
            rows += _flatten(f"{prefix}.{k}" if prefix else str(k), v)
        return rows
    if isinstance(value, list):
        return [(prefix, ", ".join(map(_format_value, value)) or "—")]
    return [(prefix, "—" if value is None else _format_value(value))]


def _provenance_table(report: Report) -> str:
    rows = _flatten("", report.provenance)
    rows += [
        ("gapdiag version", report.gapdiag_version),
        ("metric definitions version", str(report.metric_definitions_version)),
        ("created", report.created or "—"),
    ]
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f'<table class="provenance">{body}</table>'


def _metrics_table(report: Report, references: list[ReferencePoint]) -> str:
    """Metrics grouped by family in the registry's (and the CLI table's) order; published values beside."""
    has_intervals = bool(report.intervals)
    head = (
        "<tr><th>family</th><th>metric</th><th>on</th><th>value</th>"
        + ("<th>bootstrap interval</th>" if has_intervals else "")
        + "<th>better</th><th>published reference</th></tr>"
    )
    numbered = {id(p): i for i, p in enumerate(references, 1)}
    rows = []
    for family, names in group_by_family(report.metrics):
        previous = None
        for row, name in enumerate(names):
            base, qualifier = split_metric_name(name)
            info = REGISTRY.get(base)
            description = f' title="{html.escape(info.description, quote=True)}"' if info else ""
            cells = [
                f'<td class="family">{html.escape(family or "other") if row == 0 else ""}</td>',
                f"<td{description}>{html.escape(base) if base != previous else ''}</td>",
                f"<td>{html.escape(qualifier or '—')}</td>",
                f'<td class="num">{html.escape(format_number(float(report.metrics[name])))}</td>',
            ]
            if has_intervals:
                interval = format_interval(report.intervals.get(name))
                cells.append(f'<td class="num">{html.escape(interval)}</td>')
            cells.append(f"<td>{direction_text(None if info is None else info.higher_is_better)}</td>")
            # Beside the first row of a base metric only: the published values apply to the base.
            refs = [p for p in references if p.metric == base] if base != previous else []
            cites = "; ".join(_reference_cite(p, numbered[id(p)]) for p in refs)
            cells.append(f'<td class="ref">{cites}</td>')
            css = "family-start" if row == 0 else ("base-start" if base != previous else "")
            css_attr = f' class="{css}"' if css else ""
            rows.append(f'<tr{css_attr} data-metric="{html.escape(name, quote=True)}">{"".join(cells)}</tr>')
            previous = base
    return f'<table class="metrics"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def _reference_cite(point: ReferencePoint, number: int) -> str:
    """``CLIP RN50 0.8186 [2]`` linking to row 2 of the reference table."""
    return (
        f'{html.escape(point.model)} {point.value:.4g} '
        f'<a href="#ref-{number}">[{number}]</a>'
    )


def _references_table(references: list[ReferencePoint]) -> str:
    """Every published reference point with model, data, N and source (the link text has no scheme, so
    the page names no fetchable URL)."""
    rows = []
    for i, p in enumerate(references, 1):
        where = p.url.split("://", 1)[-1]
        cells = [
            f"{i}",
            html.escape(p.metric),
            f'<span class="num">{p.value:.4g}</span>',
            html.escape(p.model),
            html.escape(p.data),
            f"{p.n:,}" if p.n is not None else "not stated",
            f"{html.escape(p.source)} <span class=\"meta\">({html.escape(where)})</span>",
            html.escape(p.note),
        ]
        # Paths in sources and notes may break anywhere; numbers and names stay whole.
        css = ["nowrap", "nowrap", "nowrap", "", "", "nowrap", "long", "long"]
        tds = "".join(f'<td class="{k}">{c}</td>' if k else f"<td>{c}</td>" for k, c in zip(css, cells))
        rows.append(f'<tr id="ref-{i}">{tds}</tr>')
    head = "".join(f"<th>{h}</th>" for h in ("#", "metric", "value", "model", "data", "N", "source", "note"))
    head = f"<tr>{head}</tr>"
    return (
        '<p class="meta">Published values to read the numbers above against; the closer model, data and N '
        "are to yours, the more comparable the number. Kept in gapdiag/reference_points.json.</p>"
        f'<table class="references"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'
    )


def _summary(report: Report) -> str:
    """The headline numbers in words, then the one-line caveats of the measurement (``extras["notes"]``, e.g.
    R@K on class-level captions), the same lines ``gapdiag measure`` prints under its table."""
    sentences = summarize(report.metrics)
    notes = [str(n) for n in report.extras.get("notes") or []]
    if not sentences and not notes:
        return ""
    return ('<div class="summary">' + "".join(f"<p>{html.escape(t)}</p>" for t in sentences)
            + "".join(f'<p class="note">Note: {html.escape(n)}</p>' for n in notes) + "</div>")


def _data_line(report: Report) -> str:
    """What was measured: dataset, split, sample size and seed (split and sample are part of the result)."""
    dataset = report.provenance.get("dataset") or {}
    sample = report.provenance.get("sample") or {}
    counts = dataset.get("counts") or {}
    n = dataset.get("n_samples")
    size = sample.get("size")
    parts = [
        f"{dataset.get('name', 'unknown data')}"
        + (f", {n:,} samples" if isinstance(n, int) else "")
        + (f" ({', '.join(f'{k} {v:,}' for k, v in counts.items())})" if counts else ""),
        f"split: {dataset.get('split') or 'as read (no --split)'}",
        "quadratic metrics on "
        + (f"a seeded sample of {size:,}" if size else "all samples (exact)")
        + f", seed {sample.get('seed', 0)}",
    ]
    return html.escape("; ".join(parts)) + "."


def _figure_block(name: str, fig: Figure, figure_format: str, dpi: int) -> str:
    kind = name.split("-", 1)[0]
    caption = html.escape(CAPTIONS.get(kind, name))
    if figure_format == "png":
        data = figure_to_png_base64(fig, dpi=dpi)
        body = f'<img alt="{html.escape(name, quote=True)}" src="data:image/png;base64,{data}">'
    else:
        body = figure_to_inline_svg(fig)
    return f'<figure id="fig-{html.escape(name, quote=True)}">{body}<figcaption><b>{html.escape(name)}</b>: {caption}</figcaption></figure>'


def render_html(
    report: Report,
    figures: Mapping[str, Figure],
    *,
    title: str | None = None,
    figure_format: str = "png",
    dpi: int = DEFAULT_DPI,
    interactive: str | None = None,
    interactive_missing: str | None = None,
    track: Track | None = None,
) -> str:
    """A complete, self-contained HTML document for one report and its figures.

    Args:
        report: The measurement (metric table, intervals, provenance).
        figures: Figure stem (``map-umap``, ``hist``, ...) -> figure, in display order.
        title: Page title; default ``"gapdiag report — <model> on <dataset>"``.
        figure_format: ``"png"`` (base64 ``<img>``) or ``"svg"`` (inline vector graphics).
        dpi: Resolution of PNG figures.
        interactive: An HTML fragment of the interactive map
            (:func:`gapdiag.figures.interactive_map.interactive_map_html`), shown after the figures; None for none.
        interactive_missing: Why the interactive map that was asked for is not there (its extra is not
            installed): said in its place, so that the page tells what is missing and how to add it.
        track: A checkpoint series (``gapdiag track``): a section "Over training" with its figure (``figures``'
            ``track``, shown there rather than among the figures) and every metric per step.

    Returns:
        The HTML text (UTF-8), referencing no external resource.
    """
    if figure_format not in FIGURE_FORMATS:
        raise InputError(
            f"unknown figure format {figure_format!r} for HTML",
            hint=f"choose one of: {', '.join(FIGURE_FORMATS)}",
        )
    title = title if title is not None else f"gapdiag report — {describe_provenance(report.provenance)}"
    figure_html = "".join(_figure_block(name, fig, figure_format, dpi) for name, fig in figures.items()
                          if not (track is not None and name == "track"))
    track_figure = _figure_block("track", figures["track"], figure_format, dpi) if track is not None \
        and "track" in figures else ""
    references = references_for(report.metrics)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f'<p class="meta">{len(report.metrics)} metrics, {len(figures)} figures; created {html.escape(report.created or "—")} '
        f"with gapdiag {html.escape(report.gapdiag_version)}.</p>"
        f'<p class="meta data">{_data_line(report)}</p>'
        + _summary(report)
        + f"<h2>Metrics</h2>{_metrics_table(report, references)}"
        + (f"<h2>Published reference points</h2>{_references_table(references)}" if references else "")
        + diagnostics_section(report)
        + (_track_section(track, track_figure) if track is not None else "")
        + (f"<h2>Figures</h2>{figure_html}" if figure_html else "")
        + (_interactive_section(interactive) if interactive else "")
        + (_missing_map_section(interactive_missing) if interactive_missing and not interactive else "")
        + f"<h2>Provenance</h2>{_provenance_table(report)}"
        "</body></html>\n"
    )


def _track_section(track: Track, figure_html: str) -> str:
    """"Over training": the track figure, then every metric (rows, in the metric table's order) per step
    (columns), each checkpoint named in the column's title."""
    head = "<tr><th>metric</th>" + "".join(
        f'<th title="{html.escape(p.checkpoint, quote=True)}">step {p.step}</th>' for p in track.points) + "</tr>"
    rows = []
    for _, names in group_by_family(track.metric_names):
        for name in names:
            cells = "".join(f'<td class="num">{html.escape(format_number(p.report.metrics[name]))}</td>'
                            if name in p.report.metrics else "<td></td>" for p in track.points)
            rows.append(f'<tr data-track-metric="{html.escape(name, quote=True)}"><td>{html.escape(name)}</td>'
                        f"{cells}</tr>")
    checkpoints = ", ".join(f"step {p.step}: {html.escape(p.checkpoint)}" for p in track.points)
    return (f'<h2>Over training</h2><p class="meta">{len(track.points)} checkpoints: {checkpoints}</p>'
            f'{figure_html}<table class="track">{head}{"".join(rows)}</table>')


def _interactive_section(fragment: str) -> str:
    return f'<h2>Interactive map</h2><p class="meta">{html.escape(INTERACTIVE_HELP)}</p>{fragment}'


def _missing_map_section(reason: str) -> str:
    return f'<h2>Interactive map</h2><p class="meta missing">Not in this page: {html.escape(reason)}.</p>'


def write_html(
    path: str | Path,
    report: Report,
    figures: Mapping[str, Figure],
    *,
    title: str | None = None,
    figure_format: str = "png",
    dpi: int = DEFAULT_DPI,
    interactive: str | None = None,
    interactive_missing: str | None = None,
    track: Track | None = None,
) -> Path:
    """Render with :func:`render_html` and write the file atomically (:mod:`gapdiag.fsutil`).

    Raises:
        InputError: the output directory cannot be created or written.
    """
    path = Path(path)
    text = render_html(
        report, figures, title=title, figure_format=figure_format, dpi=dpi, interactive=interactive,
        interactive_missing=interactive_missing, track=track
    )
    ensure_output_dir(path.parent)
    try:
        atomic_write_text(path, text)
    except OSError as e:
        raise write_error(path, e, what="report page") from None
    return path
