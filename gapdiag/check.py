"""Regression gates for model releases: rules, their config, evaluation against a baseline, and CI outputs.

``gapdiag check`` compares a *current* report with a *baseline* report metric by metric. Every metric gets at
most one resolved :class:`Rule` (a full-name rule over a base-name rule over the built-in default) and yields
one :class:`RuleOutcome` (pass, fail or skip). The outcomes render as a Markdown table (GitHub step summary),
JUnit XML (CI test reports) or JSON. ``gapdiag compare`` uses :func:`compare_reports` for a side-by-side view
of several reports. The reference for users is docs/check.md.

Semantics in one place (docs/check.md repeats them):

* **Worsening** of a metric is ``w = baseline - current`` when higher is better and ``current - baseline``
  when lower is better; a rule's direction comes from the metric registry unless the rule sets ``direction``.
* **Drop limits** (each limit that is set must hold): ``w <= max_drop`` and ``w <= max_drop_relative·|baseline|``.
  A worsening equal to the limit passes (up to float rounding).
* **Hard bounds**: ``min <= current <= max``; never noise-aware.
* **Noise-aware** rules excuse a broken drop limit when ``w <= m``, the noise margin
  ``m = h_baseline + h_current`` where ``h`` is the half-width of the metric's bootstrap interval in that report.
  For intervals centred on their estimates this is exactly "the two intervals overlap", a deliberately
  conservative test (two 95 % intervals that just touch correspond to p ≈ 0.006 for normal estimates). A report
  without an interval for the metric borrows the other report's half-width (same data and sample size, which the
  provenance guard enforces); with no interval in either report the rule behaves as a plain rule.
* **Defaults** (no rule in the config): metrics whose registry entry has a direction are gated with a tolerated
  worsening of 1 % of the metric's range when the registry gives finite bounds (0.01 for [0, 1] metrics such as
  R@K, 0.02 for the modality gap in [0, 2]), else 5 % of ``|baseline|`` (effective rank, log-uniformity).
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from gapdiag.errors import ConfigError, GapdiagError, InputError, ProvenanceError
from gapdiag.report import Report, split_metric_name

Direction = Literal["higher", "lower"]
Status = Literal["pass", "fail", "skip"]

#: Default tolerated worsening for metrics with finite registry bounds, as a fraction of ``hi - lo``.
DEFAULT_RANGE_FRACTION = 0.01
#: Default tolerated worsening for unbounded metrics, as a fraction of ``|baseline|``.
DEFAULT_RELATIVE_DROP = 0.05
CONFIG_FILE = "gapdiag.toml"

# Relative float slack so that e.g. 0.80 -> 0.79 with max_drop 0.01 (w = 0.010000000000000009) passes.
_SLACK = 1e-9
_STATUS_ICON = {"pass": "✅", "fail": "❌", "skip": "⏭️"}


class RegressionError(GapdiagError):
    """At least one rule failed: the CLI prints the one-line summary and exits with 1 (not 2: input was fine)."""

    exit_code = 1


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


def _finite_bounds(bounds: Any) -> tuple[float | None, float | None]:
    if not bounds:
        return None, None
    lo, hi = bounds
    lo = float(lo) if lo is not None and math.isfinite(float(lo)) else None
    hi = float(hi) if hi is not None and math.isfinite(float(hi)) else None
    return lo, hi


def metric_registry() -> Mapping[str, Any]:
    """The metric registry (imported lazily so that rule handling does not import the metric code)."""
    from gapdiag.metrics import REGISTRY

    return REGISTRY


# --------------------------------------------------------------------------------------------------------
# Config (gapdiag.toml [check] or pyproject.toml [tool.gapdiag.check])
# --------------------------------------------------------------------------------------------------------

_RULE_TYPES: dict[str, str] = {
    "direction": "'higher' or 'lower'",
    "max_drop": "number",
    "max_drop_relative": "number",
    "min": "number",
    "max": "number",
    "noise_aware": "boolean",
}
_CHECK_TYPES: dict[str, str] = {
    "rules": "table",
    "only_listed": "boolean",
    "ignore": "list of metric names",
    "noise_aware": "boolean",
}


def load_rules(
    path: Path | None, *, search_from: Path | None = None, registry: Mapping[str, Any] | None = None
) -> RuleSet:
    """Read the check rules from ``path`` or, when ``path`` is ``None``, from the nearest config file.

    Discovery walks from ``search_from`` (default: the working directory) up to the repository root (the first
    directory holding ``.git``) and takes the first ``gapdiag.toml``, or ``pyproject.toml`` with a
    ``[tool.gapdiag.check]`` table. Nothing found: the built-in defaults (``RuleSet()``).

    Args:
        path: Explicit config file (``gapdiag.toml`` with ``[check]``, or ``pyproject.toml``).
        search_from: Directory to start discovery from.
        registry: Metric registry used to reject unknown metric names (default: ``gapdiag.metrics.REGISTRY``).

    Raises:
        ConfigError: Missing explicit file, malformed TOML, unknown key, wrong type or unknown metric; the
            message names the file, the key and the fix.
    """
    if path is None:
        found = find_config(search_from or Path.cwd())
        if found is None:
            return RuleSet()
        path, table, prefix = found
    else:
        path = Path(path)
        if path.is_dir():
            raise ConfigError(f"{path}: is a directory, not a config file",
                              hint=f"pass the {CONFIG_FILE} or pyproject.toml inside it")
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found", hint="check the --config path")
        data = _read_toml(path)
        prefix = "tool.gapdiag.check" if path.name == "pyproject.toml" else "check"
        table = _lookup(data, prefix)
        if table is None:
            raise ConfigError(
                f"{path}: no [{prefix}] table",
                hint=f'add e.g. [{prefix}.rules."recall_at_1"] with max_drop = 0.01',
            )
    return parse_rules(
        table, source=str(path), prefix=prefix, registry=metric_registry() if registry is None else registry
    )


def find_config(start: Path) -> tuple[Path, dict[str, Any], str] | None:
    """Nearest ``(file, [check] table, key prefix)`` from ``start`` up to the repository root, or ``None``."""
    for directory in [start.resolve(), *start.resolve().parents]:
        candidate = directory / CONFIG_FILE
        if candidate.is_file():
            return candidate, _lookup(_read_toml(candidate), "check") or {}, "check"
        pyproject = directory / "pyproject.toml"
        if pyproject.is_file():
            table = _lookup(_read_toml(pyproject), "tool.gapdiag.check")
            if table is not None:
                return pyproject, table, "tool.gapdiag.check"
        if (directory / ".git").exists():
            return None
    return None


def parse_rules(
    table: Mapping[str, Any], *, source: str, prefix: str = "check", registry: Mapping[str, Any] | None = None
) -> RuleSet:
    """Validate a ``[check]`` table (already parsed TOML) into a :class:`RuleSet`.

    ``registry`` (may be empty) lists the known metric bases; rule and ignore names must use one of them.
    """
    if not isinstance(table, Mapping):
        raise ConfigError(f"{source}: {prefix} must be a table", hint=f"write it as [{prefix}]")
    _reject_unknown(table, _CHECK_TYPES, source, prefix)
    known = set(registry or ())

    def check_name(name: str, key: str) -> None:
        base, _ = split_metric_name(name)
        if known and base not in known:
            raise ConfigError(
                f"{source}: {key}: unknown metric {name!r}",
                hint=f"use a registry name, e.g. one of {', '.join(sorted(known)[:8])}, ...",
            )

    rules_table = table.get("rules", {})
    if not isinstance(rules_table, Mapping):
        raise ConfigError(
            f"{source}: {prefix}.rules must be a table", hint=f'write rules as [{prefix}.rules."recall_at_1"]'
        )
    rules: dict[str, Rule] = {}
    for name, spec in rules_table.items():
        key = f"{prefix}.rules.{_toml_key(name)}"
        check_name(name, key)
        rules[name] = _parse_rule(name, spec, source, key)

    ignore = table.get("ignore", [])
    if not isinstance(ignore, list) or not all(isinstance(x, str) for x in ignore):
        raise ConfigError(
            f"{source}: {prefix}.ignore must be a list of metric names, got {ignore!r}",
            hint='e.g. ignore = ["effective_rank"]',
        )
    for name in ignore:
        check_name(name, f"{prefix}.ignore")
    return RuleSet(
        rules=rules,
        only_listed=_typed(table, "only_listed", bool, source, prefix, default=False),
        ignore=tuple(ignore),
        noise_aware=_typed(table, "noise_aware", bool, source, prefix, default=False),
        source=source,
    )


def _parse_rule(name: str, spec: Any, source: str, key: str) -> Rule:
    if not isinstance(spec, Mapping):
        raise ConfigError(
            f"{source}: {key} must be a table, got {spec!r}", hint=f"write [{key}] with max_drop = 0.01"
        )
    _reject_unknown(spec, _RULE_TYPES, source, key)
    direction = spec.get("direction")
    if direction is not None and direction not in ("higher", "lower"):
        raise ConfigError(
            f"{source}: {key}.direction must be 'higher' or 'lower', got {direction!r}",
            hint="set which way is better",
        )
    numbers = {
        k: _typed(spec, k, float, source, key) for k in ("max_drop", "max_drop_relative", "min", "max")
    }
    for k in ("max_drop", "max_drop_relative"):
        if numbers[k] is not None and not numbers[k] >= 0:
            raise ConfigError(
                f"{source}: {key}.{k} must be >= 0, got {numbers[k]}",
                hint="it is the tolerated worsening; 0 tolerates none",
            )
    if numbers["min"] is not None and numbers["max"] is not None and numbers["min"] > numbers["max"]:
        raise ConfigError(
            f"{source}: {key}: min {numbers['min']} is above max {numbers['max']}",
            hint="swap them or drop one",
        )
    return Rule(
        metric=name,
        direction=direction,
        noise_aware=_typed(spec, "noise_aware", bool, source, key),
        **numbers,
    )


def _typed(table: Mapping[str, Any], k: str, kind: type, source: str, key: str, default: Any = None) -> Any:
    """``table[k]`` checked against ``kind`` (float accepts TOML integers; bool never counts as a number)."""
    if k not in table:
        return default
    v = table[k]
    ok = isinstance(v, bool) if kind is bool else isinstance(v, (int, float)) and not isinstance(v, bool)
    if not ok or (kind is float and math.isnan(v)):
        want = "true or false" if kind is bool else "a number"
        raise ConfigError(
            f"{source}: {key}.{k} must be {want}, got {v!r}",
            hint=f"e.g. {k} = " + ("true" if kind is bool else "0.01"),
        )
    return float(v) if kind is float else v


def _reject_unknown(table: Mapping[str, Any], allowed: Mapping[str, str], source: str, key: str) -> None:
    for k in table:
        if k not in allowed:
            raise ConfigError(
                f"{source}: unknown key {key}.{_toml_key(k)}",
                hint="known keys: " + ", ".join(f"{a} ({t})" for a, t in allowed.items()),
            )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise ConfigError(
                f"{path}: reading TOML on Python 3.10 needs tomli", hint="pip install tomli"
            ) from None
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}", hint="fix the syntax at that line") from None
    except UnicodeDecodeError as e:  # TOML is UTF-8; a binary or Latin-1 file is not a config
        raise ConfigError(
            f"{path}: invalid TOML: not UTF-8 text (byte {e.start})", hint="save it as UTF-8"
        ) from None
    except OSError as e:
        raise ConfigError(
            f"{path}: cannot read config ({e.strerror})", hint="check the path and permissions"
        ) from None


def _lookup(data: Mapping[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _toml_key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else f'"{k}"'


# --------------------------------------------------------------------------------------------------------
# Provenance guard
# --------------------------------------------------------------------------------------------------------


def provenance_conflicts(
    reference: Report,
    other: Report,
    labels: tuple[str, str] = ("baseline", "current"),
) -> tuple[list[str], list[str]]:
    """``(conflicts, warnings)`` between two reports' provenance.

    Conflicts (the numbers are not comparable): different dataset fingerprint, ``metric_definitions_version``,
    sample size or sample seed. Warnings: different gapdiag version, a missing dataset fingerprint.
    """
    a, b = labels
    conflicts: list[str] = []
    warnings: list[str] = []

    def pair(what: str, x: Any, y: Any) -> str:
        return f"{what} {x} ({a}) vs {y} ({b})"

    fa, fb = (_dig(r.provenance, "dataset", "fingerprint") for r in (reference, other))
    if fa and fb and fa != fb:
        conflicts.append(pair("different data: dataset fingerprint", str(fa)[:12], str(fb)[:12]))
    elif not (fa and fb):
        missing = a if not fa else b
        warnings.append(
            f"the {missing} report has no dataset fingerprint: cannot verify that both used the same data"
        )
    if reference.metric_definitions_version != other.metric_definitions_version:
        conflicts.append(
            pair(
                "different metric definitions: metric_definitions_version",
                reference.metric_definitions_version,
                other.metric_definitions_version,
            )
        )
    for key in ("size", "seed"):
        x, y = (_dig(r.provenance, "sample", key) for r in (reference, other))
        if x != y:
            conflicts.append(pair(f"different sampling: sample {key}", x, y))
    if reference.gapdiag_version != other.gapdiag_version:
        warnings.append(
            pair("different gapdiag versions: gapdiag", reference.gapdiag_version, other.gapdiag_version)
        )
    return conflicts, warnings


def guard_provenance(
    reference: Report, other: Report, *, force: bool, labels: tuple[str, str] = ("baseline", "current")
) -> list[str]:
    """Raise :class:`ProvenanceError` on conflicts unless ``force``; return the warnings (conflicts too if forced)."""
    conflicts, warnings = provenance_conflicts(reference, other, labels)
    if conflicts and not force:
        raise ProvenanceError(
            f"cannot compare {labels[0]} with {labels[1]}: " + "; ".join(conflicts),
            hint="measure both with the same data, sample size and seed, or pass --force",
        )
    return [f"forced: {c}" for c in conflicts] + warnings


def _dig(d: Mapping[str, Any], *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, Mapping):
            return None
        d = d.get(k)  # type: ignore[assignment]
    return d


# --------------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------------


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
        ProvenanceError: Different data, metric definitions or sampling, unless ``force``.
        ConfigError: A config rule with a drop limit on a metric whose direction is unknown.
    """
    registry = metric_registry() if registry is None else registry
    warnings = guard_provenance(baseline, current, force=force)
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
    return CheckResult(outcomes, warnings, rules.source)


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
    registry = metric_registry() if registry is None else registry
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


# --------------------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------------------


def format_value(v: float) -> str:
    """Table text for a metric value: the one display format of every gapdiag table
    (:func:`gapdiag.presentation.format_number`, 4 significant digits), an em dash when absent."""
    from gapdiag.presentation import format_number

    if v is None or not math.isfinite(v):
        return "—"
    return format_number(float(v))


def format_delta(v: float) -> str:
    """Signed :func:`format_value`."""
    if v is None or not math.isfinite(v):
        return "—"
    return ("+" if v >= 0 else "") + format_value(v)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return lines


def to_markdown(result: CheckResult) -> str:
    """GitHub-flavoured Markdown: a summary line, one table row per outcome, then the warnings."""
    icon = _STATUS_ICON["pass" if result.passed else "fail"]
    lines = ["### gapdiag check", "", f"**{icon} {result.summary()}**", ""]
    lines += _md_table(
        ["", "Metric", "Baseline", "Current", "Δ", "Rule", "Reason"],
        [
            [
                _STATUS_ICON[o.status],
                f"`{o.name}`",
                format_value(o.baseline),
                format_value(o.current),
                format_delta(o.delta),
                o.rule,
                o.reason,
            ]
            for o in result.outcomes
        ],
    )
    if result.warnings:
        lines += ["", *[f"> ⚠️ {w}" for w in result.warnings]]
    if result.config:
        lines += ["", f"Rules from `{result.config}`."]
    return "\n".join(lines) + "\n"


def to_junit_xml(result: CheckResult, *, suite: str = "gapdiag check") -> str:
    """JUnit XML: one ``<testcase>`` per outcome, ``<failure>`` for fails, ``<skipped/>`` for skips."""
    n = result.counts()
    root = ET.Element(
        "testsuites",
        tests=str(len(result.outcomes)),
        failures=str(n["fail"]),
        errors="0",
        skipped=str(n["skip"]),
    )
    ts = ET.SubElement(
        root,
        "testsuite",
        name=suite,
        tests=str(len(result.outcomes)),
        failures=str(n["fail"]),
        errors="0",
        skipped=str(n["skip"]),
    )
    if result.warnings:
        props = ET.SubElement(ts, "properties")
        for w in result.warnings:
            ET.SubElement(props, "property", name="warning", value=w)
    for o in result.outcomes:
        tc = ET.SubElement(ts, "testcase", classname="gapdiag.check", name=o.name)
        detail = (
            f"baseline {format_value(o.baseline)}, current {format_value(o.current)}, "
            f"delta {format_delta(o.delta)}; rule: {o.rule or 'none'}"
        )
        if o.status == "fail":
            ET.SubElement(tc, "failure", message=o.reason, type="regression").text = detail
        elif o.status == "skip":
            ET.SubElement(tc, "skipped", message=o.reason)
        else:
            ET.SubElement(tc, "system-out").text = f"{o.reason}; {detail}"
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def to_json(result: CheckResult) -> dict[str, Any]:
    """A JSON-ready dict (absent values as ``null``)."""
    return {
        "passed": result.passed,
        "exit_code": result.exit_code,
        "counts": result.counts(),
        "config": result.config,
        "warnings": list(result.warnings),
        "outcomes": [{f.name: _json_num(getattr(o, f.name)) for f in fields(o)} for o in result.outcomes],
    }


def _json_num(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def append_step_summary(markdown: str, path: str | Path | None = None) -> Path | None:
    """Append ``markdown`` to ``path`` or ``$GITHUB_STEP_SUMMARY`` (never overwriting); ``None`` when unset."""
    target = path or os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    target = Path(target)
    try:
        with target.open("a", encoding="utf-8") as f:
            f.write("\n" + markdown if target.exists() and target.stat().st_size else markdown)
    except OSError as e:
        raise InputError(
            f"{target}: cannot append the step summary ({e.strerror})", hint="check GITHUB_STEP_SUMMARY"
        ) from None
    return target


# --------------------------------------------------------------------------------------------------------
# Side-by-side comparison (gapdiag compare)
# --------------------------------------------------------------------------------------------------------


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
) -> Comparison:
    """Side-by-side values of several reports with deltas against the first and better/worse verdicts.

    Directions come from the registry (``higher_is_better``). Every report must pass the provenance guard
    against the first one.

    Raises:
        ProvenanceError: A report measured on other data or settings than the first, unless ``force``.
    """
    labels = list(labels) if labels is not None else [f"#{i + 1}" for i in range(len(reports))]
    if len(labels) != len(reports):
        raise ValueError(f"{len(labels)} labels for {len(reports)} reports")
    registry = metric_registry() if registry is None else registry
    warnings: list[str] = []
    for label, r in zip(labels[1:], reports[1:]):
        warnings += guard_provenance(reports[0], r, force=force, labels=(labels[0], label))
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
    lines = ["### gapdiag compare", "", *_md_table(header, body)]
    if comp.warnings:
        lines += ["", *[f"> ⚠️ {w}" for w in comp.warnings]]
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
                "values": [_json_num(v) for v in r.values],
                "deltas": [_json_num(d) for d in r.deltas],
                "verdicts": list(r.verdicts),
            }
            for r in comp.rows
        ],
    }
