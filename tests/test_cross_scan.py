"""The compiled strip scan and the running top-K of the fused cross pass, against numpy written here."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from gapdiag.metrics.cross import cross_pass
from gapdiag.metrics.running_topk import RunningTopK
from gapdiag.metrics.strip_scan import QueryState, StripScanner


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _lists(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    top = RunningTopK(n, k)
    return top.scores, top.index


@pytest.mark.parametrize("with_same", [False, True])
def test_strip_scan_equals_numpy(with_same):
    rng = np.random.default_rng(0)
    # Scores on a coarse grid, so that many entries sit exactly on a bound (>= and > must be told apart).
    s = (rng.integers(-8, 9, size=(37, 53)) / 8).astype(np.float32)
    hi_r, hi_c = (rng.integers(-8, 9, size=37) / 8).astype(np.float32), (rng.integers(-8, 9, size=53) / 8).astype(np.float32)
    lo_r, lo_c = hi_r - np.float32(0.125), hi_c - np.float32(0.125)
    hi_r[3] = lo_r[3] = np.inf  # a query without a true item: nothing is counted for it
    same = rng.random((37, 53)) < 0.1 if with_same else None
    other = np.ones_like(s, dtype=bool) if same is None else ~same
    k = 4
    top_r, idx_r = _lists(37, k)
    top_c, idx_c = _lists(53, k)
    gal_r, gal_c = rng.permutation(1000)[:53], rng.permutation(1000)[:37]  # original indices of the items
    th_r, th_c = top_r[:, -1].copy(), top_c[:, -1].copy()
    rows = QueryState(hi=hi_r, lo=lo_r, top_scores=top_r, top_index=idx_r, gallery=gal_r, threshold=th_r)
    cols = QueryState(hi=hi_c, lo=lo_c, top_scores=top_c, top_index=idx_c, gallery=gal_c, threshold=th_c)
    ahead_r, ahead_c, i, j = StripScanner()(s, same, rows, cols)
    assert ahead_r.tolist() == (other & (s > hi_r[:, None])).sum(axis=1).tolist()
    assert ahead_c.tolist() == (other & (s > hi_c[None, :])).sum(axis=0).tolist()
    band = other & (((s >= lo_r[:, None]) & (s <= hi_r[:, None])) | ((s >= lo_c[None, :]) & (s <= hi_c[None, :])))
    want_i, want_j = np.nonzero(band)
    assert i.tolist() == want_i.tolist() and j.tolist() == want_j.tolist()
    # The top-K lists: the k best of every entry (same-sample ones included) by (-score, original index).
    for scores, gallery, lists, index in ((s, gal_r, top_r, idx_r), (s.T, gal_c, top_c, idx_c)):
        for q in range(scores.shape[0]):
            best = sorted(range(scores.shape[1]), key=lambda g, q=q: (-scores[q, g], gallery[g]))[:k]
            assert index[q].tolist() == [gallery[g] for g in best]
            assert lists[q].tolist() == [scores[q, g] for g in best]
    # the scan keeps the thresholds in step with the lists
    assert th_r.tolist() == top_r[:, -1].tolist() and th_c.tolist() == top_c[:, -1].tolist()


def test_the_compiled_scan_takes_named_inputs():
    """Each side of a strip is one named structure (a numba-typed NamedTuple), not six arrays read by position."""
    from gapdiag.metrics import strip_scan

    assert QueryState._fields == ("hi", "lo", "top_scores", "top_index", "gallery", "threshold")
    assert list(inspect.signature(strip_scan._scan.py_func).parameters) == [
        "s", "same", "check_same", "rows", "cols", "out"]
    with pytest.raises(TypeError):  # a plain tuple read by position is not accepted any more
        StripScanner()(np.zeros((2, 2), np.float32), None, (np.zeros(2),) * 6, (np.zeros(2),) * 6)


def test_strip_scan_returns_every_entry_when_all_are_near_ties():
    s = np.zeros((300, 400), dtype=np.float32)
    zero_r, zero_c = np.zeros(300, np.float32), np.zeros(400, np.float32)
    top_r, idx_r = _lists(300, 0)
    top_c, idx_c = _lists(400, 0)
    inf_r, inf_c = np.full(300, np.inf, np.float32), np.full(400, np.inf, np.float32)
    _, _, i, j = StripScanner()(
        s, None,
        QueryState(hi=zero_r, lo=zero_r, top_scores=top_r, top_index=idx_r, gallery=np.arange(400), threshold=inf_r),
        QueryState(hi=zero_c, lo=zero_c, top_scores=top_c, top_index=idx_c, gallery=np.arange(300), threshold=inf_c))
    assert i.size == 300 * 400 and j[:401].tolist() == [*range(400), 0]


def test_cross_pass_top_lists_and_ranks_equal_brute_force_with_duplicates():
    rng = np.random.default_rng(2)
    base = _unit(rng.normal(size=(30, 6)))
    a = base[rng.integers(0, 30, size=90)]  # duplicate vectors: exact ties everywhere
    b = _unit(a + 0.3 * rng.normal(size=a.shape))[rng.permutation(90)]
    sa, sb = rng.integers(0, 45, size=90), rng.integers(0, 45, size=90)
    res = cross_pass(a, b, sa, sb, block_size=16, topk=10)
    exact = a.astype(np.float64) @ b.astype(np.float64).T
    for scores, q_sample, g_sample, top, rank in ((exact, sa, sb, res.top_ab, res.rank_ab),
                                                   (exact.T, sb, sa, res.top_ba, res.rank_ba)):
        f32 = scores.astype(np.float32)
        # Top lists follow the tile's float32 scores (ties to the lower index), same-sample items included.
        want = [sorted(range(f32.shape[1]), key=lambda g, q=q: (-f32[q, g], g))[:10] for q in range(f32.shape[0])]
        assert top.tolist() == want
        assert rank.tolist() == _exact_ranks(scores, q_sample, g_sample)


def _exact_ranks(scores: np.ndarray, q_sample: np.ndarray, g_sample: np.ndarray) -> list[int]:
    """Per query: other-sample items with a higher exact score than its best true item, or an equal one and a
    lower index (-1 without a true item): the rank the cross pass promises."""
    ranks = []
    for q in range(scores.shape[0]):
        true = np.flatnonzero(g_sample == q_sample[q])
        if true.size == 0:
            ranks.append(-1)
            continue
        best = max(true, key=lambda g, q=q: (scores[q, g], -g))
        others = g_sample != q_sample[q]
        lower = np.arange(len(others)) < best
        ranks.append(int((others & ((scores[q] > scores[q, best]) | ((scores[q] == scores[q, best]) & lower))).sum()))
    return ranks


@pytest.mark.parametrize("error", [+1.5, -1.5])
def test_ranks_stay_exact_while_float32_scores_err_within_the_documented_bound(monkeypatch, error):
    """Ranks are exact whenever the float32 tile scores are within 2·d·2⁻²⁴ of the exact ones (docs/metrics.md,
    "Passes"): the bound BLAS allows, which no real run comes near, so the products here err on purpose, by
    ±1.5·d·2⁻²⁴. A near-tie band half as wide (realistic bug (c)) counted the pushed-up exact tie as ahead, or
    missed the pushed-down item that is ahead by one ulp."""
    rng = np.random.default_rng(3)
    d, n = 16, 12
    a = _unit(rng.normal(size=(n, d)))
    b = _unit(a + 0.05 * rng.normal(size=(n, d)))
    tie = b[0].copy()  # exactly as close to query 0 as its true item, at a higher index: not ahead
    j = int(np.argmax(a[0]))
    ahead = b[0].copy()
    ahead[j] = np.nextafter(ahead[j], np.float32(np.inf))  # one ulp closer to query 0: ahead
    b = np.vstack([b, tie, ahead])
    sa, sb = np.arange(n), np.r_[np.arange(n), n, n + 1]
    exact = a.astype(np.float64) @ b.astype(np.float64).T
    assert exact[0, n] == exact[0, 0] < exact[0, n + 1] < exact[0, 0] + 1e-7
    real_dot, offset = np.dot, np.float32(error * d * 2.0**-24)

    def erring_dot(x, y, out=None):
        product = real_dot(x, y, out=out)
        product += offset
        return product

    monkeypatch.setattr(np, "dot", erring_dot)
    res = cross_pass(a, b, sa, sb, block_size=8, uniformity=False, threads=1)
    monkeypatch.undo()
    assert res.rank_ab.tolist() == _exact_ranks(exact, sa, sb) and res.rank_ab[0] == 1
    assert res.rank_ba.tolist() == _exact_ranks(exact.T, sb, sa)


@pytest.mark.parametrize("t", [2.0, 0.25, 16.0, 40.0])  # 2t <= 32: compiled float64 pass; beyond: numpy, shifted
@pytest.mark.parametrize("mask", ["none", "same", "upper triangle"])
def test_strip_uniformity_equals_float64_numpy(t, mask):
    from gapdiag.metrics.blocked import strip_uniformity

    rng = np.random.default_rng(3)
    a, b = _unit(rng.normal(size=(50, 16))), _unit(rng.normal(size=(70, 16)))
    s = a @ b.T
    s64 = s.astype(np.float64)  # the sums are under test, not the float32 product
    same = rng.random(s.shape) < 0.1 if mask == "same" else None
    first_col = 3 if mask == "upper triangle" else None
    counted = np.ones(s.shape, dtype=bool)
    if first_col is not None:
        counted = np.arange(70)[None, :] >= np.arange(50)[:, None] + first_col
    other, matched = strip_uniformity(s.copy(), t, same, first_col)

    def ref(keep):
        return np.log(np.exp(2 * t * (s64[keep] - 1)).sum()) if keep.any() else -np.inf

    assert other == pytest.approx(ref(counted & (True if same is None else ~same)), abs=1e-6)
    assert matched == (pytest.approx(ref(same), abs=1e-6) if same is not None else -np.inf)


def test_compiled_exp_is_within_its_documented_error():
    from numba import njit

    from gapdiag.metrics.strip_scan import MAX_TWO_T, _exp32, exp_terms

    @njit
    def values(x):
        out = np.empty_like(x)
        for i in range(x.size):
            out[i] = _exp32(x[i])
        return out

    x = np.linspace(-86.0, 86.0, 400_001).astype(np.float32)  # every float32 argument it is documented for
    err = np.abs(values(x).astype(np.float64) / np.exp(x.astype(np.float64)) - 1)
    assert err.max() <= 2 * 2.0**-24  # 2 ulp: docs/metrics.md, "Uniformity sums"
    rng = np.random.default_rng(0)
    for two_t in (0.5, 4.0, MAX_TWO_T):
        s = rng.uniform(-1, 1, size=(40, 700)).astype(np.float32)
        other, same = exp_terms(s, two_t)
        # The float32 terms and partial sums: ~1e-8 in practice (2e-6 is the worst-case bound).
        assert other == pytest.approx(np.log(np.exp(two_t * (s.astype(np.float64) - 1)).sum()), abs=1e-7)
        assert same == -np.inf
    with pytest.raises(ValueError, match="beyond the compiled exp"):
        exp_terms(s, MAX_TWO_T * 2)


@pytest.mark.parametrize("batch", [1, 3, 4096])
def test_same_sample_pairs_are_every_pair_once_in_row_major_order(monkeypatch, batch):
    from gapdiag.metrics import cross

    monkeypatch.setattr(cross, "_PAIR_BATCH", batch)
    rng = np.random.default_rng(5)
    for _ in range(50):
        sa = np.sort(rng.integers(0, 12, rng.integers(0, 40)))
        sb = np.sort(rng.integers(0, 12, rng.integers(0, 40)))
        batches = list(cross._same_sample_pairs(sa, sb))
        got = [(r, c) for rows, cols in batches for r, c in zip(rows.tolist(), cols.tolist())]
        assert got == [(r, c) for r in range(sa.size) for c in range(sb.size) if sa[r] == sb[c]]
        # A batch holds whole rows, and more than `batch` pairs only when one row alone has more.
        assert all(rows.size <= batch or np.unique(rows).size == 1 for rows, _ in batches)


@pytest.mark.parametrize(("n", "width"), [(0, 3), (1, 1), (10, 8), (20, 4), (50_000, 1024), (2049, 1024)])
def test_column_bands_cover_every_column_once_and_end_narrow(n, width):
    from gapdiag.metrics.cross import _column_bands

    bands = _column_bands(n, width)
    assert [c for start, stop in bands for c in range(start, stop)] == list(range(n))
    if n > 2 * width:  # the last 2·width columns go in quarter bands
        assert all(stop - start <= max(1, width // 4) for start, stop in bands if start >= n - 2 * width)
        assert max(stop - start for start, stop in bands) <= width


@pytest.mark.parametrize(("rows", "n_cols"), [((0, 5000), 300), ((7, 2000), 1 << 19), ((3, 4), 1), ((0, 0), 10)])
def test_row_strips_cover_every_row_once_and_bound_the_scores_a_strip_holds(rows, n_cols):
    """A strip's scores are held at once (the cross pass and ``block_pass``): about ``_STRIP_ELEMENTS`` of them,
    one row when a row alone is wider, and every row of the tile exactly once."""
    from gapdiag.metrics.blocked import _STRIP_ELEMENTS, row_strips

    strips = row_strips(rows, n_cols)
    assert [r for start, stop in strips for r in range(start, stop)] == list(range(*rows))
    assert all(stop > start for start, stop in strips)
    assert max(((stop - start) * n_cols for start, stop in strips), default=0) <= max(_STRIP_ELEMENTS, n_cols)


@pytest.mark.parametrize(("threads", "n_rows", "topk", "want"), [(64, 10**6, 10, 8), (4, 10**6, 10, 4), (16, 10**8, 10, 1)])
def test_workers_are_as_many_as_their_row_state_fits_in_the_budget(threads, n_rows, topk, want):
    """Each worker keeps its own copy of the row state (132 bytes a query with top-10 lists): as many workers run
    as fit in ``_WORKER_STATE_BUDGET`` together, never fewer than one."""
    from gapdiag.metrics.cross import _WORKER_STATE_BUDGET, _affordable_workers

    got = _affordable_workers(threads, n_rows, topk)
    assert got == want
    per_worker = n_rows * (8 + 4 + 12 * topk)
    assert got == 1 or got * per_worker <= _WORKER_STATE_BUDGET
