"""Issue #25, run 13: what the survivors of the fresh samples (seeds 42 and 43) showed no test asserted.

Each test fails with its survivor applied and passes without (docs/reliability.md, "Run 13").
"""

from __future__ import annotations

import numpy as np
import pytest

from gapdiag.metrics import compute_all, cross
from gapdiag.vectors import EmbeddingSet


def test_same_sample_pairs_come_in_batches_of_about_the_batch_size(monkeypatch):
    """``_same_sample_pairs`` yields whole rows in batches of about ``_PAIR_BATCH`` pairs (its docstring): 12 rows
    of one pair each, batches of 4 pairs, make 3 batches of 4 rows, not 12 batches of one. Survivor: the batch's
    end ``ends[row] - count[row] + _PAIR_BATCH`` → ``ends[row] >> …`` (one row per batch: the same pairs, a
    binary search and a float64 gather per row)."""
    monkeypatch.setattr(cross, "_PAIR_BATCH", 4)
    ids = np.arange(12)
    batches = list(cross._same_sample_pairs(ids, ids))
    assert [rows.tolist() for rows, _ in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert [cols.tolist() for _, cols in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]


@pytest.mark.parametrize("image_samples, text_samples", [([1, 0], [0, 1]), ([0, 1], [1, 0]), ([1, 0], [1, 0])])
def test_two_items_in_either_sample_order_give_the_brute_force_ranks(image_samples, text_samples):
    """Two items whose sample ids come in decreasing order are sorted before the same-sample pairs are found by
    binary search (over the sorted ids of the other side), as any other unsorted order is: R@1 in both directions
    is the brute force's. Survivor: the "already sorted" shortcut ``sample.size < 2`` → ``== 2`` (two items taken as
    sorted whatever their order)."""
    image = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    text = np.array([[0.9, 0.1], [0.2, 0.8]], dtype=np.float32)  # caption 0 nearest image 0, caption 1 image 1
    si, st = np.array(image_samples), np.array(text_samples)
    es = EmbeddingSet({"image": image, "text": text}, {"image": si, "text": st}, 2)
    values, _ = compute_all(es, ["recall_at_1"], device="cpu")
    # Brute force: item i's nearest on the other side is item i; a hit when the two share a sample.
    hits = [float(si[i] == st[i]) for i in range(2)]
    assert values["recall_at_1/text_to_image"] == np.mean(hits)
    assert values["recall_at_1/image_to_text"] == np.mean(hits)


def test_a_search_among_exact_ties_widens_four_times_at_each_step(monkeypatch):
    """The search widens by 4 each time (docs/metrics-retrieval.md: "×4 each time") while the last candidate may
    still tie with the k-th: among 200 identical gallery vectors, k = 1 asks for 17 candidates (max(2k, k + 16)),
    then 68, then the whole gallery; the answer is the lowest index. Survivor: ``kk * 4`` → ``kk * 5`` (85)."""
    from gapdiag.metrics import search_index
    from gapdiag.metrics.retrieval import search_topk

    asked: list[int] = []
    real = search_index.Searcher.raw_search

    def recording(self, q, k):  # type: ignore[no-untyped-def]
        asked.append(k)
        return real(self, q, k)

    monkeypatch.setattr(search_index.Searcher, "raw_search", recording)
    g = np.tile(np.array([[0.6, 0.8]], dtype=np.float32), (200, 1))
    _, idx = search_topk(np.array([[1.0, 0.0]], dtype=np.float32), g, 1, device="cpu")
    assert idx.tolist() == [[0]]
    assert asked == [17, 68, 200]


def test_the_agreement_draws_1000_queries_by_default(monkeypatch):
    """``approximate_recall_agreement`` measures a seeded sample of 1,000 queries by default (its signature; the
    engine passes ``quadratic.AGREEMENT_SAMPLE``, the same number, tested against the docs elsewhere): of 1,001
    queries it searches 1,000. Survivor: the default ``sample = 1000`` → ``1001``."""
    from gapdiag.metrics import retrieval

    searched: list[int] = []
    real = retrieval._topk

    def recording(q, g, k, **options):  # type: ignore[no-untyped-def]
        searched.append(q.shape[0])
        return real(q, g, k, **options)

    monkeypatch.setattr(retrieval, "_topk", recording)
    rng = np.random.default_rng(15)
    agreement = retrieval.approximate_recall_agreement(rng.normal(size=(1001, 4)), rng.normal(size=(30, 4)),
                                                       index="flat", device="cpu")
    assert agreement == 1.0 and searched == [1000, 1000]


#: Set when the object below is unpickled: what a malicious pickle in a cache file would run.
UNPICKLED: list[str] = []


def _run_on_load() -> str:
    UNPICKLED.append("ran")
    return "payload"


class _Payload:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (_run_on_load, ())


@pytest.mark.parametrize("mmap", [False, True])
def test_a_cache_array_that_holds_a_pickle_is_refused_before_it_runs(tmp_path, mmap):
    """Every cache ``.npy`` is read with ``allow_pickle=False`` (run 10 held it for the ``.npz`` files): a file
    holding a pickle (an object array, shaped and typed as ``meta.json`` says nothing of) is a one-line cache error
    naming the file, and the pickle never runs. Survivor: ``load_checked``'s ``allow_pickle=False`` → ``True`` (the
    pickle ran, then the dtype check refused the array)."""
    from gapdiag.cache.files import load_checked
    from gapdiag.errors import CacheError

    path = tmp_path / "image.npy"
    np.save(path, np.array([[_Payload()]], dtype=object))
    UNPICKLED.clear()
    with pytest.raises(CacheError, match="image.npy"):
        load_checked(path, "abcd", shape=(1, 1), dtype="float32", mmap=mmap)
    assert UNPICKLED == []
