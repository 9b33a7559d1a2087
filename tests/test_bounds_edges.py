"""Issue #25's sweep, continued: memory bounds held at their real sizes, and the survivors of run 5's fresh mutation
sample (seed 29, docs/reliability.md), each killed by what its bug breaks: a valid input refused, a tie decided
for the wrong query, items in an unsorted sample order, a joint row named wrong, a buffer past its size."""

from __future__ import annotations

import numpy as np
import pytest
from test_bounds_sweep import _brute_knn, _points

from gapdiag.metrics import compute_all
from gapdiag.metrics.arithmetic import arithmetic_accuracy
from gapdiag.metrics.similarity import compare_embeddings
from gapdiag.metrics.uniformity import uniformity_wang_isola
from gapdiag.vectors import EmbeddingSet

# ---------------------------------------------------------------------------------------------------------
# Memory bounds at their real sizes: the tests beside each function shrink the constant to exercise the
# chunking; these hold the constant itself to the size its comment promises (a bound doubled fails here)
# ---------------------------------------------------------------------------------------------------------
MiB = 1 << 20


class _RecordingRows(np.ndarray):
    """An array that records the size of every block read out of it by indexing."""

    read: list[int]

    def __getitem__(self, key):
        block = np.asarray(np.ndarray.__getitem__(self, key))
        self.read.append(block.size)
        return block


def _recording(x: np.ndarray) -> _RecordingRows:
    view = x.view(_RecordingRows)
    view.read = []
    return view


@pytest.mark.parametrize("n_cols", [1, 1000, 1 << 18])
def test_row_strips_hold_about_one_mib_of_float32_scores(n_cols):
    """blocked.py: "Row strips of about 1 MiB of float32 scores: they stay in a core's L2"."""
    from gapdiag.metrics.blocked import row_strips

    strips = row_strips((0, 1 << 19), n_cols)
    largest = max((stop - start) * n_cols for start, stop in strips) * 4
    assert MiB // 2 < largest <= MiB  # as large as the bound allows (a strip of a few rows would be slow)


def test_rescoring_gathers_at_most_32_mib_of_float64_at_its_real_chunk_size():
    """search_index.py: the float64 temporaries of rescoring (rows × candidates × d) are bounded to ~32 MB; 100
    queries × 1,000 candidates × 64 dimensions would be 51 MB at once."""
    from gapdiag.metrics.search_index import exact_scores

    rng = np.random.default_rng(13)
    q = rng.normal(size=(100, 64)).astype(np.float32)
    g = _recording(rng.normal(size=(1000, 64)).astype(np.float32))
    cand = np.tile(np.arange(1000), (100, 1))
    cand[::7, ::5] = -1
    got = exact_scores(q, g, cand)
    assert max(g.read) * 8 <= 32 * MiB
    want = q.astype(np.float64) @ np.asarray(g, dtype=np.float64).T
    assert np.allclose(got[cand >= 0], want[cand >= 0], rtol=0, atol=1e-12)
    assert np.all(np.isneginf(got[cand < 0]))


def test_the_kth_score_floor_scores_about_16_mib_at_a_time():
    """cross.py: the floor under each query's K-th score is found "about 16 MiB of scores at a time"; 20,000
    queries against the 256 gallery items it scores would be 20 MB at once. Each floor is at or below the
    query's K-th best score over the whole gallery."""
    from gapdiag.metrics.cross import _kth_score_floor

    rng = np.random.default_rng(14)
    q = _recording(rng.normal(size=(20_000, 4)).astype(np.float32))
    g = rng.normal(size=(300, 4)).astype(np.float32)
    floor = _kth_score_floor(q, g, 10)
    rows_at_once = max(q.read) // q.shape[1]
    assert rows_at_once * 256 * 4 <= 16 * MiB  # float32 scores against 256 gallery items
    kth = np.sort(np.asarray(q, dtype=np.float64) @ g.T.astype(np.float64), axis=1)[:, -10]
    assert np.all(floor <= kth)


# ---------------------------------------------------------------------------------------------------------
# Run 5's fresh sample (seed 29): its survivors, killed: inputs and parameter ranges no test had reached
# ---------------------------------------------------------------------------------------------------------
def test_arithmetic_on_the_smallest_grid_of_two_images_is_measured():
    """Two images that differ in one attribute are the smallest grid with a valid edit: each query's answer is
    the other image (the query image itself is skipped), so the accuracy is 1. The search must ask for no more
    neighbours than the two images (a top-3 search refused this valid input)."""
    images = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)
    text = {"red": np.array([1.0, 0.0, 0.0]), "green": np.array([0.0, 1.0, 0.0])}
    assert arithmetic_accuracy(images, {"color": np.array(["red", "green"])}, text, device="cpu") == 1.0


@pytest.mark.parametrize("t", [4.0, 5.0, 6.0])
def test_uniformity_at_the_edge_of_the_compiled_exp_range_and_past_it_matches_the_reference(t):
    """2t = 8 is the compiled exp's last temperature (MAX_TWO_T); above it the strip takes the float64 path. The
    tests elsewhere ran t = 0.5, 2, 20 and 40, none at the switch."""
    import reference as ref

    x = _points(17, d=6, seed=15)
    assert uniformity_wang_isola(x, t=t, block_size=5) == pytest.approx(ref.uniformity(x, t=t), abs=1e-5)


def _tied_pairs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` image-caption pairs where every third caption is an exact copy of the next sample's: float32 scores
    tie exactly between a true caption and another sample's, in every tile."""
    rng = np.random.default_rng(seed)
    img = rng.normal(size=(n, 6)).astype(np.float32)
    txt = (img + 0.3 * rng.normal(size=(n, 6))).astype(np.float32)
    txt[0:-1:3] = txt[1::3][: len(txt[0:-1:3])]
    return img, txt


@pytest.mark.parametrize("block_size", [5, 7])
def test_the_blocked_pass_decides_exact_ties_in_every_tile_as_the_exact_search_does(block_size):
    """Near-ties found in a row strip are re-decided on exact scores for the strip's own rows: with tiles that
    start at rows 5, 10, 15, ... (not powers of two), a wrong row offset decides another query's tie."""
    img, txt = _tied_pairs(31, seed=16)
    es = EmbeddingSet({"image": img, "text": txt}, {"image": np.arange(31), "text": np.arange(31)}, 31)
    names = ["recall_at_1", "recall_at_5", "uniformity_cross"]
    blocked, _ = compute_all(es, names, retrieval_engine="blocked", block_size=block_size, device="cpu")
    exact, _ = compute_all(es, names, retrieval_engine="faiss", device="cpu")
    assert {k: v for k, v in blocked.items() if k.startswith("recall")} == {
        k: v for k, v in exact.items() if k.startswith("recall")}
    assert blocked == pytest.approx(exact, abs=1e-6)  # uniformity from float32 tiles


def test_items_in_any_sample_order_give_the_values_of_sorted_ones():
    """The blocked pass sorts items by sample id when they are not sorted; ids whose first is the smallest but
    that are not sorted (0, 3, 1, 2, ...) must be sorted too (the same-sample pairs are found by binary search)."""
    rng = np.random.default_rng(17)
    n = 20
    order = np.concatenate([[0], rng.permutation(np.arange(1, n))])
    img = rng.normal(size=(n, 6)).astype(np.float32)
    txt = np.repeat(img, 2, axis=0) + 0.5 * rng.normal(size=(2 * n, 6)).astype(np.float32)
    names = ["recall_at_1", "recall_at_5", "uniformity_cross", "hubness_skewness"]
    shuffled = EmbeddingSet({"image": img[order], "text": txt},
                            {"image": order, "text": np.repeat(np.arange(n), 2)}, n)
    ordered = EmbeddingSet({"image": img, "text": txt},
                           {"image": np.arange(n), "text": np.repeat(np.arange(n), 2)}, n)
    got, _ = compute_all(shuffled, names, retrieval_engine="blocked", block_size=6, device="cpu")
    want, _ = compute_all(ordered, names, retrieval_engine="blocked", block_size=6, device="cpu")
    for name in got:
        if name.startswith("hubness"):
            continue  # gallery rows are permuted: the hubs are other rows, the statistics the same below
        assert got[name] == pytest.approx(want[name], abs=1e-9), name


def test_joint_twonn_gathers_only_its_documented_sample_of_the_stacked_items(monkeypatch):
    """The joint TwoNN of 2 × 2,600 items (more than the 5,000 it may use) is the estimate on the seeded sample
    of the stacked set, gathered modality by modality without stacking every item (docs/metrics.md: TwoNN on
    ≤ 5,000 points per set whatever N). Counting each modality's dimensions instead of its items stacked them
    all (8 + 8 < 5,000), and the estimate drew its sample from the copy: the same value, N rows held."""
    from gapdiag.metrics import intrinsic

    estimated = []
    real = intrinsic.twonn_estimate

    def recording(points, **kwargs):
        estimated.append(points.shape[0])
        return real(points, **kwargs)

    monkeypatch.setattr(intrinsic, "twonn_estimate", recording)
    img, txt = _points(2600, d=8, seed=18), _points(2600, d=8, seed=19)
    es = EmbeddingSet({"image": img, "text": txt}, {"image": np.arange(2600), "text": np.arange(2600)}, 2600)
    values, _ = compute_all(es, ["twonn_dimension/joint"], seed=3, device="cpu")
    assert max(estimated) == 5000  # each modality (2,600) and the joint sample, never the 5,200 stacked
    stacked = np.vstack([img / np.linalg.norm(img, axis=1, keepdims=True),
                         txt / np.linalg.norm(txt, axis=1, keepdims=True)]).astype(np.float32)
    assert values["twonn_dimension/joint"] == pytest.approx(real(stacked, seed=3, normalize=False)[0], rel=1e-6)


def test_the_joint_changed_items_name_each_item_by_its_own_modality_and_row():
    """compare_embeddings' ``changed/joint`` lists items of the stacked set; each must be named by its modality
    and its row in that modality, with that item's own overlap (asked for all of them, every item once)."""
    x, y = _points(12, d=5, seed=20), _points(12, d=5, seed=21)
    xt, yt = _points(9, d=5, seed=22), _points(9, d=5, seed=23)
    ids = {"image": np.arange(12), "text": np.arange(9)}
    a = EmbeddingSet({"image": x, "text": xt}, ids, 12)
    b = EmbeddingSet({"image": y, "text": yt}, ids, 12)
    _, extras = compare_embeddings(a, b, k=3, top=100)
    k = 3
    na, nb = _brute_knn(np.vstack([x, xt]), k), _brute_knn(np.vstack([y, yt]), k)
    offset = {"image": 0, "text": 12}
    listed = extras["changed/joint"]
    assert sorted((e["modality"], e["item"]) for e in listed) == sorted(
        [("image", r) for r in range(12)] + [("text", r) for r in range(9)])
    for e in listed:
        i = offset[e["modality"]] + e["item"]
        assert e["overlap"] == pytest.approx(len(na[i] & nb[i]) / k)
        assert e["sample"] == ids[e["modality"]][e["item"]]


def test_the_scan_flags_each_column_in_one_byte(monkeypatch):
    """The compiled strip scan flags the entries of a row that need a closer look in one byte per column, read 8
    at a time (strip_scan._scan): its buffer is the strip's width rounded up to 8, not more (a buffer 256 times
    that, walked word by word, gave the same values slower). Its Python body runs here with ``np.zeros``
    recorded, on a strip whose every entry is a near-tie, against the compiled scan."""
    from gapdiag.metrics import strip_scan
    from gapdiag.metrics.running_topk import RunningTopK
    from gapdiag.metrics.strip_scan import QueryState, StripScanner

    def run(scan):
        s = np.zeros((3, 21), dtype=np.float32)
        sides = []
        for n, m in ((3, 21), (21, 3)):
            top = RunningTopK(n, 2)
            sides.append(QueryState(hi=np.zeros(n, np.float32), lo=np.zeros(n, np.float32), top_scores=top.scores,
                                    top_index=top.index, gallery=np.arange(m), threshold=top.scores[:, -1].copy()))
        monkeypatch.setattr(strip_scan, "_scan", scan)
        ahead_r, ahead_c, i, j = StripScanner()(s, None, *sides)
        return [ahead_r.tolist(), ahead_c.tolist(), i.tolist(), j.tolist(), sides[0].top_index.tolist()]

    compiled_scan = strip_scan._scan
    compiled = run(compiled_scan)
    allocated = []

    class RecordingNumpy:
        def __getattr__(self, name):
            return getattr(np, name)

        def zeros(self, shape, dtype=float):
            allocated.append(int(np.prod(shape)) * np.dtype(dtype).itemsize)
            return np.zeros(shape, dtype)

    def python_body(*args):
        allocated.clear()  # the scan's own buffers, not its caller's outputs
        return compiled_scan.py_func(*args)

    monkeypatch.setattr(strip_scan, "np", RecordingNumpy())
    assert run(python_body) == compiled
    assert allocated == [24]  # 21 columns, one byte each, rounded up to whole 8-byte words
