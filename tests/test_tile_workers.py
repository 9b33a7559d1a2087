"""The pair passes on several threads: the same numbers whatever the thread count, every pair counted once, and
the workers' pool (job order, progress on the calling thread, errors)."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
import pytest

from gapdiag.errors import InputError
from gapdiag.metrics import compute_all
from gapdiag.metrics.blocked import _upper_tiles, within_pass
from gapdiag.metrics.cross import _kth_score_floor, cross_pass
from gapdiag.metrics.running_topk import RunningTopK
from gapdiag.metrics.tile_workers import TileWorkers, resolve_threads
from tests.test_metrics_engine import _es


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _cross_data(seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    base = _unit(rng.normal(size=(60, 16)))
    a = base[rng.integers(0, 60, size=150)]  # duplicates: exact ties for the tie rule
    b = _unit(a[rng.permutation(150)] + 0.4 * rng.normal(size=a.shape))
    return a, b, rng.integers(0, 80, size=150), rng.integers(0, 80, size=150)


@pytest.mark.parametrize("block_size", [7, 16, 64, 512])
def test_cross_pass_gives_the_same_bits_on_any_number_of_threads(block_size):
    a, b, sa, sb = _cross_data()
    runs = [cross_pass(a, b, sa, sb, block_size=block_size, topk=10, threads=n) for n in (1, 2, 3)]
    for other in runs[1:]:
        assert other.lse_all == runs[0].lse_all and other.lse_nonmatching == runs[0].lse_nonmatching
        for name in ("rank_ab", "rank_ba", "top_ab", "top_ba"):
            assert np.array_equal(getattr(other, name), getattr(runs[0], name)), name


@pytest.mark.parametrize("block_size", [5, 16, 100])
def test_within_pass_gives_the_same_bits_on_any_number_of_threads(block_size):
    a, *_ = _cross_data()
    values = [within_pass(a, block_size=block_size, threads=n) for n in (1, 2, 4)]
    assert values[0] == values[1] == values[2]


@pytest.mark.parametrize(("n", "block_size"), [(37, 8), (37, 5), (64, 16), (3, 2), (2, 9)])
def test_within_pass_counts_every_pair_once(n, block_size):
    # Equal vectors: every pair's term is exp(0) = 1, so the log-sum is log of the number of pairs i < j (to the
    # float32 exp's 2 ulp, here the same for every term; one pair more or less would move it by > 1e-3).
    z = np.tile(_unit(np.ones((1, 4))), (n, 1))
    assert within_pass(z, block_size=block_size, threads=2) == pytest.approx(math.log(n * (n - 1) / 2), abs=3e-7)
    covered = np.zeros((n, n), dtype=int)
    for i0, i1, j0, j1 in _upper_tiles(n, block_size):
        covered[i0:i1, j0:j1] += 1
    # The products cover the strict upper triangle exactly once (what is below it in a band is masked).
    assert (covered[np.triu_indices(n, 1)] == 1).all() and covered.max() == 1


def test_compute_all_values_do_not_depend_on_threads():
    es = _es(90, 2, d=12, seed=4, labels=True, shuffle=True)
    one, _ = compute_all(es, block_size=16, retrieval_engine="blocked", threads=1)
    two, _ = compute_all(es, block_size=16, retrieval_engine="blocked", threads=2)
    assert one == two


def test_merged_top_lists_equal_one_list_over_all_items():
    rng = np.random.default_rng(3)
    scores = np.round(rng.normal(size=(20, 50)), 1).astype(np.float32)  # rounded: many exact ties
    index = rng.permutation(1000)[:50]
    parts = []
    for cols in np.array_split(rng.permutation(50), 3):
        part = RunningTopK(20, 6)
        for q in range(20):
            order = sorted(cols, key=lambda g, q=q: (-scores[q, g], index[g]))[:6]
            part.scores[q, : len(order)] = scores[q, order]
            part.index[q, : len(order)] = index[order]
        parts.append(part)
    merged = RunningTopK.merged(parts)
    for q in range(20):
        best = sorted(range(50), key=lambda g, q=q: (-scores[q, g], index[g]))[:6]
        assert merged.index[q].tolist() == index[best].tolist()
        assert merged.scores[q].tolist() == scores[q, best].tolist()


def test_kth_score_floor_is_under_every_query_s_final_kth_score():
    a, b, *_ = _cross_data(1)
    b = np.concatenate([b] * 3)  # 450 gallery items: the floor comes from the first 256 only
    floor = _kth_score_floor(a, b, 10)
    kth = np.sort(a @ b.T, axis=1)[:, -10]
    assert (floor <= kth).all() and (floor > kth - 0.5).any()
    assert (_kth_score_floor(a, b[:10], 10) == -np.inf).all()  # gallery no larger than K: no floor
    assert (_kth_score_floor(a, b, 0) == np.inf).all()  # no lists: nothing to insert


def test_workers_return_results_in_job_order_and_tick_on_the_calling_thread():
    caller = threading.get_ident()
    ticks: list[int] = []

    def work(job: int, state: list[int], tick) -> int:
        state.append(job)
        tick()
        return job * job

    pool = TileWorkers(3, list, 40)
    assert pool.map(range(40), work, lambda: ticks.append(threading.get_ident())) == [j * j for j in range(40)]
    assert sorted(j for state in pool.states for j in state) == list(range(40))
    assert len(ticks) == 40 and set(ticks) == {caller}
    assert len(TileWorkers(8, list, 3).states) == 3 and len(TileWorkers(8, list, 0).states) == 1  # a state each


def test_a_failing_job_raises_in_the_caller_and_stops_the_others():
    started: list[int] = []

    def work(job: int, state: None, tick) -> int:
        started.append(job)
        if job == 3:
            raise InputError("bad tile 3")
        tick()
        return job

    with pytest.raises(InputError, match="bad tile 3"):
        TileWorkers(2, lambda: None, 1000).map(range(1000), work)
    assert len(started) < 1000


@pytest.mark.parametrize("bad", [0, -2])
def test_threads_must_be_positive(bad):
    with pytest.raises(InputError, match="threads must be a positive integer"):
        resolve_threads(bad)
    assert resolve_threads(None) >= 1


def test_one_blas_thread_runs_blas_on_one_thread_and_gives_the_threads_back():
    """The d × d decompositions and each worker's tiles run on one BLAS thread (a threaded 512 × 512 ``eigvalsh``
    took 0.4–1.9 CPU-seconds on a busy machine, 0.025 s on one: gapdiag.metrics.linalg); then BLAS gets its own."""
    from threadpoolctl import threadpool_info

    from gapdiag.metrics.linalg import one_blas_thread

    def blas_threads() -> list[int]:  # numpy's (FAISS and torch bring their own, which gapdiag leaves alone)
        return [pool["num_threads"] for pool in threadpool_info()
                if pool["user_api"] == "blas" and "numpy" in Path(pool["filepath"]).parent.name]

    before = blas_threads()
    if not before:
        pytest.skip("numpy's BLAS is not a library of its own here (threadpoolctl cannot see its threads)")
    with one_blas_thread():
        assert blas_threads() == [1] * len(before)
    assert blas_threads() == before


def test_the_uniformity_pass_scores_each_tile_in_strips_of_bounded_size(monkeypatch):
    """Each tile's terms are computed strip by strip, about ``_STRIP_ELEMENTS`` scores at a time (memory beside
    the tile), in every tile, the first column of tiles included; the value does not depend on the strips."""
    from gapdiag.metrics import blocked

    z = _unit(np.random.default_rng(4).normal(size=(70, 8)))
    whole = within_pass(z, t=2.0, block_size=32, threads=1)
    monkeypatch.setattr(blocked, "_STRIP_ELEMENTS", 64)
    held: list[tuple[int, int]] = []
    real = blocked.strip_uniformity

    def strip_uniformity(strip, *args, **kwargs):
        held.append(strip.shape)
        return real(strip, *args, **kwargs)

    monkeypatch.setattr(blocked, "strip_uniformity", strip_uniformity)
    assert within_pass(z, t=2.0, block_size=32, threads=1) == pytest.approx(whole, rel=1e-12)
    assert held and max(rows * cols for rows, cols in held) <= 64
