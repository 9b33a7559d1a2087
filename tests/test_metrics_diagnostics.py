"""Gap decomposition, MMD, hubness, TwoNN, IsoScore, CKA and mutual k-NN against brute-force references
written here (full matrices, loops, scipy), and against the maintained libraries where there is one."""

from __future__ import annotations

import math

import numpy as np
import pytest
import reference as ref
import scipy.linalg
import scipy.stats

from gapdiag.errors import InputError
from gapdiag.metrics import compute_all
from gapdiag.metrics.decomposition import dims_for_share, gap_decomposition, mmd_test
from gapdiag.metrics.hubness import hubness, k_occurrence, robin_hood, skewness
from gapdiag.metrics.intrinsic import (
    isoscore,
    isoscore_from_cov,
    two_nn_distances,
    twonn_dimension,
    twonn_estimate,
    twonn_from_distances,
)
from gapdiag.metrics.similarity import (
    knn_indices,
    linear_cka,
    linear_cka_biased,
    mutual_knn,
    neighbour_overlap,
)
from gapdiag.vectors import EmbeddingSet


def _unit(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _rotation(rng, d, k):
    """A random orthonormal (d, k) frame: embeds k-dimensional data in d dimensions."""
    return np.linalg.qr(rng.normal(size=(d, k)))[0]


# ---------------------------------------------------------------------------------------------------------
# Gap decomposition
# ---------------------------------------------------------------------------------------------------------
def _brute_w2(x, y):
    mx, my = x.mean(0), y.mean(0)
    cx, cy = np.cov(x, rowvar=False, bias=True), np.cov(y, rowvar=False, bias=True)
    sx = np.real(scipy.linalg.sqrtm(cx))
    cross = np.real(scipy.linalg.sqrtm(sx @ cy @ sx))
    return float(np.sum((mx - my) ** 2)), float(np.trace(cx + cy - 2 * cross))


def test_w2_split_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    x = _unit(rng.normal(size=(80, 6)) + [2, 0, 0, 0, 0, 0])
    y = _unit(rng.normal(size=(60, 6)) * [1, 3, 1, 1, 0.5, 1])
    d = gap_decomposition(x.astype(np.float32), y.astype(np.float32))
    centroid, bures = _brute_w2(_unit(x.astype(np.float32)), _unit(y.astype(np.float32)))
    assert d["centroid"] == pytest.approx(centroid, rel=1e-5)
    assert d["bures"] == pytest.approx(bures, rel=1e-4, abs=1e-7)
    assert d["w2_squared"] == pytest.approx(centroid + bures, rel=1e-4)
    assert d["centroid_share"] == pytest.approx(centroid / (centroid + bures), rel=1e-4)


def test_dims_carrying_the_gap_by_brute_force_sorting():
    rng = np.random.default_rng(1)
    basis = _rotation(rng, 32, 32)
    # The gap lives on three model axes (shares 0.6, 0.3, 0.1 of |delta|^2) and is rotated in the PCA view.
    shift = np.zeros(32)
    shift[[3, 7, 11]] = np.sqrt([0.6, 0.3, 0.1]) * 0.8
    x = rng.normal(size=(400, 32)) * 0.05 + shift / 2
    y = rng.normal(size=(400, 32)) * 0.05 - shift / 2
    d = gap_decomposition(
        x + 5 * basis[:, 0], y + 5 * basis[:, 0]
    )  # far from the origin: normalising barely bends
    xs, ys = _unit((x + 5 * basis[:, 0]).astype(np.float32)), _unit((y + 5 * basis[:, 0]).astype(np.float32))
    delta = xs.mean(0) - ys.mean(0)
    c = np.sort(delta**2 / np.sum(delta**2))[::-1]
    want = {q: next(i + 1 for i in range(32) if c[: i + 1].sum() >= q) for q in (0.5, 0.9)}
    assert (d["dims_50"], d["dims_90"]) == (want[0.5], want[0.9])
    assert sum(d["contributions"]) == pytest.approx(1.0) and sum(d["contributions_pca"]) == pytest.approx(1.0)
    assert d["top_dims"][0]["dim"] == int(np.argmax(delta**2))
    joint = np.vstack([xs, ys])
    _, _, vt = np.linalg.svd(joint - joint.mean(0), full_matrices=False)
    cp = np.sort((vt @ delta) ** 2 / np.sum(delta**2))[::-1]
    assert d["dims_90_pca"] == next(i + 1 for i in range(32) if cp[: i + 1].sum() >= 0.9)


def _brute_mmd2(x, y):
    z = np.vstack([x, y])
    d2 = np.array([[np.sum((a - b) ** 2) for b in z] for a in z])
    sigma2 = np.median(d2[np.triu_indices(len(z), 1)]) / 2
    k = np.exp(-d2 / (2 * sigma2))
    m, n = len(x), len(y)
    kxx = sum(k[i, j] for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kyy = sum(k[m + i, m + j] for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kxy = sum(k[i, m + j] for i in range(m) for j in range(n)) / (m * n)
    return kxx + kyy - 2 * kxy


def test_mmd_matches_the_double_loop_and_tells_shapes_apart():
    rng = np.random.default_rng(2)
    x = _unit(rng.normal(size=(30, 5)) + 3)
    y = _unit(rng.normal(size=(25, 5)) * [3, 1, 1, 1, 0.2] - 3)
    mmd, p = mmd_test(x, y, sample=None, permutations=50, seed=0)
    xc, yc = _unit(x.astype(np.float32)), _unit(y.astype(np.float32))
    assert mmd == pytest.approx(_brute_mmd2(xc - xc.mean(0), yc - yc.mean(0)), rel=1e-5)
    assert p == pytest.approx(1 / 51)
    same_a, same_b = rng.normal(size=(60, 5)), rng.normal(size=(60, 5))
    _, p_same = mmd_test(same_a, same_b, permutations=100, seed=0)
    assert p_same > 0.05
    # The p-value counts the seeded relabellings as Gretton et al. do (the same labels, brute-force statistics).
    labels = _seeded_relabellings(seed=3, m=30, n=25, permutations=20)
    want = ref.mmd_permutation_pvalue(xc - xc.mean(0), yc - yc.mean(0), labels)
    got = mmd_test(x, y, sample=None, permutations=20, seed=3)
    assert got[0] == pytest.approx(want[0], rel=1e-5) and got[1] == want[1]


def test_mmd_of_a_set_of_one_item_names_both_sizes():
    with pytest.raises(InputError, match="the MMD test needs at least 2 items per set, got 1 and 5"):
        mmd_test(np.ones((1, 3)), np.ones((5, 3)))
    with pytest.raises(InputError, match="got 5 and 1"):
        mmd_test(np.ones((5, 3)), np.ones((1, 3)))


def _seeded_relabellings(seed: int, m: int, n: int, permutations: int) -> np.ndarray:
    """The relabellings ``mmd_test(sample=None, seed=seed)`` draws: permutations of (1 × m, 0 × n), in order."""
    rng = np.random.default_rng(seed)
    base = np.r_[np.ones(m), np.zeros(n)]
    return np.array([rng.permutation(base) for _ in range(permutations)])


def test_mmd_pvalue_counts_relabellings_that_tie_with_the_observed_split():
    # p = (1 + #{permuted MMD² >= observed}) / (1 + P): a relabelling that reproduces the observed split ties with
    # it exactly and must count (with ">" the p-value of this data fell to 1/(1 + P): realistic bug (d)).
    x, y = np.tile([1.0, 0.0, 0.0], (3, 1)), np.tile([0.0, 1.0, 0.0], (2, 1))  # one split of 10 separates them
    labels = _seeded_relabellings(seed=5, m=3, n=2, permutations=60)
    mmd, p = mmd_test(x, y, sample=None, permutations=60, seed=5, centre=False, normalize=False)
    want_mmd, want_p = ref.mmd_permutation_pvalue(x, y, labels)
    observed_split = int((labels == np.r_[np.ones(3), np.zeros(2)]).all(axis=1).sum())
    assert observed_split > 0 and want_p == (1 + observed_split) / 61
    assert mmd == pytest.approx(want_mmd, rel=1e-12) and p == want_p


# ---------------------------------------------------------------------------------------------------------
# Hubness
# ---------------------------------------------------------------------------------------------------------
def _brute_topk(q, g, k):
    s = _unit(q) @ _unit(g).T
    return np.array([sorted(range(len(g)), key=lambda j: (-s[i, j], j))[:k] for i in range(len(q))])


def test_hubness_statistics_by_hand():
    top = np.array([[0, 1], [0, 2], [0, 1], [0, 3]])
    n_k = k_occurrence(top, 6)
    assert n_k.tolist() == [4, 2, 1, 1, 0, 0]
    assert skewness(n_k) == pytest.approx(scipy.stats.skew(n_k))
    mean = 8 / 6
    assert robin_hood(n_k) == pytest.approx(sum(abs(v - mean) for v in n_k) / 16)
    h = hubness(top, 6, n_hubs=2)
    assert h["antihub_share"] == pytest.approx(2 / 6)
    assert h["hubs"] == [{"item": 0, "occurrence": 4}, {"item": 1, "occurrence": 2}]
    assert math.isnan(skewness([3, 3, 3]))
    assert robin_hood([1, 0, 0]) == pytest.approx(2 / 3)  # one occurrence in all: still defined
    assert math.isnan(robin_hood([0, 0, 0]))
    # Asked for more hubs than items that occur at all: only those are listed, never an item no query retrieves.
    assert [h["item"] for h in hubness(top, 6, n_hubs=10)["hubs"]] == [0, 1, 2, 3]


def test_dims_for_share_of_no_gap_is_zero_and_of_one_dimension_is_one():
    assert dims_for_share(np.zeros(4), 0.5) == 0  # nothing to carry (the engine skips it: no gap direction)
    assert dims_for_share(np.array([0.0, 1.0, 0.0]), 0.9) == 1
    assert dims_for_share(np.array([0.5, 0.5]), 0.5) == 1  # a share reached exactly is not rounded past


@pytest.mark.parametrize("engine", ["blocked", "faiss"])
def test_compute_all_hubness_equals_brute_force_top10(engine):
    rng = np.random.default_rng(4)
    n = 23
    img = rng.normal(size=(n, 8)).astype(np.float32)
    txt = (np.repeat(img, 2, axis=0) + rng.normal(size=(2 * n, 8))).astype(np.float32)
    es = EmbeddingSet(
        {"image": img, "text": txt}, {"image": np.arange(n), "text": np.repeat(np.arange(n), 2)}, n
    )
    values, extras = compute_all(
        es,
        ["hubness_skewness", "robin_hood", "antihub_share", "recall_at_1"],
        block_size=5,
        retrieval_engine=engine,
        device="cpu",
    )
    for q, g, name in ((img, txt, "image_to_text"), (txt, img, "text_to_image")):
        n_k = k_occurrence(_brute_topk(q, g, 10), len(g))
        assert values[f"hubness_skewness/{name}"] == pytest.approx(scipy.stats.skew(n_k), rel=1e-9)
        assert values[f"robin_hood/{name}"] == pytest.approx(robin_hood(n_k), rel=1e-9)
        assert values[f"antihub_share/{name}"] == pytest.approx(np.mean(n_k == 0))
        assert extras[f"hubness/{name}"]["hubs"][0]["occurrence"] == n_k.max()
    assert "recall_at_1/image_to_text" in values


# ---------------------------------------------------------------------------------------------------------
# TwoNN and IsoScore
# ---------------------------------------------------------------------------------------------------------
def test_twonn_on_a_linear_subspace_of_512_dims():
    rng = np.random.default_rng(5)
    # A Gaussian in a 5-dimensional subspace (no boundary, where TwoNN underestimates).
    pts = rng.normal(size=(2000, 5)) @ _rotation(rng, 512, 5).T
    assert twonn_dimension(pts, normalize=False) == pytest.approx(5, rel=0.1)


def test_twonn_on_a_curved_manifold_in_512_dims():
    rng = np.random.default_rng(6)
    sphere = _unit(rng.normal(size=(3000, 5)))  # the 4-sphere: intrinsic dimension 4, curved
    pts = sphere @ _rotation(rng, 512, 5).T
    assert twonn_dimension(pts, normalize=False) == pytest.approx(4, rel=0.1)


def test_twonn_agrees_with_scikit_dimension_and_brute_force_distances():
    skdim = pytest.importorskip("skdim")
    rng = np.random.default_rng(7)
    pts = (rng.normal(size=(300, 3)) @ _rotation(rng, 40, 3).T).astype(np.float32)
    r1, r2 = two_nn_distances(pts)
    full = np.sqrt(((pts[:, None, :].astype(np.float64) - pts[None]) ** 2).sum(-1))
    np.fill_diagonal(full, np.inf)
    srt = np.sort(full, axis=1)
    np.testing.assert_allclose(r1, srt[:, 0], rtol=1e-3)
    np.testing.assert_allclose(r2, srt[:, 1], rtol=1e-3)
    ref = skdim.id.TwoNN(method="mle", discard_fraction=0.0, dist=True).fit(np.c_[r1, r2]).dimension_
    assert twonn_from_distances(r1, r2) == pytest.approx(ref, rel=1e-12)
    ref_points = skdim.id.TwoNN(method="mle", discard_fraction=0.0).fit(pts.astype(np.float64)).dimension_
    assert twonn_dimension(pts, normalize=False) == pytest.approx(ref_points, rel=1e-3)


def test_twonn_ignores_exact_duplicates_instead_of_collapsing():
    # Issue #25: 400 x 512 with 40 rows repeated read 1.6 (float32 FAISS puts a duplicate 3e-4 to 9e-4 away, so
    # it was never dropped) instead of the estimate of the distinct points.
    rng = np.random.default_rng(8)
    pts = _unit(rng.normal(size=(400, 512))).astype(np.float32)
    with_dups = pts.copy()
    with_dups[360:] = pts[:40]
    distinct = twonn_dimension(with_dups[:360], normalize=False)
    assert distinct > 50  # a Gaussian in 512 dimensions; TwoNN underestimates at N = 360, but not to 1.6
    assert twonn_dimension(with_dups, normalize=False) == distinct  # the copies add nothing
    shuffled = with_dups[rng.permutation(400)]
    assert twonn_dimension(shuffled, normalize=False) == pytest.approx(distinct, rel=1e-12)


def test_twonn_duplicates_in_compute_all_keep_the_estimate_of_the_distinct_points():
    # A caption set where a few captions repeat (one template caption 6 times, two others twice).
    rng = np.random.default_rng(13)
    img = (rng.normal(size=(120, 5)) @ rng.normal(size=(5, 32))).astype(np.float32)
    txt = img + (0.3 * rng.normal(size=(120, 32))).astype(np.float32)
    repeated = txt.copy()
    repeated[[10, 20, 30, 40, 50]] = repeated[0]
    repeated[[61, 71]] = repeated[[60, 70]]
    ids = np.arange(120)

    def text_twonn(t):
        es = EmbeddingSet({"image": img, "text": t}, {"image": ids, "text": ids}, 120)
        return compute_all(es, ["twonn_dimension"], device="cpu")[0]["twonn_dimension/text"]

    keep = np.setdiff1d(ids, [10, 20, 30, 40, 50, 61, 71])
    assert text_twonn(repeated) == pytest.approx(ref.twonn(_unit(txt[keep])), rel=1e-6)
    assert text_twonn(repeated) > 0.8 * text_twonn(txt)  # was 2.2 instead of 5.1 on a real caption set


def test_twonn_near_duplicates_use_exact_distances():
    # Copies moved by 1e-5: float32 search cannot see distances that small (its rounding of |x - y|^2 is ~1e-7,
    # a distance of ~3e-4), so they are measured again in float64; the estimate is the brute-force one.
    # (FAISS computes |x|^2 + |y|^2 - 2 x.y for 512 dimensions; it found 0 or 2e-7 to 6e-7 for these 1e-10.)
    rng = np.random.default_rng(14)
    pts = _unit(rng.normal(size=(300, 8)) @ _rotation(rng, 512, 8).T).astype(np.float32)
    near = np.vstack([pts, pts[:30] + (1e-5 / np.sqrt(512) * rng.normal(size=(30, 512))).astype(np.float32)])
    assert len(np.unique(near, axis=0)) == 330
    assert twonn_dimension(near, normalize=False) == pytest.approx(ref.twonn(near), rel=1e-6)
    assert twonn_dimension(pts, normalize=False) == pytest.approx(ref.twonn(pts), rel=1e-4)  # float32 as before


def test_two_nn_distances_are_the_float32_search_except_within_rounding_of_zero():
    # Only distances float32 cannot resolve are measured again: every other value is what it always was.
    import faiss

    rng = np.random.default_rng(18)
    pts = _unit(rng.normal(size=(200, 512))).astype(np.float32)
    index = faiss.IndexFlatL2(512)
    index.add(pts)
    d2, _ = index.search(pts, 3)
    r1, r2 = two_nn_distances(pts)
    np.testing.assert_array_equal(r1, np.sqrt(d2[:, 1].astype(np.float64)))
    np.testing.assert_array_equal(r2, np.sqrt(d2[:, 2].astype(np.float64)))


def test_twonn_draws_with_seed_0_by_default():
    pts = _unit(np.random.default_rng(19).normal(size=(60, 6)))
    assert twonn_estimate(pts, sample=40) == twonn_estimate(pts, sample=40, seed=0)
    assert twonn_dimension(pts, sample=40) == twonn_dimension(pts, sample=40, seed=0)


def test_isoscore_refuses_a_covariance_that_is_not_square_and_too_few_points():
    for bad in (np.ones((3, 2)), np.ones(3), np.ones((1, 1))):
        with pytest.raises(InputError, match="square covariance"):
            isoscore_from_cov(bad)
    with pytest.raises(InputError, match="at least 2 points, got 1"):
        isoscore(np.ones((1, 3)))


def test_isoscore_noise_is_compared_with_the_covariance_itself():
    # The covariance's own eigenvalues, not a rescaled copy: at or below ``noise`` there is no variance.
    cov = np.diag([4e-12, 1e-12, 0.0])
    assert math.isnan(isoscore_from_cov(cov, noise=4e-12))
    assert isoscore_from_cov(cov, noise=3.9e-12) == pytest.approx(isoscore_from_cov(cov))
    assert math.isnan(isoscore_from_cov(np.zeros((3, 3))))


def test_twonn_of_identical_or_too_few_points_is_skipped_with_the_real_reason():
    same = np.tile(np.float32([0.6, 0.8, 0.0]), (50, 1))
    assert math.isnan(twonn_dimension(same))
    value, why = twonn_estimate(same)
    assert math.isnan(value) and "1 distinct" in why and "50" in why
    value, why = twonn_estimate(np.vstack([same, [[0.0, 0.0, 1.0]]]))
    assert math.isnan(value) and "2 distinct" in why
    value, why = twonn_estimate(np.eye(3)[:2])
    assert math.isnan(value) and "at least 3 points" in why and "2" in why
    # -0.0 and 0.0 are one point (equal values, different bytes).
    signed = np.array([[0.0, 1.0], [-0.0, 1.0], [1.0, 0.0], [0.6, 0.8]], dtype=np.float32)
    assert twonn_estimate(signed, normalize=False)[0] == pytest.approx(ref.twonn(signed[1:]), rel=1e-6)


def test_twonn_dimension_counts_points_not_dimensions():
    """Fewer than 3 points is refused with a one-line error naming the count; 2-D points are estimated."""
    with pytest.raises(InputError, match="at least 3 points, got 2"):
        twonn_dimension(np.eye(5)[:2])
    plane = np.random.default_rng(4).normal(size=(200, 2))
    assert twonn_dimension(plane, normalize=False) == pytest.approx(ref.twonn(plane), rel=1e-6)


def test_isoscore_isotropic_vs_one_direction_and_reference_package():
    rng = np.random.default_rng(9)
    iso = rng.normal(size=(4000, 16))
    assert isoscore(iso) > 0.95
    one = np.outer(rng.normal(size=4000), np.eye(16)[0]) + 1e-3 * rng.normal(size=(4000, 16))
    assert isoscore(one) < 0.01
    ref = pytest.importorskip("IsoScore.IsoScore")
    mixed = rng.normal(size=(500, 12)) * np.linspace(0.2, 2, 12)
    assert isoscore(mixed) == pytest.approx(float(ref.IsoScore(mixed)), abs=1e-6)  # float32 input vs float64


def test_compute_all_reports_the_diagnostics_with_their_extras():
    rng = np.random.default_rng(10)
    n = 30
    img = rng.normal(size=(n, 8)).astype(np.float32) + 1
    txt = rng.normal(size=(n, 8)).astype(np.float32) - 1
    es = EmbeddingSet({"image": img, "text": txt}, {"image": np.arange(n), "text": np.arange(n)}, n)
    values, extras = compute_all(
        es,
        ["gap_w2_squared", "gap_bures", "modality_gap", "mmd_pvalue", "twonn_dimension", "isoscore"],
        seed=0,
    )
    dec = extras["gap_decomposition/image-text"]
    assert dec["centroid"] == pytest.approx(values["modality_gap/image-text"] ** 2, rel=1e-9)
    assert values["gap_w2_squared/image-text"] == pytest.approx(
        dec["centroid"] + values["gap_bures/image-text"]
    )
    assert {"twonn_dimension/joint", "isoscore/joint", "isoscore/image", "mmd_pvalue/image-text"} <= set(
        values
    )
    with pytest.raises(InputError, match="compare two models"):
        compute_all(es, ["linear_cka"])


# ---------------------------------------------------------------------------------------------------------
# CKA and mutual k-NN
# ---------------------------------------------------------------------------------------------------------
def _brute_hsic_u(k, l):
    n = k.shape[0]
    k, l = k.copy(), l.copy()
    np.fill_diagonal(k, 0)
    np.fill_diagonal(l, 0)
    one = np.ones(n)
    return (
        np.trace(k @ l)
        + (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2))
        - 2 / (n - 2) * one @ k @ l @ one
    ) / (n * (n - 3))


@pytest.mark.parametrize("block_size", [7, 1000])
def test_debiased_cka_equals_the_n_by_n_unbiased_hsic(block_size):
    rng = np.random.default_rng(11)
    x = rng.normal(size=(41, 9))
    y = x[:, :6] @ rng.normal(size=(6, 5)) + 0.7 * rng.normal(size=(41, 5))
    xs, ys = _unit(x.astype(np.float32)), _unit(y.astype(np.float32))
    k, l = xs @ xs.T, ys @ ys.T
    want = _brute_hsic_u(k, l) / math.sqrt(_brute_hsic_u(k, k) * _brute_hsic_u(l, l))
    assert linear_cka(x, y, block_size=block_size) == pytest.approx(want, rel=1e-6)
    assert linear_cka(x, x @ _rotation(rng, 9, 9), normalize=False) == pytest.approx(1.0, abs=1e-9)
    assert abs(linear_cka(x, rng.normal(size=(41, 5)))) < 0.2


@pytest.mark.parametrize("block_size", [7, 1000])
def test_biased_cka_equals_the_n_by_n_centred_kernels(block_size):
    rng = np.random.default_rng(15)
    x = rng.normal(size=(37, 9))
    y = x[:, :6] @ rng.normal(size=(6, 5)) + 0.7 * rng.normal(size=(37, 5))
    want = ref.linear_cka_biased(_unit(x.astype(np.float32)), _unit(y.astype(np.float32)))
    assert linear_cka_biased(x, y, block_size=block_size) == pytest.approx(want, rel=1e-6)  # float32 units
    raw = ref.linear_cka_biased(x.astype(np.float32), y.astype(np.float32))  # gapdiag reads float32
    assert linear_cka_biased(x, y, normalize=False) == pytest.approx(raw, rel=1e-9)
    # Biased and debiased differ: the biased form is pulled up by the dimension of the features at small N.
    assert abs(linear_cka(x, y) - linear_cka_biased(x, y)) > 0.02


def test_biased_cka_closed_forms():
    # Two orthogonal centred features of equal norm, against the first alone: |YᵀX|²/(|XᵀX| |YᵀY|) = 1/√2.
    x = np.array([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
    assert linear_cka_biased(x, x[:, :1], normalize=False) == pytest.approx(1 / math.sqrt(2), rel=1e-12)
    rng = np.random.default_rng(16)
    z = rng.normal(size=(30, 6))
    # Invariant to rotation, isotropic scale and a shift (HSIC centres the kernels); 1 against itself.
    moved = 3.0 * z @ _rotation(rng, 6, 6) + 5.0
    assert linear_cka_biased(z, moved, normalize=False) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka_biased(z, z, normalize=False) == pytest.approx(1.0, abs=1e-12)


def test_cka_values_stay_in_their_range_and_constant_representations_have_none():
    rng = np.random.default_rng(17)
    for seed in range(200):  # tiny N: where an estimator would leave its range if it could
        r = np.random.default_rng(seed)
        n = int(r.integers(4, 8))
        x, y = r.normal(size=(n, 3)), r.normal(size=(n, 2))
        assert -1.0 <= linear_cka(x, y) <= 1.0  # HSIC_u is an inner product of U-centred kernels
        assert 0.0 <= linear_cka_biased(x, y) <= 1.0
    for n in (10, 500):  # one vector repeated: its centred sums are rounding noise (~1e-16), not a variance
        constant = np.repeat(rng.normal(size=(1, 16)), n, axis=0)
        assert math.isnan(linear_cka(constant, rng.normal(size=(n, 4))))
        assert math.isnan(linear_cka_biased(constant, rng.normal(size=(n, 4))))


@pytest.mark.parametrize("seed", range(6))
def test_one_vector_repeated_has_no_cka_whatever_the_vector(seed):
    """Its centred sums are rounding noise of either sign (exactly 0 for some vectors): no variance, no CKA,
    never a division by zero or a value made of noise."""
    rng = np.random.default_rng(seed)
    for n in (10, 37, 500):
        constant = np.repeat(rng.normal(size=(1, 16)), n, axis=0)
        other = rng.normal(size=(n, 4))
        assert math.isnan(linear_cka(constant, other)) and math.isnan(linear_cka(other, constant))
        assert math.isnan(linear_cka_biased(constant, other)) and math.isnan(linear_cka_biased(other, constant))


def test_cka_of_different_numbers_of_items_names_both_counts():
    for rows_x, rows_y in ((5, 6), (6, 5)):
        with pytest.raises(InputError, match=f"x has {rows_x} rows but y has {rows_y}"):
            linear_cka(np.ones((rows_x, 3)), np.ones((rows_y, 7)))
        with pytest.raises(InputError, match=f"x has {rows_x} rows but y has {rows_y}"):
            linear_cka_biased(np.ones((rows_x, 3)), np.ones((rows_y, 7)))


def test_cka_needs_the_same_items():
    with pytest.raises(InputError, match="same items"):
        linear_cka(np.ones((5, 3)), np.ones((6, 3)))


def test_mutual_knn_equals_brute_force_neighbour_sets():
    rng = np.random.default_rng(12)
    x = rng.normal(size=(30, 6))
    y = x + 0.8 * rng.normal(size=(30, 6))
    nx = _brute_topk(x, x, 5)  # own index first (self-similarity 1), then the 4 nearest others
    ny = _brute_topk(y, y, 5)
    want = np.mean([len(set(nx[i][1:]) & set(ny[i][1:])) / 4 for i in range(30)])
    assert mutual_knn(x, y, 4) == pytest.approx(want)
    assert knn_indices(x, 4).tolist() == nx[:, 1:].tolist()
    assert neighbour_overlap([[1, 2, 3]], [[3, 4, 1]]).tolist() == [pytest.approx(2 / 3)]


def test_neighbour_overlap_equals_set_intersections_whatever_the_largest_index():
    rng = np.random.default_rng(20)
    for top in (7, 8, 33):  # odd and even largest indices: row keys must never collide across rows
        nx = np.array([rng.choice(top + 1, 3, replace=False) for _ in range(40)])
        ny = np.array([rng.choice(top + 1, 3, replace=False) for _ in range(40)])
        want = [len(set(a) & set(b)) / 3 for a, b in zip(nx, ny)]
        assert neighbour_overlap(nx, ny).tolist() == pytest.approx(want)
    assert neighbour_overlap([[3], [2]], [[1], [0]]).tolist() == [0.0, 0.0]


def test_joint_twonn_draws_from_the_stacked_set_without_stacking_it():
    # More points than TwoNN's sample: compute_all gathers the drawn rows piece by piece; the estimate must be the
    # one of the stacked set drawn as twonn_dimension draws it.
    rng = np.random.default_rng(8)
    img = _unit(rng.normal(size=(3100, 6)) @ rng.normal(size=(6, 16)))
    txt = _unit(rng.normal(size=(3100, 4)) @ rng.normal(size=(4, 16)) + 0.5)
    ids = np.arange(3100)
    es = EmbeddingSet({"image": img, "text": txt}, {"image": ids, "text": ids}, 3100)
    values, _ = compute_all(es, ["twonn_dimension"], seed=3)
    stacked = np.concatenate([img, txt])
    assert values["twonn_dimension/joint"] == twonn_dimension(stacked, seed=3)
    assert values["twonn_dimension/image"] == twonn_dimension(img, seed=3)


def test_mmd_reads_only_the_drawn_items():
    rng = np.random.default_rng(9)
    x, y = rng.normal(size=(300, 5)), rng.normal(size=(200, 5)) + 0.3
    first = mmd_test(x, y, sample=50, permutations=20, seed=4)
    draw = np.random.default_rng(4)
    rows_x = np.sort(draw.choice(300, 50, replace=False))
    rows_y = np.sort(draw.choice(200, 50, replace=False))
    x[np.setdiff1d(np.arange(300), rows_x)] = np.nan  # items never drawn are never read
    assert mmd_test(x, y, sample=50, permutations=20, seed=4) == first
    assert mmd_test(x[rows_x], y[rows_y], sample=None, permutations=20, seed=4)[0] == pytest.approx(first[0])
