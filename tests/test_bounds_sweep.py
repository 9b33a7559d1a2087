"""Category sweep of issue #25's mutation survivors: error paths and the values their messages name, the smallest
input each check lets through, and the counts that docs/metrics.md promises for listed items.

Every fresh mutation sample so far found survivors of the same kinds (docs/reliability.md, "Mutation testing"):
an input check whose ``<`` became ``<=`` (a valid input refused), a message that named a matrix's width as its
number of items, a listed-items constant nobody checked against the documentation. Rather than one test per
survivor, the tables below hold every such site of ``gapdiag/metrics`` once: each bad input names the values a
user needs to find the problem (distinct numbers, so naming the wrong one fails), and each smallest valid input
passes.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from gapdiag.errors import InputError
from gapdiag.metrics import compute_all
from gapdiag.metrics.arithmetic import arithmetic_accuracy
from gapdiag.metrics.blocked import iter_unit_blocks, joint_stats, linear_stats
from gapdiag.metrics.clustering import modality_separability, v_measure_class, v_measure_modality
from gapdiag.metrics.cone import (
    angular_value,
    angular_value_from_stats,
    conformity,
    conformity_estimate,
    wasserstein_1d,
)
from gapdiag.metrics.decomposition import gap_decomposition_from_stats, mmd_test
from gapdiag.metrics.engine import compute_from_stats
from gapdiag.metrics.hubness import hubness, k_occurrence
from gapdiag.metrics.intrinsic import isoscore, isoscore_from_cov, twonn_dimension
from gapdiag.metrics.raw import norm_distribution, raw_norms_from_blocks
from gapdiag.metrics.retrieval import approximate_recall_agreement, recall_at_k, search_topk
from gapdiag.metrics.similarity import compare_embeddings, knn_indices, linear_cka, neighbour_overlap
from gapdiag.metrics.uniformity import uniformity_w2, uniformity_wang_isola, w2_from_stats
from gapdiag.metrics.validation import (
    check_block_values,
    check_matrix,
    check_same_dim,
    check_sample_index,
    default_sample_index,
    true_pair_items,
)
from gapdiag.metrics.zeroshot import build_classifier, zero_shot_accuracy
from gapdiag.vectors import EmbeddingSet

DOCS = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"


def _points(n: int, d: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def _rows_with(values: dict[int, float], n: int = 5, d: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A block of ``n`` ones-rows where row ``k`` is filled with ``values[k]``; with its float64 norms."""
    block = np.ones((n, d), dtype=np.float32)
    for k, v in values.items():
        block[k] = v
    with np.errstate(over="ignore", invalid="ignore"):
        norms = np.sqrt(np.einsum("ij,ij->i", block, block, dtype=np.float64))
    return block, norms


def _pairs(n: int, modalities: set[str] | None = None) -> EmbeddingSet:
    """``n`` image-text pairs (or the ``modalities`` named), one item per sample."""
    names = sorted(modalities or {"image", "text"})
    return EmbeddingSet({m: _points(n, seed=k) for k, m in enumerate(names)}, {m: np.arange(n) for m in names}, n)


def _huge_norm_block() -> tuple[np.ndarray, np.ndarray]:
    """Row 2 finite but with a norm past float64 (the caller's norm overflowed): not "NaN or inf" in the data."""
    block, norms = _rows_with({}, n=4)
    norms[2] = np.inf
    return block, norms


#: (what, the call, fragments its one-line message must hold). Numbers are distinct within a case, so a message
#: that names the other matrix's count, a width for a count or the wrong row fails.
BAD_INPUTS = {
    "3-D matrix": (lambda: check_matrix(np.zeros((2, 3, 4), np.float32), "img"), ["img:", "(2, 3, 4)"]),
    "one vector, not a matrix": (lambda: check_matrix(np.zeros(3, np.float32), "img"), ["img:", "(3,)"]),
    "no items": (lambda: check_matrix(np.zeros((0, 3), np.float32), "img"), ["img:", "empty", "(0, 3)"]),
    "no dimensions": (lambda: check_matrix(np.zeros((3, 0), np.float32), "img"), ["img:", "empty", "(3, 0)"]),
    "integer vectors": (lambda: check_matrix(np.zeros((2, 3), np.int16), "img"), ["img:", "int16"]),
    "dimensions differ": (
        lambda: check_same_dim(np.zeros((3, 5)), np.zeros((7, 11)), "image", "text"),
        ["image has dim 5", "text has dim 11"],
    ),
    "NaN in a block at an offset": (
        lambda: check_block_values(*_rows_with({2: np.nan, 4: np.nan}), "text", 10), ["text:", "item 12", "NaN"]
    ),
    "inf in gathered rows": (
        lambda: check_block_values(*_rows_with({1: np.inf}), "text", np.array([5, 9, 13, 17, 21])),
        ["text:", "item 9", "NaN or inf"],
    ),
    "a norm past float": (
        lambda: check_block_values(*_huge_norm_block(), "text", 3), ["text:", "item 5", "too large"]
    ),
    "zero vector": (
        lambda: check_block_values(*_rows_with({3: 0.0, 4: 0.0}), "image", 7), ["image:", "item 10", "zero vector"]
    ),
    "zero vector read in blocks": (
        lambda: list(iter_unit_blocks(np.vstack([_points(5), np.zeros((1, 4), np.float32)]), "x", block_size=2)),
        ["x:", "item 5", "zero vector"],
    ),
    "sample index too short": (
        lambda: check_sample_index(np.arange(4), 6, "text"), ["text:", "shape (4,)", "6 items"]
    ),
    "sample index too long": (
        lambda: check_sample_index(np.arange(7), 6, "text"), ["text:", "shape (7,)", "6 items"]
    ),
    "sample index 2-D": (lambda: check_sample_index(np.zeros((6, 1), int), 6, "text"), ["shape (6, 1)", "6 items"]),
    "sample index of floats": (lambda: check_sample_index(np.zeros(3), 3, "text"), ["text:", "float64"]),
    "negative sample id": (lambda: check_sample_index(np.array([0, -1, 2]), 3, "text"), ["text:", "negative"]),
    "counts differ without sample ids": (
        lambda: default_sample_index(np.zeros((3, 2)), np.zeros((4, 2)), None, None, "image", "text"),
        ["image has 3 items", "text has 4"],
    ),
    "one side's sample ids only": (
        lambda: default_sample_index(np.zeros((3, 2)), np.zeros((3, 2)), np.arange(3), None, "image", "text"),
        ["x_sample and y_sample"],
    ),
    "neither side one per sample": (
        lambda: true_pair_items(np.array([0, 0, 1]), np.array([1, 1, 0]), "image", "text"),
        ["cannot pair image with text"],
    ),
    "no shared sample id": (
        lambda: true_pair_items(np.array([0, 1]), np.array([2, 3, 3]), "image", "text"),
        ["image and text share no sample id"],
    ),
    "top-K lists 1-D": (lambda: k_occurrence(np.array([0, 1, 2]), 5), ["shape (3,)"]),
    "top-K names an item past the gallery": (
        lambda: k_occurrence(np.array([[0, 3], [5, 1]]), 5), ["gallery item 5", "has 5 items"]
    ),
    "TwoNN on 2 points": (lambda: twonn_dimension(_points(2)), ["at least 3 points", "got 2"]),
    "IsoScore of a 1 x 1 covariance": (lambda: isoscore_from_cov(np.eye(1)), ["shape (1, 1)"]),
    "IsoScore of a non-square covariance": (lambda: isoscore_from_cov(np.zeros((2, 3))), ["shape (2, 3)"]),
    "IsoScore of a 1-D covariance": (lambda: isoscore_from_cov(np.zeros(3)), ["shape (3,)"]),
    "IsoScore of one point": (lambda: isoscore(_points(1)), ["at least 2 points", "got 1"]),
    "MMD with one item in x": (lambda: mmd_test(_points(1), _points(5, seed=1)), ["got 1 and 5"]),
    "MMD with one item in y": (lambda: mmd_test(_points(6), _points(1, seed=1)), ["got 6 and 1"]),
    "decomposition without Gram": (
        lambda: gap_decomposition_from_stats(linear_stats(_points(3), gram=False), linear_stats(_points(3, seed=1))),
        ["Gram"],
    ),
    "joint statistics of nothing": (lambda: joint_stats([]), ["at least one"]),
    "block size 0": (lambda: list(iter_unit_blocks(_points(3), "x", block_size=0)), ["block_size", "got 0"]),
    "uniformity of one item": (lambda: uniformity_wang_isola(_points(1)), ["at least 2 items", "got 1"]),
    "-W2 without Gram": (lambda: w2_from_stats(linear_stats(_points(3), gram=False)), ["Gram"]),
    "uniformity_w2 of nothing": (lambda: uniformity_w2(), ["at least one"]),
    "angular value of one item": (lambda: angular_value(_points(1)), ["at least 2 items", "got 1"]),
    "conformity of one item": (lambda: conformity(_points(1)), ["at least 2 items", "got 1"]),
    "W1 against an empty sample": (lambda: wasserstein_1d([1.0, 2.0, 3.0], []), ["sizes 3 and 0"]),
    "W1 of an empty sample": (lambda: wasserstein_1d([], [1.0, 2.0]), ["sizes 0 and 2"]),
    "conformity estimate of a zero mean": (
        lambda: conformity_estimate(np.array([[1.0, 0.0], [-1.0, 0.0]], np.float32)), ["mean is 0"]
    ),
    "raw norms of nothing": (lambda: raw_norms_from_blocks([]), ["at least one vector"]),
    "norm distribution of nothing": (lambda: norm_distribution([]), ["at least one vector"]),
    "arithmetic with no queries": (
        lambda: arithmetic_accuracy(_points(4), {"color": np.array(["r", "g", "r", "g"])}, {}, max_queries=0),
        ["max_queries", "got 0"],
    ),
    "arithmetic with no attributes": (lambda: arithmetic_accuracy(_points(4), {}, {}), ["attributes is empty"]),
    "arithmetic attribute of the wrong length": (
        lambda: arithmetic_accuracy(_points(4), {"color": np.array(["r", "g", "b"])}, {}),
        ["'color'", "shape (3,)", "4 images"],
    ),
    "V-Measure of one modality": (lambda: v_measure_modality([_points(4)]), ["at least 2 modalities", "got 1"]),
    "V-Measure with one label array for two modalities": (
        lambda: v_measure_class([_points(4), _points(4)], [np.arange(4)]), ["got 2 modalities", "1 label arrays"]
    ),
    "V-Measure labels of the wrong length": (
        lambda: v_measure_class([_points(4), _points(5)], [np.arange(4) % 2, np.arange(3) % 2]),
        ["modality 1", "shape (3,)", "5 items"],
    ),
    "V-Measure of one label": (
        lambda: v_measure_class([_points(4), _points(5)], [np.zeros(4, int), np.zeros(5, int)]), ["got 1"]
    ),
    "V-Measure with 0 restarts": (lambda: v_measure_modality([_points(4), _points(5)], n_init=0), ["got 0"]),
    "V-Measure sample of 0": (lambda: v_measure_modality([_points(4), _points(5)], max_samples=0), ["got 0"]),
    "separability held-out share 1": (
        lambda: modality_separability([_points(4), _points(5)], test_fraction=1.0), ["test_fraction", "got 1.0"]
    ),
    "separability of one item": (
        lambda: modality_separability([_points(1), _points(5)]), ["at least 2 items", "got 1"]
    ),
    "k of 0": (lambda: search_topk(_points(3), _points(5), 0), ["k must be a positive integer", "got 0"]),
    "k past the gallery": (lambda: search_topk(_points(3), _points(5), 6), ["k=6", "(5 items)", "k <= 5"]),
    "search batch of 0": (lambda: search_topk(_points(3), _points(5), 2, batch_size=0), ["got 0"]),
    "recall with no K": (
        lambda: recall_at_k(_points(3), _points(3), np.arange(3), np.arange(3), ks=[]), ["ks is empty"]
    ),
    "agreement on a sample of 0": (
        lambda: approximate_recall_agreement(_points(3), _points(5), k=2, sample=0), ["sample must be >= 1", "got 0"]
    ),
    "CKA of different numbers of items": (lambda: linear_cka(_points(6), _points(5)), ["x has 6 rows", "y has 5"]),
    "CKA of 3 items": (lambda: linear_cka(_points(3), _points(3, seed=1)), ["at least 4 items", "got 3"]),
    "k-NN as deep as the items": (lambda: knn_indices(_points(4), 4), ["(4)", "k=4"]),
    "k-NN lists of two shapes": (
        lambda: neighbour_overlap(np.zeros((3, 2), int), np.zeros((3, 4), int)), ["(3, 2) and (3, 4)"]
    ),
    "zero-shot with 0 templates": (lambda: build_classifier(_points(3), 3, 0), ["got 3 and 0"]),
    "zero-shot prompts not class x template": (
        lambda: build_classifier(_points(5), 2, 3), ["has 5 rows", "2 classes × 3 templates need 6"]
    ),
    "zero-shot labels of the wrong length": (
        lambda: zero_shot_accuracy(_points(4), _points(3), np.zeros(5, int), device="cpu"), ["shape (5,)", "4 images"]
    ),
    "zero-shot label past the classes": (
        lambda: zero_shot_accuracy(_points(4), _points(3), np.array([0, 1, 2, 3]), device="cpu"), ["[0, 3)"]
    ),
    "compute_all of one modality": (lambda: compute_all(_pairs(4, {"image"}), ["modality_gap"], device="cpu"),
                                    ["at least 2 modalities", "got 1", "['image']"]),
    "an engine that is not one": (
        lambda: compute_all(_pairs(4), ["recall_at_1"], retrieval_engine="exact", device="cpu"), ["got 'exact'"]
    ),
    "vectors without sample ids": (
        lambda: compute_all(EmbeddingSet({"image": _points(4), "text": _points(4)}, {"image": np.arange(4)}, 4),
                            ["modality_gap"], device="cpu"),
        ["modality 'text'", "no sample_index"],
    ),
    "a sample id past the samples": (
        lambda: compute_all(EmbeddingSet({"image": _points(4), "text": _points(4)},
                                         {"image": np.arange(4), "text": np.array([0, 1, 2, 6])}, 6),
                            ["modality_gap"], device="cpu"),
        ["text:", "sample 6", "n_samples is 6"],
    ),
    "an unknown metric": (lambda: compute_all(_pairs(4), ["modality_gapp"], device="cpu"), ["modality_gapp"]),
    "a two-model metric": (lambda: compute_all(_pairs(4), ["linear_cka"], device="cpu"), ["linear_cka compare"]),
    "streamed statistics of one modality": (
        lambda: compute_from_stats({"image": linear_stats(_points(4))}, {}, ["modality_gap"]),
        ["anything", "of 1 modalities"],
    ),
    "a metric streamed statistics cannot give": (
        lambda: compute_from_stats({"image": linear_stats(_points(4)), "text": linear_stats(_points(4))}, {},
                                   ["recall_at_1"]),
        ["cannot compute recall_at_1", "of 2 modalities"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_naming_the_values_that_are_wrong(case):
    call, fragments = BAD_INPUTS[case]
    with pytest.raises(InputError) as exc:
        call()
    line = exc.value.one_line()
    assert "\n" not in line
    for fragment in fragments:
        assert fragment in line, (fragment, line)


#: The smallest (or otherwise boundary) input each of those checks must let through: a check moved by one
#: (``<`` to ``<=``, ``!=`` to ``<``) refuses a valid input or accepts the bad one above.
SMALLEST_VALID = {
    "one item of one dimension": lambda: check_matrix(np.ones((1, 1), np.float16), "x"),
    "sample ids starting at 0": lambda: check_sample_index(np.array([0, 0, 1]), 3, "x"),
    "no items, no sample ids": lambda: check_sample_index(np.zeros(0, int), 0, "x"),
    "equal counts without sample ids": lambda: default_sample_index(
        np.zeros((3, 2)), np.zeros((3, 5)), None, None, "x", "y"),
    "a finite block at an offset": lambda: check_block_values(*_rows_with({}), "x", 10),
    "top-K naming the last gallery item": lambda: k_occurrence(np.array([[4, -1]]), 5),
    "TwoNN on 3 points": lambda: twonn_dimension(_points(3)),
    "IsoScore of a 2 x 2 covariance": lambda: isoscore_from_cov(np.eye(2)),
    "IsoScore of 2 points": lambda: isoscore(_points(2)),
    "MMD with 2 items each": lambda: mmd_test(_points(2), _points(2, seed=1), permutations=3),
    "block size 1": lambda: list(iter_unit_blocks(_points(3), "x", block_size=1)),
    "uniformity of 2 items": lambda: uniformity_wang_isola(_points(2)),
    "angular value of 2 items": lambda: angular_value_from_stats(linear_stats(_points(2))),
    "conformity of 2 items": lambda: conformity(_points(2)),
    "W1 of one value each": lambda: wasserstein_1d([1.0], [2.0]),
    "the last sample id": lambda: compute_all(
        EmbeddingSet({"image": _points(4), "text": _points(4)}, {"image": np.arange(4), "text": np.array([0, 1, 2, 5])},
                     6), ["modality_gap"], device="cpu"),
    "V-Measure of 2 labels and one restart": lambda: v_measure_class(
        [_points(3), _points(3, seed=1)], [np.array([0, 1, 0]), np.array([1, 0, 1])], n_init=1),
    "V-Measure on as many points as clusters": lambda: v_measure_modality(
        [_points(3), _points(3, seed=1)], max_samples=2, n_init=1),
    "separability of 2 items each": lambda: modality_separability([_points(2), _points(2, seed=1)]),
    "k as deep as the gallery": lambda: search_topk(_points(3), _points(5), 5, device="cpu"),
    "k of 1, batches of 1": lambda: search_topk(_points(3), _points(5), 1, batch_size=1, device="cpu"),
    "CKA of 4 items": lambda: linear_cka(_points(4), _points(4, seed=1)),
    "k-NN of k = 1 and of all other items": lambda: (knn_indices(_points(4), 1), knn_indices(_points(4), 3)),
    "zero-shot labels of the first and last class": lambda: zero_shot_accuracy(
        _points(2), _points(3), np.array([0, 2]), device="cpu"),
}


@pytest.mark.parametrize("case", list(SMALLEST_VALID))
def test_the_smallest_valid_input_passes_every_check(case):
    SMALLEST_VALID[case]()


# ---------------------------------------------------------------------------------------------------------
# Counts that docs/metrics.md promises for the listed items of the extras
# ---------------------------------------------------------------------------------------------------------
def _documented(pattern: str) -> int:
    """The number docs/metrics.md gives in ``pattern`` (one group), normalised to one line of prose."""
    text = re.sub(r"\s+", " ", DOCS.read_text(encoding="utf-8"))
    found = re.search(pattern, text)
    assert found, f"docs/metrics.md no longer says {pattern!r}"
    return int(found.group(1).replace(",", ""))  # 5,000 is written with a thousands separator


def test_hubness_lists_the_documented_number_of_hubs_and_measures_the_documented_depth():
    """docs/metrics.md: ``extras["hubness/<direction>"]`` lists the 10 biggest hubs of the top-k (k = 10) lists.

    With 40 queries over a gallery of 60, more than 10 items occur: the list is exactly as long as documented,
    ordered by N_k (ties to the lower row), and each count is over the documented depth of the lists.
    """
    listed = _documented(r'`extras\["hubness/<direction>"\]` lists the (\d+) biggest hubs')
    depth = _documented(r"top-k \(k = (\d+)\) retrieved list")
    rng = np.random.default_rng(3)
    img = rng.normal(size=(40, 6)).astype(np.float32)
    txt = rng.normal(size=(60, 6)).astype(np.float32)
    es = EmbeddingSet({"image": img, "text": txt}, {"image": np.arange(40), "text": np.arange(60) % 40}, 40)
    _, extras = compute_all(es, ["hubness_skewness"], retrieval_engine="blocked", device="cpu")
    hubs = extras["hubness/image_to_text"]
    s = (img / np.linalg.norm(img, axis=1, keepdims=True)) @ (txt / np.linalg.norm(txt, axis=1, keepdims=True)).T
    top = np.argsort(-s, axis=1, kind="stable")[:, :depth]
    n_k = k_occurrence(top, 60)
    assert np.count_nonzero(n_k) > listed  # more hubs than listed: the cut is the documented count
    expected = np.argsort(-n_k, kind="stable")[:listed]
    assert hubs["k"] == depth
    assert hubs["hubs"] == [{"item": int(g), "occurrence": int(n_k[g])} for g in expected]
    assert len(hubness(top, 60)["hubs"]) == listed  # the function's default is the documented count too


def test_conformity_lists_the_documented_number_of_most_and_least_conforming_items():
    """docs/metrics.md: ``extras["conformity_items/<m>"]`` lists the 5 most and the 5 least conforming items."""
    listed = _documented(r'`extras\["conformity_items/<m>"\]` lists the (\d+) most and the \1 least')
    img, txt = _points(12, seed=4), _points(12, seed=5)
    es = EmbeddingSet({"image": img, "text": txt}, {"image": np.arange(12), "text": np.arange(12)}, 12)
    _, extras = compute_all(es, ["conformity_w1"], device="cpu")
    for m, x in (("image", img), ("text", txt)):
        c = conformity(x)
        items = extras[f"conformity_items/{m}"]
        assert [e["item"] for e in items["most"]] == np.argsort(-c, kind="stable")[:listed].tolist()
        assert [e["item"] for e in items["least"]] == np.argsort(c, kind="stable")[:listed].tolist()


def test_the_mmd_test_runs_the_documented_permutations_on_the_documented_sample():
    """docs/metrics.md: p = (1 + #{permuted ≥ observed})/(1 + 200), the smallest attainable p is 1/201, on a seeded
    sample of ≤ 1000 items per modality. Two sets far apart reach that floor exactly; the kernel matrix of sets of
    1,200 and 1,100 items is that of 1,000 + 1,000."""
    floor = _documented(r"The smallest attainable p is 1/(\d+)\.")
    sample = _documented(r"On a seeded sample of ≤ (\d+) items per modality")
    rng = np.random.default_rng(6)
    near, far = rng.normal(size=(60, 8)), rng.normal(size=(60, 8))
    far[:, 1:] *= 0.05  # centred, the sets still differ in shape (a line against a ball): every relabelling
    # scores below the true split
    _, p = mmd_test(near, far, seed=0)
    assert p == 1.0 / floor
    from gapdiag.metrics import decomposition

    seen = []
    real = decomposition._sq_dists

    def recording(z):
        seen.append(z.shape[0])
        return real(z)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(decomposition, "_sq_dists", recording)
        mmd_test(_points(1200, seed=7), _points(1100, seed=8), permutations=2)
        mmd_test(_points(sample, seed=7), _points(3, seed=8), permutations=2)
    assert seen == [2 * sample, sample + 3]  # a set of exactly the bound is taken whole


def test_twonn_estimates_on_at_most_the_documented_number_of_points():
    """docs/metrics.md: TwoNN on ≤ 5,000 points per set (seeded); a set of exactly that many is taken whole."""
    from gapdiag.metrics.intrinsic import twonn_rows

    bound = _documented(r"TwoNN on ≤ ([\d,]+) points")
    assert twonn_rows(bound) is None
    rows = twonn_rows(bound + 1)
    assert rows is not None and rows.size == bound and np.unique(rows).size == bound


def test_the_gap_decomposition_lists_the_documented_number_of_top_dimensions():
    """docs/metrics.md: ``extras["gap_decomposition/<pair>"]`` holds ``top_dims``, the 10 largest model-basis
    contributions with the signed Δ_j (in a 16-dimensional space, so the cut is the documented count)."""
    listed = _documented(r"`top_dims` \(the (\d+) largest model-basis contributions")
    img, txt = _points(20, d=16, seed=9), _points(20, d=16, seed=10) + 0.5
    es = EmbeddingSet({"image": img, "text": txt}, {"image": np.arange(20), "text": np.arange(20)}, 20)
    _, extras = compute_all(es, ["gap_dims_50"], device="cpu")
    delta = (img / np.linalg.norm(img, axis=1, keepdims=True)).mean(0) - (
        txt / np.linalg.norm(txt, axis=1, keepdims=True)).mean(0)
    expected = np.argsort(-(delta.astype(np.float64) ** 2), kind="stable")[:listed]
    top = extras["gap_decomposition/image-text"]["top_dims"]
    assert [e["dim"] for e in top] == expected.tolist()
    assert [e["delta"] for e in top] == pytest.approx(delta[expected].tolist(), abs=1e-6)


def _brute_knn(x: np.ndarray, k: int) -> list[set[int]]:
    """The k nearest other items of each row by cosine, ties to the lower index, by sorting every row."""
    u = x.astype(np.float64) / np.linalg.norm(x, axis=1, keepdims=True)
    s = u @ u.T
    return [set(sorted((j for j in range(len(x)) if j != i), key=lambda j: (-s[i, j], j))[:k])
            for i in range(len(x))]


def test_mutual_knn_compares_the_documented_number_of_neighbours():
    """docs/metrics.md: mutual_knn is the mean over items of |N_A(i) ∩ N_B(i)|/k, N(i) the k = 10 nearest other
    items by cosine; compare_embeddings measures it at that k (30 items, so 10 is not everything)."""
    k = _documented(r"N\(i\) the k = (\d+) nearest other items")
    x, y = _points(30, d=6, seed=11), _points(30, d=6, seed=12)
    a = EmbeddingSet({"image": x, "text": x[::-1].copy()}, {"image": np.arange(30), "text": np.arange(30)}, 30)
    b = EmbeddingSet({"image": y, "text": x[::-1].copy()}, {"image": np.arange(30), "text": np.arange(30)}, 30)
    values, extras = compare_embeddings(a, b)
    na, nb = _brute_knn(x, k), _brute_knn(y, k)
    assert values["mutual_knn/image"] == pytest.approx(np.mean([len(p & q) / k for p, q in zip(na, nb)]))
    assert values["mutual_knn/text"] == 1.0
    assert len(extras["overlap_histogram/image"]) == k + 1  # overlap 0/k, 1/k, ..., k/k


@pytest.mark.parametrize("measure", ["v_measure_modality", "v_measure_class"])
def test_v_measure_subsamples_only_above_the_documented_number_of_points(monkeypatch, measure):
    """docs/metrics.md: V-Measure is subsampled internally above 100,000 points (a set of exactly that many is
    clustered whole). The k-means step is replaced by a recorder: the sizes are the point, not the clusters."""
    from gapdiag.metrics import clustering

    bound = _documented(r"Subsampled internally above ([\d,]+) points")
    clustered = []
    monkeypatch.setattr(clustering, "_kmeans_v_measure", lambda points, *_args: clustered.append(len(points)) or 0.5)
    for n in (bound, bound + 1):
        half = np.ones((n // 2, 2), np.float32), np.ones((n - n // 2, 2), np.float32)
        if measure == "v_measure_modality":
            clustering.v_measure_modality(list(half))
        else:
            clustering.v_measure_class(list(half), [np.arange(len(h)) % 2 for h in half])
    assert clustered == [bound, bound]
