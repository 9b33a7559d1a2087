"""How the measuring commands show their results: the metric table, reference lines, skipped rows."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from gapdiag import api
from gapdiag.commands._common import err_console

show = api.presentation  # the number format and metric order shared with the HTML report


def print_skipped(rows: list[str], metrics: dict[str, str] | None = None) -> None:
    """One stderr line per dropped row (``--skip-bad``) and per metric that did not apply, with its reason."""
    for line in rows:
        err_console.print(f"[yellow]skipped:[/] {escape(line)}", highlight=False, soft_wrap=True)
    for name, reason in (metrics or {}).items():
        err_console.print(f"[yellow]skipped metric:[/] {escape(name)}: {escape(reason)}", highlight=False,
                          soft_wrap=True)



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

