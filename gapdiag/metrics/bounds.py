"""The rule that keeps every reported value inside its registry bounds (docs/metrics.md, "Degenerate inputs").

Several metrics cannot leave their range mathematically, but can in floating point: the uniformity of a modality
whose vectors all coincide is ``log 1 = 0``, computed from float32 scores as ``+4e-7``; the angular value of
identical vectors is 1, computed as ``1 + 5e-8``. A value outside its bounds by no more than the float32
rounding of the unit-vector scores it comes from (:func:`rounding_slack`) is set to the bound it crossed: the
closed form of the degenerate case that reaches that bound. A value further out is no rounding: it is skipped
with a reason that asks for a bug report, and never shown.

The other rounding rule, :data:`~gapdiag.metrics.rounding.NO_VARIANCE` (below it a spread computed from streamed
sums is rounding, and the metrics that divide by it, IsoScore and CKA, are skipped instead of reading noise), and
the tolerance itself live in :mod:`gapdiag.metrics.rounding`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from gapdiag.metrics.registry import REGISTRY, MetricInfo
from gapdiag.metrics.rounding import rounding_slack


def keep_in_bounds(
    values: dict[str, float], skipped: dict[str, str], d: int, registry: Mapping[str, MetricInfo] = REGISTRY
) -> None:
    """Apply the rule of the module docstring to every value of ``values`` (``base/qualifier`` names), in place.

    Args:
        values: Metric values by full name; a value set to its bound stays, one further out moves to ``skipped``.
        skipped: Metric name -> reason, where the values that cannot be shown go.
        d: Dimension of the vectors the values come from.
        registry: The bounds, by base name.
    """
    slack = rounding_slack(d)
    for name, value in list(values.items()):
        lo, hi = registry[name.split("/")[0]].bounds
        if not math.isfinite(value):
            del values[name]
            skipped[name] = f"not a finite number ({value}): a gapdiag bug, please report it"
        elif lo is not None and value < lo:
            _clamp_or_skip(values, skipped, name, lo, lo - value <= slack, (lo, hi))
        elif hi is not None and value > hi:
            _clamp_or_skip(values, skipped, name, hi, value - hi <= slack, (lo, hi))


def _clamp_or_skip(
    values: dict[str, float], skipped: dict[str, str], name: str, bound: float, rounding: bool,
    bounds: tuple[float | None, float | None],
) -> None:
    if rounding:
        values[name] = float(bound)
        return
    value = values.pop(name)
    lo, hi = ("-inf" if bounds[0] is None else bounds[0]), ("inf" if bounds[1] is None else bounds[1])
    skipped[name] = (f"computed {value!r}, outside its range [{lo}, {hi}] by more than float rounding: a gapdiag "
                     "bug, please report it")
