"""The cone of each modality: its angular value (Liang et al. 2022, §3; Grassucci et al. 2026) and each item's
conformity, compared between modalities by ``conformity_w1`` (Levi & Gilboa, ICML 2025).

Both come from the linear pass's sum ``S = Σ_j x̂_j`` of a modality: the angular value from ``‖S‖²``, an item's
conformity from one more dot product, ``x̂_i · S`` (the mean of the conformities is the angular value). The paper's
estimate of conformity, the cosine of the raw vector to the raw modality mean, is read beside it
(``conformity_estimate_r``), and the most and least conforming items are listed.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gapdiag.errors import InputError
from gapdiag.metrics.blocked import DEFAULT_BLOCK_SIZE, LinearStats, iter_unit_blocks, linear_stats
from gapdiag.metrics.passes import Passes, Skip, Value, finite_or_skip
from gapdiag.metrics.raw import RawNorms, already_unit_reason, raw_norms, raw_norms_of
from gapdiag.metrics.validation import check_matrix

#: Items listed at each end of a modality's conformity (``extras["conformity_items/<m>"]``).
LISTED_ITEMS = 5


def angular_value_from_stats(stats: LinearStats) -> float:
    """``(‖Σ_i x̂_i‖² − N) / (N(N − 1))`` from a linear pass (``Σ_i ‖x̂_i‖² = N`` for unit rows)."""
    if stats.n < 2:
        raise InputError(f"angular value needs at least 2 items, got {stats.n}")
    return (float(stats.total @ stats.total) - stats.n) / (stats.n * (stats.n - 1))


def angular_value(x: ArrayLike, *, block_size: int = DEFAULT_BLOCK_SIZE) -> float:
    """Mean pairwise cosine within one modality, diagonal excluded (Grassucci et al. 2026, §3.1).

    ``AV = (1/(N(N−1))) Σ_{i≠j} x̂_i·x̂_j = (‖Σ_i x̂_i‖² − N) / (N(N − 1))``: the closed form needs one O(N·d)
    pass, no N×N matrix. It is a cosine, not an angle, in [−1/(N−1), 1]. Healthy spaces sit near 0.00x; a
    space collapsing into a narrow cone rises toward 1 (Grassucci et al. report 0.001 -> 0.122). Always on
    normalised vectors.

    Args:
        x: ``(N, d)`` embeddings of one modality, N >= 2.
        block_size: Rows read at a time.

    Example:
        >>> round(angular_value([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), 6)
        0.471405
    """
    x = check_matrix(x, "x")
    return angular_value_from_stats(linear_stats(x, "x", gram=False, block_size=block_size))


def angular_value_value(p: Passes, m: str) -> float:
    """``angular_value/<m>`` from the linear pass's sums (compute_all's value function)."""
    return angular_value_from_stats(p.stats[m])


# ---------------------------------------------------------------------------------------------------------
# Conformity (Levi & Gilboa, "The Double-Ellipsoid Geometry of CLIP", ICML 2025)
# ---------------------------------------------------------------------------------------------------------
def conformity_from_dots(dots: ArrayLike, n: int) -> NDArray[np.float64]:
    """Per-item conformity from ``x̂_i · S`` (``S`` the sum of the ``n`` unit vectors of the modality):
    ``c_i = (x̂_i · S − 1) / (n − 1)``, since ``x̂_i · x̂_i = 1`` is the one term of ``x̂_i · S`` that is no other item."""
    if n < 2:
        raise InputError(f"conformity needs at least 2 items (the mean over the other items), got {n}")
    return (np.asarray(dots, dtype=np.float64) - 1.0) / (n - 1)


def conformity(x: ArrayLike, *, block_size: int = DEFAULT_BLOCK_SIZE) -> NDArray[np.float64]:
    """Conformity of every item of one modality: its mean cosine to the other items (Levi & Gilboa, ICML 2025).

    ``c_i = (1/(N−1)) Σ_{j≠i} x̂_i·x̂_j = (x̂_i·S − 1)/(N − 1)`` with ``S = Σ_j x̂_j``: two streamed O(N·d) passes
    (the sum, then one dot per item), no N×N matrix. In ``[−1, 1]``; high = an item near the modality's common
    direction ("conforming"), low = an outlier. Its mean over the items is the angular value.

    Args:
        x: ``(N, d)`` embeddings of one modality, N >= 2.
        block_size: Rows read at a time.

    Example:
        >>> conformity([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]).round(6).tolist()
        [-0.5, 0.0, -0.5]
    """
    x = check_matrix(x, "x")
    total = linear_stats(x, "x", gram=False, block_size=block_size).total
    dots = [block.astype(np.float64) @ total for _, block in iter_unit_blocks(x, "x", block_size=block_size)]
    return conformity_from_dots(np.concatenate(dots), x.shape[0])


def wasserstein_1d(u: ArrayLike, v: ArrayLike) -> float:
    """Wasserstein-1 distance ``∫ |F_u(t) − F_v(t)| dt`` between the empirical distributions of two samples.

    Each value weighs ``1/size`` of its sample. Over the sorted union of the values, the gaps between consecutive
    values times the difference of the two CDFs there (as ``scipy.stats.wasserstein_distance``), O(n log n).

    Example:
        >>> wasserstein_1d([0.0, 1.0], [0.5])
        0.5
    """
    a, b = np.sort(np.asarray(u, dtype=np.float64).ravel()), np.sort(np.asarray(v, dtype=np.float64).ravel())
    if a.size == 0 or b.size == 0:
        raise InputError(f"W1 compares two non-empty samples, got sizes {a.size} and {b.size} (an empty one)")
    values = np.sort(np.concatenate([a, b]))
    cdf_a = np.searchsorted(a, values[:-1], side="right") / a.size
    cdf_b = np.searchsorted(b, values[:-1], side="right") / b.size
    return float(np.sum(np.abs(cdf_a - cdf_b) * np.diff(values)))


def conformity_w1(x: ArrayLike, y: ArrayLike, *, block_size: int = DEFAULT_BLOCK_SIZE) -> float:
    """W1 distance between the conformity distributions of two modalities (Levi & Gilboa, ICML 2025).

    ``W1(C_x, C_y)`` with ``C_x = {c_i}`` the conformities of the items of ``x`` within ``x`` (:func:`conformity`)
    and likewise for ``y``; the numbers of items may differ (1:N data). In ``[0, 2]``; 0 = images and texts are
    as conforming as each other. Levi & Gilboa find that CLIP's modality gap optimises the match of the two
    distributions (moving the modalities off that offset raises this distance), so lower is better in that sense;
    read it beside the gap, not as a quality score alone.

    Example:
        >>> conformity_w1([[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]])  # conformities 0, 0 vs 1, 1
        1.0
    """
    return wasserstein_1d(conformity(x, block_size=block_size), conformity(y, block_size=block_size))


def conformity_w1_value(p: Passes, pair: str) -> Value:
    """``conformity_w1/<a-b>`` from the linear pass's sums and one more read of every item (compute_all's value
    function); each modality's conformities are computed once, summarised in ``extras["conformity/<m>"]``."""
    per_modality = [conformity_of(p, m) for m in p.pair(pair)]
    if any(c is None for c in per_modality):
        return Skip("needs at least 2 items per modality (conformity is a mean over the other items)")
    return wasserstein_1d(*per_modality)


def conformity_of(p: Passes, m: str) -> NDArray[np.float64] | None:
    """The conformities of modality ``m``'s items (None with fewer than 2), once; a summary goes to
    ``extras["conformity/<m>"]`` and the :data:`LISTED_ITEMS` most and least conforming items, by their rows, to
    ``extras["conformity_items/<m>"]`` (``{"most": [...], "least": [...]}``, ties to the lower row)."""

    def of_modality() -> NDArray[np.float64] | None:
        stats = p.stats[m]
        if stats.n < 2:
            return None
        p.say(f"conformity: {m}")
        dots = [block.astype(np.float64) @ stats.total for _, block in p.unit_blocks(m)]
        c = conformity_from_dots(np.concatenate(dots), stats.n)
        p.extras[f"conformity/{m}"] = {"mean": float(c.mean()), "std": float(c.std()), "min": float(c.min()),
                                       "median": float(np.median(c)), "max": float(c.max())}
        p.extras[f"conformity_items/{m}"] = {
            "most": [{"item": int(i), "conformity": float(c[i])} for i in np.argsort(-c, kind="stable")[:LISTED_ITEMS]],
            "least": [{"item": int(i), "conformity": float(c[i])} for i in np.argsort(c, kind="stable")[:LISTED_ITEMS]],
        }
        return c

    return p.once(("conformity", m), of_modality)


# ---------------------------------------------------------------------------------------------------------
# The mean-vector estimate of conformity (Levi & Gilboa, ICML 2025), on the raw vectors
# ---------------------------------------------------------------------------------------------------------
def estimate_from_blocks(blocks: Iterable[NDArray[np.floating]], raw: RawNorms) -> NDArray[np.float64] | None:
    """``cos(z_i, μ)`` of consecutive raw blocks with the raw mean ``μ`` (∝ ``raw.total``); None when ``μ = 0``."""
    scale = float(np.linalg.norm(raw.total))
    if scale == 0.0:
        return None
    dots = np.concatenate([np.asarray(b, dtype=np.float64) @ raw.total for b in blocks])
    return dots / (raw.norms * scale)


def conformity_estimate(x: ArrayLike, *, block_size: int = DEFAULT_BLOCK_SIZE) -> NDArray[np.float64]:
    """Levi & Gilboa's estimate of each item's conformity: the cosine of its raw vector to the raw modality mean.

    ``e_i = cos(z_i, μ) = z_i·μ / (‖z_i‖ ‖μ‖)`` with ``μ = (1/N) Σ_j z_j`` the mean of the **raw** (not normalised)
    vectors (Levi & Gilboa, "The Double-Ellipsoid Geometry of CLIP", ICML 2025, who show ``e_i`` tracks the exact
    conformity ``c_i`` closely). On unit vectors (or vectors of equal norms) it is exact up to an affine map:
    ``c_i = (N‖m̂‖ e_i − 1)/(N − 1)``, ``m̂`` the mean unit vector, so only unequal norms make it an estimate.
    Two streamed O(N·d) passes.

    Raises:
        InputError: The raw mean is the zero vector (no direction to compare with).

    Example:
        >>> conformity_estimate([[2.0, 0.0], [0.0, 1.0]]).round(6).tolist()
        [0.894427, 0.447214]
    """
    x = check_matrix(x, "x")
    raw = raw_norms(x, block_size=block_size)
    e = estimate_from_blocks((b for _, b in iter_unit_blocks(x, "x", block_size=block_size, normalize=False)), raw)
    if e is None:
        raise InputError("the conformity estimate needs a non-zero mean of the raw vectors; the mean is 0")
    return e


def pearson_r(a: ArrayLike, b: ArrayLike) -> float:
    """Pearson's correlation ``Σ(a−ā)(b−b̄) / sqrt(Σ(a−ā)² Σ(b−b̄)²)`` (as ``scipy.stats.pearsonr``); NaN when
    either sample is constant (no correlation is defined)."""
    u, v = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    u, v = u - u.mean(), v - v.mean()
    denominator = float(np.sqrt((u @ u) * (v @ v)))
    return float(u @ v) / denominator if denominator > 0 else float("nan")


def conformity_estimate_r_value(p: Passes, m: str) -> Value:
    """``conformity_estimate_r/<m>``: Pearson's r of the exact conformities of every item with their mean-vector
    estimates (compute_all's value function). Skipped when the norms are all equal (given normalised, or one
    sphere): the estimate is then exact by construction (r = 1), no finding. Each listed item of
    ``extras["conformity_items/<m>"]`` gets its ``estimate``."""
    exact = conformity_of(p, m)
    if exact is None:
        return Skip("needs at least 2 items (conformity is a mean over the other items)")
    raw = raw_norms_of(p, m)
    estimate = p.once(("conformity_estimate", m),
                      lambda: estimate_from_blocks((b for _, b in p.raw_blocks(m)), raw))
    if estimate is None:
        return Skip("the mean of the raw vectors is the zero vector: no direction to estimate conformity with")
    for entry in (e for end in p.extras[f"conformity_items/{m}"].values() for e in end):
        entry["estimate"] = float(estimate[entry["item"]])
    if raw.unit:
        return Skip(already_unit_reason(m) + " (the estimate is then exact by construction, r = 1)")
    if raw.equal:
        return Skip("every raw norm is equal: the estimate is then exact by construction (r = 1), no finding")
    return finite_or_skip(pearson_r(exact, estimate), "the conformities (or their estimates) are all equal")
