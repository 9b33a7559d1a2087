"""Issue #25, run 7: what the survivors of the fresh sample (seed 31) showed no test asserted.

Each test fails with its survivor applied and passes without (docs/reliability.md, "Run 7"). Two more of run 7's
survivors are killed by cases added where their kind was already tested: the default number of search candidates
(tests/test_run6_gaps.py) and the config's example hints (tests/test_check.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from gapdiag.metrics import search_index, strip_scan
from gapdiag.metrics.hubness import skewness
from gapdiag.metrics.retrieval import recall_and_topk
from gapdiag.metrics.similarity import knn_indices


@pytest.mark.parametrize("n_k", [[1, 1, 1, 2], [0, 1, 0, 1, 0, 2], [2, 2, 3, 2, 2, 2, 2, 2]])
def test_the_skewness_of_counts_that_spread_less_than_one_is_scipys(n_k):
    """Skewness is NaN only when every ``N_k`` is equal (σ = 0), not whenever σ < 1: counts that differ by one
    have σ below 1 and a real skewness. Survivor: ``sd > 0`` → ``sd > 1``."""
    assert np.std(n_k) < 1
    assert skewness(n_k) == pytest.approx(scipy.stats.skew(n_k), rel=1e-12)


@pytest.mark.parametrize("depth, want", [(10, 10), (30, 30), (50, 30), (0, 3)])
def test_the_top_lists_are_depth_deep_capped_at_the_gallery_size_not_its_dimension(depth, want):
    """``recall_and_topk`` returns lists at least ``depth`` deep, capped at the gallery size (30 items of 4
    dimensions here), each the brute-force order. Survivor: the cap ``g.shape[0]`` → ``g.shape[1]`` (lists as deep
    as the dimension: 4)."""
    rng = np.random.default_rng(7)
    q, g = rng.normal(size=(6, 4)), rng.normal(size=(30, 4))
    recall, top = recall_and_topk(q, g, np.arange(6), np.arange(30), ks=(1, 3), depth=depth, device="cpu")
    assert top.shape == (6, want)
    exact = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (g / np.linalg.norm(g, axis=1, keepdims=True)).T
    np.testing.assert_array_equal(top, np.argsort(-exact, axis=1, kind="stable")[:, :want])
    assert set(recall) == {1, 3}


def test_knn_lists_among_duplicates_keep_the_lower_indices():
    """``knn_indices``: ties go to the lower index, also when duplicates push an item's own index out of its
    k + 1 list (the last of four copies, k = 2): it keeps the k lowest other copies. Brute force over every item.
    Survivor: dropping the second entry instead of the last (``own[…, -1]`` → ``own[…, +1]``)."""
    rng = np.random.default_rng(8)
    x = rng.normal(size=(9, 5))
    x[[2, 4, 5, 7]] = x[2]  # four copies
    k = 2
    got = knn_indices(x, k)
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    for i in range(len(x)):
        others = [j for j in range(len(x)) if j != i]
        # The search's order: exact float64 scores, ties to the lower index (copies score exactly alike).
        scores = {j: float(np.float32(u[i]).astype(np.float64) @ np.float32(u[j]).astype(np.float64)) for j in others}
        want = sorted(others, key=lambda j: (-scores[j], j))[:k]
        assert got[i].tolist() == want, i
    assert got[7].tolist() == [2, 4]


def test_every_compiled_kernel_releases_the_gil():
    """The tile workers run their strips on threads, in parallel because "the numba kernels release the GIL"
    (gapdiag.metrics.tile_workers): every compiled kernel of the strip scan is compiled ``nogil``. Survivor:
    ``_exp_sums`` compiled with ``nogil=False`` (the same sums, one thread at a time)."""
    from numba.core.registry import CPUDispatcher

    kernels = {name: f for name, f in vars(strip_scan).items() if isinstance(f, CPUDispatcher)}
    assert {"_scan", "_exp_sums", "_insert", "_exp32"} <= set(kernels)
    assert {name: f.targetoptions.get("nogil") for name, f in kernels.items()} == dict.fromkeys(kernels, True)


def test_the_torch_index_takes_any_k_and_no_faiss_gpu_resources(monkeypatch):
    """On the torch-cuda backend (stubbed here onto the CPU) the search is not FAISS-GPU's: no GPU resources, and
    no cap of FAISS-GPU's largest k (2048) on how deep it searches. Survivor: ``backend == "faiss-gpu"`` →
    ``>= "faiss-gpu"`` (true for "torch-cuda"), which capped a torch search at 2048."""
    pytest.importorskip("torch")
    monkeypatch.setattr(search_index, "_resolve_backend", lambda device, index: ("torch-cuda", 0))
    monkeypatch.setattr(search_index, "_torch_device", lambda gpu_id: "cpu")
    g = np.random.default_rng(9).normal(size=(search_index._GPU_MAX_K + 5, 3)).astype(np.float32)
    searcher = search_index.Searcher(g, index="flat", device="cuda", nlist=None, nprobe=1, hnsw_m=8, ef_search=16,
                                     ef_construction=40, seed=0)
    assert isinstance(searcher.index, search_index._TorchFlatIndex)
    assert not searcher.on_gpu and not hasattr(searcher, "_resources")
    assert searcher.max_k == g.shape[0]
