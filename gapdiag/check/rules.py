"""Regression rules: one :class:`Rule` per metric, the :class:`RuleSet`, defaults from the metric registry."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from gapdiag.errors import ConfigError, GapdiagError
from gapdiag.metrics import REGISTRY
from gapdiag.report import split_metric_name

Direction = Literal["higher", "lower"]
Status = Literal["pass", "fail", "skip"]

#: Default tolerated worsening for metrics with finite registry bounds, as a fraction of ``hi - lo``.
DEFAULT_RANGE_FRACTION = 0.01
#: Default tolerated worsening for unbounded metrics, as a fraction of ``|baseline|``.
DEFAULT_RELATIVE_DROP = 0.05
CONFIG_FILE = "gapdiag.toml"


class RegressionError(GapdiagError):
    """At least one rule failed: the CLI prints the one-line summary and exits with 1 (not 2: input was fine)."""

    exit_code = 1


class GateUndecidedError(GapdiagError):
    """The gate could not decide: it checked nothing (every metric skipped, an empty or all-NaN baseline) or read
    values no measurement can have (a gap of -5, R@1 = 7, infinity). Exit 3: neither "holds" (0) nor
    "regression" (1), and not a usage error (2) either, so CI can tell the three apart."""

    exit_code = 3


# --------------------------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """How one metric (``metric`` = full name) or every metric of a base (``metric`` = base name) is gated.

    Unset fields (``None``) are inherited: a full-name rule over the base rule over the default rule.
    ``max_drop`` and ``max_drop_relative`` are inherited together as one tolerance, so a rule that sets
    either replaces both.

    Attributes:
        metric: ``"recall_at_1/text_to_image"`` or a base such as ``"recall_at_1"`` (covers every qualifier).
        direction: ``"higher"`` or ``"lower"`` is better; ``None`` = from the registry.
        max_drop: Tolerated absolute worsening.
        max_drop_relative: Tolerated worsening as a fraction of ``|baseline|``.
        min: Hard lower bound on the current value.
        max: Hard upper bound on the current value.
        noise_aware: Excuse drops within the bootstrap noise margin (see the module docstring).
    """

    metric: str
    direction: Direction | None = None
    max_drop: float | None = None
    max_drop_relative: float | None = None
    min: float | None = None
    max: float | None = None
    noise_aware: bool | None = None

    def over(self, other: Rule | None) -> Rule:
        """This rule with its unset fields taken from ``other`` (the less specific rule)."""
        if other is None:
            return self
        own_tolerance = self.max_drop is not None or self.max_drop_relative is not None
        return Rule(
            metric=self.metric,
            direction=self.direction if self.direction is not None else other.direction,
            max_drop=self.max_drop if own_tolerance else other.max_drop,
            max_drop_relative=self.max_drop_relative if own_tolerance else other.max_drop_relative,
            min=self.min if self.min is not None else other.min,
            max=self.max if self.max is not None else other.max,
            noise_aware=self.noise_aware if self.noise_aware is not None else other.noise_aware,
        )

    @property
    def has_tolerance(self) -> bool:
        return self.max_drop is not None or self.max_drop_relative is not None

    def describe(self) -> str:
        """Compact text for tables: ``"↑ tol 0.01 min 0.3 ±noise"`` (↑/↓: higher/lower is better;
        ``tol``: tolerated worsening, absolute or ``%`` of the baseline)."""
        parts = [{"higher": "↑", "lower": "↓", None: "?"}[self.direction]]
        if self.max_drop is not None:
            parts.append(f"tol {self.max_drop:g}")
        if self.max_drop_relative is not None:
            parts.append(f"tol {100 * self.max_drop_relative:g}%")
        if self.min is not None:
            parts.append(f"min {self.min:g}")
        if self.max is not None:
            parts.append(f"max {self.max:g}")
        if self.noise_aware:
            parts.append("±noise")
        return " ".join(parts)


@dataclass(frozen=True)
class RuleSet:
    """Rules of one config file plus the options of its ``[check]`` table.

    Attributes:
        rules: Metric name or base -> :class:`Rule`.
        only_listed: Check only metrics that a rule names (no default rules for the others).
        ignore: Metric names or bases never checked.
        noise_aware: Default of ``Rule.noise_aware`` for every rule, defaults included.
        source: The config file read, or ``None`` for the built-in defaults.
    """

    rules: Mapping[str, Rule] = field(default_factory=dict)
    only_listed: bool = False
    ignore: tuple[str, ...] = ()
    noise_aware: bool = False
    source: str | None = None

    def resolve(self, name: str, registry: Mapping[str, Any]) -> tuple[Rule | None, str]:
        """The rule that gates metric ``name`` (``None`` when unchecked) and why (for skip reasons)."""
        base, _ = split_metric_name(name)
        if name in self.ignore or base in self.ignore:
            return None, "ignored by config"
        listed = [self.rules[k] for k in dict.fromkeys((name, base)) if k in self.rules]
        if self.only_listed and not listed:
            return None, "no rule for this metric (only_listed = true)"
        info = registry.get(base)
        default = default_rule(name, info)
        if not listed and (default is None or default.direction is None):
            why = "not in the metric registry" if info is None else "the registry gives no better direction"
            return None, f"no default rule: {why}; add a rule to gate it"
        rule = default
        for r in reversed(listed):  # base rule first, then the full-name rule over it
            rule = r.over(rule)
        assert rule is not None
        if rule.direction is None and rule.has_tolerance:
            if any(r.has_tolerance for r in listed):
                raise ConfigError(
                    f"{self.source or 'rules'}: the rule for {name!r} sets a drop limit but the "
                    "registry gives the metric no direction",
                    hint="add direction = 'higher' or 'lower' to the rule",
                )
            # The default tolerance only applies once a direction is known; bounds still do.
            rule = replace(rule, max_drop=None, max_drop_relative=None)
        noise = rule.noise_aware if rule.noise_aware is not None else self.noise_aware
        return replace(rule, metric=name, noise_aware=noise), "config" if listed else "default"


def default_rule(name: str, info: Any | None) -> Rule | None:
    """The built-in rule for ``name`` from its registry entry (``None`` for metrics not in the registry).

    Direction from ``info.higher_is_better``; tolerated worsening ``DEFAULT_RANGE_FRACTION·(hi - lo)`` when
    ``info.bounds`` is finite on both ends, else ``DEFAULT_RELATIVE_DROP·|baseline|``.
    """
    if info is None:
        return None
    direction = registry_direction(info)
    lo, hi = _finite_bounds(getattr(info, "bounds", None))
    if lo is not None and hi is not None and hi > lo:
        return Rule(metric=name, direction=direction, max_drop=DEFAULT_RANGE_FRACTION * (hi - lo))
    return Rule(metric=name, direction=direction, max_drop_relative=DEFAULT_RELATIVE_DROP)


def registry_direction(info: Any | None) -> Direction | None:
    """``"higher"``/``"lower"`` from a registry entry's ``higher_is_better`` (``None``: no entry or no direction)."""
    hib = getattr(info, "higher_is_better", None)
    return None if hib is None else ("higher" if hib else "lower")


def finite_bounds(info: Any | None) -> tuple[float | None, float | None]:
    """``(low, high)`` of a registry entry, ``None`` on a side without a finite bound (or without an entry)."""
    return _finite_bounds(getattr(info, "bounds", None))


def outside_bounds(value: float, low: float | None, high: float | None) -> bool:
    """Whether ``value`` lies outside ``[low, high]`` by more than float rounding (a relative 1e-6 of the bound:
    a cosine of 1.0000001 from float32 vectors is on the bound, not beyond it)."""
    return (low is not None and value < low - 1e-6 * max(1.0, abs(low))) or (
        high is not None and value > high + 1e-6 * max(1.0, abs(high)))


def _finite_bounds(bounds: Any) -> tuple[float | None, float | None]:
    if not bounds:
        return None, None
    lo, hi = bounds
    lo = float(lo) if lo is not None and math.isfinite(float(lo)) else None
    hi = float(hi) if hi is not None and math.isfinite(float(hi)) else None
    return lo, hi


def metric_registry() -> Mapping[str, Any]:
    """The metric registry (a function, so that a test can stand in a registry of its own)."""
    return REGISTRY
