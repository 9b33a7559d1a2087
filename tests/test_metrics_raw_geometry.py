"""The raw geometry before normalisation (issue #27 §2; Levi & Gilboa, "The Double-Ellipsoid Geometry of CLIP",
ICML 2025): the norm distribution of the raw vectors (mean, spread, thin-shell ratio), the linear separability of
the raw modalities, the mean-vector estimate of conformity against its exact value, and the most and least
conforming items; against numpy / scipy brute force, closed forms, and through ``compute_all`` and ``measure``.
"""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref

from gapdiag.errors import InputError
from gapdiag.metrics import REGISTRY, compute_all
from gapdiag.metrics.clustering import modality_separability
from gapdiag.metrics.cone import conformity, conformity_estimate, pearson_r
from gapdiag.metrics.passes import DATA_NEEDS
from gapdiag.metrics.sampling import seeded_samples
from gapdiag.vectors import EmbeddingSet

RAW = ["raw_norm_mean", "raw_norm_std", "thin_shell_ratio"]


def _data(n: int, per: int, d: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images and ``per`` captions each: off-centre clouds whose norms vary (two shells of unequal spread)."""
    rng = np.random.default_rng(seed)
    img = (rng.normal(size=(n, d)) + 0.6) * rng.uniform(0.5, 2.0, size=(n, 1))
    txt = np.repeat(img, per, axis=0) * 0.5 + rng.normal(size=(n * per, d)) + 2.0
    return img.astype(np.float32), txt.astype(np.float32)


def _es(img: np.ndarray, txt: np.ndarray, per: int = 1) -> EmbeddingSet:
    n = img.shape[0]
    return EmbeddingSet({"image": img, "text": txt}, {"image": np.arange(n), "text": np.repeat(np.arange(n), per)}, n)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(x.dtype)


# ------------------------------------------------------------------------------------------ norm distribution


@pytest.mark.parametrize("per", [1, 5], ids=["1to1", "1to5"])
def test_raw_norm_statistics_match_numpy(per):
    img, txt = _data(23, per)
    values, extras = compute_all(_es(img, txt, per), RAW, block_size=7)
    for m, x in (("image", img), ("text", txt)):
        want = ref.raw_norms(x)
        assert values[f"raw_norm_mean/{m}"] == pytest.approx(want["mean"], rel=1e-6)
        assert values[f"raw_norm_std/{m}"] == pytest.approx(want["std"], rel=1e-5)
        assert values[f"thin_shell_ratio/{m}"] == pytest.approx(want["ratio"], rel=1e-5)
        norms = np.linalg.norm(x.astype(np.float64), axis=1)
        summary = extras[f"raw_norms/{m}"]
        for key, q in (("min", 0), ("q25", 25), ("median", 50), ("q75", 75), ("max", 100)):
            assert summary[key] == pytest.approx(np.percentile(norms, q), rel=1e-6), (m, key)


def test_closed_form_norms_two_shells_and_one_sphere():
    rng = np.random.default_rng(1)
    directions = _unit(rng.normal(size=(40, 8)))
    two_shells = directions * np.where(np.arange(40) % 2 == 0, 1.0, 3.0)[:, None]  # norms 1, 3, 1, 3, ...
    sphere = _unit(rng.normal(size=(40, 8))) * 5.0  # every norm 5: a perfectly thin shell
    values, _ = compute_all(_es(two_shells.astype(np.float32), sphere.astype(np.float32)), RAW)
    assert values["raw_norm_mean/image"] == pytest.approx(2.0, rel=1e-6)
    assert values["raw_norm_std/image"] == pytest.approx(1.0, rel=1e-6)
    assert values["thin_shell_ratio/image"] == pytest.approx(0.5, rel=1e-6)
    assert values["raw_norm_mean/text"] == pytest.approx(5.0, rel=1e-6)
    assert values["raw_norm_std/text"] == pytest.approx(0.0, abs=1e-5)
    assert values["thin_shell_ratio/text"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_already_normalised_vectors_are_named_and_their_norm_metrics_skipped_not_shown_as_1(dtype):
    img, txt = _data(20, 1)
    values, extras = compute_all(_es(_unit(img).astype(dtype), txt.astype(dtype)), RAW)
    for base in RAW:
        assert f"{base}/image" not in values
        assert "already L2-normalised" in extras["skipped"][f"{base}/image"]
        assert f"{base}/text" in values  # the raw text modality is still measured
    assert extras["raw_norms/image"]["unit"] is True and extras["raw_norms/text"]["unit"] is False
    with pytest.raises(InputError, match=r"raw_norm_mean/image: the image vectors are already L2-normalised"):
        compute_all(_es(_unit(img), txt), ["raw_norm_mean/image"])


# ------------------------------------------------------------------------------------ raw separability


def test_raw_separability_sees_a_gap_of_norms_that_unit_vectors_cannot():
    """Closed form: the same directions in both modalities, the texts ten times longer. On unit vectors the
    modalities coincide (chance); a hyperplane across the cone splits the raw shells (1.0)."""
    rng = np.random.default_rng(2)
    directions = _unit(0.2 * rng.normal(size=(200, 6)) + 1.0).astype(np.float32)  # a narrow cone
    es = _es(directions, directions * 10.0)
    values, _ = compute_all(es, ["modality_separability", "raw_separability"], device="cpu")
    assert values["modality_separability/joint"] == 0.5
    assert values["raw_separability/joint"] == 1.0


def test_raw_separability_is_modality_separability_on_the_raw_vectors():
    img, txt = _data(60, 2, seed=3)
    values, _ = compute_all(_es(img, txt, 2), ["raw_separability"], device="cpu", seed=4)
    assert values["raw_separability/joint"] == modality_separability([img, txt], seed=4, raw=True)
    sampled, _ = compute_all(_es(img, txt, 2), ["raw_separability"], device="cpu", seed=4, sample=30)
    drawn = seeded_samples(60, 30, 4)  # the quadratic step's draw: every item of 30 samples
    in_play = [x[np.isin(s, drawn)] for x, s in ((img, np.arange(60)), (txt, np.repeat(np.arange(60), 2)))]
    assert sampled["raw_separability/joint"] == modality_separability(in_play, seed=4, raw=True)


def test_raw_separability_of_normalised_vectors_is_skipped_as_the_unit_one():
    img, txt = _data(30, 1)
    with pytest.raises(InputError, match=r"raw_separability: every modality's vectors are already L2-normalised: "
                                         r"the raw variant is modality_separability"):
        compute_all(_es(_unit(img), _unit(txt)), ["modality_separability", "raw_separability"])
    _, extras = compute_all(_es(_unit(img), txt), ["raw_separability"])  # one raw modality: measured
    assert "raw_separability/joint" not in extras["skipped"]


# ------------------------------------------------------------------------------ conformity and its estimate


@pytest.mark.parametrize("per", [1, 5], ids=["1to1", "1to5"])
def test_conformity_estimate_and_its_correlation_match_brute_force(per):
    img, txt = _data(23, per, seed=5)
    for x in (img, txt):
        np.testing.assert_allclose(conformity_estimate(x, block_size=7), ref.conformity_estimate(x), rtol=1e-6,
                                   atol=1e-7)
    values, _ = compute_all(_es(img, txt, per), ["conformity_estimate_r"], block_size=7)
    for m, x in (("image", img), ("text", txt)):
        assert values[f"conformity_estimate_r/{m}"] == pytest.approx(ref.conformity_estimate_r(x), rel=1e-6)


def test_the_estimate_is_exact_up_to_an_affine_map_when_every_norm_is_equal():
    """c_i = (N‖m̂‖ cos(x̂_i, m̂) − 1)/(N − 1): with equal norms the raw mean is a multiple of m̂, r = 1 exactly, so
    the metric is skipped as no finding; unequal norms alone make the estimate an estimate."""
    img, txt = _data(30, 1, seed=6)
    sphere = _unit(img) * 3.0
    assert pearson_r(conformity(sphere), conformity_estimate(sphere)) == pytest.approx(1.0, abs=1e-9)
    n, mean_unit = 30, np.linalg.norm(_unit(img).astype(np.float64).mean(0))
    np.testing.assert_allclose(conformity(sphere), (n * mean_unit * conformity_estimate(sphere) - 1) / (n - 1),
                               atol=1e-6)
    values, extras = compute_all(_es(sphere, txt), ["conformity_estimate_r"])
    assert "conformity_estimate_r/image" not in values and "conformity_estimate_r/text" in values
    assert "exact by construction" in extras["skipped"]["conformity_estimate_r/image"]


def test_pearson_r_is_scipys_and_undefined_for_a_constant():
    from scipy.stats import pearsonr

    rng = np.random.default_rng(7)
    a, b = rng.normal(size=30), rng.normal(size=30)
    assert pearson_r(a, a * 2 + b) == pytest.approx(pearsonr(a, a * 2 + b)[0], rel=1e-12)
    assert np.isnan(pearson_r(np.ones(5), np.arange(5.0)))


def test_identical_items_skip_the_correlation_with_its_reason():
    img, txt = _data(20, 1)
    img[:] = img[0]
    _, extras = compute_all(_es(img, txt), ["conformity_estimate_r"])
    assert "conformity_estimate_r/image" in extras["skipped"]


def test_most_and_least_conforming_items_are_listed_by_exact_conformity():
    img, txt = _data(25, 3, seed=8)
    _, alone = compute_all(_es(img, txt, 3), ["conformity_w1"])
    assert "estimate" not in alone["conformity_items/text"]["most"][0]  # only with conformity_estimate_r
    _, extras = compute_all(_es(img, txt, 3), ["conformity_w1", "conformity_estimate_r"])
    for m, x in (("image", img), ("text", txt)):
        exact, estimate = ref.conformity(x), ref.conformity_estimate(x)
        listed = extras[f"conformity_items/{m}"]
        order = np.argsort(-exact, kind="stable")
        assert [e["item"] for e in listed["most"]] == order[:5].tolist()
        assert [e["item"] for e in listed["least"]] == np.argsort(exact, kind="stable")[:5].tolist()
        for entry in listed["most"] + listed["least"]:
            assert entry["conformity"] == pytest.approx(exact[entry["item"]], rel=1e-6, abs=1e-7)
            assert entry["estimate"] == pytest.approx(estimate[entry["item"]], rel=1e-6, abs=1e-7)


def test_registry_entries_of_the_raw_geometry():
    facts = {b: (REGISTRY[b].higher_is_better, REGISTRY[b].bounds, REGISTRY[b].qualifier, REGISTRY[b].quadratic)
             for b in [*RAW, "raw_separability", "conformity_estimate_r"]}
    assert facts == {
        "raw_norm_mean": (None, (0.0, None), "modality", False),
        "raw_norm_std": (None, (0.0, None), "modality", False),
        "thin_shell_ratio": (None, (0.0, None), "modality", False),
        "raw_separability": (False, (0.0, 1.0), "joint", True),
        "conformity_estimate_r": (None, (-1.0, 1.0), "modality", False),
    }


def test_the_other_metrics_do_not_change_when_the_raw_geometry_is_measured_too():
    img, txt = _data(30, 2, seed=9)
    es = _es(img, txt, 2)
    others = [b for b, info in REGISTRY.items() if not info.two_models and not info.needs & DATA_NEEDS
              and b not in {*RAW, "raw_separability", "conformity_estimate_r"}]
    alone, _ = compute_all(es, others, device="cpu", block_size=16)
    everything, _ = compute_all(es, device="cpu", block_size=16)
    assert {k: everything[k] for k in alone} == alone
