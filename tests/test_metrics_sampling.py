"""The one seeded "sorted choice without replacement" of the metrics (``gapdiag.metrics.sampling``).

Nine places drew ``np.sort(rng.choice(n, size, replace=False))`` by hand (issue #26); now every draw of the metrics
goes through :func:`sorted_choice` / :func:`seeded_samples`, with the random streams of before, so every value
stays bit for bit (some callers draw twice from one generator: the helper must advance it exactly as before).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from gapdiag.metrics.sampling import seeded_samples, sorted_choice

METRICS = Path(__file__).resolve().parents[1] / "gapdiag" / "metrics"


def test_no_metric_module_draws_a_choice_by_hand():
    """Only ``metrics/sampling.py`` calls a generator's ``choice``: one helper, one stream, one tie order."""
    by_hand = [f"{path.name}:{n}" for path in sorted(METRICS.glob("*.py")) if path.name != "sampling.py"
               for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
               if re.search(r"\.choice\(", line)]
    assert not by_hand, f"draw through gapdiag.metrics.sampling instead: {by_hand}"


@pytest.mark.parametrize("n, size", [(10, 3), (10, 10), (10, 25), (1, 1), (7, 0)])
def test_sorted_choice_is_the_sorted_draw_and_advances_the_generator_as_it_did(n, size):
    mine, theirs = np.random.default_rng(5), np.random.default_rng(5)
    got = sorted_choice(mine, n, size)
    want = np.sort(theirs.choice(n, size=min(size, n), replace=False))
    assert got.dtype == np.int64 and np.array_equal(got, want)
    # A second draw from the same generator (MMD's second modality, arithmetic's value picks) sees the same state.
    assert np.array_equal(mine.random(4), theirs.random(4))


def test_seeded_samples_are_sorted_distinct_seeded_and_all_when_asked_for_more():
    rows = seeded_samples(1000, 30, seed=4)
    assert rows.dtype == np.int64 and np.all(np.diff(rows) > 0) and rows.size == 30
    assert np.array_equal(rows, seeded_samples(1000, 30, seed=4))
    assert not np.array_equal(rows, seeded_samples(1000, 30, seed=5))
    assert np.array_equal(rows, sorted_choice(np.random.default_rng(4), 1000, 30))
    assert np.array_equal(seeded_samples(12, 12, seed=4), np.arange(12))
    assert np.array_equal(seeded_samples(12, 50, seed=4), np.arange(12))
