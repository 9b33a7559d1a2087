"""Bootstrap resampling of samples and percentile intervals (gapdiag.check.bootstrap)."""

from __future__ import annotations

import numpy as np
import pytest

from gapdiag.check.bootstrap import bootstrap_intervals, percentile_intervals, resample_embedding_set
from gapdiag.errors import InputError
from gapdiag.vectors import EmbeddingSet


def _paired_set(n: int, *, d: int = 4, captions: int = 2, seed: int = 0) -> EmbeddingSet:
    """One image per sample, ``captions`` texts per sample stored in shuffled item order."""
    rng = np.random.default_rng(seed)
    text_index = rng.permutation(np.repeat(np.arange(n), captions)).astype(np.int64)
    return EmbeddingSet(
        vectors={
            "image": rng.normal(size=(n, d)).astype(np.float32),
            "text": rng.normal(size=(n * captions, d)).astype(np.float32),
        },
        sample_index={"image": np.arange(n, dtype=np.int64), "text": text_index},
        n_samples=n,
        labels=rng.integers(0, 3, size=n).astype(np.int64),
        class_names=["a", "b", "c"],
        class_embeddings=rng.normal(size=(3, d)).astype(np.float32),
        attributes={"color": np.array([f"c{i}" for i in range(n)])},
        provenance={"dataset": {"fingerprint": "fp"}},
    )


def _mean_first_coordinate(es, metrics, *, sample=None, seed=0, **_):
    """A cheap stand-in for compute_all: the mean of the image vectors' first coordinate."""
    return {"mean/image": float(np.mean(es.vectors["image"][:, 0]))}, {}


# ---------------------------------------------------------------------------------------------- resampling


def test_resample_keeps_every_item_of_each_drawn_sample_with_new_ids():
    es = _paired_set(5)
    ids = np.array([3, 0, 3, 4])
    out = resample_embedding_set(es, ids)
    assert out.n_samples == 4
    for name in ("image", "text"):
        # Brute-force reference: scan the items for each drawn sample, in item order.
        ref_vecs, ref_index = [], []
        for j, s in enumerate(ids):
            for i in range(len(es.sample_index[name])):
                if es.sample_index[name][i] == s:
                    ref_vecs.append(es.vectors[name][i])
                    ref_index.append(j)
        np.testing.assert_array_equal(out.vectors[name], np.array(ref_vecs))
        np.testing.assert_array_equal(out.sample_index[name], np.array(ref_index))
    np.testing.assert_array_equal(out.labels, es.labels[ids])
    np.testing.assert_array_equal(out.attributes["color"], es.attributes["color"][ids])
    assert out.class_embeddings is es.class_embeddings and out.class_names == es.class_names
    assert out.provenance == es.provenance and out.provenance is not es.provenance


def test_duplicate_samples_become_distinct_samples():
    es = _paired_set(3, captions=2)
    out = resample_embedding_set(es, [1, 1])
    np.testing.assert_array_equal(out.sample_index["image"], [0, 1])
    np.testing.assert_array_equal(np.sort(out.sample_index["text"]), [0, 0, 1, 1])
    np.testing.assert_array_equal(out.vectors["image"][0], out.vectors["image"][1])


def test_resample_handles_samples_without_items_in_a_modality():
    es = EmbeddingSet(
        {"a": np.eye(3, dtype=np.float32), "b": np.eye(3, dtype=np.float32)[:2]},
        {"a": np.arange(3), "b": np.array([0, 2])},
        3,
    )
    out = resample_embedding_set(es, [1, 2, 1])
    np.testing.assert_array_equal(out.sample_index["a"], [0, 1, 2])
    np.testing.assert_array_equal(out.sample_index["b"], [1])
    np.testing.assert_array_equal(out.vectors["b"], es.vectors["b"][[1]])


@pytest.mark.parametrize("ids", [[0, 5], [-1], [[0, 1]]])
def test_resample_rejects_bad_ids(ids):
    with pytest.raises(InputError):
        resample_embedding_set(_paired_set(5), ids)


# ---------------------------------------------------------------------------------------------- intervals


def test_interval_contains_point_estimate_and_matches_normal_theory():
    n = 400
    es = _paired_set(n, seed=1)
    x = es.vectors["image"][:, 0].astype(np.float64)
    lo, hi = bootstrap_intervals(es, None, n=400, seed=3, compute=_mean_first_coordinate)["mean/image"]
    assert lo < x.mean() < hi
    # For a mean, the 95 % percentile interval is close to ±1.96·sd/√n.
    expected = 2 * 1.96 * x.std() / np.sqrt(n)
    assert (hi - lo) == pytest.approx(expected, rel=0.2)


def test_intervals_shrink_with_more_samples():
    widths = []
    for n in (50, 800):
        lo, hi = bootstrap_intervals(
            _paired_set(n, seed=2), None, n=200, seed=0, compute=_mean_first_coordinate
        )["mean/image"]
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 2.5  # √16 = 4 in theory


def test_same_seed_same_intervals_other_seed_differs():
    es = _paired_set(60)
    a = bootstrap_intervals(es, None, n=50, seed=7, compute=_mean_first_coordinate)
    b = bootstrap_intervals(es, None, n=50, seed=7, compute=_mean_first_coordinate)
    c = bootstrap_intervals(es, None, n=50, seed=8, compute=_mean_first_coordinate)
    assert a == b and a != c


def test_replicates_have_sample_size_and_forward_options():
    seen = []

    def record(es, metrics, *, sample=None, seed=0, **options):
        seen.append((es.n_samples, metrics, sample, seed, options))
        return {"m": float(es.n_samples)}, {}

    bootstrap_intervals(
        _paired_set(30), ["modality_gap"], n=4, seed=5, sample=12, compute=record, block_size=7
    )
    assert seen == [(12, ["modality_gap"], None, 5, {"block_size": 7})] * 4
    seen.clear()
    bootstrap_intervals(_paired_set(30), None, n=2, sample=1000, compute=record)
    assert [s[0] for s in seen] == [30, 30]


def test_confidence_sets_the_quantiles():
    # Replicate values 0..99: the 90 % interval is the 5th and 95th percentiles.
    draws = [{"m": float(v)} for v in range(100)]
    lo, hi = percentile_intervals(draws, 0.9)["m"]
    assert (lo, hi) == pytest.approx((np.percentile(np.arange(100), 5), np.percentile(np.arange(100), 95)))


def test_non_finite_replicates_are_ignored_and_all_nan_metrics_dropped():
    draws = [{"m": 1.0, "bad": np.nan}, {"m": np.nan, "bad": np.inf}, {"m": 3.0}]
    assert percentile_intervals(draws, 0.5) == {"m": (1.5, 2.5)}


def test_off_and_bad_arguments():
    es = _paired_set(10)
    assert bootstrap_intervals(es, None, n=0, compute=_mean_first_coordinate) == {}
    for kwargs in (
        {"n": 1},
        {"n": -3},
        {"n": 10, "confidence": 1.0},
        {"n": 10, "confidence": 0.0},
        {"n": 10, "sample": 0},
    ):
        with pytest.raises(InputError):
            bootstrap_intervals(es, None, compute=_mean_first_coordinate, **kwargs)


def test_real_compute_all_intervals_contain_the_estimates():
    from gapdiag.metrics import compute_all

    rng = np.random.default_rng(0)
    n, d = 40, 8
    img = rng.normal(size=(n, d)) + 2.0  # offset: a clear modality gap
    es = EmbeddingSet(
        {
            "image": img.astype(np.float32),
            "text": (img + rng.normal(scale=0.8, size=(n, d)) - 2.0).astype(np.float32),
        },
        {"image": np.arange(n), "text": np.arange(n)},
        n,
    )
    metrics = ["modality_gap", "cos_tp"]
    point, _ = compute_all(es, metrics)
    intervals = bootstrap_intervals(es, metrics, n=30, seed=0)
    assert set(intervals) == set(point)
    for name, (lo, hi) in intervals.items():
        assert lo < point[name] < hi, name
