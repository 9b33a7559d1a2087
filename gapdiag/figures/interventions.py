"""The post-hoc interventions side by side: how much each one moves each metric on the held-out items.

Reads the result of :func:`gapdiag.api.intervene` (or the file of ``gapdiag intervene --out``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from gapdiag.errors import InputError
from gapdiag.figures.common import OKABE_ITO, figure_title, new_figure
from gapdiag.report.record import read_json

#: The panels, in order: metric base (the first qualifier found is drawn) and its label. A metric the result
#: lacks (no classes: no V-Measure, no zero-shot) gets no panel.
PANELS: tuple[tuple[str, str], ...] = (
    ("modality_gap/", "centroid gap ‖Δ‖"),
    ("gap_bures/", "shape gap (Bures)"),
    ("cos_tp/", "Cos_TP"),
    ("recall_at_1/image_to_text", "R@1 image→text"),
    ("recall_at_1/text_to_image", "R@1 text→image"),
    ("hubness_skewness/image_to_text", "hubness skew image→text"),
    ("v_measure_class/", "class V-Measure"),
    ("zero_shot_accuracy/", "zero-shot accuracy"),
)
_COMMAND = "gapdiag intervene --out"


def validate_interventions_result(result: Any, *, source: str = "intervention result") -> dict[str, Any]:
    """Check the structure written by ``gapdiag intervene --out`` and return it.

    Raises:
        InputError: Not an object, a key missing, or a method without its values.
    """
    if not isinstance(result, dict) or not all(k in result for k in ("methods", "before", "results")):
        raise InputError(f"{source}: not an intervention result (expected methods, before and results)",
                         hint=f"pass a file written by `{_COMMAND}`")
    for method in result["methods"]:
        entry = result["results"].get(method) if isinstance(result["results"], dict) else None
        if not isinstance(entry, dict) or not isinstance(entry.get("after"), dict):
            raise InputError(f"{source}: method {method!r} has no values after",
                             hint=f"pass an unmodified file written by `{_COMMAND}`")
    return result


def load_interventions_result(path: str | Path) -> dict[str, Any]:
    """Read and validate an intervention result written by ``gapdiag intervene --out``."""
    return validate_interventions_result(read_json(path, "intervention result", _COMMAND),
                                         source=str(Path(path)))


def plot_interventions(result: Mapping[str, Any], *, title: str | None = None) -> Figure:
    """One panel per metric: its value before (grey line) and after each method (a bar per method), all on the
    held-out items; the bar is labelled with the change. Panels follow :data:`PANELS` (``gid="bar/<metric>/
    <method>"``, ``"before/<metric>"``).

    Args:
        result: The dict of :func:`gapdiag.api.intervene` (or ``gapdiag intervene --out``).
        title: Figure title; default uses ``result["provenance"]`` when present.
    """
    result = validate_interventions_result(dict(result))
    before, methods = result["before"], list(result["methods"])
    panels = [(key, label) for prefix, label in PANELS
              for key in [next((k for k in before if k.startswith(prefix)), None)] if key is not None]
    ncols = min(4, max(len(panels), 1))
    nrows = -(-len(panels) // ncols) or 1
    fig = new_figure(3.3 * ncols, 0.6 + 2.6 * nrows)
    positions = np.arange(len(methods))
    colours = [OKABE_ITO[i % len(OKABE_ITO)] for i in range(len(methods))]
    for i, (key, label) in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        after = [float(result["results"][m]["after"].get(key, np.nan)) for m in methods]
        ax.bar(positions, after, color=colours, gid=f"bar/{key}")
        for x, value in zip(positions, after, strict=True):
            if np.isfinite(value):
                ax.annotate(f"{value - before[key]:+.2f}", (x, value), ha="center", va="bottom",
                            fontsize="x-small", xytext=(0, 1), textcoords="offset points")
        ax.axhline(before[key], color="0.35", linestyle="--", linewidth=1, gid=f"before/{key}",
                   label="before")
        ax.set_xticks(positions, [m.replace("_", " ") for m in methods], rotation=45, ha="right",
                      fontsize="small")
        ax.set_title(label, fontsize="medium")
        if i == 0:
            ax.legend(fontsize="x-small")
    split = result.get("split") or {}
    where = " (held-out items)" if split else ""
    fig.suptitle(figure_title(f"Post-hoc interventions{where}", result.get("provenance") or {}, title))
    return fig
