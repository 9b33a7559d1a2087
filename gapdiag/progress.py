"""Progress display shared by every long-running step (embedding, metrics, training): rates and ETA on stderr;
and the console every gapdiag output goes through, which writes whole lines off a terminal."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console, ConsoleDimensions
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


#: The width of a console that does not write to a terminal: far wider than any line gapdiag prints.
UNBOUNDED_WIDTH = 100_000


class LogConsole(Console):
    """rich's console on a terminal; off one (a pipe, a file, a CI log) as wide as each line needs.

    Without a terminal rich assumes 80 columns (or ``$COLUMNS``) and squeezes a wider table to fit: cells cut
    to "…", rows wrapped onto three lines, a value folded into its delta. In a log or after a pipe every
    value must stay whole and every row on one line (``gapdiag check > log``, ``gapdiag compare | grep``), so
    off a terminal the width is unbounded; tables and lines are as wide as their content, never padded to it.
    Whether the output is a terminal is decided at each print, so the same console serves a redirected
    ``sys.stdout`` (tests, notebooks) correctly.
    """

    @property  # type: ignore[override]
    def size(self) -> ConsoleDimensions:
        size = Console.size.fget(self)  # type: ignore[attr-defined]
        return size if self.is_terminal else ConsoleDimensions(UNBOUNDED_WIDTH, size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


class _NullProgress:
    """Stands in for rich's Progress when output is off (``--quiet``, ``progress=False``)."""

    def add_task(self, *args: object, **kwargs: object) -> int:
        return 0

    def update(self, *args: object, **kwargs: object) -> None:
        pass

    def advance(self, *args: object, **kwargs: object) -> None:
        pass

    def log(self, *args: object, **kwargs: object) -> None:
        pass


class RateColumn(TextColumn):
    """Items per second, e.g. ``812 it/s``."""

    def __init__(self, unit: str = "it") -> None:
        super().__init__("")
        self.unit = unit

    def render(self, task):  # type: ignore[override]
        from rich.text import Text

        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} {self.unit}/s" if speed else f"- {self.unit}/s", style="progress.data.speed")


def print_line(bar: Progress | _NullProgress, text: str) -> None:
    """``text`` as a line of its own: above the live display on a terminal, plainly in a log (where rich draws
    the bar only once, at the end); nothing when the display is off (``--quiet``)."""
    if isinstance(bar, Progress):
        bar.console.print(text, markup=False, highlight=False, soft_wrap=True)


@contextlib.contextmanager
def progress_bar(enabled: bool = True, *, unit: str = "it") -> Iterator[Progress | _NullProgress]:
    """A rich progress display on stderr with count, rate and ETA; a silent stand-in when disabled."""
    if not enabled:
        yield _NullProgress()
        return
    columns = (SpinnerColumn(), TextColumn("[progress.description]{task.description}"), BarColumn(),
               TaskProgressColumn(), MofNCompleteColumn(), RateColumn(unit), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=LogConsole(stderr=True), transient=False) as progress:
        yield progress
