"""Progress display shared by every long-running step (embedding, metrics, training): rates and ETA on stderr;
and the console every gapdiag output goes through, which writes whole lines off a terminal."""

from __future__ import annotations

import contextlib
import datetime
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

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
        return size if self.is_live else ConsoleDimensions(UNBOUNDED_WIDTH, size.height)

    @property
    def is_live(self) -> bool:
        """A terminal or a notebook: a display that redraws (rich's width, live progress bars)."""
        return self.is_terminal or self.is_jupyter

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


#: Off a terminal, a task's progress line is printed at most this often (and when it starts and ends).
PLAIN_INTERVAL_S = 15.0


@dataclass
class _PlainTask:
    description: str
    total: float | None
    completed: float
    started_at: float
    started_from: float
    printed_at: float
    done: bool = False


class PlainProgress:
    """The progress display off a terminal (a pipe, a file, a CI log): plain lines, one when a task starts,
    then at most one every ``interval`` seconds, and one when it is done, with count, share, rate and ETA.

    rich draws its bar only once, at the very end, where there is no terminal: a long embedding or training run
    looked hung in a log. The calls are those of rich's ``Progress`` that gapdiag uses (``add_task``,
    ``update``, ``advance``, ``console``). ``clock`` is injectable so that tests need not wait.
    """

    def __init__(self, console: Console, unit: str = "it", *, interval: float = PLAIN_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.console, self.unit, self.interval, self.clock = console, unit, interval, clock
        self._tasks: list[_PlainTask] = []

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **_: object) -> int:
        now = self.clock()
        self._tasks.append(_PlainTask(description, total, completed, now, completed, now))
        self._print(self._tasks[-1])
        return len(self._tasks) - 1

    def update(self, task_id: int, *, completed: float | None = None, total: float | None = None,
               advance: float | None = None, **_: object) -> None:
        task = self._tasks[task_id]
        if total is not None:
            task.total = total
        if completed is not None:
            task.completed = completed
        if advance:
            task.completed += advance
        now = self.clock()
        if task.total is not None and task.completed >= task.total and not task.done:
            task.done = True
            self._print(task, now)
        elif not task.done and now - task.printed_at >= self.interval:
            self._print(task, now)

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def _print(self, task: _PlainTask, now: float | None = None) -> None:
        """``embed image 500/1,000 items (50%), 22 items/s, elapsed 0:00:22, eta 0:00:22``."""
        count = f"{task.completed:,.0f}" + (f"/{task.total:,.0f}" if task.total else "") + f" {self.unit}"
        share = f" ({100 * task.completed / task.total:.0f}%)" if task.total else ""
        line = f"{task.description} {count}{share}"
        if now is not None:
            elapsed = now - task.started_at
            rate = (task.completed - task.started_from) / elapsed if elapsed > 0 else 0.0
            if task.done:
                line += f", done in {_clock_time(elapsed)}"
            elif rate > 0:
                line += f", {rate:,.0f} {self.unit}/s, elapsed {_clock_time(elapsed)}"
                if task.total:
                    line += f", eta {_clock_time((task.total - task.completed) / rate)}"
            task.printed_at = now
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)


def _clock_time(seconds: float) -> str:
    """``0:01:05`` (whole seconds)."""
    return str(datetime.timedelta(seconds=int(seconds)))


def print_line(bar: Progress | PlainProgress | _NullProgress, text: str) -> None:
    """``text`` as a line of its own: above the live display on a terminal, plainly in a log; nothing when the
    display is off (``--quiet``)."""
    console = getattr(bar, "console", None)
    if console is not None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)


@contextlib.contextmanager
def progress_bar(enabled: bool = True, *, unit: str = "it",
                 clock: Callable[[], float] = time.monotonic) -> Iterator[Progress | PlainProgress | _NullProgress]:
    """Progress on stderr with count, rate and ETA: rich's live display on a terminal, plain lines off one
    (:class:`PlainProgress`), a silent stand-in when disabled."""
    if not enabled:
        yield _NullProgress()
        return
    console = LogConsole(stderr=True)
    if not console.is_live:
        yield PlainProgress(console, unit, clock=clock)
        return
    columns = (SpinnerColumn(), TextColumn("[progress.description]{task.description}"), BarColumn(),
               TaskProgressColumn(), MofNCompleteColumn(), RateColumn(unit), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        yield progress
