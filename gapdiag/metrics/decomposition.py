"""Decomposition of the modality gap: centroid vs shape, the dimensions that carry it, and a two-sample test.

The single centroid number (``modality_gap``) hides *where* the gap lives. Three complementary views:

* **Gaussian W₂ split** (Schrodi et al., ICLR 2025, "Two effects, one trigger", §4): for Gaussian fits
  ``N(μx, Σx)`` and ``N(μy, Σy)`` of the normalised modalities,
  ``W₂² = ‖Δ‖² + tr(Σx + Σy − 2 (Σx^½ Σy Σx^½)^½)``, ``Δ = μx − μy``. The first term is the centroid gap
  squared, the second (Bures) term the difference in shape of the centred clouds.
* **Per-dimension contributions** ``c_j = Δ_j² / ‖Δ‖²`` (in the model's basis, and in the PCA basis of the joint
  set), and the number of dimensions needed to reach 50 % / 90 % of ``‖Δ‖²``.
* **MMD² of the centred modalities** (Gretton et al., JMLR 2012, eq. 3, unbiased), RBF kernel at the median
  heuristic, with a seeded permutation p-value: is anything left once the centroids are aligned?

Everything but the MMD comes from the streamed means and Gram matrices (:class:`LinearStats`), O(d³).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gapdiag.errors import InputError
from gapdiag.metrics.blocked import LinearStats, joint_stats, linear_stats, unit_rows
from gapdiag.metrics.linalg import eigh, eigvalsh
from gapdiag.metrics.passes import Passes, Skip, Value, finite_or_skip
from gapdiag.metrics.sampling import sorted_choice
from gapdiag.metrics.validation import check_matrix, check_same_dim

#: Dimensions listed in the report's top-dimension list.
TOP_DIMS = 10
#: Default sample for the MMD test: at most this many items per modality, and this many permutations.
MMD_SAMPLE = 1000
MMD_PERMUTATIONS = 200


def mean_and_cov(stats: LinearStats) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Mean and biased covariance (divided by ``n``) from a count, sum and Gram matrix."""
    if stats.gram is None:
        raise InputError("the gap decomposition needs Gram matrices: linear_stats(..., gram=True)")
    mu = stats.total / stats.n
    return mu, stats.gram / stats.n - np.outer(mu, mu)


def _psd_sqrt(cov: NDArray[np.float64]) -> NDArray[np.float64]:
    w, v = eigh((cov + cov.T) / 2.0)
    # Rounding makes tiny eigenvalues of a rank-deficient covariance negative; they are 0.
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def bures_term(cov_x: NDArray[np.float64], cov_y: NDArray[np.float64]) -> float:
    """``tr(Σx + Σy − 2 (Σx^½ Σy Σx^½)^½)`` (the squared Bures distance), ≥ 0; square roots via ``eigh``."""
    sx = _psd_sqrt(cov_x)
    m = sx @ cov_y @ sx
    cross = np.sqrt(np.clip(eigvalsh((m + m.T) / 2.0), 0.0, None)).sum()
    return max(float(np.trace(cov_x) + np.trace(cov_y) - 2.0 * cross), 0.0)


def dims_for_share(contributions: NDArray[np.float64], share: float) -> int:
    """Fewest dimensions whose largest contributions sum to at least ``share`` of the total (1..d)."""
    c = np.sort(np.asarray(contributions, dtype=np.float64))[::-1]
    total = c.sum()
    if total <= 0:
        return 0
    # A relative slack so that a share reached exactly (e.g. one dimension carrying 50 %) is not rounded past.
    return int(np.searchsorted(np.cumsum(c), share * total * (1 - 1e-12)) + 1)


def contributions(
    delta: NDArray[np.float64], basis: NDArray[np.float64] | None = None
) -> NDArray[np.float64]:
    """``c_j = (v_jᵀΔ)² / ‖Δ‖²`` for the columns ``v_j`` of an orthonormal ``basis`` (None = the model's axes)."""
    proj = delta if basis is None else basis.T @ delta
    sq = proj**2
    total = float(delta @ delta)
    return sq / total if total > 0 else np.zeros_like(sq)


def gap_decomposition_from_stats(sx: LinearStats, sy: LinearStats, *, top: int = TOP_DIMS) -> dict[str, Any]:
    """The W₂ split and per-dimension contributions from two modalities' streamed statistics.

    Returns:
        ``centroid`` (‖Δ‖²), ``bures``, ``w2_squared`` (their sum), ``centroid_share`` (‖Δ‖²/W₂², NaN when W₂ = 0),
        ``dims_50`` / ``dims_90`` and ``dims_50_pca`` / ``dims_90_pca`` (dimensions carrying 50 / 90 % of ‖Δ‖²,
        model basis / PCA basis of the joint set), ``contributions`` and ``contributions_pca`` (lists, PCA
        components in decreasing variance), ``top_dims`` (the ``top`` largest model-basis contributions with the
        signed Δ_j: positive = the first modality lies further along that axis).
    """
    mx, cx = mean_and_cov(sx)
    my, cy = mean_and_cov(sy)
    delta = mx - my
    centroid = float(delta @ delta)
    bures = bures_term(cx, cy)
    w2 = centroid + bures
    _, cj = mean_and_cov(joint_stats([sx, sy]))
    w, v = eigh(cj)
    basis = v[:, np.argsort(w)[::-1]]  # principal directions of the joint set, largest variance first
    c = contributions(delta)
    cp = contributions(delta, basis)
    order = np.argsort(-c, kind="stable")[:top]
    return {
        "centroid": centroid,
        "bures": bures,
        "w2_squared": w2,
        "centroid_share": centroid / w2 if w2 > 0 else math.nan,
        "dims_50": dims_for_share(c, 0.5),
        "dims_90": dims_for_share(c, 0.9),
        "dims_50_pca": dims_for_share(cp, 0.5),
        "dims_90_pca": dims_for_share(cp, 0.9),
        "contributions": c.tolist(),
        "contributions_pca": cp.tolist(),
        "top_dims": [{"dim": int(j), "share": float(c[j]), "delta": float(delta[j])} for j in order],
    }


def gap_decomposition(x: ArrayLike, y: ArrayLike, *, top: int = TOP_DIMS) -> dict[str, Any]:
    """Gap decomposition of two embedding sets (L2-normalised row-wise); see :func:`gap_decomposition_from_stats`.

    ``W₂² = ‖μx − μy‖² + tr(Σx + Σy − 2(Σx^½ Σy Σx^½)^½)`` for Gaussian fits with biased covariances
    (Schrodi et al., ICLR 2025; Dowson & Landau 1982 for the Gaussian W₂).

    Example:
        >>> d = gap_decomposition([[1.0, 0.0], [0.0, 1.0]], [[-1.0, 0.0], [0.0, -1.0]])
        >>> round(d["centroid"], 6), round(d["bures"], 6), d["dims_50"]
        (2.0, 0.0, 1)
    """

    xa, ya = check_matrix(x, "x"), check_matrix(y, "y")
    check_same_dim(xa, ya, "x", "y")
    return gap_decomposition_from_stats(linear_stats(xa, "x"), linear_stats(ya, "y"), top=top)


# ---------------------------------------------------------------------------------------------------------
# Two-sample test of the centred modalities
# ---------------------------------------------------------------------------------------------------------
def _sq_dists(z: NDArray[np.float64]) -> NDArray[np.float64]:
    sq = np.einsum("ij,ij->i", z, z)
    return np.clip(sq[:, None] + sq[None, :] - 2.0 * (z @ z.T), 0.0, None)


def mmd_test(
    x: ArrayLike,
    y: ArrayLike,
    *,
    permutations: int = MMD_PERMUTATIONS,
    sample: int | None = MMD_SAMPLE,
    seed: int = 0,
    centre: bool = True,
    normalize: bool = True,
) -> tuple[float, float]:
    """Unbiased MMD² between two sets and its permutation p-value (Gretton et al., JMLR 2012, eq. 3, §5).

    ``MMD²_u = Σ_{i≠j} k(xi,xj)/(m(m−1)) + Σ_{i≠j} k(yi,yj)/(n(n−1)) − 2 Σ_{i,j} k(xi,yj)/(mn)`` with the RBF
    kernel ``k(a,b) = exp(−‖a−b‖²/(2σ²))``, ``σ²`` = half the median squared distance of the pooled set
    (median heuristic). ``centre=True`` subtracts each set's own mean first, so the test asks whether the
    modalities differ in shape once the centroid gap is removed. p = (1 + #{permuted ≥ observed}) / (1 + P),
    the pooled items relabelled ``permutations`` times with a seeded generator.

    Args:
        x, y: ``(m, d)`` and ``(n, d)`` vectors (m, n ≥ 2).
        permutations: Relabelings for the p-value (0 = no test; p is NaN).
        sample: At most this many items per set, drawn without replacement (seeded); None = all. Memory and time
            grow with ``(m + n)²``.
        seed: Seed of the sample draw and of the permutations.
        centre: Subtract each set's mean.
        normalize: L2-normalise rows first.

    Returns:
        ``(mmd2, p_value)``.
    """
    x, y = check_matrix(x, "x"), check_matrix(y, "y")
    check_same_dim(x, y, "x", "y")
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise InputError(f"the MMD test needs at least 2 items per set, got {x.shape[0]} and {y.shape[0]}")
    rng = np.random.default_rng(seed)
    # Draw first: only the drawn items are checked, normalised and converted (the rest is never read).
    rows_x = rows_y = None
    if sample is not None:
        rows_x = sorted_choice(rng, x.shape[0], sample)
        rows_y = sorted_choice(rng, y.shape[0], sample)
    xa = unit_rows(x, "x", rows=rows_x, normalize=normalize).astype(np.float64)
    ya = unit_rows(y, "y", rows=rows_y, normalize=normalize).astype(np.float64)
    if centre:
        xa, ya = xa - xa.mean(axis=0), ya - ya.mean(axis=0)
    m, n = xa.shape[0], ya.shape[0]
    d2 = _sq_dists(np.vstack([xa, ya]))
    off = d2[np.triu_indices(m + n, 1)]
    sigma2 = float(np.median(off)) / 2.0
    if sigma2 <= 0:  # all points coincide: nothing to tell apart
        return 0.0, 1.0
    k = np.exp(-d2 / (2.0 * sigma2))
    labels = np.zeros((m + n, 1 + permutations))
    labels[:m, 0] = 1.0
    base = labels[:, 0].copy()
    for p in range(permutations):
        labels[:, 1 + p] = rng.permutation(base)
    stats = _mmd2_for_labels(k, labels, m, n)
    observed = float(stats[0])
    if permutations == 0:
        return observed, math.nan
    return observed, float((1 + np.count_nonzero(stats[1:] >= observed)) / (1 + permutations))


def _mmd2_for_labels(k: NDArray[np.float64], a: NDArray[np.float64], m: int, n: int) -> NDArray[np.float64]:
    """Unbiased MMD² for every column of ``a`` (1 = first set) at once: one ``K @ A`` product for all.

    With ``b = 1 − a`` and ``k_ii = 1``: ``Σ_{i≠j∈X} k = aᵀKa − m``, ``Σ_{i≠j∈Y} k = bᵀKb − n``, cross = ``aᵀKb``.
    """
    b = 1.0 - a
    ka = k @ a
    kb = k.sum(axis=1, keepdims=True) - ka
    xx = (a * ka).sum(axis=0) - m
    yy = (b * kb).sum(axis=0) - n
    xy = (a * kb).sum(axis=0)
    return xx / (m * (m - 1)) + yy / (n * (n - 1)) - 2.0 * xy / (m * n)


# ---------------------------------------------------------------------------------------------------------
# From the passes of compute_all (the registry's value functions)
# ---------------------------------------------------------------------------------------------------------
#: The parts of the decomposition reported in ``extras["gap_decomposition/<a-b>"]``.
_EXTRAS = ("centroid", "bures", "w2_squared", "top_dims", "contributions", "contributions_pca")


def decomposition_value(p: Passes, pair: str, *, key: str) -> Value:
    """One number (``key`` of :func:`gap_decomposition_from_stats`) of a pair's gap decomposition, from the linear
    pass's Gram matrices; the decomposition is computed once per pair and its lists go to
    ``extras["gap_decomposition/<a-b>"]``. Skipped where the gap has no direction (coinciding centroids) or the
    share no whole (coinciding Gaussian fits)."""

    def of_pair() -> dict[str, Any]:
        a, b = p.pair(pair)
        dec = gap_decomposition_from_stats(p.stats[a], p.stats[b])
        p.extras[f"gap_decomposition/{pair}"] = {k: dec[k] for k in _EXTRAS}
        return dec

    dec = p.once(("gap_decomposition", pair), of_pair)
    value = float(dec[key])
    if key.startswith("dims") and dec["centroid"] == 0:  # Δ = 0: no share of it to carry
        value = math.nan
    return finite_or_skip(value, "the two modalities' Gaussian fits coincide (W2 = 0)" if key == "centroid_share"
                          else "the two centroids coincide: the gap has no direction")


def mmd_value(p: Passes, pair: str, *, part: int) -> Value:
    """The MMD test of a pair's centred modalities on the items in play, run once per pair (``part`` 0: MMD²,
    1: its p-value); skipped with fewer than 2 items in a modality."""

    def of_pair() -> tuple[float, float] | None:
        a, b = p.pair(pair)
        if min(p.units[a].shape[0], p.units[b].shape[0]) < 2:
            return None
        p.say(f"diagnostics: MMD test {pair}")
        return mmd_test(p.units[a], p.units[b], seed=p.seed, normalize=False)

    test = p.once(("mmd", pair), of_pair)
    return Skip("needs at least 2 items per modality") if test is None else test[part]
