"""The post-hoc interventions (gapdiag.training.interventions): each method against an independent reference
(scipy's orthogonal_procrustes, POT's exact solver ot.emd, numpy by hand) and a closed-form case."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.linalg import orthogonal_procrustes
from scipy.stats import ortho_group

from gapdiag.errors import InputError
from gapdiag.training.interventions import METHODS, fit_intervention


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _clouds(n: int = 200, d: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = _unit(rng.normal(size=(n, d)) + 1.5 * np.eye(d)[0])
    y = _unit(x + 0.4 * rng.normal(size=(n, d)) - 1.5 * np.eye(d)[1])
    return x, y


def test_centering_matches_numpy_by_hand_on_new_vectors():
    x, y = _clouds()
    t = fit_intervention("centering", x[:100], y[:100])
    expected_x = _unit(x[100:] - x[:100].mean(axis=0))
    expected_y = _unit(y[100:] - y[:100].mean(axis=0))
    np.testing.assert_allclose(t.apply(x[100:], "image"), expected_x, atol=1e-6)
    np.testing.assert_allclose(t.apply(y[100:], "text"), expected_y, atol=1e-6)


def test_centering_closed_form_mirror_set_meets_at_the_equator():
    x, y = np.array([[0.6, 0.8], [-0.6, 0.8]]), np.array([[0.6, -0.8], [-0.6, -0.8]])
    t = fit_intervention("centering", x, y)
    np.testing.assert_allclose(t.apply(x, "image"), [[1, 0], [-1, 0]], atol=1e-6)
    np.testing.assert_allclose(t.apply(y, "text"), [[1, 0], [-1, 0]], atol=1e-6)


def test_gap_shift_closed_form_lambda_is_the_gap_of_a_mirror_set():
    x, y = np.array([[0.6, 0.8], [-0.6, 0.8]]), np.array([[0.6, -0.8], [-0.6, -0.8]])
    t = fit_intervention("gap_shift", x, y)
    assert t.params["lambda"] == pytest.approx(1.6, abs=1e-6)
    np.testing.assert_allclose(t.apply(x, "image"), [[1, 0], [-1, 0]], atol=1e-5)
    np.testing.assert_allclose(t.apply(y, "text"), [[1, 0], [-1, 0]], atol=1e-5)


def test_gap_shift_reuses_the_shift_experiment_and_brings_the_fit_centroids_closest():
    from gapdiag.training.shift import gap_direction, shift_along

    x, y = _clouds()
    t = fit_intervention("gap_shift", x, y)
    u, _ = gap_direction(x.astype(np.float32), y.astype(np.float32))
    xs, ys = shift_along(x.astype(np.float32), y.astype(np.float32), u, t.params["lambda"])
    np.testing.assert_allclose(t.apply(x, "image"), xs, atol=1e-6)
    np.testing.assert_allclose(t.apply(y, "text"), ys, atol=1e-6)

    def gap(lam: float) -> float:
        a, b = shift_along(x.astype(np.float32), y.astype(np.float32), u, lam)
        return float(np.linalg.norm(a.mean(0) - b.mean(0)))

    best = gap(t.params["lambda"])
    assert best < 0.2 * gap(0.0)  # renormalisation leaves a part of the gap off the direction u
    assert all(best <= gap(lam) + 1e-6 for lam in np.linspace(0, 1.99, 200))


def test_ablation_matches_numpy_by_hand():
    x, y = _clouds()
    t = fit_intervention("ablation", x, y)
    delta_sq = (x.mean(0) - y.mean(0)) ** 2
    order = np.argsort(-delta_sq)
    k = int(np.searchsorted(np.cumsum(delta_sq[order]), 0.5 * delta_sq.sum()) + 1)
    dims = np.sort(order[:k])
    assert t.params["k"] == k
    np.testing.assert_array_equal(t.arrays["dims"], dims)
    by_hand = x.copy()
    by_hand[:, dims] = 0
    np.testing.assert_allclose(t.apply(x, "image"), _unit(by_hand), atol=1e-6)


def test_ablation_closed_form_one_dimension_carries_the_gap():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(50, 6))
    base[:, 3] = 0
    x, y = _unit(base + 3 * np.eye(6)[3]), _unit(base - 3 * np.eye(6)[3])
    t = fit_intervention("ablation", x, y)
    assert t.params["k"] == 1 and t.arrays["dims"].tolist() == [3]
    # With the gap's one dimension gone, each image equals its caption.
    np.testing.assert_allclose(t.apply(x, "image"), t.apply(y, "text"), atol=1e-6)


def test_procrustes_matches_scipy_orthogonal_procrustes():
    x, y = _clouds()
    t = fit_intervention("procrustes", x, y)
    rotation, _ = orthogonal_procrustes(x.astype(np.float32), y.astype(np.float32))
    np.testing.assert_allclose(t.arrays["rotation"], rotation, atol=1e-5)
    np.testing.assert_allclose(t.apply(y, "text"), y, atol=1e-6)


def test_procrustes_pairs_every_caption_with_its_image():
    x, y = _clouds(60)
    images, texts = x[:20], y  # three captions per image: texts 3s, 3s+1, 3s+2 belong to image s
    t = fit_intervention("procrustes", images, texts, x_sample=np.arange(20), y_sample=np.arange(60) // 3)
    rotation, _ = orthogonal_procrustes(np.repeat(images, 3, axis=0), texts)
    np.testing.assert_allclose(t.arrays["rotation"], rotation, atol=1e-5)
    assert t.params["n_pairs"] == 60


def test_procrustes_closed_form_recovers_a_known_rotation():
    x, _ = _clouds()
    q = ortho_group.rvs(12, random_state=3)
    t = fit_intervention("procrustes", x, x @ q)
    np.testing.assert_allclose(t.arrays["rotation"], q, atol=1e-5)
    np.testing.assert_allclose(t.apply(x, "image"), x @ q, atol=1e-5)


def test_whitening_closed_form_a_rotated_copy_stays_rotated_and_both_spectra_are_flat():
    # y = x·Q: Σy = QᵀΣxQ, so (y − μy)Σy^{-1/2} = ((x − μx)Σx^{-1/2})·Q, the ridge included (same eigenvalues).
    x, _ = _clouds(2000)
    q = ortho_group.rvs(12, random_state=7)
    t = fit_intervention("whitening", x, x @ q)
    np.testing.assert_allclose(t.apply(x @ q, "text"), t.apply(x, "image") @ q, atol=1e-4)
    # Both whitened clouds have the same (near-flat) covariance spectrum: what the method matches.
    spectra = [np.linalg.eigvalsh(np.cov(t.apply(v, side).T)) for v, side in ((x, "image"), (x @ q, "text"))]
    np.testing.assert_allclose(spectra[0], spectra[1], atol=1e-5)
    assert spectra[0].max() / spectra[0].min() < 3


def test_whitening_matches_numpy_by_hand():
    x, y = _clouds()
    t = fit_intervention("whitening", x, y)
    mu = x.mean(0)
    cov = (x - mu).T @ (x - mu) / len(x)
    w, v = np.linalg.eigh(cov)
    w = np.clip(w, 0, None)
    zca = v @ np.diag(1 / np.sqrt(w + 1e-3 * w.mean())) @ v.T
    np.testing.assert_allclose(t.apply(x, "image"), _unit((x - mu) @ zca), atol=1e-4)


def test_ot_matches_pots_exact_solver_on_a_small_set():
    ot = pytest.importorskip("ot")
    rng = np.random.default_rng(5)
    x = _unit(rng.normal(size=(12, 5)))
    y = _unit(rng.normal(size=(12, 5)) + 0.5)
    t = fit_intervention("ot", x, y, ot_reg=0.002)
    plan = ot.emd(np.full(12, 1 / 12), np.full(12, 1 / 12), ot.dist(x, y))
    exact = plan.argmax(axis=1)
    # As ε → 0 the entropic barycentric projection tends to the exact matching's partner.
    np.testing.assert_allclose(t.arrays["moved"], y[exact], atol=2e-2)
    np.testing.assert_allclose(t.apply(x, "image"), y[exact], atol=2e-2)


def test_ot_closed_form_a_shuffled_copy_maps_each_point_to_itself():
    pytest.importorskip("ot")
    x, _ = _clouds(40)
    perm = np.random.default_rng(6).permutation(40)
    t = fit_intervention("ot", x, x[perm], ot_reg=0.002)
    np.testing.assert_allclose(t.apply(x, "image"), x, atol=1e-3)


def test_ot_new_vectors_move_like_pots_out_of_sample_map():
    ot = pytest.importorskip("ot")
    x, y = _clouds(120)
    t = fit_intervention("ot", x[:80], y[:80])
    mapping = ot.da.SinkhornTransport(reg_e=0.05, method="sinkhorn", out_of_sample_map="ferradans")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sinkhorn did not converge")
        mapping.fit(Xs=x[:80].astype(np.float32).astype(np.float64),
                    Xt=y[:80].astype(np.float32).astype(np.float64))
    expected = _unit(mapping.transform(Xs=x[80:].astype(np.float32).astype(np.float64)))
    np.testing.assert_allclose(t.apply(x[80:], "image"), expected, atol=1e-5)
    np.testing.assert_allclose(t.apply(y[80:], "text"), y[80:], atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_returns_unit_vectors_and_refuses_another_dimension(method):
    if method == "ot":
        pytest.importorskip("ot")
    x, y = _clouds()
    t = fit_intervention(method, x, y)
    for side, v in (("image", x), ("text", y)):
        out = t.apply(v, side)
        assert out.dtype == np.float32 and out.shape == v.shape
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)
    with pytest.raises(InputError, match="fitted on 12"):
        t.apply(np.ones((3, 7)), "image")


def test_unknown_method_and_bad_vectors_are_named():
    x, y = _clouds()
    with pytest.raises(InputError, match="unknown intervention method 'nope'"):
        fit_intervention("nope", x, y)
    bad = x.copy()
    bad[3, 0] = np.nan
    with pytest.raises(InputError, match="row 3|item 3"):
        fit_intervention("centering", bad, y)


def test_a_vector_sent_to_the_origin_is_named():
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    y = np.array([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    t = fit_intervention("ablation", x, y)
    dims = t.arrays["dims"].tolist()
    v = np.zeros((2, 2))
    v[:, dims] = 1.0
    with pytest.raises(InputError, match="image vector 0 lands on the origin under ablation"):
        t.apply(v, "image")
