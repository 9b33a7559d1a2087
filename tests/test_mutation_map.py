"""scripts/mutation_sample.py's map of modules to tests must follow the code (docs/reliability.md, "Mutation
testing"): a module missing from it is silently left out of the mutation score (``gapdiag/metrics/raw.py`` was,
from the day it was added), and a test file that moved makes every mutant of its modules "killed" by pytest's
usage error."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("mutation_sample", REPO / "scripts" / "mutation_sample.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # imports no cosmic-ray at module level
    return module


def test_every_module_of_the_metrics_the_gate_and_the_cache_is_mapped_to_tests():
    mapped = set(_script().MODULES)
    present = {str(p.relative_to(REPO)) for pkg in ("metrics", "check", "cache")
               for p in (REPO / "gapdiag" / pkg).glob("*.py")}
    assert sorted(present - mapped) == [], "add these modules to MODULES in scripts/mutation_sample.py"
    assert sorted(mapped - present) == [], "these modules are gone: remove them from MODULES"


def test_every_test_the_map_runs_exists():
    for module, tests in _script().MODULES.items():
        for test in tests.split():
            assert (REPO / test.split("::")[0]).is_file(), (module, test)


@pytest.mark.parametrize(("sizes", "sample", "want"), [
    ({"a": 50, "b": 30, "c": 20}, 10, {"a": 5, "b": 3, "c": 2}),
    ({"a": 1000, "b": 1, "c": 0}, 10, {"a": 9, "b": 1, "c": 0}),  # at least one from each non-empty stratum
    ({"a": 2, "b": 3}, 0, {"a": 2, "b": 3}),  # 0: every mutant
    ({"a": 5, "b": 6}, 7, {"a": 3, "b": 4}),  # largest remainder: 3.18 + 3.82
])
def test_the_sample_is_allocated_to_modules_in_proportion(sizes, sample, want):
    assert _script().allocate(sizes, sample) == want


def test_the_interval_is_wilsons():
    lo, hi = _script().wilson(149, 164)
    assert (round(100 * lo, 1), round(100 * hi, 1)) == (85.5, 94.4)  # docs/reliability.md's pooled runs 2-4
