"""Clustering of the joint embedding set: class V-Measure, modality V-Measure, linear modality separability.

All three stack the L2-normalised modalities into one joint set [X̂; Ŷ; ...] (the clustering evaluation of
Grassucci et al. 2026): a space without a modality gap clusters by meaning (class V-Measure high) and not
by modality (modality V-Measure and separability low). ``raw_separability`` is the separability of the raw
vectors, before normalisation (Levi & Gilboa, ICML 2025: the raw modalities sit on separate ellipsoid shells).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gapdiag.errors import InputError
from gapdiag.metrics.blocked import unit_rows
from gapdiag.metrics.passes import Passes, Skip, Value
from gapdiag.metrics.raw import raw_norms_of
from gapdiag.metrics.sampling import seeded_samples, sorted_choice
from gapdiag.metrics.validation import check_matrix, check_same_dim


def _joint(
    vectors_by_modality: Sequence[ArrayLike], min_modalities: int, normalized: bool = False
) -> list[NDArray[np.float32]]:
    """Normalised float32 copies of every modality (``normalized``: the arrays themselves, already checked unit
    float32 vectors), checked to share one dimension."""
    if len(vectors_by_modality) < min_modalities:
        raise InputError(
            f"need at least {min_modalities} modalities, got {len(vectors_by_modality)}; "
            "pass one array per modality"
        )
    if normalized:
        mats = [check_matrix(np.asarray(v, dtype=np.float32), f"modality {m}")
                for m, v in enumerate(vectors_by_modality)]
    else:
        mats = [unit_rows(v, f"modality {m}") for m, v in enumerate(vectors_by_modality)]
    for m, mat in enumerate(mats[1:], start=1):
        check_same_dim(mats[0], mat, "modality 0", f"modality {m}")
    return mats


def _subsample(n: int, max_samples: int | None, seed: int) -> NDArray[np.intp]:
    """All rows, or a seeded uniform sample of ``max_samples`` rows (sorted, so order stays stable)."""
    if max_samples is None or n <= max_samples:
        return np.arange(n)
    if max_samples < 1:
        raise InputError(f"max_samples must be >= 1, got {max_samples}")
    return seeded_samples(n, max_samples, seed)


def _take(x: NDArray[Any], rows: NDArray[np.intp]) -> NDArray[Any]:
    """``x[rows]``, without the copy when ``rows`` is every row in order (:func:`_subsample` kept them all)."""
    return x if rows.size == x.shape[0] else x[rows]


#: k-means is fitted on at most this many points (a seeded uniform sample) and then labels every point.
#: Centroids of a few clusters in ~512 dimensions are estimated from 20,000 points to far below the spread
#: of the clusters, so the V-Measure of all points is statistically the same as with a fit on all of them,
#: at a fifth of the cost for 100,000 points (k-means was ~0.6 of an X·Yᵀ pass there; docs/benchmarks.md).
KMEANS_FIT_SAMPLES = 20_000


def _kmeans_v_measure(
    points: NDArray[np.float32],
    truth: NDArray[Any],
    n_clusters: int,
    seed: int,
    n_init: int,
    fit_samples: int | None = KMEANS_FIT_SAMPLES,
) -> float:
    from sklearn.cluster import KMeans
    from sklearn.metrics import v_measure_score

    if n_clusters < 2:
        raise InputError(
            f"V-Measure needs at least 2 distinct labels, got {n_clusters}; it is 1.0 by definition"
        )
    if n_init < 1:
        raise InputError(f"n_init must be >= 1, got {n_init}")
    if points.shape[0] < n_clusters:
        raise InputError(f"{points.shape[0]} point(s) cannot form {n_clusters} clusters",
                         hint=f"raise max_samples to at least {n_clusters}")
    kmeans = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed, algorithm="lloyd")
    if fit_samples is None or points.shape[0] <= fit_samples:
        predicted = kmeans.fit_predict(points)
    else:
        predicted = kmeans.fit(_take(points, _subsample(points.shape[0], fit_samples, seed))).predict(points)
    return float(v_measure_score(truth, predicted))


def v_measure_class(
    vectors_by_modality: Sequence[ArrayLike],
    labels_by_modality: Sequence[ArrayLike],
    *,
    seed: int = 0,
    n_init: int = 10,
    max_samples: int | None = 100_000,
    normalized: bool = False,
) -> float:
    """V-Measure of k-means clusters of the joint set against class labels (Grassucci et al. 2026).

    KMeans (Lloyd, ``random_state=seed``, ``n_init`` restarts) on Z = [X̂; Ŷ; ...], k = number of distinct
    labels; V = 2·h·c / (h + c) with homogeneity h = 1 − H(C|K)/H(C) and completeness c = 1 − H(K|C)/H(K)
    (Rosenberg & Hirschberg 2007; ``sklearn.metrics.v_measure_score``). Each item carries the label of its
    sample, so an image and its captions share a label. The paper's code hard-codes k = 10; here k follows
    the data.

    Range [0, 1]; 1 = clusters coincide with classes across modalities. A modality gap pulls the clusters
    apart by modality instead, which lowers it.

    Args:
        vectors_by_modality: One ``(n_m, d)`` array per modality (raw or normalised; normalised here).
        labels_by_modality: One ``(n_m,)`` label array per modality (any hashable values).
        seed: KMeans ``random_state`` (and the subsample seed).
        n_init: KMeans restarts.
        max_samples: Above this many joint points, cluster a seeded uniform subsample of this size
            (KMeans on ~1e5 points takes seconds; None = never subsample). Above
            :data:`KMEANS_FIT_SAMPLES` points, the centroids are fitted on a seeded sample of that size and
            every point is labelled by its nearest centroid.
        normalized: The arrays are already checked float32 unit vectors (``compute_all``'s): used as they are
            instead of normalised copies.

    Returns:
        V-Measure in [0, 1].

    Raises:
        InputError: Bad arrays, label arrays whose length differs from their modality, fewer than two classes.
    """
    mats = _joint(vectors_by_modality, 1, normalized)
    if len(labels_by_modality) != len(mats):
        raise InputError(
            f"got {len(mats)} modalities but {len(labels_by_modality)} label arrays; give one per modality"
        )
    labels = []
    for m, (mat, lab) in enumerate(zip(mats, labels_by_modality)):
        arr = np.asarray(lab)
        if arr.ndim != 1 or arr.shape[0] != mat.shape[0]:
            raise InputError(f"labels of modality {m} have shape {arr.shape} but it has {mat.shape[0]} items")
        labels.append(arr)
    points, truth = np.concatenate(mats), np.concatenate(labels)
    keep = _subsample(points.shape[0], max_samples, seed)
    return _kmeans_v_measure(_take(points, keep), truth[keep], np.unique(truth[keep]).size, seed, n_init)


def v_measure_modality(
    vectors_by_modality: Sequence[ArrayLike],
    *,
    seed: int = 0,
    n_init: int = 10,
    max_samples: int | None = 100_000,
    normalized: bool = False,
) -> float:
    """V-Measure of k-means clusters of the joint set against modality labels (label-free gap companion).

    As :func:`v_measure_class` with k = number of modalities and the truth = which modality each point comes
    from (Grassucci et al. 2026). Range [0, 1]: 1 = each modality forms its own cluster (a modality gap
    dominates the geometry); 0 = clusters are independent of modality (e.g. identical modalities).

    Args:
        vectors_by_modality: One ``(n_m, d)`` array per modality, at least two.
        seed, n_init, max_samples, normalized: As in :func:`v_measure_class`.

    Returns:
        V-Measure in [0, 1].
    """
    mats = _joint(vectors_by_modality, 2, normalized)
    points = np.concatenate(mats)
    truth = np.repeat(np.arange(len(mats)), [m.shape[0] for m in mats])
    keep = _subsample(points.shape[0], max_samples, seed)
    return _kmeans_v_measure(_take(points, keep), truth[keep], len(mats), seed, n_init)


def modality_separability(
    vectors_by_modality: Sequence[ArrayLike],
    *,
    seed: int = 0,
    max_samples: int = 20_000,
    test_fraction: float = 0.5,
    normalized: bool = False,
    at_least_chance: bool = True,
    raw: bool = False,
) -> float:
    """Linear separability of the modalities: held-out accuracy of a linear classifier, at least chance.

    Each modality is subsampled (seeded) to n = min(max_samples, smallest modality size) items, so the
    classes are balanced and chance is exactly 1/M for M modalities (1:5 image:caption data would otherwise
    let "always text" score 5/6). A seeded stratified split keeps ``test_fraction`` for testing; the model
    is standardisation + ``LogisticRegression`` (L2, C = 1) fitted on the rest (Liang et al. 2022, §4). The
    result is ``max(held-out accuracy, 1/M)``.

    Range [1/M, 1]: ≈ 1/M (0.5 for two modalities) = the modalities occupy the same region; 1.0 = a hyperplane
    separates them (the modality gap of CLIP-like models typically gives 1.0 even when the gap is small, so read
    it with the gap itself).

    Why at least chance: with the gap closed, every item has a twin in the other modality; the split sends one twin
    to training and the other to testing, where the classifier, having learnt the twin with the other label, is
    wrong on purpose. The held-out accuracy then falls far below chance (0.0 on real gap-closed embeddings), which
    "lower is better" would show as better than indistinguishable. A constant classifier already reaches chance
    on the balanced classes, so no linear classifier separates the modalities worse than that: below-chance
    accuracy reads as chance (the engine adds a note with the accuracy itself).

    Args:
        vectors_by_modality: One ``(n_m, d)`` array per modality, at least two.
        seed: Seed of the subsample and of the split.
        max_samples: Items per modality at most.
        test_fraction: Share of each modality's items held out for testing.
        normalized: As in :func:`v_measure_class`.
        at_least_chance: False returns the held-out accuracy itself, which can fall below chance.
        raw: Classify the vectors as given, not normalised (the raw-vector variant ``raw_separability``: Levi &
            Gilboa's separate ellipsoid shells can differ in norm as well as in direction).

    Returns:
        Separability in [1/M, 1] (the accuracy in [0, 1] with ``at_least_chance=False``).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    mats = _joint(vectors_by_modality, 2, normalized or raw)  # raw: checked float32 copies, not normalised
    if not 0.0 < test_fraction < 1.0:
        raise InputError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n = min(max_samples, min(m.shape[0] for m in mats))
    if n < 2:
        raise InputError(f"each modality needs at least 2 items to split into train and test, got {n}")
    rng = np.random.default_rng(seed)
    points = np.concatenate([m[sorted_choice(rng, m.shape[0], n)] for m in mats])
    truth = np.repeat(np.arange(len(mats)), n)
    x_train, x_test, y_train, y_test = train_test_split(
        points, truth, test_size=test_fraction, stratify=truth, random_state=seed
    )
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(x_train, y_train)
    accuracy = float(model.score(x_test, y_test))
    return separability_from_accuracy(accuracy, len(mats)) if at_least_chance else accuracy


def separability_from_accuracy(accuracy: float, n_modalities: int) -> float:
    """``max(accuracy, 1/M)``: the reported separability from the held-out accuracy (see :func:`modality_separability`)."""
    return max(float(accuracy), 1.0 / n_modalities)


# ---------------------------------------------------------------------------------------------------------
# From the passes of compute_all (the registry's value functions): the quadratic subset's unit vectors
# ---------------------------------------------------------------------------------------------------------
def v_measure_class_value(p: Passes, q: str) -> Value:
    """``v_measure_class/joint`` on the items in play; skipped without labels or with one class."""
    labels = p.es.labels
    if labels is None:
        return Skip("needs class labels")
    labels = np.asarray(labels)
    n_classes = len(np.unique(labels[np.concatenate(list(p.sub.values()))]))
    if n_classes < 2:  # one class: V-Measure is 1.0 by definition and says nothing about the embedding space
        return Skip(f"needs at least 2 classes (the data has {n_classes})")
    p.say("clustering: class V-Measure")
    return v_measure_class([p.units[m] for m in p.names], [labels[p.sub[m]] for m in p.names], seed=p.seed,
                           normalized=True)


def v_measure_modality_value(p: Passes, q: str) -> float:
    """``v_measure_modality/joint`` on the items in play."""
    p.say("clustering: modality V-Measure")
    return v_measure_modality([p.units[m] for m in p.names], seed=p.seed, normalized=True)


def modality_separability_value(p: Passes, q: str) -> float:
    """``modality_separability/joint`` on the items in play; a held-out accuracy below chance reads as chance,
    with a note giving the accuracy itself."""
    p.say("modality separability")
    return _separability_in_play(p, "modality_separability", [p.units[m] for m in p.names], raw=False)


def raw_separability_value(p: Passes, q: str) -> Value:
    """``raw_separability/joint``: :func:`modality_separability` of the raw vectors (not normalised) of the items in
    play, read like it; skipped when every modality was given already normalised (it is then
    ``modality_separability`` itself)."""
    if all(raw_norms_of(p, m).unit for m in p.names):
        return Skip("every modality's vectors are already L2-normalised: the raw variant is modality_separability")
    p.say("modality separability: raw vectors")
    mats = [unit_rows(p.vecs[m], m, rows=p.rows.get(m), normalize=False, block_size=p.block_size)
            for m in p.names]
    return _separability_in_play(p, "raw_separability", mats, raw=True)


def _separability_in_play(p: Passes, name: str, mats: list[NDArray[np.float32]], *, raw: bool) -> float:
    """The separability of ``mats`` (checked unit or raw vectors of the items in play), at least chance; a held-out
    accuracy below chance gets a note giving it."""
    accuracy = modality_separability(mats, seed=p.seed, normalized=not raw, raw=raw, at_least_chance=False)
    chance = 1.0 / len(mats)
    if accuracy < chance:
        p.note(f"{name}/joint: the held-out accuracy {accuracy:.4g} is below chance ({chance:.4g}), "
               "shown as chance: a linear classifier finds no modality signal (with a closed gap each test item's "
               "near-twin was learnt with the other label)")
    return separability_from_accuracy(accuracy, len(mats))
