"""The outputs of ``gapdiag check``: Markdown (GitHub step summary), JUnit XML and JSON."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from gapdiag.check.evaluate import CheckResult
from gapdiag.errors import InputError
from gapdiag.report.presentation import format_delta, format_value

#: The mark of each outcome in the Markdown table (and of the whole check in its summary line).
STATUS_ICON = {"pass": "✅", "fail": "❌", "skip": "⏭️"}


def markdown_cell(text: str) -> str:
    """``text`` as one cell of a Markdown table: ``|`` escaped, on one line."""
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """The lines of a Markdown table: ``header``, the rule under it, then one line per row."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(markdown_cell(c) for c in row) + " |" for row in rows]
    return lines


def to_markdown(result: CheckResult) -> str:
    """GitHub-flavoured Markdown: a summary line, one table row per outcome, then the warnings."""
    icon = STATUS_ICON["pass" if result.passed else "fail"]
    lines = ["### gapdiag check", "", f"**{icon} {result.summary()}**", ""]
    lines += markdown_table(
        ["", "Metric", "Baseline", "Current", "Δ", "Rule", "Reason"],
        [
            [
                STATUS_ICON[o.status],
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
        "outcomes": [{f.name: json_number(getattr(o, f.name)) for f in fields(o)} for o in result.outcomes],
    }


def json_number(v: Any) -> Any:
    """``v`` for JSON: a NaN or infinite float becomes ``null`` (strict JSON has no such numbers)."""
    return None if isinstance(v, float) and not math.isfinite(v) else v


def append_step_summary(markdown: str, path: str | Path) -> Path:
    """Append ``markdown`` to the step summary file ``path`` (never overwriting); the api reads where it is from
    ``$GITHUB_STEP_SUMMARY``."""
    target = Path(path)
    try:
        with target.open("a", encoding="utf-8") as f:
            f.write("\n" + markdown if target.exists() and target.stat().st_size else markdown)
    except OSError as e:
        raise InputError(
            f"{target}: cannot append the step summary ({e.strerror})", hint="check GITHUB_STEP_SUMMARY"
        ) from None
    return target
