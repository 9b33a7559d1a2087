"""The rules' config: ``gapdiag.toml`` ``[check]`` or ``pyproject.toml`` ``[tool.gapdiag.check]`` (docs/check.md)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gapdiag.check import rules as _rules
from gapdiag.check.rules import CONFIG_FILE, Rule, RuleSet
from gapdiag.errors import ConfigError
from gapdiag.report import split_metric_name

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
        table, source=str(path), prefix=prefix, registry=_rules.metric_registry() if registry is None else registry
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
    refuse_unmeetable_rules(rules, source, prefix, registry or {})
    return RuleSet(
        rules=rules,
        only_listed=_typed(table, "only_listed", bool, source, prefix, default=False),
        ignore=tuple(ignore),
        noise_aware=_typed(table, "noise_aware", bool, source, prefix, default=False),
        source=source,
    )


def refuse_unmeetable_rules(rules: Mapping[str, Rule], source: str, prefix: str, registry: Mapping[str, Any]) -> None:
    """A rule no value can meet would fail every run as a "regression" (exit 1); it is a config error (exit 2).

    Checked on each rule as it applies, a full name inheriting its base rule's unset bounds: ``min > max``
    (``max = 1`` on ``modality_gap`` with ``min = 5`` on ``"modality_gap/image-text"``), or a bound beyond the
    metric's registry range (``min = 5`` on ``recall_at_1``, whose values lie in [0, 1]).

    Raises:
        ConfigError: Naming the rule's key, where each bound comes from, and the fix.
    """
    for name, own in rules.items():
        base = split_metric_name(name)[0]
        inherited = rules.get(base) if base != name else None
        rule = own.over(inherited)
        key = f"{prefix}.rules.{_toml_key(name)}"
        # Where each bound comes from, for the message: " (from check.rules.modality_gap)" when inherited.
        origin = {field: f" (from {prefix}.rules.{_toml_key(base)})"
                  if getattr(own, field) is None and inherited is not None else "" for field in ("min", "max")}
        if rule.min is not None and rule.max is not None and rule.min > rule.max:
            raise ConfigError(f"{source}: {key}: min {rule.min:g}{origin['min']} is above max {rule.max:g}"
                              f"{origin['max']}: no value can meet both", hint="change one of the two bounds")
        low, high = _rules.finite_bounds(registry.get(base))
        if rule.min is not None and high is not None and rule.min > high:
            raise ConfigError(f"{source}: {key}: min {rule.min:g}{origin['min']} is above the highest possible "
                              f"value {high:g} of {base}", hint=f"set min at most {high:g}")
        if rule.max is not None and low is not None and rule.max < low:
            raise ConfigError(f"{source}: {key}: max {rule.max:g}{origin['max']} is below the lowest possible "
                              f"value {low:g} of {base}", hint=f"set max at least {low:g}")


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
