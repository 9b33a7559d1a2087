"""Metric values of two or more reports side by side: a bar per report, or a line over training steps."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from numpy.typing import NDArray

from gapdiag.errors import InputError, ProvenanceError
from gapdiag.figures.common import OKABE_ITO, describe_provenance, new_figure
from gapdiag.metrics import REGISTRY
from gapdiag.presentation import format_number, order_metrics
from gapdiag.report import Report, split_metric_name

# Labels such as "3", "epoch 3", "step_1000", "ep-2" turn a comparison into a curve over training.
_STEP_LABEL = re.compile(
    r"^\s*(?:epoch|step|ep|iter(?:ation)?|it|e|s)?[\s_=:-]*(\d+(?:\.\d+)?)\s*$", re.IGNORECASE
)
#: Up to this many reports, the legend is one row; beyond, one column (see :func:`_bar_legend`).
_LEGEND_ROW_MAX = 6


def step_values(labels: Sequence[str]) -> list[float] | None:
    """Numbers behind labels such as ``"epoch 3"``, ``"step_1000"``, ``"5"``; ``None`` if any label is not one."""
    values = []
    for label in labels:
        match = _STEP_LABEL.match(str(label))
        if match is None:
            return None
        values.append(float(match.group(1)))
    return values


def plot_compare(
    reports: Sequence[Report],
    labels: Sequence[str],
    metrics: Sequence[str] | None = None,
    *,
    title: str | None = None,
) -> Figure:
    """Metric values of two or more reports side by side: one small panel per metric.

    When every label names a training step or epoch (``"epoch 3"``, ``"step_1000"``, ``"5"``), each panel is a
    line over the steps; otherwise a bar per report. Bootstrap intervals, where the reports have them, are
    drawn as error bars.

    Args:
        reports: The reports, at least two, measured with the same metric definitions.
        labels: One label per report.
        metrics: Metric names to show; default: every metric present in all reports.
        title: Figure title; default names the models and datasets.

    Raises:
        InputError: fewer than two reports, label count mismatch, or a requested metric missing from a report.
        ProvenanceError: the reports use different metric definitions.
    """
    metrics = _compared_metrics(reports, labels, metrics)
    steps = step_values(labels)
    ncols = min(4, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig = new_figure(3.3 * ncols, 2.7 * nrows + 0.6)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    x = np.asarray(steps) if steps is not None else np.arange(len(reports), dtype=np.float64)
    colors = [OKABE_ITO[i % len(OKABE_ITO)] for i in range(len(reports))]
    for ax, name in zip(axes, metrics):
        y = np.array([r.metrics[name] for r in reports], dtype=np.float64)
        err = _error_bars(y, [r.intervals.get(name) for r in reports])
        if steps is not None:
            _draw_step_panel(ax, x, y, err, name, labels)
        else:
            _draw_bar_panel(ax, x, y, err, name, labels, colors)
        _finish_panel(ax, name)
    for ax in axes[len(metrics) :]:
        ax.set_visible(False)
    if steps is None:
        _bar_legend(fig, colors, labels)
    described = sorted({describe_provenance(r.provenance) for r in reports})
    default = "Comparison — " + ("; ".join(described) if len(described) <= 3 else f"{len(described)} setups")
    fig.suptitle(title if title is not None else default)
    return fig


def _compared_metrics(
    reports: Sequence[Report], labels: Sequence[str], metrics: Sequence[str] | None
) -> Sequence[str]:
    """The metrics to draw: ``metrics`` checked against every report, or by default the shared ones in the
    CLI table's order.

    Raises:
        InputError, ProvenanceError: as for :func:`plot_compare`.
    """
    if len(reports) < 2:
        raise InputError(
            f"compare needs at least two reports, got {len(reports)}",
            hint="pass --report A.json --report B.json",
        )
    if len(labels) != len(reports):
        raise InputError(
            f"{len(labels)} labels for {len(reports)} reports", hint="give one --label per --report"
        )
    versions = {r.metric_definitions_version for r in reports}
    if len(versions) > 1:
        raise ProvenanceError(
            f"reports {', '.join(map(str, labels))} use different metric definitions {sorted(versions)}",
            hint="re-measure them with one gapdiag version",
        )
    if metrics is None:
        # Panels in the CLI table's order (registry families), not in whatever order a report lists them.
        metrics = order_metrics(m for m in reports[0].metrics if all(m in r.metrics for r in reports[1:]))
        if not metrics:
            raise InputError(
                f"reports {', '.join(map(str, labels))} share no metric",
                hint="compare reports measured with the same --metrics",
            )
    for label, report in zip(labels, reports):
        missing = [m for m in metrics if m not in report.metrics]
        if missing:
            raise InputError(
                f"report {label!r} has no metric {missing[0]!r}",
                hint="choose metrics present in every report",
            )
    return metrics


def _error_bars(
    y: NDArray[np.float64], intervals: Sequence[tuple[float, float] | None]
) -> NDArray[np.float64] | None:
    """``yerr`` rows (below, above) from bootstrap intervals; None unless every report has one."""
    if not all(iv is not None for iv in intervals):
        return None
    return np.array(
        [[y[i] - intervals[i][0] for i in range(len(y))], [intervals[i][1] - y[i] for i in range(len(y))]]
    )


def _draw_step_panel(
    ax: Axes,
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    err: NDArray[np.float64] | None,
    name: str,
    labels: Sequence[str],
) -> None:
    """One metric as a line over training steps, each point labelled with its value
    (``gid="metric/<name>"``)."""
    order = np.argsort(x, kind="stable")
    drawn = ax.errorbar(
        x[order],
        y[order],
        yerr=None if err is None else err[:, order],
        color=OKABE_ITO[0],
        marker="o",
        markersize=4,
        linewidth=1.5,
        capsize=3,
    )
    drawn.lines[0].set_gid(f"metric/{name}")
    for xi, yi in zip(x[order], y[order]):
        ax.annotate(format_number(yi), (xi, yi), textcoords="offset points", xytext=(0, 5),
                    ha="center", fontsize="x-small")
    ax.set_xlabel("epoch" if all("ep" in str(label).lower() for label in labels) else "step")


def _draw_bar_panel(
    ax: Axes,
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    err: NDArray[np.float64] | None,
    name: str,
    labels: Sequence[str],
    colors: Sequence[str],
) -> None:
    """One metric as a bar per report, each labelled with its value (``gid="metric/<name>"``)."""
    bars = ax.bar(x, y, color=colors, yerr=err, capsize=3, gid=f"metric/{name}")
    ax.bar_label(bars, labels=[format_number(v) for v in y], fontsize="x-small", padding=2)
    ax.set_xticks(x, [str(label) for label in labels], rotation=30, ha="right", fontsize="small")


def _finish_panel(ax: Axes, name: str) -> None:
    """Title the panel with the metric and which way is better (from the registry; descriptive metrics have
    no direction), and leave room for the value labels."""
    info = REGISTRY.get(split_metric_name(name)[0])
    direction = {True: "\n↑ higher is better", False: "\n↓ lower is better", None: ""}[
        None if info is None else info.higher_is_better
    ]
    ax.set_title(name + direction, fontsize="medium")
    ax.margins(y=0.15)  # room for the value labels
    ax.grid(True, axis="y", alpha=0.3)


def _bar_legend(fig: Figure, colors: Sequence[Any], labels: Sequence[str]) -> None:
    """One legend entry per bar colour, in the bars' (columns') left-to-right order."""
    # One row when it fits, else one column, so that reading order and column order agree (matplotlib fills
    # columns first).
    handles = [Patch(color=c, label=str(label)) for c, label in zip(colors, labels)]
    fig.legend(handles=handles, loc="outside lower center",
               ncol=len(handles) if len(handles) <= _LEGEND_ROW_MAX else 1, fontsize="small", frameon=False)
