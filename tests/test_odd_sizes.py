"""Issue #25: the blocked, tiled, stripped, batched and chunked code at sizes that are not powers of two.

Index arithmetic such as ``i + rows[0]`` or ``start + argmin`` gives the same result as ``i ^ rows[0]`` or
``start ^ argmin`` whenever the offset is 0 or a power of two larger than the index within the block, which is
what every size the tests chose before was (run 5's survivors #5 and #16). Here each size the tests can set is
3, 5, 7 and 11 (which divides neither the 31 images nor their 93 captions), on data with exact ties and a
duplicated image, and the result must be the unblocked one: the numpy brute force of ``tests/reference.py``
where it exists and, for every value and list, the same computation in one tile with the default sizes. (The cache writer's chunks of 3, 5 and 7 items are
in tests/test_cache_sweep.py's table of chunk sizes.)
"""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
from test_metrics_engine import _references

from gapdiag.metrics import blocked, compute_all, cross, search_index
from gapdiag.metrics.retrieval import search_topk
from gapdiag.vectors import EmbeddingSet

SIZES = [3, 5, 7, 11]
N_IMAGES, PER = 31, 3


def _tied_set() -> EmbeddingSet:
    """31 images with 3 shuffled captions each; every fourth caption is a copy of the next one (scores that tie
    exactly across samples) and image 5 is image 20 (a duplicated gallery row), with labels for clustering."""
    rng = np.random.default_rng(3)
    img = rng.normal(size=(N_IMAGES, 6)).astype(np.float32)
    ts = np.repeat(np.arange(N_IMAGES), PER)
    txt = (img[ts] + 0.4 * rng.normal(size=(ts.size, 6))).astype(np.float32)
    txt[0:-1:4] = txt[1::4][: len(txt[0:-1:4])]
    img[5] = img[20]
    order = rng.permutation(ts.size)
    return EmbeddingSet({"image": img, "text": txt[order]}, {"image": np.arange(N_IMAGES), "text": ts[order]},
                        N_IMAGES, labels=rng.integers(0, 3, N_IMAGES))


@pytest.fixture(scope="module")
def whole():
    """Every metric and list of the tied set in one tile, one strip, one pair batch (the unblocked pass)."""
    es = _tied_set()
    return es, compute_all(es, retrieval_engine="blocked", block_size=4096, device="cpu", seed=1)


def _brute_force(es: EmbeddingSet) -> dict[str, float]:
    """test_metrics_engine's references, and the conformity W1 (computed from the blocked conformity here)."""
    x, y = es.vectors["image"], es.vectors["text"]
    return {**_references(es), "conformity_w1/image-text": ref.conformity_w1(x, y)}


def _assert_same(got, want, where: str) -> None:
    """Equal values, lists and tables, floats to float32 rounding of the tiles' sums."""
    if isinstance(want, dict):
        assert got.keys() == want.keys(), where
        for key in want:
            _assert_same(got[key], want[key], f"{where}/{key}")
    elif isinstance(want, (list, tuple, np.ndarray)) and not np.isscalar(want):
        got, want = np.asarray(got), np.asarray(want)
        assert got.shape == want.shape, where
        if want.dtype.kind in "fc":
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-6, err_msg=where)
        else:
            np.testing.assert_array_equal(got, want, err_msg=where)
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-5, abs=2e-6, nan_ok=True), where
    else:
        assert got == want, where


@pytest.mark.parametrize("size", SIZES)
def test_every_metric_and_list_is_the_unblocked_one_at_block_strip_and_pair_batch_sizes_of_3_5_7_11(
    monkeypatch, whole, size
):
    """compute_all's fused passes with tiles of ``size`` rows, row strips of 3 rows in a full tile and pair
    batches of ``size`` pairs: every value, hub list, conformity list and gap table is the one-tile pass's,
    and the values with a brute-force reference are that reference."""
    es, (want, want_extras) = whole
    monkeypatch.setattr(blocked, "_STRIP_ELEMENTS", 3 * size)  # strips of 3 rows of a tile `size` wide
    monkeypatch.setattr(cross, "_PAIR_BATCH", size)
    got, extras = compute_all(es, retrieval_engine="blocked", block_size=size, device="cpu", seed=1)
    _assert_same(got, want, "values")
    for name, value in _brute_force(es).items():
        assert got[name] == pytest.approx(value, rel=1e-5, abs=2e-6), name
    _assert_same({k: v for k, v in extras.items() if k != "notes"},
                 {k: v for k, v in want_extras.items() if k != "notes"}, "extras")


def _brute_topk(q: np.ndarray, g: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact float64 cosine scores, ties to the lower gallery index."""
    s = ref.unit(q) @ ref.unit(g).T
    idx = np.array([np.lexsort((np.arange(g.shape[0]), -row))[:k] for row in s])
    return np.take_along_axis(s, idx, 1), idx


@pytest.mark.parametrize("size", SIZES)
def test_the_exact_search_is_the_brute_force_at_query_batches_and_rescoring_chunks_of_3_5_7_11(monkeypatch, size):
    """The FAISS search in query batches of ``size`` rows, its candidates rescored in chunks of ``size`` rows
    (``_CHUNK_ELEMENTS`` of ``size`` rows of 8 dimensions), ties wider than a chunk: the brute-force top k."""
    rng = np.random.default_rng(size)
    q, g = rng.normal(size=(23, 8)), rng.normal(size=(67, 8))
    g[40:49] = g[5]  # a tie group wider than any chunk here
    q[:2] = g[5]
    monkeypatch.setattr(search_index, "_CHUNK_ELEMENTS", size * 8)
    scores, idx = search_topk(q, g, 12, device="cpu", batch_size=size, candidates=4)
    want_scores, want_idx = _brute_topk(q, g, 12)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_allclose(scores, want_scores, atol=1e-6)


@pytest.mark.parametrize("size", SIZES)
def test_the_torch_passes_are_the_brute_force_at_tiles_of_3_5_7_11(size):
    """The torch uniformity passes (CUDA's, run here on the CPU) over tiles of ``size`` rows."""
    pytest.importorskip("torch")
    from gapdiag.metrics.torch_passes import cross_uniformity_torch, within_pass_torch

    es = _tied_set()
    x, y = (ref.unit(es.vectors[m]).astype(np.float32) for m in ("image", "text"))
    xs, ys = es.sample_index["image"], es.sample_index["text"]
    want = cross.cross_pass(x, y, xs, ys, block_size=4096, retrieval=False)
    got = cross_uniformity_torch(x, y, xs, ys, device="cpu", block_size=size)
    assert (got.n_all, got.n_nonmatching) == (want.n_all, want.n_nonmatching)
    assert got.lse_all == pytest.approx(want.lse_all, abs=1e-5)
    assert got.lse_nonmatching == pytest.approx(want.lse_nonmatching, abs=1e-5)
    n = y.shape[0]
    lse = within_pass_torch(y, device="cpu", block_size=size)
    assert float(lse) - np.log(n * (n - 1) / 2) == pytest.approx(ref.uniformity(y), abs=1e-5)
