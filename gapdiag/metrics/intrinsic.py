"""Intrinsic dimension (TwoNN) and isotropy (IsoScore) of an embedding set.

* **TwoNN** (Facco et al., Sci. Rep. 2017): for each point the ratio ``μ = r₂/r₁`` of its second to first
  nearest-neighbour distance follows a Pareto law with shape ``d`` (the intrinsic dimension) when the density is
  locally uniform. gapdiag uses the unbiased maximum-likelihood estimate ``d = (N − 1) / Σ log μ_i`` (Denti et al.
  2022; scikit-dimension ``TwoNN(method="mle", discard_fraction=0)``), not the paper's linear fit. It runs on the
  *distinct* points: exact copies (equal rows) are found by comparing the rows themselves and kept once, since a
  copy carries no geometry and float32 search puts it 3e-4 to 9e-4 away instead of 0 (which made it collapse
  the estimate). Neighbours are exact (FAISS ``IndexFlatL2``); distances within float32 rounding of 0
  (near-duplicates) are measured again in float64.
* **IsoScore** (Rudman et al., Findings of ACL 2022, Algorithm 1): how uniformly the variance is spread over
  the ``n`` dimensions: PCA-rotate, take the variance vector, normalise it to norm ``√n``, measure its distance
  to ``(1, …, 1)`` and rescale to ``[0, 1]`` (1 = isotropic, 0 = all variance in one direction). Only the
  covariance's eigenvalues are needed, so it comes from the streamed statistics.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gapdiag.errors import InputError
from gapdiag.metrics.blocked import unit_rows
from gapdiag.metrics.decomposition import mean_and_cov
from gapdiag.metrics.linalg import eigvalsh
from gapdiag.metrics.passes import Passes, Value, finite_or_skip
from gapdiag.metrics.rounding import NO_VARIANCE, score_tolerance
from gapdiag.metrics.sampling import seeded_samples
from gapdiag.metrics.search_index import load_faiss
from gapdiag.metrics.validation import check_matrix

#: TwoNN on at most this many points (seeded draw): 2-NN search is O(N²·d).
TWONN_SAMPLE = 5000


#: Neighbours searched per point before the two nearest others are kept (the point itself is among them).
_SEARCHED = 3


def distance_tolerance(d: int) -> float:
    """Bound on the float32 rounding of a FAISS squared L2 distance between unit vectors in ``d`` dimensions.

    ``‖x − y‖² = ‖x‖² + ‖y‖² − 2x·y`` in float32: each of the three terms is within ``d·2⁻²⁴`` of its exact value,
    so the sum is within ``4·d·2⁻²⁴``; doubled for safety, as the cross pass does for its scores: four
    :func:`~gapdiag.metrics.rounding.score_tolerance`.
    """
    return 4.0 * score_tolerance(d)


def two_nn_distances(x: NDArray[np.float32]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Distances ``(r₁, r₂)`` of each row to its first and second nearest other row.

    Exact FAISS L2 search in float32; a row whose nearest squared distance is within
    :func:`distance_tolerance` of 0 (a near-duplicate, whose float32 distance is rounding noise) gets both
    distances again from float64 differences to every row. Rows should be distinct (:func:`distinct_rows`).
    """
    faiss = load_faiss()  # the one FAISS import: a broken install is one line naming the fix, not a traceback
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = x.shape[0]
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(x)
    k = min(_SEARCHED, n)
    d2, ids = index.search(x, k)
    # Drop each point's own entry (not always the first one when there are duplicates), keep the next two.
    own = ids == np.arange(n)[:, None]
    own[own.sum(axis=1) == 0, -1] = True  # self not returned (many duplicates): drop the last instead
    first_own = own.argmax(axis=1)
    keep = np.ones_like(own)
    keep[np.arange(n), first_own] = False
    d2_others = d2[keep].reshape(n, k - 1)
    d = np.sqrt(np.clip(d2_others.astype(np.float64), 0.0, None))
    near = np.flatnonzero(d2_others[:, 0] <= distance_tolerance(x.shape[1]))
    x64 = x.astype(np.float64) if near.size else x
    for row in near:
        d[row] = _exact_two_nearest(x64, row)
    return d[:, 0], d[:, 1]


def _exact_two_nearest(x: NDArray[np.float64], row: int) -> NDArray[np.float64]:
    """The two smallest distances from ``x[row]`` to the other rows, from differences (no cancellation)."""
    diff = x - x[row]
    dist = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    dist[row] = np.inf
    return np.sort(np.partition(dist, 1)[:2])


def distinct_rows(x: NDArray[np.float32]) -> NDArray[np.intp]:
    """Indices of the first occurrence of each distinct row, in row order (exact equality of the values).

    Example:
        >>> distinct_rows(np.array([[1, 0], [0, 1], [1, 0], [-0.0, 1]], dtype=np.float32)).tolist()
        [0, 1]
    """
    # + 0.0 turns -0.0 into 0.0 (equal values, different bytes); rows are then compared as byte strings.
    z = np.ascontiguousarray(x + x.dtype.type(0.0))
    keys = z.view(np.dtype((np.void, z.dtype.itemsize * z.shape[1]))).ravel()
    _, first = np.unique(keys, return_index=True)
    return np.sort(first)


def twonn_from_distances(r1: ArrayLike, r2: ArrayLike) -> float:
    """Unbiased TwoNN MLE ``(N − 1) / Σ log(r₂/r₁)`` over the points with ``r₁ > 0`` (NaN with fewer than 2)."""
    a, b = np.asarray(r1, dtype=np.float64), np.asarray(r2, dtype=np.float64)
    ok = a > 0
    mu = b[ok] / a[ok]
    s = float(np.log(mu).sum())
    return (mu.size - 1) / s if mu.size >= 2 and s > 0 else math.nan


def twonn_estimate(
    x: ArrayLike, *, sample: int | None = TWONN_SAMPLE, seed: int = 0, normalize: bool = True
) -> tuple[float, str | None]:
    """:func:`twonn_dimension` and, when it cannot be estimated (NaN), the reason why (else None)."""
    x = check_matrix(x, "x")
    if x.shape[0] < 3:
        return math.nan, f"needs at least 3 points, got {x.shape[0]}"
    # Draw first: only the drawn points are checked, normalised and copied (the rest is never read).
    rows = twonn_rows(x.shape[0], sample, seed)
    pts = unit_rows(x, "x", rows=rows, normalize=normalize)
    distinct = distinct_rows(pts)
    if distinct.size < 3:
        return math.nan, (f"needs at least 3 distinct points; the {pts.shape[0]} points hold {distinct.size} "
                          "distinct vector(s) (duplicate items)")
    if distinct.size < pts.shape[0]:
        pts = pts[distinct]
    value = twonn_from_distances(*two_nn_distances(pts))
    if math.isnan(value):
        return value, "every point's two nearest neighbours are equally far: no distance ratio to estimate from"
    return value, None


def twonn_dimension(
    x: ArrayLike, *, sample: int | None = TWONN_SAMPLE, seed: int = 0, normalize: bool = True
) -> float:
    """Intrinsic dimension by TwoNN (Facco et al. 2017), unbiased MLE form, on the distinct points.

    ``d̂ = (N − 1) / Σ_i log(r₂(i) / r₁(i))``, with ``r₁, r₂`` the distances to the two nearest other points and
    N the number of distinct points (exact copies are kept once: they carry no geometry).

    Args:
        x: ``(N, D)`` points (N ≥ 3).
        sample: Estimate on at most this many points (seeded draw without replacement); None = all.
        seed: Seed of the draw.
        normalize: L2-normalise rows first (what gapdiag's embeddings are compared as).

    Returns:
        The estimate; NaN when there are fewer than 3 distinct points or every distance ratio is 1
        (:func:`twonn_estimate` says which).
    """
    n = check_matrix(x, "x").shape[0]
    if n < 3:
        raise InputError(f"TwoNN needs at least 3 points, got {n}")
    return twonn_estimate(x, sample=sample, seed=seed, normalize=normalize)[0]


def twonn_rows(n: int, sample: int | None = TWONN_SAMPLE, seed: int = 0) -> NDArray[np.intp] | None:
    """The sorted rows :func:`twonn_dimension` estimates on (a seeded draw of ``sample``), or None for all."""
    if sample is None or n <= sample:
        return None
    return seeded_samples(n, sample, seed)


def isoscore_from_cov(cov: ArrayLike, *, noise: float = 0.0) -> float:
    """IsoScore from a covariance matrix (Rudman et al. 2022, Algorithm 1, steps 2–6).

    With ``λ`` the covariance eigenvalues (the variances after PCA rotation) in ``n`` dimensions:
    ``λ̂ = √n·λ/‖λ‖``, ``δ = ‖λ̂ − 1‖ / √(2(n − √n))``, ``ι = ((n − δ²(n − √n))² − n) / (n(n − 1))``.

    Args:
        cov: ``(n, n)`` covariance.
        noise: Rounding level of ``cov``: when no eigenvalue exceeds it there is no variance to spread (NaN).

    Returns:
        The score in [0, 1]; NaN for a covariance without variance.
    """
    c = np.asarray(cov, dtype=np.float64)
    n = c.shape[0]
    if c.ndim != 2 or c.shape[1] != n or n < 2:
        raise InputError(f"IsoScore needs a square covariance of at least 2 dimensions, got shape {c.shape}")
    lam = np.clip(eigvalsh((c + c.T) / 2.0), 0.0, None)
    norm = float(np.linalg.norm(lam))
    if norm == 0 or float(lam.max()) <= noise:
        return math.nan
    rn = math.sqrt(n)
    lam_hat = rn * lam / norm
    delta = float(np.linalg.norm(lam_hat - 1.0)) / math.sqrt(2.0 * (n - rn))
    return ((n - delta**2 * (n - rn)) ** 2 - n) / (n * (n - 1))


def isoscore(x: ArrayLike, *, normalize: bool = False) -> float:
    """IsoScore of a point cloud (Rudman et al. 2022): 1 = variance spread evenly, 0 = one direction.

    Uses the unbiased sample covariance (``N − 1``), as the reference implementation (``torch.cov``) does;
    the score is scale-free, so the divisor does not change it.

    Example:
        >>> pts = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
        >>> round(isoscore(pts), 6)
        1.0
    """
    pts = unit_rows(x, "x", normalize=normalize).astype(np.float64)
    if pts.shape[0] < 2:
        raise InputError(f"IsoScore needs at least 2 points, got {pts.shape[0]}")
    return isoscore_from_cov(np.cov(pts, rowvar=False))


# ---------------------------------------------------------------------------------------------------------
# From the passes of compute_all (the registry's value functions)
# ---------------------------------------------------------------------------------------------------------
def isoscore_value(p: Passes, q: str) -> Value:
    """``isoscore/<m|joint>`` from the linear pass's sums and Gram matrices; skipped without variance."""
    st = p.stats_of(q)
    _, cov = mean_and_cov(st)  # InputError without the Gram matrix
    # The largest eigenvalue against the scale of the sums that cancel in the covariance.
    noise = NO_VARIANCE * float(np.trace(st.gram)) / st.n
    return finite_or_skip(isoscore_from_cov(cov, noise=noise), "no variance: every vector is the same (up to float "
                          "rounding)")


def twonn_value(p: Passes, q: str) -> Value:
    """``twonn_dimension/<m|joint>`` on at most :data:`TWONN_SAMPLE` of the items in play (seeded)."""
    p.say(f"diagnostics: TwoNN {q}")
    points = _joint_points(p) if q == "joint" else p.units[q]
    value, why = twonn_estimate(points, seed=p.seed, normalize=False)
    return finite_or_skip(value, why or "")


def _joint_points(p: Passes) -> NDArray[np.float32]:
    """The points TwoNN draws from the joint set (all modalities stacked), gathered without stacking them all."""
    sizes = [p.units[m].shape[0] for m in p.names]
    rows = twonn_rows(sum(sizes), seed=p.seed)
    if rows is None:
        return np.concatenate([p.units[m] for m in p.names])
    starts = np.cumsum([0, *sizes])
    return np.concatenate([p.units[m][rows[(rows >= starts[i]) & (rows < starts[i + 1])] - starts[i]]
                           for i, m in enumerate(p.names)])
