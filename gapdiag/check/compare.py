"""Side-by-side comparison of several reports (``gapdiag compare``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gapdiag.check import rules as _rules
from gapdiag.check.provenance import guard_provenance
from gapdiag.check.render import json_number, markdown_cell, markdown_table
from gapdiag.check.rules import Direction, registry_direction
from gapdiag.report import Report, split_metric_name
from gapdiag.report.presentation import (
    SIMILARITY_COLUMNS,
    SIMILARITY_NOTE,
    format_delta,
    format_value,
    most_changed,
    similarity_rows,
)


@dataclass(frozen=True)
class ComparisonRow:
    """One metric across reports. ``deltas[i] = values[i] - values[0]``; ``verdicts[i]`` is ``"better"``,
    ``"worse"``, ``"same"`` or ``None`` (first column, absent value or no direction)."""

    metric: str
    direction: Direction | None
    values: list[float]
    deltas: list[float]
    verdicts: list[str | None]


@dataclass
class Comparison:
    """What :func:`compare_reports` returns: column labels, one row per metric, provenance warnings."""

    labels: list[str]
    rows: list[ComparisonRow]
    warnings: list[str] = field(default_factory=list)


def compare_reports(
    reports: Sequence[Report],
    labels: Sequence[str] | None = None,
    *,
    force: bool = False,
    registry: Mapping[str, Any] | None = None,
    precomputed_pair: bool = False,
) -> Comparison:
    """Side-by-side values of several reports with deltas against the first and better/worse verdicts.

    Directions come from the registry (``higher_is_better``). Every report must pass the provenance guard
    against the first one (``precomputed_pair``: see :func:`gapdiag.check.provenance.provenance_conflicts`).

    Raises:
        ProvenanceError: A report measured on other data or settings than the first, unless ``force``.
    """
    labels = list(labels) if labels is not None else [f"#{i + 1}" for i in range(len(reports))]
    if len(labels) != len(reports):
        raise ValueError(f"{len(labels)} labels for {len(reports)} reports")
    registry = _rules.metric_registry() if registry is None else registry
    warnings: list[str] = []
    for label, r in zip(labels[1:], reports[1:]):
        warnings += guard_provenance(reports[0], r, force=force, labels=(labels[0], label),
                                     precomputed_pair=precomputed_pair)
    rows = []
    for name in dict.fromkeys(k for r in reports for k in r.metrics):
        direction = registry_direction(registry.get(split_metric_name(name)[0]))
        values = [r.metrics.get(name, math.nan) for r in reports]
        deltas = [v - values[0] for v in values]
        verdicts = [None] + [_verdict(d, direction) for d in deltas[1:]]
        rows.append(ComparisonRow(name, direction, values, deltas, verdicts))
    return Comparison(labels, rows, warnings)


def _verdict(delta: float, direction: Direction | None) -> str | None:
    if not math.isfinite(delta) or direction is None:
        return None
    if delta == 0:
        return "same"
    return "better" if (delta > 0) == (direction == "higher") else "worse"


_VERDICT_MARK = {"better": "🟢", "worse": "🔴", "same": "", None: ""}


def comparison_to_markdown(comp: Comparison) -> str:
    """Markdown table: first report's values, then each other report's value with ``(Δ arrow mark)``."""

    def cell(row: ComparisonRow, i: int) -> str:
        if i == 0 or not math.isfinite(row.deltas[i]):
            return format_value(row.values[i])
        arrow = "▲" if row.deltas[i] > 0 else "▼" if row.deltas[i] < 0 else "="
        mark = _VERDICT_MARK[row.verdicts[i]]
        return f"{format_value(row.values[i])} ({format_delta(row.deltas[i])} {arrow}{mark})"

    header = ["Metric", "Better", *comp.labels]
    body = [
        [f"`{r.metric}`", r.direction or "—", *(cell(r, i) for i in range(len(comp.labels)))]
        for r in comp.rows
    ]
    lines = ["### gapdiag compare", "", *markdown_table(header, body)]
    if comp.warnings:
        lines += ["", *[f"> ⚠️ {w}" for w in comp.warnings]]
    return "\n".join(lines) + "\n"


def similarity_to_markdown(similarity: Mapping[str, Any], labels: Sequence[str], *, shown: int = 5) -> str:
    """What changed between two models, item by item, for a PR comment: the terminal's second table (linear CKA
    and mutual k-NN per set) and, per modality, the ``shown`` items whose neighbours changed most."""
    lines = [f"### What changed: {markdown_cell(labels[0])} → {markdown_cell(labels[1])}", ""]
    lines += markdown_table(list(SIMILARITY_COLUMNS), similarity_rows(similarity))
    lines += ["", f"{SIMILARITY_NOTE}."]
    for modality, items in most_changed(similarity, shown):
        lines += ["", f"**{modality}**: items whose neighbours changed most", ""]
        lines += markdown_table(["Item", "Sample", "Overlap", "Path or caption"], items)
    return "\n".join(lines) + "\n"


def comparison_to_json(comp: Comparison) -> dict[str, Any]:
    """A JSON-ready dict: labels, warnings and one entry per metric (absent values as ``null``)."""
    return {
        "labels": list(comp.labels),
        "warnings": list(comp.warnings),
        "metrics": [
            {
                "metric": r.metric,
                "direction": r.direction,
                "values": [json_number(v) for v in r.values],
                "deltas": [json_number(d) for d in r.deltas],
                "verdicts": list(r.verdicts),
            }
            for r in comp.rows
        ],
    }
