"""Concepts the metrics write once (issue #26): the joint statistics, the float32 rounding tolerance of scores, and
input checks that raise the project's ``InputError`` (never ``assert``, which ``python -O`` drops).

Besides what each function does, the tests read the source of ``gapdiag/metrics/``: a second copy of a concept
written by hand (a ``sum(...)`` of statistics, a ``2**-24``, an ``assert``) fails here, naming where it is.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

from gapdiag.errors import InputError
from gapdiag.metrics.blocked import LinearStats, joint_stats, linear_stats

METRICS = Path(__file__).resolve().parents[1] / "gapdiag" / "metrics"


def _modules() -> list[Path]:
    return sorted(METRICS.glob("*.py"))


def _stats(seed: int, n: int, d: int = 6) -> LinearStats:
    return linear_stats(np.random.default_rng(seed).normal(size=(n, d)), "x")


def test_joint_statistics_are_the_parts_added_in_order():
    a, b, c = _stats(0, 9), _stats(1, 4), _stats(2, 7)
    joint = joint_stats([a, b, c])
    by_hand = (a + b) + c
    assert joint.n == 20
    assert np.array_equal(joint.total, by_hand.total) and np.array_equal(joint.gram, by_hand.gram)
    stacked = linear_stats(np.vstack([np.random.default_rng(s).normal(size=(n, 6)) for s, n in ((0, 9), (1, 4), (2, 7))]))
    np.testing.assert_allclose(joint.gram, stacked.gram, rtol=1e-12)
    assert joint_stats([a]) is a
    without_gram = joint_stats([a, LinearStats(b.n, b.total, None)])
    assert without_gram.gram is None and without_gram.n == 13
    with pytest.raises(InputError, match="at least one"):
        joint_stats([])


def test_no_metric_module_adds_statistics_by_hand():
    by_hand = [f"{path.name}:{n}" for path in _modules() for n, line in
               enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
               if re.search(r"\bsum\([^#]*\bstats\b", line) or re.search(r"\bs[xy] \+ s[xy]\b", line)]
    assert not by_hand, f"use gapdiag.metrics.blocked.joint_stats: {by_hand}"


def _powers_of_two_to_minus_24(path: Path) -> list[int]:
    """Lines of ``path`` whose code (not comments or docstrings) computes ``2**-24``."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow) and isinstance(node.left, ast.Constant)
                and node.left.value == 2 and isinstance(node.right, ast.UnaryOp)
                and isinstance(node.right.operand, ast.Constant) and node.right.operand.value == 24):
            lines.append(node.lineno)
    return lines


def test_the_float32_rounding_of_a_score_is_written_once():
    where = {path.name: found for path in _modules() if (found := _powers_of_two_to_minus_24(path))}
    assert list(where) == ["rounding.py"], f"use gapdiag.metrics.rounding.score_tolerance: {where}"


def test_every_tolerance_is_a_multiple_of_the_score_tolerance():
    from gapdiag.metrics import bounds, cross, intrinsic
    from gapdiag.metrics.rounding import rounding_slack, score_tolerance

    for d in (2, 7, 512, 1024):
        assert score_tolerance(d) == 2 * d * 2.0**-24  # |float32 score − exact| <= d·2⁻²⁴, doubled
        assert cross.score_tolerance(d) == score_tolerance(d)
        assert intrinsic.distance_tolerance(d) == 4 * score_tolerance(d)  # three score-sized terms, doubled
        assert rounding_slack(d) == bounds.rounding_slack(d) == 4 * score_tolerance(d)  # 2t = 4 times a score


def test_no_assert_checks_input_in_the_metrics():
    asserts = [f"{path.name}:{node.lineno}" for path in _modules()
               for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(node, ast.Assert)]
    assert not asserts, f"raise gapdiag.errors.InputError instead (python -O drops asserts): {asserts}"


def test_statistics_without_a_gram_matrix_are_an_input_error_naming_the_fix():
    from gapdiag.metrics.decomposition import mean_and_cov
    from gapdiag.metrics.rank import singular_values_from_stats
    from gapdiag.metrics.uniformity import w2_from_stats

    sums_only = LinearStats(3, np.ones(4), None)
    for needs_gram in (singular_values_from_stats, w2_from_stats, mean_and_cov):
        with pytest.raises(InputError, match=r"gram=True"):
            needs_gram(sums_only)


def test_the_compiled_exp_refuses_a_temperature_beyond_its_range_with_an_input_error():
    from gapdiag.metrics.strip_scan import MAX_TWO_T, exp_terms

    with pytest.raises(InputError, match="beyond"):
        exp_terms(np.zeros((2, 2), dtype=np.float32), MAX_TWO_T * 2)


def test_no_private_name_crosses_a_module_boundary_in_the_metrics():
    """A name another module imports is public (named without ``_``): what a module promises to others is visible."""
    crossing = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gapdiag"):
                crossing += [f"{path.name}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    assert not crossing, f"make these public or move the code: {crossing}"


def test_search_settings_have_one_source_of_defaults_and_no_signature_introspection():
    import inspect

    from gapdiag.metrics import search_index
    from gapdiag.metrics.retrieval import search_topk

    settings = search_index.IndexSettings()
    signature = inspect.signature(search_topk).parameters
    assert all(signature[name].default == getattr(settings, name) for name in search_index.IndexSettings.option_names())
    used = [path.name for path in _modules() if "__kwdefaults__" in path.read_text(encoding="utf-8")]
    assert not used, f"read the defaults from IndexSettings: {used}"
    with pytest.raises(InputError, match="unknown search option"):
        search_index.IndexSettings.of({"nprobes": 3})
