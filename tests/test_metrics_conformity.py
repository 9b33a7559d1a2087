"""Conformity (Levi & Gilboa, "The Double-Ellipsoid Geometry of CLIP", ICML 2025) and ``conformity_w1``, the
Wasserstein-1 distance between two modalities' conformity distributions, against brute-force cosines and scipy's
W1, closed forms, and through ``compute_all``, where it was added as a registry entry alone (issue #26).
"""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
from scipy.stats import wasserstein_distance

from gapdiag.errors import InputError
from gapdiag.metrics import REGISTRY, compute_all
from gapdiag.metrics.cone import angular_value, conformity, conformity_w1, wasserstein_1d
from gapdiag.vectors import EmbeddingSet


def _data(n: int, per: int, d: int = 16, seed: int = 0):
    """``n`` images and ``per`` noisy captions each, the captions in a narrower cone (a gap and unequal spreads)."""
    rng = np.random.default_rng(seed)
    img = rng.normal(size=(n, d)) + 0.6
    txt = np.repeat(img, per, axis=0) * 0.5 + rng.normal(size=(n * per, d)) + 2.0
    return img.astype(np.float32), txt.astype(np.float32)


@pytest.mark.parametrize("per", [1, 5], ids=["1to1", "1to5"])
def test_conformity_and_its_w1_match_brute_force_cosines_and_scipy(per):
    img, txt = _data(23, per)
    np.testing.assert_allclose(conformity(img, block_size=7), ref.conformity(img), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(conformity(txt, block_size=7), ref.conformity(txt), rtol=1e-6, atol=1e-7)
    assert conformity_w1(img, txt, block_size=7) == pytest.approx(ref.conformity_w1(img, txt), rel=1e-6, abs=1e-7)


@pytest.mark.parametrize(("u", "v"), [
    ([0.1, 0.5, 0.5, 0.9], [0.3, 0.3, 0.2]),  # ties, unequal sizes
    (np.random.default_rng(3).normal(size=50), np.random.default_rng(4).normal(1.0, 2.0, size=17)),
    ([0.25], [0.25, 0.25]),
])
def test_wasserstein_1d_is_scipys(u, v):
    assert wasserstein_1d(u, v) == pytest.approx(wasserstein_distance(u, v), rel=1e-12, abs=1e-15)
    assert wasserstein_1d(v, u) == pytest.approx(wasserstein_1d(u, v), rel=1e-12, abs=1e-15)


def test_wasserstein_1d_closed_forms():
    assert wasserstein_1d([0.2, 0.2], [-0.3]) == pytest.approx(0.5)  # two point masses: their distance
    u = np.random.default_rng(1).normal(size=40)
    assert wasserstein_1d(u, u + 0.7) == pytest.approx(0.7)  # a translate: the shift
    assert wasserstein_1d(u, np.random.default_rng(1).permutation(u)) == 0.0  # the same values in any order
    with pytest.raises(InputError, match="empty"):
        wasserstein_1d([], [1.0])


def test_closed_form_conformities():
    d = 6
    eye = np.eye(d, dtype=np.float32)
    orthonormal = eye[:4] * np.array([[1.0], [2.0], [0.5], [3.0]], dtype=np.float32)  # norms do not matter
    antipodal = np.concatenate([eye[:2], -eye[:2]])  # {e1, e2, -e1, -e2}: each sees one -1 and two 0
    identical = np.repeat(eye[:1] + eye[1:2], 5, axis=0)
    np.testing.assert_allclose(conformity(orthonormal), 0.0, atol=1e-12)
    np.testing.assert_allclose(conformity(antipodal), -1.0 / 3.0, atol=1e-7)
    np.testing.assert_allclose(conformity(identical), 1.0, atol=1e-7)
    assert conformity_w1(orthonormal, antipodal) == pytest.approx(1.0 / 3.0, abs=1e-7)
    assert conformity_w1(identical, orthonormal) == pytest.approx(1.0, abs=1e-7)
    assert conformity_w1(identical, antipodal) == pytest.approx(4.0 / 3.0, abs=1e-7)


def test_mean_conformity_is_the_angular_value():
    img, _ = _data(31, 1, seed=2)
    assert conformity(img).mean() == pytest.approx(angular_value(img), rel=1e-6)


def test_conformity_needs_two_items():
    with pytest.raises(InputError, match="at least 2 items"):
        conformity(np.ones((1, 3), dtype=np.float32))


def _es(n: int, per: int, d: int = 16, seed: int = 0) -> EmbeddingSet:
    img, txt = _data(n, per, d, seed)
    return EmbeddingSet({"image": img, "text": txt}, {"image": np.arange(n), "text": np.repeat(np.arange(n), per)}, n)


def test_compute_all_reports_conformity_w1_per_pair_with_a_summary_per_modality():
    es = _es(29, 3)
    img, txt = es.vectors["image"], es.vectors["text"]
    values, extras = compute_all(es, ["conformity_w1", "angular_value"], block_size=8)
    assert values["conformity_w1/image-text"] == pytest.approx(ref.conformity_w1(img, txt), rel=1e-6, abs=1e-7)
    for m, x in (("image", img), ("text", txt)):
        summary, brute = extras[f"conformity/{m}"], ref.conformity(x)
        assert set(summary) == {"mean", "std", "min", "median", "max"}
        for key, want in (("mean", brute.mean()), ("std", brute.std()), ("min", brute.min()),
                          ("median", np.median(brute)), ("max", brute.max())):
            assert summary[key] == pytest.approx(want, rel=1e-6, abs=1e-7), (m, key)
        assert summary["mean"] == pytest.approx(values[f"angular_value/{m}"], rel=1e-9)
    info = REGISTRY["conformity_w1"]
    assert (info.higher_is_better, info.bounds, info.qualifier, info.family, info.quadratic) == (
        False, (0.0, 2.0), "pair", "cone", False)


def test_conformity_w1_is_the_same_float_whatever_else_is_measured_or_sampled():
    """Linear: every item always; from the unit vectors the linear pass kept for the quadratic step or read again,
    the same bits."""
    es = _es(40, 2, d=7, seed=5)
    alone, _ = compute_all(es, ["conformity_w1"], block_size=16)
    everything, _ = compute_all(es, block_size=16)
    sampled, _ = compute_all(es, sample=9, seed=2, block_size=16)
    assert alone["conformity_w1/image-text"] == everything["conformity_w1/image-text"] == sampled[
        "conformity_w1/image-text"]


def test_three_modalities_give_every_pair_and_one_item_is_skipped_with_the_reason():
    rng = np.random.default_rng(0)
    vecs = {m: rng.normal(size=(12, 5)).astype(np.float32) for m in ("image", "text", "audio")}
    es = EmbeddingSet(vecs, {m: np.arange(12) for m in vecs}, 12)
    values, _ = compute_all(es, ["conformity_w1"])
    assert set(values) == {"conformity_w1/image-text", "conformity_w1/image-audio", "conformity_w1/text-audio"}
    assert values["conformity_w1/text-audio"] == pytest.approx(ref.conformity_w1(vecs["text"], vecs["audio"]))
    one = EmbeddingSet({"image": vecs["image"][:1], "text": vecs["text"]}, {"image": [0], "text": np.zeros(12, int)}, 1)
    with pytest.raises(InputError, match=r"conformity_w1: needs at least 2 items per modality"):
        compute_all(one, ["conformity_w1"])
