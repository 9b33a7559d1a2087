"""The interactive 2-D map of the HTML report (Plotly, its JavaScript inlined so the page works offline).

Researchers hover over a point to read its caption, image path and class; click legend entries to hide a
modality (group title) or a class within it, or pick one class for all modalities from the menu; click a
point to draw the lines to the other items of its sample (its true pairs). The static PNG/SVG map stays
the figure for papers (:func:`gapdiag.figures.plot_map`). Plotly is imported inside the functions.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gapdiag.errors import INTERACTIVE_MAP, require
from gapdiag.figures.common import OKABE_ITO, StatusCallback, class_colors
from gapdiag.figures.embedding_map import map_layout
from gapdiag.report.presentation import describe_provenance
from gapdiag.vectors import EmbeddingSet

#: ``id`` of the plot's ``<div>`` in the report.
DIV_ID = "gapdiag-interactive-map"
#: Name of the trace that holds the pair lines of the selected point (empty until a click).
PAIRS_TRACE = "pairs of the selected sample"
# Plotly marker symbols matching the static map's matplotlib markers (circle, triangle, square, ...).
_SYMBOLS = ("circle", "triangle-up", "square", "diamond", "triangle-down", "cross", "x", "star")
_MAX_HOVER_CHARS = 300
_SVG_MAX_POINTS = 5000

# Clicking a point joins it to every other drawn item of the same sample (customdata[0] = sample id).
_CLICK_JS = """
var gd = document.getElementById('{plot_id}');
gd.on('plotly_click', function (ev) {
  if (!ev.points.length) return;
  var sample = ev.points[0].customdata[0];
  var xs = [], ys = [], anchor = null, pairs = -1;
  gd.data.forEach(function (trace, t) {
    if (trace.name === %(pairs)s) { pairs = t; return; }
    if (!trace.customdata) return;
    trace.customdata.forEach(function (cd, i) {
      if (cd[0] !== sample) return;
      if (anchor === null) { anchor = [trace.x[i], trace.y[i]]; return; }
      xs.push(anchor[0], trace.x[i], null); ys.push(anchor[1], trace.y[i], null);
    });
  });
  if (pairs >= 0) Plotly.restyle(gd, {x: [xs], y: [ys]}, [pairs]);
});
""" % {"pairs": json.dumps(PAIRS_TRACE)}  # noqa: UP031 - str.format would need every JS brace doubled


def item_labels(dataset: Any, es: EmbeddingSet) -> dict[str, list[str]] | None:
    """Hover text per item: the caption of a text item, the image path of an image item.

    ``dataset`` is the :class:`~gapdiag.data.base.PairedDataset` the embeddings were computed from. Returns
    None when its item counts differ from the embeddings' (e.g. items dropped by ``--skip-bad``), since the
    labels would then name the wrong points; precomputed vectors get no text.
    """
    counts = {name: len(m) for name, m in dataset.modalities.items()}
    if counts != es.counts():
        return None
    out: dict[str, list[str]] = {}
    for name, modality in dataset.modalities.items():
        if modality.kind in ("text", "image"):
            out[name] = [str(item) for item in modality.items]
    return out


def _hover(modality: str, sample: int, text: str | None, class_name: str | None) -> str:
    """Plotly hover text (a small HTML subset): user text is escaped and cut, never markup."""
    lines = [f"<b>{html.escape(modality)}</b> · sample {sample}"]
    if text:
        short = text if len(text) <= _MAX_HOVER_CHARS else text[: _MAX_HOVER_CHARS - 1] + "…"
        lines.append(html.escape(short))
    if class_name is not None:
        lines.append(f"class: {html.escape(class_name)}")
    return "<br>".join(lines)


@dataclass(frozen=True)
class _Classes:
    """The class of each sample (None without labels), how many classes, their names and CSS colours."""

    ids: NDArray[np.int64] | None
    count: int
    names: Sequence[str]
    colors: Sequence[str]

    @classmethod
    def of(cls, es: EmbeddingSet) -> _Classes:
        ids = np.asarray(es.labels, dtype=np.int64) if es.labels is not None else None
        count = 0 if ids is None else max(len(es.class_names or []), int(ids.max()) + 1)
        names = (es.class_names or [str(c) for c in range(count)]) if ids is not None else []
        colors = [_as_css(c) for c in class_colors(count)] if count else []
        return cls(ids, count, names, colors)


def build_interactive_map(
    es: EmbeddingSet,
    *,
    method: str = "umap",
    max_pairs: int | None = 2000,
    seed: int = 0,
    labels: Mapping[str, Sequence[str]] | None = None,
    status: StatusCallback | None = None,
) -> Any:
    """The interactive map as a ``plotly.graph_objects.Figure``.

    One scatter trace per modality (and per class when the embeddings have labels), grouped in the legend
    by modality; hover text holds the item's modality, sample, caption or image path and class; each
    point's ``customdata`` is ``[sample id, class id]``. The last trace (:data:`PAIRS_TRACE`) is empty and
    is filled with the pair lines of a clicked point by the page's script. With labels, a menu shows one
    class (or all) in every modality.

    Args:
        es: Embeddings; all modalities are projected jointly, as in the static map.
        method, max_pairs, seed, status: As for :func:`gapdiag.figures.plot_map`.
        labels: Optional hover text per item of each modality (see :func:`item_labels`).

    Raises:
        MissingExtraError: plotly (the ``interactive`` extra) is not installed; said before the projection.
    """
    go = require("plotly.graph_objects", INTERACTIVE_MAP)
    _, keep, coords, samples = map_layout(es, method=method, max_pairs=max_pairs, seed=seed, status=status)
    classes = _Classes.of(es)
    # SVG markers render everywhere (also without WebGL); beyond a few thousand points WebGL stays fluid.
    scatter = go.Scatter if sum(len(s) for s in samples.values()) <= _SVG_MAX_POINTS else go.Scattergl
    traces = []
    for i, m in enumerate(es.modality_names):
        texts = labels[m] if labels and m in labels else None
        traces += _modality_traces(scatter, i, m, coords[m], samples[m], keep[m], texts, classes)
    traces.append(
        go.Scatter(x=[], y=[], mode="lines", name=PAIRS_TRACE, line={"color": "#555555", "width": 1.5},
                   hoverinfo="skip")
    )
    fig = go.Figure(traces)
    fig.update_layout(
        title={"text": f"Interactive map ({method.upper()}) — {describe_provenance(es.provenance)}",
               "x": 0.5, "xanchor": "center"},
        height=680,
        margin={"t": 100},
        template="simple_white",
        legend={"groupclick": "toggleitem", "itemsizing": "constant"},
        xaxis={"showticklabels": False, "title": f"{method.upper()} 1"},
        yaxis={"showticklabels": False, "title": f"{method.upper()} 2"},
        hovermode="closest",
        clickmode="event",
    )
    if classes.ids is not None:
        fig.update_layout(updatemenus=[_class_menu(traces, classes.names)])
    return fig


def _modality_traces(
    scatter: Any,
    index: int,
    modality: str,
    xy: NDArray[np.float64],
    item_samples: NDArray[np.int64],
    item_rows: NDArray[np.int64],
    texts: Sequence[str] | None,
    classes: _Classes,
) -> list[Any]:
    """The traces of one modality's drawn items: one per class present (one in all without labels).

    ``xy``, ``item_samples`` and ``item_rows`` hold each drawn item's coordinates, sample and row in the
    modality; ``texts`` the hover text of every row of the modality, if any.
    """
    item_class = classes.ids[item_samples] if classes.ids is not None else np.full(len(item_samples), -1)
    groups = range(classes.count) if classes.ids is not None else [-1]
    traces = []
    for c in groups:
        rows = np.flatnonzero(item_class == c)
        if rows.size == 0:
            continue
        class_name = classes.names[c] if c >= 0 else None
        hover = [
            _hover(modality, int(item_samples[r]), None if texts is None else texts[int(item_rows[r])],
                   class_name)
            for r in rows
        ]
        traces.append(
            scatter(
                x=xy[rows, 0].tolist(),
                y=xy[rows, 1].tolist(),
                mode="markers",
                name=modality if c < 0 else classes.names[c],
                legendgroup=modality,
                legendgrouptitle={"text": modality} if c >= 0 else None,
                marker={
                    "symbol": _SYMBOLS[index % len(_SYMBOLS)],
                    "color": OKABE_ITO[index % len(OKABE_ITO)] if c < 0 else classes.colors[c],
                    "size": 7,
                    "opacity": 0.85,
                },
                text=hover,
                hovertemplate="%{text}<extra></extra>",
                # Plain lists, not typed arrays: the click handler reads them back from the page's data.
                customdata=[[int(s), int(c)] for s in item_samples[rows]],
                meta={"modality": modality, "class": int(c)},
            )
        )
    return traces


def _class_menu(traces: Sequence[Any], class_names: Sequence[str]) -> dict[str, Any]:
    """A drop-down that shows every class, or one class in every modality (the pair-line trace stays)."""
    def visible(c: int | None) -> list[bool]:
        return [t.meta is None or c is None or t.meta["class"] == c for t in traces]

    buttons = [{"label": "all classes", "method": "restyle", "args": [{"visible": visible(None)}]}]
    present = sorted({t.meta["class"] for t in traces if t.meta is not None})
    buttons += [
        {"label": f"class {class_names[c]}", "method": "restyle", "args": [{"visible": visible(c)}]}
        for c in present
    ]
    return {"buttons": buttons, "direction": "down", "x": 0.0, "xanchor": "left", "y": 1.0, "yanchor": "bottom"}


def _as_css(color: Any) -> str:
    """A matplotlib colour (hex string or RGBA tuple) as CSS."""
    if isinstance(color, str):
        return color
    r, g, b = (round(255 * v) for v in color[:3])
    return f"rgb({r},{g},{b})"


def interactive_map_html(fig: Any) -> str:
    """The figure as an HTML fragment: a ``<div>`` and inline scripts (plotly.js itself included, ~4.8 MB).

    Nothing is fetched when the page opens: plotly.js is inlined, MathJax is off, and the mode bar has no
    link to the Plotly cloud.
    """
    return require("plotly.io", INTERACTIVE_MAP).to_html(
        fig,
        full_html=False,
        include_plotlyjs=True,
        include_mathjax=False,
        div_id=DIV_ID,
        config={"displaylogo": False, "responsive": True, "showTips": False},
        post_script=_CLICK_JS,
    )
