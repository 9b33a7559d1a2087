"""Uniformity of embeddings on the sphere: Wang & Isola's log-potential and Fang et al.'s −W₂.

Two different quantities share the name "uniformity" in the literature; gapdiag names them apart:

* ``uniformity_wang_isola``: ``log mean_{i<j} exp(−t‖ẑ_i − ẑ_j‖²)``, t = 2 (Wang & Isola, ICML 2020, §4.1),
  within one modality or over the joint set; lower = more uniform. ``uniformity_cross``: the same over
  image×text pairs of different samples (Fahim et al., "It's not a modality gap", 2024, §4).
* ``uniformity_w2``: ``−W₂`` between a Gaussian fitted to the joint set and the uniform distribution on the
  sphere (Fang et al., ICLR 2024, §3); higher (closer to 0) = more uniform.

The pair sums run over ``block_size`` tiles with a streamed, exact log-sum-exp (see :mod:`.blocked`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from gapdiag.errors import InputError
from gapdiag.metrics.blocked import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_T,
    LinearStats,
    joint_stats,
    linear_stats,
    log_mean_exp,
    unit_rows,
    within_pass,
)
from gapdiag.metrics.cross import cross_pass
from gapdiag.metrics.linalg import eigvalsh
from gapdiag.metrics.passes import Passes, Value, finite_or_skip
from gapdiag.metrics.validation import check_matrix, check_same_dim, default_sample_index


def uniformity_wang_isola(
    x: ArrayLike, *, t: float = DEFAULT_T, block_size: int = DEFAULT_BLOCK_SIZE
) -> float:
    """Uniformity ``log (2/(N(N−1))) Σ_{i<j} exp(−t‖x̂_i − x̂_j‖²)`` (Wang & Isola, ICML 2020, §4.1, eq. 5).

    Over unordered pairs of distinct items, on L2-normalised rows, t = 2 by default. In [−4t, 0]: 0 when
    all points coincide; about −2t for points spread uniformly on a high-dimensional sphere. Lower = more
    uniform. For the joint set pass the stacked modalities, ``np.vstack([x, y])``.

    Args:
        x: ``(N, d)`` embeddings, N >= 2.
        t: Temperature of the Gaussian potential.
        block_size: Tile side of the blocked pair pass (memory O(N·d + block²)).

    Example:
        >>> uniformity_wang_isola([[1.0, 0.0], [-1.0, 0.0]])  # distance² 4 -> log exp(-8)
        -8.0
    """
    z = unit_rows(check_matrix(x, "x"), "x", block_size=block_size)
    if z.shape[0] < 2:
        raise InputError(f"uniformity needs at least 2 items, got {z.shape[0]}")
    return log_mean_exp(within_pass(z, t=t, block_size=block_size), z.shape[0] * (z.shape[0] - 1) // 2)


def uniformity_cross(
    x: ArrayLike,
    y: ArrayLike,
    x_sample: ArrayLike | None = None,
    y_sample: ArrayLike | None = None,
    *,
    t: float = DEFAULT_T,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> float:
    """Cross-modal uniformity ``log mean_{s(i) ≠ s(j)} exp(−t‖x̂_i − ŷ_j‖²)`` (Fahim et al. 2024, §4).

    Over image×text pairs of different samples (the off-diagonal of the 1:1 case). In [−4t, 0]; lower =
    non-matching items of the two modalities are spread apart.

    Example:
        >>> round(uniformity_cross([[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]), 6)  # distance² 2
        -4.0
    """
    x = check_matrix(x, "x")
    y = check_matrix(y, "y")
    check_same_dim(x, y, "x", "y")
    sx, sy = default_sample_index(x, y, x_sample, y_sample, "x", "y")
    res = cross_pass(
        unit_rows(x, "x", block_size=block_size),
        unit_rows(y, "y", block_size=block_size),
        sx,
        sy,
        t=t,
        retrieval=False,
        block_size=block_size,
    )
    if res.n_nonmatching == 0:
        raise InputError(
            "no non-matching pairs: every pair belongs to the same sample; give at least two samples"
        )
    return log_mean_exp(res.lse_nonmatching, res.n_nonmatching)


def w2_from_stats(stats: LinearStats) -> float:
    """``−W₂`` from the count, sum and Gram matrix of the joint set (see :func:`uniformity_w2`)."""
    if stats.gram is None:
        raise InputError("-W2 needs the Gram matrix: linear_stats(..., gram=True)")
    d = stats.total.size
    mu = stats.total / stats.n
    cov = stats.gram / stats.n - np.outer(mu, mu)
    eig = np.clip(eigvalsh(cov), 0.0, None)
    w2_sq = float(mu @ mu) + 1.0 + float(eig.sum()) - 2.0 / math.sqrt(d) * float(np.sqrt(eig).sum())
    return -math.sqrt(max(w2_sq, 0.0))


def uniformity_w2(*sets: ArrayLike, block_size: int = DEFAULT_BLOCK_SIZE) -> float:
    """Uniformity as ``−W₂`` (Fang et al., "Rethinking the uniformity metric", ICLR 2024, §3, Thm. 1).

    Fit ``N(μ, Σ)`` to the joint set of L2-normalised rows of all ``sets`` (Σ biased, divided by the count)
    and compare it with ``N(0, I/d)``, the limit of the uniform distribution on ``S^{d−1}``:
    ``W₂ = sqrt(‖μ‖² + 1 + tr Σ − (2/√d)·tr Σ^{1/2})``, with ``Σ^{1/2}`` from ``eigh`` (eigenvalues clipped at 0).
    Returns −W₂ (≤ 0; higher = more uniform), what Grassucci et al.'s code calls "uniformity". O(N·d + d³).

    Args:
        *sets: One or more ``(N_m, d)`` embedding arrays, stacked into the joint set.
        block_size: Rows read at a time.

    Example:
        >>> abs(uniformity_w2([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])) < 1e-12  # μ = 0, Σ = I/d
        True
    """
    if not sets:
        raise InputError("uniformity_w2 needs at least one embedding set")
    arrays = [check_matrix(s, f"set {k}") for k, s in enumerate(sets)]
    for k, a in enumerate(arrays[1:], start=1):
        check_same_dim(arrays[0], a, "set 0", f"set {k}")
    stats = [linear_stats(a, f"set {k}", block_size=block_size) for k, a in enumerate(arrays)]
    return w2_from_stats(joint_stats(stats))


def joint_uniformity(
    within_lse: Sequence[float], counts: Sequence[int], cross_lse_all: Sequence[float]
) -> float:
    """Wang & Isola uniformity of the joint set ``[X̂; Ŷ; ...]`` from the per-part streamed sums.

    The unordered pairs of the union are the within pairs of each modality plus every cross pair (true
    pairs included), so ``log Σ`` combines the parts and the count is ``C(Σ N_m, 2)``.
    """
    total = sum(counts)
    lse = float(np.logaddexp.reduce(np.array([*within_lse, *cross_lse_all], dtype=np.float64)))
    return log_mean_exp(lse, total * (total - 1) // 2)


#: Why a uniformity has no value: a modality with one item has no pair (a NaN is never reported).
NO_PAIRS = "no pairs to average over (too few items)"


def uniformity_wang_isola_value(p: Passes, q: str) -> Value:
    """``uniformity_wang_isola/<m>`` from the within-set pass; ``/joint`` from every within and cross pass."""
    if q == "joint":
        return joint_uniformity([p.within[m] for m in p.names], [p.units[m].shape[0] for m in p.names],
                                [p.cross[pair].lse_all for pair in p.pair_names()])
    n = p.units[q].shape[0]
    return finite_or_skip(log_mean_exp(p.within[q], n * (n - 1) // 2), NO_PAIRS)


def uniformity_cross_value(p: Passes, pair: str) -> Value:
    """``uniformity_cross/<a-b>`` from the cross pass's terms over pairs of different samples."""
    res = p.cross[pair]
    return finite_or_skip(log_mean_exp(res.lse_nonmatching, res.n_nonmatching), NO_PAIRS)


def uniformity_w2_value(p: Passes, q: str) -> float:
    """``uniformity_w2/joint`` from the joint set's linear statistics."""
    return w2_from_stats(p.stats_of(q))
