"""Spectrum and effective rank of an embedding set (Roy & Vetterli 2007; Garrido et al., ICML 2023)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gapdiag.errors import InputError
from gapdiag.metrics.blocked import DEFAULT_BLOCK_SIZE, LinearStats, linear_stats
from gapdiag.metrics.linalg import eigvalsh
from gapdiag.metrics.passes import Passes
from gapdiag.metrics.validation import check_matrix

# RankMe's epsilon (Garrido et al. 2023, eq. 1 and their reference code).
RANKME_EPS = 1e-7


def singular_values_from_stats(stats: LinearStats) -> NDArray[np.float64]:
    """Singular values of the (uncentred) ``N × d`` matrix from its Gram matrix ``Σ x̂ x̂ᵀ``, descending.

    ``σ_k = sqrt(λ_k(XᵀX))`` with eigenvalues clipped at 0; only the ``min(N, d)`` largest are kept (the
    rest are zero by construction). The float64 Gram keeps σ down to about 1e-8·σ_max.
    """
    if stats.gram is None:
        raise InputError("the spectrum needs the Gram matrix: linear_stats(..., gram=True)")
    eig = eigvalsh(stats.gram)[::-1]
    return np.sqrt(np.clip(eig[: min(stats.n, eig.size)], 0.0, None))


def singular_values(
    x: ArrayLike, *, normalize: bool = True, block_size: int = DEFAULT_BLOCK_SIZE
) -> NDArray[np.float64]:
    """Singular values of the uncentred embedding matrix (rows L2-normalised by default), descending.

    Computed from the float64 Gram matrix accumulated block by block, so memory is O(d²) whatever N.

    Example:
        >>> singular_values([[3.0, 0.0], [0.0, 1.0]], normalize=False)
        array([3., 1.])
    """
    x = check_matrix(x, "x")
    return singular_values_from_stats(linear_stats(x, "x", normalize=normalize, block_size=block_size))


def _entropy_rank(p: NDArray[np.float64]) -> float:
    nz = p[p > 0]  # 0·log 0 = 0
    return float(np.exp(-np.sum(nz * np.log(nz))))


def effective_rank_from_singular_values(s: NDArray[np.float64]) -> float:
    """``exp(H(p))`` with ``p_k = σ_k / Σ σ`` (Roy & Vetterli 2007, Def. 1)."""
    return _entropy_rank(s / s.sum())


def rankme_from_singular_values(s: NDArray[np.float64]) -> float:
    """``exp(H(p))`` with ``p_k = σ_k / ‖σ‖₁ + 1e-7`` (Garrido et al., ICML 2023, eq. 1)."""
    return _entropy_rank(s / s.sum() + RANKME_EPS)


def effective_rank(x: ArrayLike, *, normalize: bool = True, block_size: int = DEFAULT_BLOCK_SIZE) -> float:
    """Effective rank (Roy & Vetterli, EUSIPCO 2007, §2): ``exp(−Σ_k p_k log p_k)``, ``p_k = σ_k / Σ_j σ_j``.

    ``σ`` are the singular values of the UNCENTRED embedding matrix (not the squared ones, i.e. not the
    covariance eigenvalues, which give a different number). In [1, min(N, d)]; k orthogonal directions with
    equal weight give exactly k. Higher = the set uses more directions; a collapsing space drops.

    Example:
        >>> round(effective_rank([[1.0, 0.0], [0.0, 1.0]]), 6)
        2.0
    """
    return effective_rank_from_singular_values(singular_values(x, normalize=normalize, block_size=block_size))


def rankme(x: ArrayLike, *, normalize: bool = True, block_size: int = DEFAULT_BLOCK_SIZE) -> float:
    """RankMe (Garrido et al., "RankMe", ICML 2023, §3, eq. 1): effective rank with ``p_k = σ_k/‖σ‖₁ + 1e-7``.

    Same uncentred singular values as :func:`effective_rank`; the epsilon makes it differ slightly (and
    counts the ``min(N, d)`` singular values, zero ones included).

    Example:
        >>> round(rankme([[1.0, 0.0], [0.0, 1.0]]), 4)
        2.0
    """
    return rankme_from_singular_values(singular_values(x, normalize=normalize, block_size=block_size))


def spectrum_of(p: Passes, q: str) -> NDArray[np.float64]:
    """The singular values of a modality or of the joint set from the linear pass's Gram matrices, once per
    qualifier; also reported in ``extras["spectrum/<q>"]``."""

    def spectrum() -> NDArray[np.float64]:
        s = singular_values_from_stats(p.stats_of(q))
        p.extras[f"spectrum/{q}"] = s.tolist()
        return s

    return p.once(("spectrum", q), spectrum)


def effective_rank_value(p: Passes, q: str) -> float:
    """``effective_rank/<m|joint>`` from the spectrum (compute_all's value function)."""
    return effective_rank_from_singular_values(spectrum_of(p, q))


def rankme_value(p: Passes, q: str) -> float:
    """``rankme/<m|joint>`` from the spectrum (compute_all's value function)."""
    return rankme_from_singular_values(spectrum_of(p, q))
