"""Retrieval metrics against a brute-force reference: the full similarity matrix, stably sorted."""

from __future__ import annotations

import sys
from dataclasses import asdict

import numpy as np
import pytest

from gapdiag.errors import InputError
from gapdiag.metrics.blocked import unit_rows
from gapdiag.metrics.retrieval import approximate_recall_agreement, recall_at_k, search_topk


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def ref_topk(q: np.ndarray, g: np.ndarray, k: int, normalize: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Every score, then a sort by (−score, gallery index)."""
    if normalize:
        q, g = _unit(q), _unit(g)
    scores = (q.astype(np.float64)[:, None, :] * g.astype(np.float64)[None, :, :]).sum(-1)
    index = np.broadcast_to(np.arange(g.shape[0]), scores.shape)
    order = np.lexsort((index, -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


def ref_recall(q, g, q_ids, g_ids, ks):
    _, order = ref_topk(q, g, g.shape[0])
    out = {}
    for k in ks:
        hits = [any(g_ids[j] == q_ids[r] for j in order[r, :k]) for r in range(q.shape[0])]
        out[k] = sum(hits) / len(hits)
    return out


def paired(n_samples: int, captions_per_image: int, dim: int, noise: float, seed: int):
    """Images and captions sharing a per-sample direction, plus a common offset (a modality gap)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n_samples, dim))
    img = base + noise * rng.normal(size=base.shape) + 2.0
    txt_ids = np.repeat(np.arange(n_samples), captions_per_image)
    txt = base[txt_ids] + noise * rng.normal(size=(txt_ids.size, dim)) - 2.0
    return img.astype(np.float32), np.arange(n_samples), txt.astype(np.float32), txt_ids


def test_search_topk_matches_full_matrix_with_odd_batches():
    rng = np.random.default_rng(0)
    q, g = rng.normal(size=(37, 24)), rng.normal(size=(101, 24)) * rng.uniform(0.5, 3, size=(101, 1))
    scores, idx = search_topk(q, g, 7, device="cpu", batch_size=8)
    ref_scores, ref_idx = ref_topk(q, g, 7)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-6)
    assert idx.dtype == np.int64 and scores.shape == (37, 7)


def test_small_work_chunks_give_the_same_result(monkeypatch):
    # Rescoring is chunked over queries and candidates; chunks that divide nothing must not change a bit.
    from gapdiag.metrics import search_index

    rng = np.random.default_rng(11)
    q, g = rng.normal(size=(13, 8)), rng.normal(size=(70, 8))
    g[40:50] = g[5]  # a tie group wider than a candidate chunk
    expected = search_topk(q, g, 9, device="cpu")
    monkeypatch.setattr(search_index, "_CHUNK_ELEMENTS", 50)
    got = search_topk(q, g, 9, device="cpu", candidates=9)
    np.testing.assert_array_equal(got[1], expected[1])
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], ref_topk(q, g, 9)[1])
    top = search_topk(g[5:6], g, 12, device="cpu", candidates=2)[1]
    np.testing.assert_array_equal(top[0, :11], [5, *range(40, 50)])
    np.testing.assert_array_equal(top, ref_topk(g[5:6], g, 12)[1])


def test_search_topk_without_normalisation_ranks_raw_inner_products():
    rng = np.random.default_rng(1)
    q, g = rng.normal(size=(9, 8)), rng.normal(size=(40, 8)) * rng.uniform(0.1, 5, size=(40, 1))
    _, idx = search_topk(q.astype(np.float32), g.astype(np.float32), 5, normalize=False, device="cpu")
    _, ref_idx = ref_topk(q, g, 5, normalize=False)
    np.testing.assert_array_equal(idx, ref_idx)
    # Normalising changes the answer here (the gallery norms vary), so the flag is really honoured.
    assert not np.array_equal(idx, search_topk(q, g, 5, device="cpu")[1])


def test_float16_input_is_searched_as_its_float32_value():
    rng = np.random.default_rng(2)
    q, g = rng.normal(size=(10, 16)).astype(np.float16), rng.normal(size=(50, 16)).astype(np.float16)
    _, idx = search_topk(q, g, 5, device="cpu")
    np.testing.assert_array_equal(idx, ref_topk(q.astype(np.float32), g.astype(np.float32), 5)[1])


def test_duplicate_gallery_vectors_tie_toward_lower_index():
    rng = np.random.default_rng(3)
    g = rng.normal(size=(12, 6)).astype(np.float32)
    g[9] = g[3]
    g[11] = 4.0 * g[3]  # a power-of-two scale normalises to the very same float32 vector
    scores, idx = search_topk(g[3:4] * 2, g, 3, device="cpu")
    np.testing.assert_array_equal(idx, [[3, 9, 11]])
    assert scores[0, 0] == scores[0, 1] == scores[0, 2]


def test_ties_straddling_the_cutoff_are_resolved_beyond_the_first_candidates():
    rng = np.random.default_rng(4)
    d = 8
    g = rng.normal(size=(80, d)).astype(np.float32)
    g[:, 0] = -np.abs(g[:, 0]) - 3.0  # every filler points away from the query
    query = np.zeros((1, d), dtype=np.float32)
    query[0, 0] = 1.0
    tied = np.sort(rng.choice(np.arange(1, 80), size=30, replace=False))
    g[tied] = np.eye(d, dtype=np.float32)[0] + np.eye(d, dtype=np.float32)[1]
    g[0] = np.eye(d, dtype=np.float32)[0]  # the unique best
    # candidates=3: the first FAISS call returns only 3 items, all of the tie group must be reconsidered.
    _, idx = search_topk(query, g, 3, device="cpu", candidates=3)
    np.testing.assert_array_equal(idx, [[0, tied[0], tied[1]]])
    np.testing.assert_array_equal(idx, ref_topk(query, g, 3)[1])
    for k in (1, 2, 5, 31, 40):
        np.testing.assert_array_equal(
            search_topk(query, g, k, device="cpu", candidates=k)[1], ref_topk(query, g, k)[1]
        )


def permuted_tie_group(d: int = 64, n: int = 120, n_tied: int = 40, seed: int = 10):
    """A constant query and a gallery where ``tied`` rows are permutations of one positive vector (exact ties
    in float64, rounded differently in float32) and the other rows point away; returns (q, g, tied)."""
    rng = np.random.default_rng(seed)
    base = np.abs(rng.normal(size=d)).astype(np.float32) + 0.1
    g = -np.abs(rng.normal(size=(n, d))).astype(np.float32)
    tied = np.sort(rng.choice(n, size=n_tied, replace=False))
    for t in tied:
        g[t] = rng.permutation(base)
    return np.ones((1, d), dtype=np.float32), g, tied


def test_exact_ties_that_float32_search_misorders_are_found_by_widening():
    # Permutations of one vector have equal exact scores against a constant query (float64 sums of these
    # float32 values are exact), but float32 sums in a different order round differently, so FAISS alone
    # ranks the tie group arbitrarily (here it returns rows 53, 46, 43, 30, 13 instead of 2, 13, 14, 15, 17).
    q, g, tied = permuted_tie_group()
    ref_scores, ref_idx = ref_topk(q, g, 5, normalize=False)
    assert np.all(ref_scores == ref_scores[0, 0])  # an exact five-way tie
    np.testing.assert_array_equal(ref_idx, tied[None, :5])
    # Power-of-two scales keep every sum exact in float64 while float32 rounding errors grow with the norms.
    for scale in (1.0, 1024.0):
        for candidates in (5, 8, None):
            _, idx = search_topk(
                q * scale, g * scale, 5, normalize=False, device="cpu", candidates=candidates
            )
            np.testing.assert_array_equal(idx, ref_idx)


def test_search_widens_for_any_item_the_float32_scores_can_hide_within_their_documented_error(monkeypatch):
    """FAISS's float32 scores err by up to ``score_tolerance(d)·‖q‖·‖g‖`` (docs/metrics-retrieval.md): the true
    best item pushed down by that much and a rival pushed up by as much, the candidates must still be widened
    until the best is rescored. Here the stand-in search errs by 0.99 of the bound on purpose; a window of one
    bound instead of two (the search's version of realistic bug (c)) kept the rival."""
    from gapdiag.metrics.rounding import score_tolerance
    from gapdiag.metrics.search_index import Searcher

    d, e = 16, score_tolerance(16)
    offsets = np.r_[np.full(16, -0.75), -0.5, 0.0] * e  # 16 decoys, the rival (index 16), the best (index 17)
    cos = np.float32(0.5) + offsets.astype(np.float32)
    g = np.zeros((18, d), dtype=np.float32)
    g[:, 0], g[:, 1] = cos, np.sqrt(1 - cos.astype(np.float64) ** 2).astype(np.float32)
    q = np.eye(d, dtype=np.float32)[:1]
    exact = q.astype(np.float64) @ g.astype(np.float64).T
    assert exact[0, 17] > exact[0, 16] > exact[0, 0]
    error = np.zeros(18)
    error[16], error[17] = 0.99 * e, -0.99 * e  # within the bound (every norm here is 1 to float32 precision)

    def erring_search(self, queries, kk):
        found = (queries.astype(np.float64) @ self.gallery.astype(np.float64).T + error).astype(np.float32)
        order = np.lexsort((np.arange(18)[None, :].repeat(len(queries), 0), -found), axis=-1)[:, :kk]
        dist, cand = np.take_along_axis(found, order, axis=1), order.astype(np.int64)
        pad = kk - cand.shape[1]
        return (np.pad(dist, ((0, 0), (0, pad)), constant_values=-np.inf),
                np.pad(cand, ((0, 0), (0, pad)), constant_values=-1))

    monkeypatch.setattr(Searcher, "raw_search", erring_search)
    _, first = erring_search(type("S", (), {"gallery": g})(), q, 17)
    assert 17 not in first[0]  # the best is hidden behind the decoys
    scores, idx = search_topk(q, g, 1, normalize=False, device="cpu")
    assert idx.tolist() == [[17]] and scores[0, 0] == exact[0, 17]


def test_capped_selection_falls_back_to_scoring_the_whole_gallery(monkeypatch):
    # FAISS GPU selects at most 2048 results; emulate a cap of 4 so the CPU run takes the same fallback.
    from gapdiag.metrics import retrieval

    monkeypatch.setattr(retrieval.Searcher, "max_k", property(lambda self: 4))
    g = np.zeros((30, 3), dtype=np.float32)
    g[:, 0] = 1.0
    g[::2, 1] = -5.0  # even rows point away; the 15 odd rows tie exactly
    q = np.array([[1.0, 0.0, 0.0]], dtype=np.float32)
    _, idx = search_topk(q, g, 3, device="cpu", candidates=3)
    np.testing.assert_array_equal(idx, [[1, 3, 5]])
    np.testing.assert_array_equal(idx, ref_topk(q, g, 3)[1])


def test_rescoring_gathers_bounded_float64_blocks_whatever_the_number_of_candidates(monkeypatch):
    """A query widened to a huge tie group may carry the whole gallery as candidates: ``exact_scores`` gathers
    their vectors in float64 blocks of about ``_CHUNK_ELEMENTS`` values (rows × candidates × d), not all at once,
    and gives the float64 scores (-inf for the -1 padding)."""
    from gapdiag.metrics import search_index

    monkeypatch.setattr(search_index, "_CHUNK_ELEMENTS", 4096)
    rng = np.random.default_rng(9)
    q = rng.normal(size=(50, 16)).astype(np.float32)
    g = rng.normal(size=(300, 16)).astype(np.float32)
    cand = rng.integers(-1, 300, size=(50, 300))
    gathered: list[int] = []

    class Gallery(np.ndarray):
        def __getitem__(self, key):
            block = np.asarray(np.ndarray.__getitem__(self, key))
            gathered.append(block.size)
            return block

    got = search_index.exact_scores(q, g.view(Gallery), cand)
    products = q.astype(np.float64)[:, None, :] * g.astype(np.float64)[np.maximum(cand, 0)]
    assert np.array_equal(got, np.where(cand >= 0, products.sum(axis=-1), -np.inf))
    assert gathered and max(gathered) <= 4096


@pytest.mark.parametrize("ids", [np.arange(4), np.arange(6), np.arange(5).reshape(5, 1)], ids=["short", "long", "2-D"])
def test_a_sample_index_that_is_not_one_id_per_item_is_refused(ids):
    x = np.eye(5, dtype=np.float32)
    for query_ids, gallery_ids in ((ids, np.arange(5)), (np.arange(5), ids)):
        with pytest.raises(InputError, match=r"sample_index has shape .* but there are 5 items"):
            recall_at_k(x, x, query_ids, gallery_ids, ks=(1,), device="cpu")


def test_a_dimension_mismatch_names_both_dimensions():
    with pytest.raises(InputError, match="queries has dim 8 but gallery has dim 6; embed both with the same model"):
        recall_at_k(np.ones((5, 8)), np.ones((7, 6)), np.arange(5), np.arange(7), ks=(1,), device="cpu")


def test_recall_tie_goes_to_the_lower_index_sample():
    g = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    q = np.array([[1.0, 0.0]], dtype=np.float32)
    # The query's own item (sample 7) ties with sample 5's item, which has the lower index.
    assert recall_at_k(q, g, [7], [5, 7, 9], ks=(1, 2), device="cpu") == {1: 0.0, 2: 1.0}
    assert recall_at_k(q, g, [5], [5, 7, 9], ks=(1, 2), device="cpu") == {1: 1.0, 2: 1.0}


@pytest.mark.parametrize("captions_per_image", [1, 5])
def test_recall_matches_reference_both_directions(captions_per_image):
    img, img_ids, txt, txt_ids = paired(40, captions_per_image, 16, noise=1.0, seed=captions_per_image)
    ks = (1, 5, 10)
    i2t = recall_at_k(img, txt, img_ids, txt_ids, ks, device="cpu")
    t2i = recall_at_k(txt, img, txt_ids, img_ids, ks, device="cpu", batch_size=7)
    assert i2t == pytest.approx(ref_recall(img, txt, img_ids, txt_ids, ks), abs=1e-12)
    assert t2i == pytest.approx(ref_recall(txt, img, txt_ids, img_ids, ks), abs=1e-12)
    assert 0.0 < t2i[1] < 1.0 and t2i[1] <= t2i[5] <= t2i[10]
    assert list(i2t) == [1, 5, 10]


def test_an_engine_named_at_run_time_is_the_same_engine():
    """The engine of a command line or a config file is a string built at run time, not the literal in the code:
    it must select the same search (a comparison by identity would only see interned literals)."""
    img, img_ids, txt, txt_ids = paired(20, 1, 8, noise=1.0, seed=3)
    named = "FAISS".lower()  # as a command line or a config gives it: built at run time
    assert named == "faiss" and named is not sys.intern("faiss")  # equal, not the literal's object
    want = recall_at_k(img, txt, img_ids, txt_ids, (1, 5), device="cpu")
    assert recall_at_k(img, txt, img_ids, txt_ids, (1, 5), device="cpu", engine=named) == want


def test_recall_any_caption_counts_for_image_to_text():
    # Image 0's first caption is far away but its second is the nearest item: still a hit at 1.
    img = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    txt = np.array([[-1.0, 0.1], [1.0, 0.05], [0.1, 1.0]], dtype=np.float32)
    assert recall_at_k(img, txt, [0, 1], [0, 0, 1], ks=(1,), device="cpu") == {1: 1.0}
    # ... and text->image asks each caption for its own image: the far caption misses.
    assert recall_at_k(txt, img, [0, 0, 1], [0, 1], ks=(1,), device="cpu") == {1: pytest.approx(2 / 3)}


def test_flat_agreement_is_exactly_one_and_hnsw_close_on_easy_data():
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(20, 32))
    g = (centres[rng.integers(0, 20, size=1500)] + 0.3 * rng.normal(size=(1500, 32))).astype(np.float32)
    q = g[:300] + 0.05 * rng.normal(size=(300, 32)).astype(np.float32)
    assert approximate_recall_agreement(q, g, 10, index="flat", sample=100, device="cpu") == 1.0
    assert approximate_recall_agreement(q, g, 10, index="hnsw", sample=100, device="cpu") >= 0.9
    assert approximate_recall_agreement(q, g, 10, index="ivf", sample=100, device="cpu", nprobe=10**6) == 1.0


def test_ivf_on_a_gallery_too_small_to_split_uses_one_list_and_is_exact():
    """FAISS's nlist rule (4·√n, at most n/39) gives 0 lists below 39 items: one list then, which is exact."""
    rng = np.random.default_rng(8)
    g = rng.normal(size=(30, 8)).astype(np.float32)
    q = rng.normal(size=(12, 8)).astype(np.float32)
    assert approximate_recall_agreement(q, g, 5, index="ivf", device="cpu") == 1.0


def test_ivf_with_more_lists_than_gallery_items_is_a_one_line_input_error():
    g = np.random.default_rng(2).normal(size=(30, 8)).astype(np.float32)
    for nlist in (31, 64):
        with pytest.raises(InputError, match=f"nlist={nlist} is larger than the gallery \\(30 items\\); lower nlist"):
            search_topk(g[:3], g, 2, index="ivf", nlist=nlist, device="cpu")


@pytest.mark.parametrize("builds", [["faiss-cpu"], ["faiss-cpu", "faiss-gpu"]])
def test_a_faiss_that_cannot_be_imported_is_one_error_naming_the_installed_builds(monkeypatch, builds):
    """pip can list a FAISS that ``import faiss`` cannot find (two builds sharing one faiss/ folder, one removed):
    one line naming what is installed, and the clash when there are two, with the fix."""
    import sys
    from importlib import metadata

    from gapdiag.errors import GapdiagError
    from gapdiag.metrics.search_index import load_faiss

    def version(name):
        if name not in builds:
            raise metadata.PackageNotFoundError(name)
        return "1.9.0"

    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss -> ImportError
    monkeypatch.setattr(metadata, "version", version)
    with pytest.raises(GapdiagError, match="FAISS cannot be loaded") as excinfo:
        load_faiss()
    message = str(excinfo.value)
    assert "\n" not in message and "faiss-cpu 1.9.0" in message and "pip uninstall" in excinfo.value.hint
    assert ("two FAISS builds" in message) is (len(builds) > 1)


def test_poor_ivf_settings_show_up_as_low_agreement():
    rng = np.random.default_rng(6)
    g = rng.normal(size=(2000, 32)).astype(np.float32)
    q = rng.normal(size=(100, 32)).astype(np.float32)
    agreement = approximate_recall_agreement(
        q, g, 10, index="ivf", sample=100, device="cpu", nlist=50, nprobe=1
    )
    # Reference: the same IVF result scored against the full-matrix top 10.
    _, approx = search_topk(q, g, 10, index="ivf", nlist=50, nprobe=1, device="cpu")
    ref_scores, _ = ref_topk(q, g, 10)
    full = _unit(q).astype(np.float64) @ _unit(g).astype(np.float64).T
    approx_scores = np.where(approx >= 0, np.take_along_axis(full, np.maximum(approx, 0), axis=1), -np.inf)
    expected = np.mean(approx_scores >= ref_scores[:, -1:] - 1e-12)
    assert agreement == pytest.approx(expected, abs=1e-9)
    assert agreement < 0.9


def test_agreement_samples_queries_with_the_seed():
    rng = np.random.default_rng(7)
    g = rng.normal(size=(500, 16)).astype(np.float32)
    q = rng.normal(size=(400, 16)).astype(np.float32)
    a = approximate_recall_agreement(
        q, g, 5, index="ivf", sample=50, seed=3, device="cpu", nlist=12, nprobe=1
    )
    b = approximate_recall_agreement(
        q, g, 5, index="ivf", sample=50, seed=3, device="cpu", nlist=12, nprobe=1
    )
    assert a == b and 0.0 < a < 1.0


@pytest.mark.parametrize(
    "call, fragment",
    [
        (lambda q, g: recall_at_k(q, g, np.arange(4), np.arange(5), device="cpu"), "sample"),
        (lambda q, g: recall_at_k(q, g[:0], np.arange(5), np.arange(0), device="cpu"), "empty"),
        (
            lambda q, g: recall_at_k(
                np.where(np.eye(5, 4) > 0, np.nan, q), g, np.arange(5), np.arange(5), device="cpu"
            ),
            "item 0",
        ),
        (lambda q, g: recall_at_k(q[:, :3], g, np.arange(5), np.arange(5), device="cpu"), "dim"),
        (lambda q, g: recall_at_k(q, g, np.arange(5), np.arange(5), ks=(1, 6), device="cpu"), "K=6"),
        (lambda q, g: recall_at_k(q, g, np.arange(5), np.arange(5), ks=(), device="cpu"), "ks"),
        (lambda q, g: recall_at_k(q, g, np.arange(5), np.arange(5), engine="blocked"), "engine"),
        (lambda q, g: search_topk(q, g, 0, device="cpu"), "k"),
        (lambda q, g: search_topk(q, g, 2, index="lsh", device="cpu"), "index"),
        (lambda q, g: search_topk(q, g, 2, device="tpu"), "device"),
        (lambda q, g: search_topk(q, np.zeros_like(g), 2, device="cpu"), "zero vector"),
        (lambda q, g: search_topk(q[0], g, 2, device="cpu"), "2-D"),
        (lambda q, g: approximate_recall_agreement(q, g, 2, index="ivf", nprob=3, device="cpu"), "nprob"),
        (lambda q, g: approximate_recall_agreement(q, g, 6, device="cpu"), "k=6"),
    ],
)
def test_bad_input_raises_one_line_input_error(call, fragment):
    rng = np.random.default_rng(8)
    q, g = rng.normal(size=(5, 4)).astype(np.float32), rng.normal(size=(5, 4)).astype(np.float32)
    with pytest.raises(InputError) as info:
        call(q, g)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_cuda_request_without_any_gpu_is_an_input_error():
    from gapdiag.metrics.search_index import gpu_search_available

    rng = np.random.default_rng(9)
    q, g = rng.normal(size=(3, 4)), rng.normal(size=(6, 4))
    if gpu_search_available("auto"):  # a GPU machine: FAISS GPU or torch on CUDA serves the request
        np.testing.assert_array_equal(search_topk(q, g, 4, device="cuda")[1], ref_topk(q, g, 4)[1])
    else:
        with pytest.raises(InputError, match="neither FAISS nor torch sees a GPU"):
            search_topk(q, g, 2, device="cuda")


def test_search_device_follows_the_model_except_where_nothing_searches_there():
    from gapdiag.metrics.search_index import search_device

    assert [search_device(d) for d in ("cpu", "auto", "cuda", "cuda:1")] == ["cpu", "auto", "cuda", "cuda:1"]
    assert search_device("mps") == "cpu"  # neither FAISS nor torch-on-CUDA search on Metal


@pytest.fixture
def torch_search_on_cpu(monkeypatch):
    """Route every non-CPU search through the torch backend, run on the CPU (the CUDA code path minus CUDA)."""
    from gapdiag.metrics import search_index

    monkeypatch.setattr(search_index, "_use_gpu", lambda device: (None, 0) if device == "cpu" else ("torch", 0))
    monkeypatch.setattr(search_index, "_torch_device", lambda gpu_id: "cpu")
    return search_index


def test_torch_backend_gives_the_reference_ranking_ties_included(torch_search_on_cpu, monkeypatch):
    assert torch_search_on_cpu.search_backend("cuda") == "torch-cuda"
    assert torch_search_on_cpu.search_backend("cuda", "hnsw") == "faiss-cpu"
    rng = np.random.default_rng(12)
    q, g = rng.normal(size=(37, 24)), rng.normal(size=(101, 24))
    g[60:70] = g[7]  # a tie group larger than the first candidates
    q[:3] = g[7]
    for candidates in (None, 3):
        scores, idx = search_topk(q, g, 9, device="cuda", batch_size=8, candidates=candidates)
        ref_scores, ref_idx = ref_topk(q, g, 9)
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_allclose(scores, ref_scores, atol=1e-6)
    # Query slices: a score budget of one row per slice must not change a bit.
    monkeypatch.setattr(torch_search_on_cpu._TorchFlatIndex, "max_scores", 1)
    np.testing.assert_array_equal(search_topk(q, g, 9, device="cuda")[1], ref_idx)


def test_torch_search_holds_at_most_its_score_budget_on_the_device(torch_search_on_cpu, monkeypatch):
    """The torch backend scores the queries in slices of ``max_scores`` scores (1 GiB of float32 on a GPU), so a
    large query set does not take the device's memory at once; the ranking is the reference one."""
    import torch

    monkeypatch.setattr(torch_search_on_cpu._TorchFlatIndex, "max_scores", 101 * 8)
    held: list[int] = []
    real_topk = torch.topk

    def topk(scores, *args, **kwargs):
        held.append(scores.numel())
        return real_topk(scores, *args, **kwargs)

    monkeypatch.setattr(torch, "topk", topk)
    rng = np.random.default_rng(13)
    q, g = rng.normal(size=(37, 24)), rng.normal(size=(101, 24))
    np.testing.assert_array_equal(search_topk(q, g, 9, device="cuda")[1], ref_topk(q, g, 9)[1])
    assert held and max(held) <= 101 * 8


def test_torch_backend_widens_exact_ties_that_float32_misorders(torch_search_on_cpu):
    q, g, tied = permuted_tie_group()
    _, idx = search_topk(q * 1024.0, g * 1024.0, 5, normalize=False, device="cuda", candidates=5)
    np.testing.assert_array_equal(idx, tied[None, :5])


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_search_equals_the_reference_on_a_real_gpu():
    from gapdiag.metrics.search_index import search_backend

    assert search_backend("cuda") in ("faiss-gpu", "torch-cuda")
    rng = np.random.default_rng(13)
    q, g = rng.normal(size=(300, 64)), rng.normal(size=(2000, 64))
    g[1500:1520] = g[4]
    q[:5] = g[4]
    scores, idx = search_topk(q, g, 25, device="cuda")
    ref_scores, ref_idx = ref_topk(q, g, 25)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-6)


def test_a_gpu_index_beyond_the_visible_ones_is_a_one_line_error(monkeypatch):
    from gapdiag import device as devices
    from gapdiag.metrics import search_index

    monkeypatch.setattr(devices, "gpu_possible", lambda: True)
    monkeypatch.setattr(search_index, "_faiss_gpus", lambda: 0)
    monkeypatch.setattr(search_index, "_torch_gpus", lambda: 2)
    assert search_index._use_gpu("cuda:1") == ("torch", 1)
    assert search_index._use_gpu("auto") == ("torch", 0)
    with pytest.raises(InputError, match=r"only 2 GPU\(s\) are visible; use cuda:0..cuda:1"):
        search_index._use_gpu("cuda:2")
    monkeypatch.setattr(search_index, "_faiss_gpus", lambda: 1)
    assert search_index._use_gpu("cuda:0") == ("faiss", 0)
    assert search_index._use_gpu("cuda:1") == ("torch", 1)  # FAISS does not see that one; torch does
    with pytest.raises(InputError, match="'auto', 'cpu', 'cuda' or 'cuda:N'"):
        search_index._use_gpu("cuda:x")


def test_faiss_gpu_plumbing_with_a_stand_in_for_the_gpu_index(monkeypatch):
    # No FAISS GPU build runs on these machines (it needs CUDA 12's cuBLAS); check gapdiag's side of the contract:
    # the index is moved to the requested GPU, resources outlive it, selection is capped at 2048, results exact.
    import faiss

    from gapdiag.metrics import search_index

    moved = []

    class Resources:
        pass

    def index_cpu_to_gpu(resources, gpu_id, index):
        assert isinstance(resources, Resources)
        moved.append((gpu_id, type(index).__name__))
        return index

    monkeypatch.setattr(faiss, "StandardGpuResources", Resources, raising=False)
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 2)
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", index_cpu_to_gpu, raising=False)
    assert search_index.search_backend("cuda:1") == "faiss-gpu" and search_index.search_backend("auto", "hnsw") == "faiss-cpu"
    rng = np.random.default_rng(14)
    q, g = rng.normal(size=(20, 16)), rng.normal(size=(3000, 16))
    g[2500:2600] = g[3]
    q[0] = g[3]  # a 101-way exact tie: widening happens on the "GPU" path
    _, idx = search_topk(q, g, 101, device="cuda:1", candidates=101)
    np.testing.assert_array_equal(idx, ref_topk(q, g, 101)[1])
    assert moved == [(1, "IndexFlatIP")]
    searcher = search_index.Searcher(unit_rows(g, "g"), **{**asdict(search_index.IndexSettings()), "device": "cuda"})
    assert searcher.on_gpu and searcher.max_k == 2048  # FAISS GPU's selection limit


def test_torch_backend_rescores_on_its_device_not_on_the_host(torch_search_on_cpu, monkeypatch):
    """The candidates of the torch backend are rescored by torch (float64 on the tensors' device), and give the
    float64 reference ranking, exact ties to the lower index, for candidate sets the rescoring chunks split."""
    def host_rescoring(*args, **kwargs):
        raise AssertionError("torch-backend candidates were rescored on the host")

    from gapdiag.metrics import retrieval

    monkeypatch.setattr(torch_search_on_cpu, "exact_scores", host_rescoring)
    monkeypatch.setattr(retrieval, "exact_scores", host_rescoring)
    monkeypatch.setattr(torch_search_on_cpu, "_CHUNK_ELEMENTS", 24 * 5)  # several row and column chunks
    rng = np.random.default_rng(21)
    q, g = rng.normal(size=(23, 24)), rng.normal(size=(211, 24))
    g[100:117] = g[3]  # exact ties: must go to the lower index
    q[:4] = g[3]
    q[4:6] = -g[3]
    scores, idx = search_topk(q, g, 12, device="cuda", batch_size=5, candidates=4)
    ref_scores, ref_idx = ref_topk(q, g, 12)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-6)
