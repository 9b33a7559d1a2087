"""Geometry metrics against brute-force references (tests/reference.py) and closed-form cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import reference as ref
from scipy import integrate, special

from gapdiag.errors import InputError
from gapdiag.metrics import (
    alignment,
    angular_value,
    cos_nonmatching,
    cos_tp,
    effective_rank,
    gap_vector,
    modality_gap,
    rankme,
    singular_values,
    uniformity_cross,
    uniformity_w2,
    uniformity_wang_isola,
)
from gapdiag.metrics.blocked import iter_unit_blocks


def _data(n: int, per: int, d: int = 16, seed: int = 0):
    """``n`` images and ``per`` noisy captions each, with a shared offset so that a gap exists."""
    rng = np.random.default_rng(seed)
    img = rng.normal(size=(n, d)) + 1.0
    txt = np.repeat(img, per, axis=0) + rng.normal(size=(n * per, d)) - 2.0
    return img.astype(np.float32), txt.astype(np.float32), np.arange(n), np.repeat(np.arange(n), per)


@pytest.fixture(params=[1, 5], ids=["1to1", "1to5"])
def data(request):
    return _data(23, request.param)


# ---------------------------------------------------------------------------------------------------------
# Against the brute-force references, 1:1 and 1:N, with tiles the sizes do not divide
# ---------------------------------------------------------------------------------------------------------
def test_gap_matches_reference(data):
    x, y, _, _ = data
    assert modality_gap(x, y, block_size=4) == pytest.approx(ref.gap(x, y), rel=1e-6)
    np.testing.assert_allclose(gap_vector(x, y), ref.unit(x).mean(0) - ref.unit(y).mean(0), atol=1e-6)


def test_pair_cosines_match_reference(data):
    x, y, xs, ys = data
    assert cos_tp(x, y, xs, ys, block_size=4) == pytest.approx(ref.cos_tp(x, y, xs, ys), abs=1e-6)
    assert cos_nonmatching(x, y, xs, ys, block_size=4) == pytest.approx(
        ref.cos_nonmatching(x, y, xs, ys), abs=1e-6
    )
    assert alignment(x, y, xs, ys, block_size=4) == pytest.approx(ref.alignment(x, y, xs, ys), abs=1e-5)
    # The many-side may come first: the pairing does not depend on the argument order.
    assert cos_tp(y, x, ys, xs) == pytest.approx(ref.cos_tp(x, y, xs, ys), abs=1e-6)


def test_angular_value_matches_reference(data):
    x, y, _, _ = data
    assert angular_value(y, block_size=5) == pytest.approx(ref.angular_value(y), abs=1e-6)
    assert angular_value(x) == pytest.approx(ref.angular_value(x), abs=1e-6)


def test_uniformity_matches_reference(data):
    x, y, xs, ys = data
    assert uniformity_wang_isola(y, block_size=7) == pytest.approx(ref.uniformity(y), abs=1e-5)
    joint = np.vstack([x, y])
    assert uniformity_wang_isola(joint, block_size=7) == pytest.approx(ref.uniformity(joint), abs=1e-5)
    assert uniformity_cross(x, y, xs, ys, block_size=7) == pytest.approx(
        ref.uniformity_cross(x, y, xs, ys), abs=1e-5
    )
    assert uniformity_w2(x, y, block_size=7) == pytest.approx(ref.uniformity_w2(x, y), abs=1e-5)


def test_rank_matches_reference(data):
    x, y, _, _ = data
    for z in (x, y, np.vstack([x, y])):
        assert effective_rank(z, block_size=6) == pytest.approx(ref.effective_rank(z), rel=1e-6)
        assert rankme(z, block_size=6) == pytest.approx(ref.rankme(z), rel=1e-6)
    np.testing.assert_allclose(singular_values(x), np.linalg.svd(ref.unit(x), compute_uv=False), rtol=1e-6)


def test_rank_with_fewer_items_than_dimensions():
    x = np.random.default_rng(3).normal(size=(5, 40))
    assert singular_values(x).shape == (5,)
    assert rankme(x) == pytest.approx(ref.rankme(x), rel=1e-6)
    assert effective_rank(x) == pytest.approx(ref.effective_rank(x), rel=1e-6)


def test_blocked_equals_full_matrix_when_block_does_not_divide_n():
    """N = 11 items in tiles of 3 (open_clip's chunked-metric test)."""
    x, y, xs, ys = _data(11, 1, d=5, seed=4)
    for block in (1, 3, 11, 64):
        assert uniformity_wang_isola(x, block_size=block) == pytest.approx(ref.uniformity(x), abs=1e-6)
        assert uniformity_cross(x, y, block_size=block) == pytest.approx(
            ref.uniformity_cross(x, y, xs, ys), abs=1e-6
        )
        assert cos_tp(x, y, block_size=block) == pytest.approx(ref.cos_tp(x, y, xs, ys), abs=1e-6)
        assert effective_rank(y, block_size=block) == pytest.approx(ref.effective_rank(y), rel=1e-6)


# ---------------------------------------------------------------------------------------------------------
# Closed-form cases
# ---------------------------------------------------------------------------------------------------------
def test_identical_modalities_have_no_gap():
    x, _, _, _ = _data(30, 1)
    assert modality_gap(x, 3 * x) == pytest.approx(0.0, abs=1e-7)
    assert cos_tp(x, 3 * x) == pytest.approx(1.0, abs=1e-6)
    assert alignment(x, x) == pytest.approx(0.0, abs=1e-6)


def test_reflection_gives_the_analytic_centroid_distance():
    """x_i = cosθ·e1 + sinθ·u_i with ±u_i balanced (centroid cosθ·e1); reflecting through e1⊥ gives gap 2cosθ."""
    rng = np.random.default_rng(5)
    theta = 1.1
    u = rng.normal(size=(20, 8))
    u[:, 0] = 0.0
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    u = np.vstack([u, -u])
    e1 = np.eye(8)[0]
    x = math.cos(theta) * e1 + math.sin(theta) * u
    y = x - 2 * np.outer(x @ e1, e1)
    assert modality_gap(x, y) == pytest.approx(2 * math.cos(theta), abs=1e-6)


def test_equal_orthogonal_directions_have_effective_rank_k():
    k, d, reps = 4, 12, 3
    x = np.repeat(np.eye(d)[:k], reps, axis=0)  # k orthogonal directions, singular values all sqrt(reps)
    assert effective_rank(x) == pytest.approx(k, abs=1e-6)
    eps, m = 1e-7, min(x.shape)
    p_on = 1 / k + eps
    expected = math.exp(-(k * p_on * math.log(p_on) + (m - k) * eps * math.log(eps)))
    assert rankme(x) == pytest.approx(expected, rel=1e-5)


def test_antipodal_points_have_minimal_uniformity():
    assert uniformity_wang_isola([[0.0, 2.0], [0.0, -5.0]]) == pytest.approx(-8.0)


def _sphere_uniformity(d: int, t: float = 2.0) -> float:
    """log E exp(−t‖u − v‖²) for u, v uniform on S^{d−1}: e^{−2t}·E e^{2t s}, s = u·v ~ ∝ (1 − s²)^{(d−3)/2}."""
    norm = special.beta(0.5, (d - 1) / 2)
    value, _ = integrate.quad(lambda s: np.exp(2 * t * s) * (1 - s * s) ** ((d - 3) / 2), -1, 1)
    return -2 * t + math.log(value / norm)


def test_uniform_points_on_the_sphere_reach_the_theoretical_uniformity():
    d = 32
    z = np.random.default_rng(6).normal(size=(1500, d))
    assert _sphere_uniformity(d) == pytest.approx(-4.0 + 8 / d, abs=0.02)  # s ~ N(0, 1/d) for large d
    assert uniformity_wang_isola(z, block_size=512) == pytest.approx(_sphere_uniformity(d), abs=0.01)


def test_w2_of_a_collapsed_set_is_far_from_uniform():
    """All points equal: μ unit, Σ = 0 -> W₂ = sqrt(1 + 1) (Fang et al.'s worst case)."""
    assert uniformity_w2(np.ones((10, 4))) == pytest.approx(-math.sqrt(2.0))


# ---------------------------------------------------------------------------------------------------------
# Bad input: one-line InputError naming the problem
# ---------------------------------------------------------------------------------------------------------
def _one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def test_w2_of_fewer_items_than_dimensions_matches_the_reference():
    # A rank-deficient covariance: eigh returns its zero eigenvalues as tiny negatives, which are 0, not NaN.
    x = np.random.default_rng(21).normal(size=(3, 8))
    assert uniformity_w2(x) == pytest.approx(ref.uniformity_w2(x), abs=1e-6)


def test_two_items_have_the_angular_value_of_their_one_pair():
    assert angular_value(np.array([[1.0, 0.0], [0.6, 0.8]])) == pytest.approx(0.6)


@pytest.mark.parametrize(
    "call, needle",
    [
        (lambda: modality_gap(np.zeros((0, 3)), np.ones((2, 3))), "empty"),
        (lambda: cos_tp(np.ones((3, 3)), np.ones((4, 3))), "mismatched counts"),
        (lambda: modality_gap(np.array([[1.0, np.nan]]), np.ones((1, 2))), "item 0 contains NaN"),
        (lambda: angular_value(np.array([[1.0, 0.0], [np.inf, 1.0]])), "item 1 contains NaN or inf"),
        (
            lambda: uniformity_wang_isola(np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])),
            "item 2 is a zero vector",
        ),
        (lambda: modality_gap(np.ones((2, 3)), np.ones((2, 4))), "dimension mismatch"),
        (lambda: angular_value(np.ones(3)), "2-D"),
        (lambda: angular_value(np.ones((1, 3))), "at least 2"),
        (lambda: cos_tp(np.ones((4, 2)), np.ones((4, 2)), [0, 0, 1, 1], [0, 0, 1, 1]), "one item per sample"),
        (lambda: cos_tp(np.ones((2, 2)), np.ones((2, 2)), [0, 1], None), "both"),
        (lambda: uniformity_wang_isola(np.eye(3), block_size=0), "block_size"),
        (lambda: uniformity_cross(np.eye(2)[:1], np.eye(2)[1:]), "no non-matching pairs"),  # one sample each
        (lambda: cos_nonmatching(np.eye(2)[:1], np.eye(2)[1:]), "no non-matching pairs"),
    ],
)
def test_bad_input_raises_one_line_input_error(call, needle):
    with pytest.raises(InputError) as excinfo:
        call()
    assert needle in _one_line(excinfo)


def test_errors_name_the_original_row_when_reading_a_subset():
    x = np.ones((10, 2), dtype=np.float16)
    x[7] = 0
    with pytest.raises(InputError, match="item 7 is a zero vector"):
        list(iter_unit_blocks(x, "text", block_size=2, rows=np.array([1, 3, 7, 9])))


def test_memory_mapped_float16_gives_the_float32_result(tmp_path):
    x, y, _, _ = _data(40, 1)
    path = tmp_path / "x.npy"
    np.save(path, x.astype(np.float16))
    mm = np.load(path, mmap_mode="r")
    expected = modality_gap(x.astype(np.float16).astype(np.float32), y)
    assert modality_gap(mm, y, block_size=7) == pytest.approx(expected, rel=1e-6)


def test_uniformity_log_sum_exp_is_exact_at_a_high_temperature():
    """t = 40 puts every term below float32's range (e^-160); the per-tile shift must keep them."""
    x, _, _, _ = _data(17, 1, d=6, seed=8)
    assert uniformity_wang_isola(x, t=40.0, block_size=5) == pytest.approx(
        ref.uniformity(x, t=40.0), abs=1e-4
    )


@pytest.mark.parametrize("t", [0.5, 2.0, 20.0])
def test_uniformity_without_the_per_tile_shift_matches_the_reference(t):
    """2t <= 40: tiles are exponentiated unshifted (terms in [e^-2t, e^2t]), within and across modalities."""
    x, y, xs, ys = _data(23, 2, d=8, seed=9)
    assert uniformity_wang_isola(x, t=t, block_size=4) == pytest.approx(ref.uniformity(x, t=t), rel=1e-5, abs=1e-6)
    assert uniformity_cross(x, y, xs, ys, t=t, block_size=4) == pytest.approx(
        ref.uniformity_cross(x, y, xs, ys, t=t), rel=1e-5, abs=1e-6)
