"""How the commands show their results: the metric table, reference lines, skipped rows, and the rule that
keeps numbers whole in every table."""

from __future__ import annotations

from collections.abc import Collection

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from gapdiag import api
from gapdiag.commands.common import console, err_console

show = api.presentation  # the number format and metric order shared with the HTML report


def print_labelled(label: str, lines: Collection[str], *, to: Console | None = None) -> None:
    """One line per entry of ``lines``, after a yellow ``label:`` (on stderr unless ``to`` says otherwise).

    The entries are printed as text, never as rich markup: a note that names ``pip install 'gapdiag[parquet]'``
    or a file called ``[x].csv`` keeps its brackets.
    """
    for line in lines:
        (to or err_console).print(f"[yellow]{label}:[/] {escape(line)}", highlight=False, soft_wrap=True)


def print_skipped(rows: list[str], metrics: dict[str, str] | None = None) -> None:
    """One stderr line per dropped row (``--skip-bad``) and per metric that did not apply, with its reason."""
    print_labelled("skipped", rows)
    print_labelled("skipped metric", [f"{name}: {reason}" for name, reason in (metrics or {}).items()])


def print_table(table: Table, *, give_way: Collection[str] = ()) -> None:
    """Print ``table`` on stdout with its numbers whole; on a narrow terminal only the columns headed
    ``give_way`` fold.

    Every other column is at least as wide as its widest cell, so a number is never cut to "0.8…" (which
    reads as another number) nor wrapped: the metric name folds instead, a header wraps or folds (never cut
    to "zero-…"), and a table that still does not fit wraps at the terminal's edge rather than being cropped
    there. Off a terminal nothing gives way at all: the console is unbounded (:class:`gapdiag.progress.LogConsole`).
    """
    for column in table.columns:
        column.no_wrap = False
        column.overflow = "fold"
        if column.header not in give_way:
            column.min_width = max((Text.from_markup(cell).cell_len for cell in column.cells
                                    if isinstance(cell, str)), default=None)
    console.print(table, crop=False)


def report_table(report: api.Report) -> Table:
    """The rich table of a report: metrics grouped by family, with direction and bootstrap interval."""
    prov = report.provenance
    title = f"{(prov.get('model') or {}).get('name', '?')} on {(prov.get('dataset') or {}).get('name', '?')}"
    sample = (prov.get("sample") or {}).get("size")
    table = Table(title=title, caption=f"sample={sample or 'all'} seed={(prov.get('sample') or {}).get('seed', 0)}")
    table.add_column("family", style="dim")
    table.add_column("metric")
    table.add_column("on")
    table.add_column("value", justify="right")
    if report.intervals:
        table.add_column("95% CI", justify="right")
    table.add_column("better", justify="center")
    # Grouped by family in the registry's order (gap, cone, uniformity, rank, retrieval, clustering, ...).
    for name in show.order_metrics(report.metrics):
        base, qualifier = show.split_metric_name(name)
        cells = [show.metric_family(name), base, qualifier or "", show.format_number(report.metrics[name])]
        if report.intervals:
            lo_hi = report.intervals.get(name)
            cells.append(show.format_interval(lo_hi) if lo_hi else "")
        cells.append(show.direction_arrow(show.higher_is_better(base)))
        table.add_row(*cells)
    return table


def reference_lines(report: api.Report) -> list[str]:
    """One line per published reference point of a metric in the report (printed under the table)."""
    return [f"reference {p.metric}: {p.label()}" for p in api.references_for(report.metrics)]

