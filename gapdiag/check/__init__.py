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

from gapdiag.check.compare import (
    Comparison,
    ComparisonRow,
    compare_reports,
    comparison_to_json,
    comparison_to_markdown,
    similarity_to_markdown,
)
from gapdiag.check.config import find_config, load_rules, parse_rules, refuse_unmeetable_rules
from gapdiag.check.evaluate import (
    CheckResult,
    RuleOutcome,
    check_reports,
    evaluate_rule,
    noise_margin,
    refuse_checking_nothing,
    refuse_impossible_values,
    refuse_uncomputed_gates,
    two_model_bases,
)
from gapdiag.check.provenance import guard_provenance, provenance_conflicts
from gapdiag.check.render import append_step_summary, to_json, to_junit_xml, to_markdown
from gapdiag.check.rules import (
    CONFIG_FILE,
    DEFAULT_RANGE_FRACTION,
    DEFAULT_RELATIVE_DROP,
    Direction,
    GateUndecidedError,
    RegressionError,
    Rule,
    RuleSet,
    Status,
    default_rule,
    finite_bounds,
    metric_registry,
    outside_bounds,
    registry_direction,
)

__all__ = [
    "CONFIG_FILE",
    "DEFAULT_RANGE_FRACTION",
    "DEFAULT_RELATIVE_DROP",
    "CheckResult",
    "Comparison",
    "ComparisonRow",
    "Direction",
    "GateUndecidedError",
    "RegressionError",
    "Rule",
    "RuleOutcome",
    "RuleSet",
    "Status",
    "append_step_summary",
    "check_reports",
    "compare_reports",
    "comparison_to_json",
    "comparison_to_markdown",
    "default_rule",
    "evaluate_rule",
    "find_config",
    "finite_bounds",
    "guard_provenance",
    "load_rules",
    "metric_registry",
    "noise_margin",
    "outside_bounds",
    "parse_rules",
    "provenance_conflicts",
    "refuse_checking_nothing",
    "refuse_impossible_values",
    "refuse_uncomputed_gates",
    "refuse_unmeetable_rules",
    "registry_direction",
    "similarity_to_markdown",
    "to_json",
    "to_junit_xml",
    "to_markdown",
    "two_model_bases",
]
