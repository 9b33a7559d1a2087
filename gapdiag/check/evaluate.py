"""Evaluation of the rules against a baseline report: one :class:`RuleOutcome` per metric."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gapdiag.check import rules as _rules
from gapdiag.check.provenance import guard_provenance
from gapdiag.check.rules import (
    GateUndecidedError,
    RegressionError,
    Rule,
    RuleSet,
    Status,
    finite_bounds,
    outside_bounds,
)
from gapdiag.errors import InputError
from gapdiag.report import Report, split_metric_name
from gapdiag.report.presentation import format_value

# Relative float slack so that e.g. 0.80 -> 0.79 with max_drop 0.01 (w = 0.010000000000000009) passes.
_SLACK = 1e-9


@dataclass(frozen=True)
class RuleOutcome:
    """The verdict on one metric.

    Attributes:
        name: Full metric name.
        baseline: Baseline value (NaN when absent).
        current: Current value (NaN when absent).
        delta: ``current - baseline`` (NaN when either is absent).
        status: ``"pass"``, ``"fail"`` or ``"skip"``.
        reason: One sentence: what was checked and why it passed, failed or was skipped.
        rule: :meth:`Rule.describe` of the applied rule ("" when skipped without a rule).
        origin: ``"config"``, ``"default"`` or ``""`` (no rule).
    """

    name: str
    baseline: float
    current: float
    delta: float
    status: Status
    reason: str
    rule: str = ""
    origin: str = ""


@dataclass
class CheckResult:
    """All outcomes of a check plus the provenance warnings."""

    outcomes: list[RuleOutcome]
    warnings: list[str] = field(default_factory=list)
    config: str | None = None

    def counts(self) -> dict[str, int]:
        return {s: sum(o.status == s for o in self.outcomes) for s in ("pass", "fail", "skip")}

    @property
    def passed(self) -> bool:
        return not any(o.status == "fail" for o in self.outcomes)

    @property
    def exit_code(self) -> int:
        """0 when every rule holds, 1 on a regression (bad input never gets here: it raises, exit 2)."""
        return 0 if self.passed else RegressionError.exit_code

    def summary(self) -> str:
        """``"passed: 4 passed, 0 failed, 1 skipped"`` or ``"regression: ..."`` naming the failed metrics."""
        n = self.counts()
        failed = [o.name for o in self.outcomes if o.status == "fail"]
        shown = ", ".join(failed[:3]) + (f" and {len(failed) - 3} more" if len(failed) > 3 else "")
        head = f"regression in {shown}" if failed else "passed"
        return f"{head}: {n['pass']} passed, {n['fail']} failed, {n['skip']} skipped"

    def raise_for_regression(self) -> None:
        """Raise :class:`RegressionError` (exit code 1) when a rule failed."""
        if not self.passed:
            raise RegressionError(f"gapdiag check: {self.summary()}")


def check_reports(
    current: Report,
    baseline: Report,
    rules: RuleSet,
    *,
    force: bool = False,
    registry: Mapping[str, Any] | None = None,
    unavailable: Mapping[str, str] | None = None,
) -> CheckResult:
    """Evaluate ``rules`` on every metric of the two reports.

    Metrics are taken in baseline order, then metrics new in ``current``; a config rule that matches no metric
    of either report adds a skip outcome (likely a typo or a metric that was not measured).

    Args:
        current: The candidate's report.
        baseline: The reference report.
        rules: From :func:`load_rules`.
        force: Compare even when the provenance guard finds conflicts (they become warnings).
        registry: Metric registry for directions and default tolerances (default: ``gapdiag.metrics.REGISTRY``).
        unavailable: Base name -> why it could not be computed (e.g. the two-model metrics when the baseline's
            vectors are not cached); a rule on such a metric is skipped with that reason.

    Raises:
        ProvenanceError: Different data, metric definitions or sampling, or random-init weights on one side and
            trained ones on the other, unless ``force``.
        ConfigError: A config rule with a drop limit on a metric whose direction is unknown.
        GateUndecidedError: A value outside its metric's bounds in either report, or no metric checked at all.
    """
    registry = _rules.metric_registry() if registry is None else registry
    warnings = guard_provenance(baseline, current, force=force, gate=True)
    refuse_impossible_values(current, baseline, registry)
    refuse_uncomputed_gates(current, baseline, rules, registry)
    names = list(dict.fromkeys([*baseline.metrics, *current.metrics]))
    outcomes = []
    for name in names:
        rule, origin = rules.resolve(name, registry)
        b = baseline.metrics.get(name, math.nan)
        c = current.metrics.get(name, math.nan)
        if rule is None:
            outcomes.append(RuleOutcome(name, b, c, c - b, "skip", origin))
        else:
            outcomes.append(
                evaluate_rule(rule, b, c, margin=noise_margin(name, baseline, current), origin=origin)
            )
    matched_bases = {split_metric_name(n)[0] for n in names}
    for key in rules.rules:
        if key not in names and key not in matched_bases:
            outcomes.append(
                RuleOutcome(
                    key,
                    math.nan,
                    math.nan,
                    math.nan,
                    "skip",
                    (unavailable or {}).get(split_metric_name(key)[0])
                    or "the rule matches no metric in either report (typo, or not measured?)",
                    rules.rules[key].describe(),
                    "config",
                )
            )
    refuse_checking_nothing(outcomes, baseline)
    return CheckResult(outcomes, warnings, rules.source)


def refuse_impossible_values(current: Report, baseline: Report, registry: Mapping[str, Any]) -> None:
    """A value no measurement can have is a damaged or forged report, never a pass or a regression.

    Impossible: infinite (gapdiag writes a non-finite value as null), or outside its metric's registry bounds
    beyond float rounding (a gap of -5 would "improve", R@1 = 7 would pass any floor). Metrics the registry does
    not know are only checked for infinity.

    Raises:
        GateUndecidedError: Naming each impossible value, its report and its bounds (exit 3).
    """
    found = []
    for label, report in (("current", current), ("baseline", baseline)):
        for name, value in report.metrics.items():
            low, high = finite_bounds(registry.get(split_metric_name(name)[0]))
            if math.isinf(value):
                found.append(f"{name} = {value:g} ({label}) is not finite")
            elif not math.isnan(value) and outside_bounds(value, low, high):
                span = f"[{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}]"
                found.append(f"{name} = {value:g} ({label}) is outside {span}")
    if found:
        shown = "; ".join(found[:5]) + (f"; and {len(found) - 5} more" if len(found) > 5 else "")
        raise GateUndecidedError(
            f"gapdiag check: impossible values, not measurements: {shown}",
            hint="the report is damaged or was not written by gapdiag: measure again with `gapdiag measure --out`",
        )


def refuse_checking_nothing(outcomes: list[RuleOutcome], baseline: Report) -> None:
    """A gate that passed or failed no metric decided nothing; it must not read as "every rule holds".

    Raises:
        GateUndecidedError: Saying why nothing was checked (exit 3).
    """
    if any(o.status != "skip" for o in outcomes):
        return
    if not baseline.metrics:
        why = "the baseline has no metrics"
    elif not any(math.isfinite(v) for v in baseline.metrics.values()):
        why = f"no finite baseline value (its {len(baseline.metrics)} metrics are all NaN or null)"
    else:
        reasons = Counter(o.reason for o in outcomes).most_common(2)
        why = f"all {len(outcomes)} metrics were skipped (" + "; ".join(f"{n}: {r}" for r, n in reasons) + ")"
    raise GateUndecidedError(
        f"gapdiag check: the gate checked nothing: {why}",
        hint="pass a baseline written by `gapdiag measure --out`, and rules that gate its metrics",
    )


def refuse_uncomputed_gates(
    current: Report, baseline: Report, rules: RuleSet, registry: Mapping[str, Any]
) -> None:
    """A gated metric that the current measurement could not compute is an input error, neither pass nor fail.

    Gated: a rule applies to it and either the baseline has a value or the config names it. Its absence says
    nothing about the model (the data lacks class labels, K exceeds the gallery), so the gate cannot decide:
    exit 2 with the reason, rather than 0 ("holds") or 1 ("regression").

    Raises:
        InputError: Naming each such metric and why it could not be computed.
    """
    gated = []
    for name, reason in current.skipped.items():
        if name in current.metrics or rules.resolve(name, registry)[0] is None:
            continue
        named = name in rules.rules or split_metric_name(name)[0] in rules.rules
        if named or math.isfinite(baseline.metrics.get(name, math.nan)):
            gated.append(f"{name} ({reason})")
    if gated:
        raise InputError(
            f"gated metric(s) could not be computed for the current report: {'; '.join(gated)}",
            hint="measure on data where they apply, or list them in the [check] ignore list",
        )
def two_model_bases(rules: RuleSet, registry: Mapping[str, Any] | None = None) -> set[str]:
    """Base names of the rules' metrics that compare two embeddings (``linear_cka``, ``mutual_knn``): ``check``
    computes them against the baseline's cached vectors only when a rule asks for them."""
    registry = _rules.metric_registry() if registry is None else registry
    bases = {split_metric_name(k)[0] for k in rules.rules}
    return {b for b in bases if getattr(registry.get(b), "two_models", False)}


def evaluate_rule(
    rule: Rule, baseline: float, current: float, *, margin: float | None = None, origin: str = ""
) -> RuleOutcome:
    """Apply one resolved rule to one metric's values (NaN = absent). See the module docstring for semantics.

    A metric present in the baseline but absent (or NaN) in the current report fails: a gate must not pass
    because a metric disappeared. A metric new in the current report is checked against its bounds only.
    """
    name, described = rule.metric, rule.describe()
    delta = current - baseline

    def outcome(status: Status, reason: str) -> RuleOutcome:
        return RuleOutcome(name, baseline, current, delta, status, reason, described, origin)

    if rule.has_tolerance and rule.direction is None:
        raise ValueError(f"rule for {name!r} has a drop limit but no direction")
    has_base, has_cur = math.isfinite(baseline), math.isfinite(current)
    if not has_cur:
        if has_base:
            return outcome("fail", "missing (or NaN) in the current report but present in the baseline")
        return outcome("skip", "absent from both reports")

    problems: list[str] = []
    notes: list[str] = []
    if rule.min is not None and current < rule.min:
        problems.append(f"{format_value(current)} is below min {rule.min:g}")
    if rule.max is not None and current > rule.max:
        problems.append(f"{format_value(current)} is above max {rule.max:g}")

    if has_base and rule.direction is not None:
        worsening = -delta if rule.direction == "higher" else delta
        exceeded = [
            f"{label} {limit:.4g}"
            for label, limit in _drop_limits(rule, baseline)
            if worsening > limit + _SLACK * max(1.0, abs(limit))
        ]
        if exceeded:
            text = f"worsened by {worsening:.4g} > " + " and ".join(exceeded)
            if rule.noise_aware and margin is not None and worsening <= margin:
                notes.append(f"{text}, but within the noise margin {margin:.4g}")
            elif rule.noise_aware and margin is not None:
                problems.append(f"{text} and beyond the noise margin {margin:.4g}")
            elif rule.noise_aware:
                problems.append(
                    f"{text} (no bootstrap intervals for a noise margin: measure with --bootstrap N)"
                )
            else:
                problems.append(text)
        elif rule.has_tolerance:
            notes.append(_change_note(worsening))
    elif not has_base:
        if rule.min is None and rule.max is None:
            return outcome("skip", "no baseline value (new metric or NaN) and no min/max bound")
        notes.append("no baseline value; bounds only")

    if problems:
        return outcome("fail", "; ".join(problems))
    if rule.min is not None or rule.max is not None:
        notes.append("within bounds")
    return outcome("pass", "; ".join(notes) or "holds")


def _change_note(worsening: float) -> str:
    if worsening < 0:
        return "improved"
    if worsening == 0:
        return "unchanged"
    return f"worsened by {worsening:.4g}, within tolerance"


def _drop_limits(rule: Rule, baseline: float) -> list[tuple[str, float]]:
    limits = []
    if rule.max_drop is not None:
        limits.append(("max_drop", rule.max_drop))
    if rule.max_drop_relative is not None:
        limits.append(("max_drop_relative×|baseline|", rule.max_drop_relative * abs(baseline)))
    return limits


def noise_margin(name: str, baseline: Report, current: Report) -> float | None:
    """``h_baseline + h_current`` from the reports' bootstrap intervals (a missing one borrows the other's)."""
    halves = [
        (hi - lo) / 2.0
        for lo, hi in (r.intervals.get(name, (math.nan, math.nan)) for r in (baseline, current))
    ]
    finite = [h for h in halves if math.isfinite(h)]
    if not finite:
        return None
    return sum(finite) if len(finite) == 2 else 2.0 * finite[0]
