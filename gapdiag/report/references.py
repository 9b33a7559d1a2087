"""Published reference points for headline metrics, read from the packaged ``reference_points.json``.

A gap of 0.24 means little alone: beside it, CLIP's ≈ 0.82 on MS-COCO (Liang et al. 2022) and a gap-closed
model's ≈ 0.06 (Grassucci et al. 2026) say where it lies. Every point states model, data and N, so that the
reader can judge how comparable it is. The data file is the one place these numbers live; the measure
table, ``measure --json`` (``references``) and the HTML report all read it through :func:`references_for`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from functools import cache
from importlib import resources

from gapdiag.report.record import split_metric_name

DATA_FILE = "reference_points.json"


@dataclass(frozen=True)
class ReferencePoint:
    """One published value of a metric.

    Attributes:
        metric: Base metric name (a key of ``gapdiag.metrics.REGISTRY``).
        value: The published value.
        model: Model it was measured on.
        data: Data it was measured on.
        n: Number of pairs, or None where the source does not state it.
        cite: Short citation ("Humer et al., JoVI 2024").
        source: Full citation, with the table or file the number comes from.
        url: Where to read it.
        note: What to keep in mind when comparing.
    """

    metric: str
    value: float
    model: str
    data: str
    n: int | None
    cite: str
    source: str
    url: str
    note: str = ""

    def label(self) -> str:
        """``"CLIP RN50 (OpenAI) 0.8186 (Humer et al., JoVI 2024; MS-COCO ..., N = 5,000)"``."""
        n = f", N = {self.n:,}" if self.n is not None else ""
        # A published value keeps its own precision (0.82 is not 0.8200), cut at 4 significant digits.
        return f"{self.model} {self.value:.4g} ({self.cite}; {self.data}{n})"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@cache
def load_reference_points() -> tuple[ReferencePoint, ...]:
    """Every reference point of the packaged data file, in file order."""
    text = resources.files("gapdiag.report").joinpath(DATA_FILE).read_text(encoding="utf-8")
    return tuple(ReferencePoint(**point) for point in json.loads(text)["points"])


def references_for(metric_names: Iterable[str]) -> list[ReferencePoint]:
    """The reference points of the base metrics among ``metric_names`` (file order)."""
    bases = {split_metric_name(name)[0] for name in metric_names}
    return [p for p in load_reference_points() if p.metric in bases]
