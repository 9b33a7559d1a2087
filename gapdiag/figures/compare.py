"""Two or more reports compared in one figure: the change of every metric against a reference, one panel per
metric family, the largest changes first; over training steps, one line per metric."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from numpy.typing import NDArray

from gapdiag.errors import InputError, ProvenanceError
from gapdiag.figures.common import OKABE_ITO, new_figure
from gapdiag.metrics import REGISTRY
from gapdiag.report import Report, split_metric_name
from gapdiag.report.presentation import (
    describe_provenance,
    direction_arrow,
    format_delta,
    format_number,
    higher_is_better,
    order_metrics,
)

# Labels such as "3", "epoch 3", "step_1000", "ep-2" turn a comparison into a curve over training.
_STEP_LABEL = re.compile(
    r"^\s*(?:epoch|step|ep|iter(?:ation)?|it|e|s)?[\s_=:-]*(\d+(?:\.\d+)?)\s*$", re.IGNORECASE
)
#: The smallest half-width (lines: half-height) of the figure's one axis, in % of a metric's size
#: (:func:`metric_scale`): a change far below it stays visibly small instead of being stretched to the full
#: axis (issue #30: a 0.0003 change of a cosine was drawn as tall as a 0.2 one).
MIN_SPAN = 2.0
#: The least magnitude a metric's change is read against, as a share of its registry range (:func:`metric_scale`).
RANGE_FLOOR = 0.05
#: Bar colours by verdict when one report is compared with the reference (Okabe–Ito: green, vermillion, grey).
VERDICT_COLORS = {"better": "#009E73", "worse": "#D55E00", None: "#999999"}
_VERDICT_NAMES = {"better": "better", "worse": "worse", None: "no direction, or unchanged"}
#: Inches per metric row (times √(compared reports)) and per family panel's frame (title, axis) of the bar figure.
_ROW_INCHES, _PANEL_INCHES = 0.3, 0.75


def step_values(labels: Sequence[str]) -> list[float] | None:
    """Numbers behind labels such as ``"epoch 3"``, ``"step_1000"``, ``"5"``; ``None`` if any label is not one."""
    values = []
    for label in labels:
        match = _STEP_LABEL.match(str(label))
        if match is None:
            return None
        values.append(float(match.group(1)))
    return values


def metric_scale(name: str, values: Sequence[float]) -> float:
    """The size a change of metric ``name`` is read against: the largest magnitude among ``values``, but at
    least 5 % of the metric's registry range where it has one, and 1 where everything is 0.

    So a gap going from 0.24 to 0.046 is a change of 0.81, R@1 going from 0.020 to 0.027 one of 0.14 (5 % of
    [0, 1] is the floor, so a near-zero value does not turn a tiny change into a huge one), and 3 -> 10
    gap dimensions one of 0.7.
    """
    largest = max((abs(v) for v in values if math.isfinite(v)), default=0.0)
    info = REGISTRY.get(split_metric_name(name)[0])
    lo, hi = info.bounds if info is not None else (None, None)
    if lo is not None and hi is not None and math.isfinite(hi - lo):
        largest = max(largest, RANGE_FLOOR * (hi - lo))
    return largest or 1.0


@dataclass(frozen=True)
class MetricChange:
    """One metric across the reports, in drawing order: values, changes against the first, verdicts."""

    name: str
    values: NDArray[np.float64]
    deltas: NDArray[np.float64]
    verdicts: list[str | None]
    scale: float

    @property
    def relative(self) -> NDArray[np.float64]:
        """The changes in % of the metric's size (:func:`metric_scale`): what the figure draws."""
        return 100.0 * self.deltas / self.scale

    @property
    def size(self) -> float:
        """The largest change in % of the metric's size: what "the changes that matter first" sorts by."""
        changes = np.abs(self.relative[1:])
        return float(np.nanmax(changes)) if np.isfinite(changes).any() else 0.0


def metric_changes(reports: Sequence[Report], metrics: Sequence[str]) -> list[MetricChange]:
    """:class:`MetricChange` of each metric, against the first report (the reference)."""
    out = []
    for name in metrics:
        values = np.array([r.metrics[name] for r in reports], dtype=np.float64)
        deltas = values - values[0]
        higher = higher_is_better(split_metric_name(name)[0])
        verdicts: list[str | None] = [None]
        for d in deltas[1:]:
            verdicts.append(None if higher is None or not d or not math.isfinite(d)
                            else "better" if (d > 0) == higher else "worse")
        out.append(MetricChange(name, values, deltas, verdicts, metric_scale(name, values)))
    return out


def families_by_change(changes: Sequence[MetricChange]) -> list[tuple[str, list[MetricChange]]]:
    """The metrics grouped by registry family (unknown metrics under "other"): inside a family the metrics
    with a direction by the size of their change (:attr:`MetricChange.size`), largest first, then the
    descriptive ones (no better or worse: counts, p-values) the same way; the families in the order of their
    first metric. Ties keep the table's order."""
    groups: dict[str, list[MetricChange]] = {}
    for change in changes:
        info = REGISTRY.get(split_metric_name(change.name)[0])
        groups.setdefault(info.family if info is not None else "other", []).append(change)
    ranked = [(family, sorted(members, key=_importance)) for family, members in groups.items()]
    return sorted(ranked, key=lambda group: _importance(group[1][0]))


def _importance(change: MetricChange) -> tuple[int, float]:
    """Sort key: metrics with a direction before descriptive ones, then the larger change first."""
    return (0 if higher_is_better(split_metric_name(change.name)[0]) is not None else 1, -change.size)


def plot_compare(
    reports: Sequence[Report],
    labels: Sequence[str],
    metrics: Sequence[str] | None = None,
    *,
    title: str | None = None,
) -> Figure:
    """Two or more reports in one figure: how much each metric changed against the first report.

    One panel per metric family (gap, cone, uniformity, rank, retrieval, ...) and one row per metric, on one
    axis for the whole figure: the change in % of the metric's size (:func:`metric_scale`), a bar from the
    zero line, the change itself written at the bar's end. The changes that matter come first
    (:func:`families_by_change`). With two reports the bars are green where the change is better and
    vermillion where it is worse (the registry's direction), grey without a direction; with more, one colour
    per report and the verdict in words. Each row names the metric, which way is better (↑/↓) and its values
    (first → others).

    When every label names a training step or epoch (``"epoch 3"``, ``"step_1000"``, ``"5"``), each family
    panel holds one line per metric over the steps instead, the change from the first step on the same kind
    of axis (shared by every panel) against the zero line, the values in the panel's legend; bootstrap
    intervals, where every report has one, are error bars. The axis always spans at least :data:`MIN_SPAN`
    % either side of zero, so a tiny change stays small.

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
    if steps is not None:  # the reference of a training curve is its first step
        order = np.argsort(steps, kind="stable")
        reports, labels, steps = [reports[i] for i in order], [labels[i] for i in order], [steps[i] for i in order]
    families = families_by_change(metric_changes(reports, metrics))
    if steps is None:
        fig = _bar_figure(families, reports, labels)
    else:
        fig = _line_figure(families, reports, labels, np.asarray(steps, dtype=np.float64))
    described = sorted({describe_provenance(r.provenance) for r in reports})
    default = "Comparison — " + ("; ".join(described) if len(described) <= 3 else f"{len(described)} setups")
    reading = (f"change against {labels[0]} in % of each metric's size (its largest |value| here, at least 5 % "
               "of its range),\ngrouped by family, the largest change first")
    fig.suptitle(f"{title if title is not None else default}\n{reading}", fontsize="medium")
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


#: What the one axis of the figure measures (the subtitle says what the size is).
_AXIS = "change, % of the metric's size"
#: One colour per compared report when there are several: none of them green or vermillion, which mean
#: better and worse in the figure of one compared report.
_REPORT_COLORS = ("#0072B2", "#E69F00", "#CC79A7", "#56B4E9", "#000000", "#F0E442")


def _bar_figure(families: list[tuple[str, list[MetricChange]]], reports: Sequence[Report],
                labels: Sequence[str]) -> Figure:
    """The change of each metric as a horizontal bar per compared report, one panel per family, one axis."""
    rows = [len(members) for _, members in families]
    compared = len(reports) - 1
    fig = new_figure(9.0, _ROW_INCHES * sum(rows) * max(1.0, compared**0.5) + _PANEL_INCHES * len(rows) + 1.2)
    axes = fig.subplots(len(families), 1, squeeze=False, sharex=True, gridspec_kw={"height_ratios": rows})[:, 0]
    colors = [_REPORT_COLORS[i % len(_REPORT_COLORS)] for i in range(compared)] if compared > 1 else None
    for ax, (family, members) in zip(axes, families):
        _draw_bar_panel(ax, family, members, colors, labels)
    largest = max((c.size for _, members in families for c in members), default=0.0)
    half = 1.6 * max(largest, MIN_SPAN)  # room beside the longest bar for its written change
    axes[-1].set_xlim(-half, half)  # symmetric around the zero line; shared by every panel
    axes[-1].set_xlabel(_AXIS, fontsize="small")
    if colors is None:  # one compared report: the colour says better or worse
        shown = dict.fromkeys(v for _, members in families for c in members for v in c.verdicts[1:])
        handles = [Patch(color=VERDICT_COLORS[v], label=_VERDICT_NAMES[v]) for v in ("better", "worse", None)
                   if v in shown]
    else:
        handles = [Patch(color=c, label=str(label)) for c, label in zip(colors, labels[1:])]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize="small", frameon=False)
    return fig


def _draw_bar_panel(ax: Axes, family: str, members: Sequence[MetricChange], colors: Sequence[str] | None,
                    labels: Sequence[str]) -> None:
    """One family: a row per metric, a bar per compared report from the zero line to its relative change
    (``gid="delta/<metric>/<label>"``), the change itself written at the bar's end."""
    compared = len(labels) - 1
    height = 0.8 / compared
    for row, change in enumerate(members):
        for i in range(compared):
            delta, verdict = change.deltas[i + 1], change.verdicts[i + 1]
            x = float(change.relative[i + 1]) if math.isfinite(delta) else 0.0
            y = row - 0.4 + height * (i + 0.5)
            ax.barh(y, x, height=height * 0.9, color=VERDICT_COLORS[verdict] if colors is None else colors[i],
                    gid=f"delta/{change.name}/{labels[i + 1]}")
            word = f" {verdict}" if colors is not None and verdict else ""
            ax.text(x, y, f" {format_delta(delta)}{word} ", ha="left" if x >= 0 else "right", va="center",
                    fontsize="small")
    ax.set_yticks(range(len(members)), [_row_label(c) for c in members], fontsize="small")
    ax.set_ylim(len(members) - 0.5, -0.5)  # the largest change on top
    ax.axvline(0.0, color="black", linewidth=0.9)
    ax.grid(True, axis="x", alpha=0.3)
    ax.tick_params(axis="x", labelsize="small", labelbottom=True)  # every panel keeps the scale in view
    ax.set_title(family, loc="left", fontsize="medium", fontweight="bold")


def _row_label(change: MetricChange) -> str:
    """``modality_gap/image-text ↓   0.2405 → 0.04629`` (several compared reports: ``→ a, b``)."""
    arrow = direction_arrow(higher_is_better(split_metric_name(change.name)[0]))
    values = ", ".join(format_number(v) for v in change.values[1:])
    return f"{change.name} {arrow}   {format_number(change.values[0])} → {values}"


def _line_figure(families: list[tuple[str, list[MetricChange]]], reports: Sequence[Report],
                 labels: Sequence[str], steps: NDArray[np.float64]) -> Figure:
    """The change of each metric over training steps: a panel per family, a line per metric, one axis for all
    panels with its zero line; the values themselves in each panel's legend (outside the plot, never cut)."""
    fig = new_figure(10.0, 2.4 * len(families) + 1.2)
    axes = fig.subplots(len(families), 1, squeeze=False, sharex=True, sharey=True)[:, 0]
    for ax, (family, members) in zip(axes, families):
        for i, change in enumerate(members):
            err = _error_bars(change.values, [r.intervals.get(change.name) for r in reports])
            drawn = ax.errorbar(steps, change.relative, yerr=None if err is None else 100.0 * err / change.scale,
                                color=OKABE_ITO[i % len(OKABE_ITO)], marker="os^Dv"[i // len(OKABE_ITO) % 5],
                                markersize=4, linewidth=1.5, capsize=3, label=_row_label(change))
            drawn.lines[0].set_gid(f"metric/{change.name}")
        ax.axhline(0.0, color="black", linewidth=0.9)
        ax.set_title(family, loc="left", fontsize="medium", fontweight="bold")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small", frameon=False)
    everything = np.array([v for _, members in families for c in members for v in c.relative if math.isfinite(v)])
    low, high = min(0.0, float(everything.min(initial=0.0))), max(0.0, float(everything.max(initial=0.0)))
    pad = 0.1 * max(high - low, 2 * MIN_SPAN)
    axes[-1].set_ylim(min(low, -MIN_SPAN) - pad, max(high, MIN_SPAN) + pad)
    fig.supylabel(_AXIS, fontsize="small")
    axes[-1].set_xticks(steps, [f"{s:g}" for s in steps])
    axes[-1].set_xlabel(_step_unit(labels))
    return fig


def _step_unit(labels: Sequence[str]) -> str:
    return "epoch" if all("ep" in str(label).lower() for label in labels) else "step"
