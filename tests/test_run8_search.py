"""Issue #25, run 8: what the survivors of the fresh samples (seeds 32, 33) in the search modules showed no test
asserted (gapdiag/metrics/search_index.py, retrieval.py, running_topk.py, tile_workers.py).

Each test fails with its survivor applied and passes without. One survivor of these modules is equivalent and has
no test: ``dev.kind == "cuda"`` → ``dev.kind <= "cuda"`` in ``search_index._use_gpu`` (only ``cuda`` and ``mps``
reach that line, and ``"mps" <= "cuda"`` is false).
"""

from __future__ import annotations

import math
import os
import threading

import numpy as np
import pytest
from test_bounds_edges import _RecordingRows

from gapdiag.errors import InputError
from gapdiag.metrics import search_index, tile_workers
from gapdiag.metrics.cross import cross_pass
from gapdiag.metrics.retrieval import approximate_recall_agreement, search_topk
from gapdiag.metrics.rounding import score_tolerance


def _reference_top(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """Per row of ``a``, the indices of its ``k`` best rows of ``b`` by (−score, index), float64 scores; -1 pads a
    list beyond the gallery's size."""
    scores = a.astype(np.float64) @ b.astype(np.float64).T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.pad(order, ((0, 0), (0, k - order.shape[1])), constant_values=-1)


def _unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_the_fused_top_lists_are_padded_with_minus_one_past_a_small_gallery():
    """Hubness asks the cross pass for 10-deep top lists; a gallery of 4 items fills 4 slots and the rest are -1
    (``k_occurrence`` ignores -1 entries, so hubness counts only real items), both directions, original order.
    Survivor: ``np.where(self.index == _NO_INDEX, -1, …)`` → ``- 0`` (empty slots read as gallery item 0, which
    hubness then counted as a hub)."""
    rng = np.random.default_rng(32)
    a, b = _unit_rows(rng, 6, 8), _unit_rows(rng, 4, 8)
    result = cross_pass(a, b, np.array([3, 0, 1, 2, 0, 1]), np.array([2, 0, 3, 1]), topk=10, threads=1)
    np.testing.assert_array_equal(result.top_ab, _reference_top(a, b, 10))
    np.testing.assert_array_equal(result.top_ba, _reference_top(b, a, 10))
    assert (result.top_ab[:, 4:] == -1).all() and (result.top_ba[:, 6:] == -1).all()


def test_the_fused_top_lists_keep_items_of_negative_score():
    """A top list is the K best items whatever their sign: a query turned away from the whole gallery still lists
    its K least negative items (the lists start empty, at -inf). Survivor: the initial scores ``-np.inf`` →
    ``not np.inf`` (0.0), which refused every negative score and left those queries' slots empty."""
    rng = np.random.default_rng(33)
    b = rng.normal(size=(5, 8))
    b[:, 0] = np.abs(b[:, 0]) + 0.5
    b = (b / np.linalg.norm(b, axis=1, keepdims=True)).astype(np.float32)
    a = np.vstack([-np.eye(8, dtype=np.float32)[:1], _unit_rows(rng, 3, 8)])  # query 0 is -e₀
    assert (a[:1].astype(np.float64) @ b.astype(np.float64).T < 0).all()  # every score of query 0 is negative
    result = cross_pass(a, b, np.arange(4), np.arange(5), topk=3, threads=1)
    np.testing.assert_array_equal(result.top_ab, _reference_top(a, b, 3))
    np.testing.assert_array_equal(result.top_ba, _reference_top(b, a, 3))


def test_tile_workers_run_the_jobs_on_their_threads_and_report_progress_on_the_caller():
    """With two or more workers the jobs run on the pool's threads, not on the calling thread (that is what the
    pool is for: products and scans on every core), and ``tick`` is reported on the calling thread; the results
    come back in job order. Survivor: ``len(self.states) == 1`` → ``>= 1`` (every job on the calling thread)."""
    caller = threading.get_ident()
    ran_on: list[int] = []
    ticked_on: list[int] = []

    def work(job: int, state: list[int], tick) -> int:
        ran_on.append(threading.get_ident())
        state.append(job)
        tick()
        return job * job

    workers = tile_workers.TileWorkers(2, list, n_jobs=6)
    assert len(workers.states) == 2
    got = workers.map(list(range(6)), work, on_tick=lambda: ticked_on.append(threading.get_ident()))
    assert got == [j * j for j in range(6)]
    assert len(ran_on) == 6 and caller not in ran_on
    assert ticked_on == [caller] * 6
    assert sorted(j for s in workers.states for j in s) == list(range(6))


def test_one_core_in_the_affinity_mask_is_one_thread(monkeypatch):
    """``available_threads`` is the number of cores in the process's affinity mask (``taskset -c 3``, a container's
    cpuset), at least 1: one core gives one worker. Survivor: ``max(1, …)`` → ``max( 2, …)`` (two threads on one
    core)."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)
    assert tile_workers.available_threads() == 1
    assert tile_workers.resolve_threads(None) == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 2, 5}, raising=False)
    assert tile_workers.available_threads() == 3


def test_the_agreement_compares_top_10_lists_by_default():
    """``approximate_recall_agreement``'s default depth is k = 10 (k-recall@10, what compute_all reports): on a
    gallery of exactly 10 items it runs and the exact index agrees fully, where k = 11 is refused. Survivor: the
    default ``k: int = 10`` → ``11``."""
    rng = np.random.default_rng(10)
    q, g = rng.normal(size=(7, 6)), rng.normal(size=(10, 6))
    assert approximate_recall_agreement(q, g, index="flat", device="cpu") == 1.0
    with pytest.raises(InputError, match="k=11 is larger than the gallery"):
        approximate_recall_agreement(q, g, 11, index="flat", device="cpu")


def test_the_tie_window_of_vectors_that_are_not_unit_scales_with_the_product_of_their_norms(monkeypatch):
    """Without normalisation the float32 scores err by up to ``score_tolerance(d)·‖q‖·‖g‖``, so the search widens
    while an unseen item may be within twice that of the K-th (docs/metrics-retrieval.md). Here ‖q‖ = 4 and
    ‖g‖ = 1/2: a stand-in search errs by 0.99 of the bound (2·score_tolerance), pushing the best item behind 16
    decoys and a rival ahead; the window 4·score_tolerance must widen to it. Survivor: ``gallery_norm * ‖q‖`` →
    ``gallery_norm ** ‖q‖`` (a window of 2·score_tolerance·(1/2)⁴, which kept the rival)."""
    d, e = 16, score_tolerance(16)
    offsets = np.r_[np.full(16, -0.75), -0.5, 0.0] * e  # 16 decoys, the rival (index 16), the best (index 17)
    cos = np.float32(0.5) + offsets.astype(np.float32)
    unit = np.zeros((18, d), dtype=np.float32)
    unit[:, 0], unit[:, 1] = cos, np.sqrt(1 - cos.astype(np.float64) ** 2).astype(np.float32)
    g = unit * np.float32(0.5)  # powers of two: the exact scores are those of the unit vectors, times 2
    q = np.eye(d, dtype=np.float32)[:1] * np.float32(4.0)
    exact = q.astype(np.float64) @ g.astype(np.float64).T
    assert exact[0, 17] > exact[0, 16] > exact[0, 0]
    bound = e * 4.0 * 0.5  # score_tolerance(d)·‖q‖·‖g‖
    error = np.zeros(18)
    error[16], error[17] = 0.99 * bound, -0.99 * bound

    def erring_search(self, queries, kk):
        found = (queries.astype(np.float64) @ self.gallery.astype(np.float64).T + error).astype(np.float32)
        order = np.lexsort((np.arange(18)[None, :].repeat(len(queries), 0), -found), axis=-1)[:, :kk]
        return np.take_along_axis(found, order, axis=1), order.astype(np.int64)

    monkeypatch.setattr(search_index.Searcher, "raw_search", erring_search)
    _, first = erring_search(type("S", (), {"gallery": g})(), q, 17)
    assert 17 not in first[0]  # the best is hidden behind the decoys
    scores, idx = search_topk(q, g, 1, normalize=False, device="cpu")
    assert idx.tolist() == [[17]] and scores[0, 0] == exact[0, 17]


class _CountingTorchGallery:
    """The torch index's gallery tensor, recording the size of every block of vectors gathered from it."""

    def __init__(self, tensor) -> None:
        self.tensor, self.device, self.gathered = tensor, tensor.device, []

    def __getitem__(self, key):
        block = self.tensor[key]
        self.gathered.append(int(block.numel()))
        return block


def _host_rescoring(q, g, cand):
    gallery = g.view(_RecordingRows)  # records the size of every block gathered from it
    gallery.read = []
    return search_index.exact_scores(q, gallery, cand), gallery.read


def _torch_rescoring(q, g, cand):
    pytest.importorskip("torch")
    index = search_index._TorchFlatIndex(g, "cpu")  # the CUDA-only index, run on the CPU
    index.gallery = _CountingTorchGallery(index.gallery)
    return index.exact_scores(q, cand), index.gallery.gathered


@pytest.mark.parametrize("rescore", [_host_rescoring, _torch_rescoring], ids=["host", "torch"])
@pytest.mark.parametrize("rows, c", [(50, 8), (2, 300), (3, 40)])
def test_rescoring_gathers_as_few_blocks_as_its_float64_bound_allows(monkeypatch, rescore, rows, c):
    """Rescoring gathers the candidates' vectors in float64 blocks of at most ``_CHUNK_ELEMENTS`` values
    (rows × candidates × d; 4096 here, d = 16), and in as few blocks as that allows: at most twice the fewest
    (``⌈rows·c·d / 4096⌉``), i.e. blocks half full on average, not one query at a time; the scores are exact and
    -inf for -1 padding, on the host and on the torch index. Survivors: host ``min(c, col_step) * q.shape[1]`` →
    ``<<`` (row blocks of ``2^d`` times the candidates: one query per block), torch ``q.shape[1]`` → ``q.shape[0]``
    (rows sized by the number of queries instead of d: above the bound for few queries, needlessly small for
    many)."""
    monkeypatch.setattr(search_index, "_CHUNK_ELEMENTS", 4096)
    rng = np.random.default_rng(rows * c)
    d = 16
    q = rng.normal(size=(rows, d)).astype(np.float32)
    g = rng.normal(size=(300, d)).astype(np.float32)
    cand = rng.integers(-1, 300, size=(rows, c))
    got, gathered = rescore(q, g, cand)
    products = q.astype(np.float64)[:, None, :] * g.astype(np.float64)[np.maximum(cand, 0)]
    # (torch sums pairwise where numpy sums in order: equal to the last bits)
    np.testing.assert_allclose(got, np.where(cand >= 0, products.sum(axis=-1), -np.inf), rtol=1e-13, atol=1e-13)
    assert sum(gathered) == rows * c * d
    assert max(gathered) <= 4096
    assert len(gathered) <= 2 * math.ceil(rows * c * d / 4096)
