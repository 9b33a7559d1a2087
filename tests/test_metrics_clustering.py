"""Clustering metrics: closed-form cases (1.0 / 0.0 / chance), scikit-learn run by hand, and brute-force
references (tests/reference.py: the exact k-means optimum, a logistic regression fitted with scipy) on raw,
non-normalised vectors, so that a metric that skipped the L2 normalisation fails."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
from sklearn.cluster import KMeans
from sklearn.metrics import v_measure_score

from gapdiag.errors import InputError
from gapdiag.metrics.clustering import modality_separability, v_measure_class, v_measure_modality


def blobs(centres: np.ndarray, per_centre: int, noise: float, rng: np.random.Generator):
    labels = np.repeat(np.arange(centres.shape[0]), per_centre)
    return centres[labels] + noise * rng.normal(size=(labels.size, centres.shape[1])), labels


def test_separated_classes_shared_by_both_modalities_give_v_measure_one():
    rng = np.random.default_rng(0)
    centres = 10 * np.eye(8)[:4]
    img, img_labels = blobs(centres, 15, 0.1, rng)
    txt, txt_labels = blobs(centres, 30, 0.1, rng)  # 1:2 alignment, same classes
    assert v_measure_class([img, txt], [img_labels, txt_labels]) == pytest.approx(1.0, abs=1e-12)


def test_v_measure_class_matches_sklearn_on_overlapping_data():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(5, 6))
    img, img_labels = blobs(centres, 20, 0.8, rng)
    txt, txt_labels = blobs(centres + 1.0, 20, 0.8, rng)  # a shared offset plays the modality gap
    got = v_measure_class([img, txt], [img_labels, txt_labels], seed=3, n_init=4)
    joint = np.concatenate([img, txt]).astype(np.float32)
    joint /= np.linalg.norm(joint, axis=1, keepdims=True)
    truth = np.concatenate([img_labels, txt_labels])
    pred = KMeans(5, n_init=4, random_state=3, algorithm="lloyd").fit_predict(joint)
    assert got == pytest.approx(v_measure_score(truth, pred), abs=1e-9)
    assert 0.05 < got < 0.95


def test_string_labels_and_three_modalities():
    rng = np.random.default_rng(2)
    centres = 10 * np.eye(6)[:3]
    parts = [blobs(centres, 10, 0.1, rng) for _ in range(3)]
    names = np.array(["cat", "dog", "owl"])
    assert v_measure_class([p[0] for p in parts], [names[p[1]] for p in parts]) == pytest.approx(1.0)


def test_identical_modalities_are_not_clustered_apart():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 8))
    # A point and its copy always share a cluster, so clusters carry no modality information: exactly 0.
    assert v_measure_modality([x, x.copy()]) == pytest.approx(0.0, abs=1e-12)
    assert abs(modality_separability([x, x.copy()]) - 0.5) < 0.1


def test_far_apart_modalities_score_one():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(150, 8)) * 0.2 + 3 * np.eye(8)[0]
    y = rng.normal(size=(100, 8)) * 0.2 - 3 * np.eye(8)[0]
    assert v_measure_modality([x, y]) == pytest.approx(1.0, abs=1e-12)
    assert modality_separability([x, y]) == 1.0
    z = rng.normal(size=(80, 8)) * 0.2 + 3 * np.eye(8)[1]
    assert v_measure_modality([x, y, z]) == pytest.approx(1.0, abs=1e-12)
    assert modality_separability([x, y, z]) == 1.0


def test_a_closed_gap_is_inseparable_at_chance_never_below_it():
    # Each item has an exact twin in the other modality: the classifier learns one twin's label and is then
    # wrong on purpose about the other (the held-out accuracy falls to 0.0 on real gap-closed embeddings).
    rng = np.random.default_rng(8)
    x = rng.normal(size=(40, 64))
    assert modality_separability([x, x.copy()], at_least_chance=False) < 0.35
    assert modality_separability([x, x.copy()]) == 0.5
    assert modality_separability([x, x.copy(), x.copy()]) == pytest.approx(1 / 3)


def test_subsamples_draw_distinct_points_sorted_and_seeded():
    from gapdiag.metrics.clustering import _subsample, _take

    x = np.arange(30.0).reshape(10, 3)
    np.testing.assert_array_equal(_take(x, np.array([1, 4, 7])), x[[1, 4, 7]])  # as many rows as columns
    assert _take(x, np.arange(10)) is x  # every row: no copy

    rows = _subsample(1000, 600, seed=3)
    assert len(np.unique(rows)) == 600 and np.all(np.diff(rows) > 0)  # without replacement, in order
    np.testing.assert_array_equal(rows, _subsample(1000, 600, seed=3))
    np.testing.assert_array_equal(_subsample(5, 600, seed=3), np.arange(5))


def test_separability_is_balanced_for_one_to_many_data():
    # Five captions per image from the same distribution: "always text" would score 5/6 without balancing.
    rng = np.random.default_rng(5)
    img, txt = rng.normal(size=(120, 8)), rng.normal(size=(600, 8))
    assert abs(modality_separability([img, txt]) - 0.5) < 0.1
    three = [rng.normal(size=(150, 8)) for _ in range(3)]
    assert abs(modality_separability(three) - 1 / 3) < 0.1


def test_subsampling_is_seeded_and_keeps_clear_structure():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(300, 8)) * 0.2 + 3 * np.eye(8)[0]
    y = rng.normal(size=(300, 8)) * 0.2 - 3 * np.eye(8)[0]
    assert v_measure_modality([x, y], max_samples=50) == pytest.approx(1.0, abs=1e-12)
    labels = [np.arange(300) % 2, np.arange(300) % 2]
    a = v_measure_class([x, y], labels, max_samples=100, seed=1)
    assert a == v_measure_class([x, y], labels, max_samples=100, seed=1)
    assert modality_separability([x, y], max_samples=30) == 1.0


def scaled_modalities(seed: int, sizes: tuple[int, ...], d: int, spread: float) -> list[np.ndarray]:
    """One cloud per modality around its own random centre, each vector scaled by a random factor in
    [0.03, 30]: the lengths carry no modality information, but they dominate any clustering of raw vectors."""
    rng = np.random.default_rng(seed)
    out = []
    for n in sizes:
        x = rng.normal(size=d) + spread * rng.normal(size=(n, d))
        out.append(x * 10 ** rng.uniform(-1.5, 1.5, size=(n, 1)))
    return out


def test_reference_v_measure_counts_like_sklearn():
    rng = np.random.default_rng(8)
    for _ in range(5):
        truth, pred = rng.integers(0, 3, size=30), rng.integers(0, 4, size=30)
        assert ref.v_measure(truth, pred) == pytest.approx(v_measure_score(truth, pred), abs=1e-12)
    assert ref.v_measure([0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 2, 2]) == pytest.approx(0.8133, abs=1e-4)


# Two modalities: k-means with k = 2 reaches the optimum here. Three modalities with a tighter spread: with
# spread 0.8, Lloyd from k-means++ stops in a local optimum on some draws, and the reference is the optimum.
MODALITY_CASES = [((5, 5), 3, 0.8, s) for s in range(4)] + [((6, 4), 3, 0.8, s) for s in range(3)] + [
    ((3, 3, 3), 3, 0.5, s) for s in range(3)
] + [((4, 3, 2), 3, 0.5, s) for s in range(3)]


def test_v_measure_modality_is_the_v_measure_of_the_optimal_partition_of_unit_vectors():
    sensitive = 0
    for sizes, d, spread, seed in MODALITY_CASES:
        mods = scaled_modalities(seed, sizes, d, spread)
        expected = ref.v_measure_modality(mods)
        assert v_measure_modality(mods, max_samples=None) == pytest.approx(expected, abs=1e-9), (sizes, seed)
        sensitive += abs(ref.v_measure_modality(mods, normalize=False) - expected) > 1e-3
    assert sensitive >= len(MODALITY_CASES) // 2  # the cases tell normalised from raw vectors apart


@pytest.mark.parametrize("sizes", [(40, 40), (60, 25), (30, 30, 30)])
def test_modality_separability_matches_a_reference_logistic_regression(sizes):
    sensitive = 0
    for seed in range(3):
        mods = scaled_modalities(seed, sizes, 4, 0.8)
        expected = ref.modality_separability(mods, seed=seed)
        assert modality_separability(mods, seed=seed, at_least_chance=False) == expected, (sizes, seed)
        assert modality_separability(mods, seed=seed) == max(expected, 1 / len(sizes)), (sizes, seed)
        sensitive += ref.modality_separability(mods, seed=seed, normalize=False) != expected
    assert sensitive >= 2


@pytest.mark.parametrize(
    "call, fragment",
    [
        (lambda x, y: v_measure_class([x, y], [np.zeros(10)]), "label arrays"),
        (lambda x, y: v_measure_class([x, y], [np.arange(10) % 2] * 3), "label arrays"),
        (lambda x, y: v_measure_class([x, y], [np.zeros((10, 1)), np.zeros((10, 1))]), "modality 0"),
        (lambda x, y: v_measure_class([x, y], [np.arange(10) % 2, np.arange(9) % 2]), "modality 1"),
        (lambda x, y: v_measure_class([x, y], [np.zeros(10), np.zeros(10)]), "2 distinct labels"),
        (lambda x, y: v_measure_class([x, y], [np.arange(10) % 2, np.arange(10) % 2], n_init=0), "n_init"),
        (lambda x, y: v_measure_modality([x]), "at least 2 modalities"),
        (lambda x, y: v_measure_modality([x, y[:, :3]]), "dim"),
        (lambda x, y: v_measure_modality([x, np.full_like(y, np.nan)]), "NaN"),
        (lambda x, y: v_measure_modality([x, y[:0]]), "empty"),
        (lambda x, y: modality_separability([x, y[:1]]), "at least 2 items"),
        (lambda x, y: modality_separability([x, y], test_fraction=1.0), "test_fraction"),
    ],
)
def test_bad_input_raises_one_line_input_error(call, fragment):
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(10, 5)), rng.normal(size=(10, 5))
    with pytest.raises(InputError) as info:
        call(x, y)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_kmeans_fitted_on_a_bounded_sample_labels_every_point_the_same_way(monkeypatch):
    from gapdiag.metrics.clustering import _kmeans_v_measure

    rng = np.random.default_rng(5)
    centers = rng.normal(size=(3, 16)) * 3
    truth = rng.integers(0, 3, size=900)
    points = (centers[truth] + rng.normal(size=(900, 16))).astype(np.float32)
    from sklearn.cluster import KMeans

    fitted: list[int] = []  # how many points each k-means fit saw
    fit = KMeans.fit
    monkeypatch.setattr(KMeans, "fit", lambda self, x, *a, **k: (fitted.append(len(x)), fit(self, x, *a, **k))[1])
    full = _kmeans_v_measure(points, truth, 3, seed=0, n_init=3, fit_samples=None)
    # Under the bound nothing changes, bit for bit; above it, the sampled fit gives the same clustering.
    assert _kmeans_v_measure(points, truth, 3, seed=0, n_init=3, fit_samples=900) == full
    sampled = _kmeans_v_measure(points, truth, 3, seed=0, n_init=3, fit_samples=120)
    assert sampled == pytest.approx(full, abs=0.02)
    assert full > 0.9
    assert fitted == [900, 900, 120]  # the bound is what makes it cheap: the last fit saw only its sample


@pytest.mark.parametrize("max_samples", [1])
def test_fewer_points_than_clusters_is_one_line_not_scikit_learns_error(max_samples):
    """max_samples=1 passed the >= 1 check and reached KMeans with 1 point for 2 clusters: scikit-learn's raw
    ValueError. It is the project's one-line input error, naming the fix."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(20, 4)), rng.normal(size=(20, 4))
    with pytest.raises(InputError, match="1 point\\(s\\) cannot form 2 clusters") as exc:
        v_measure_modality([a, b], max_samples=max_samples)
    assert "\n" not in str(exc.value)
