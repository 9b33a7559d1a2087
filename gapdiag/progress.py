"""Progress display shared by every long-running step (embedding, metrics, training): rates and ETA on stderr."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console
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


@contextlib.contextmanager
def progress_bar(enabled: bool = True, *, unit: str = "it") -> Iterator[Progress | _NullProgress]:
    """A rich progress display on stderr with count, rate and ETA; a silent stand-in when disabled."""
    if not enabled:
        yield _NullProgress()
        return
    columns = (SpinnerColumn(), TextColumn("[progress.description]{task.description}"), BarColumn(),
               TaskProgressColumn(), MofNCompleteColumn(), RateColumn(unit), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        yield progress
