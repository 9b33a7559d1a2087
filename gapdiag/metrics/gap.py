"""The modality gap and the pair-wise cosine metrics (Liang et al. 2022; Grassucci et al. 2026; Wang & Isola 2020).

All functions take raw embeddings and L2-normalise them (block by block) unless ``normalize=False``. Rows
of ``x`` and ``y`` are paired 1:1 by default; for 1:N data (one image, five captions) pass the sample id of
every item: every item of the many-side is then paired with the single item of its sample on the other side.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gapdiag.errors import InputError
from gapdiag.metrics.blocked import DEFAULT_BLOCK_SIZE, LinearStats, linear_stats, paired_dot_sum
from gapdiag.metrics.passes import Passes
from gapdiag.metrics.validation import check_matrix, check_same_dim, default_sample_index, true_pair_items


def gap_vector_from_stats(sx: LinearStats, sy: LinearStats) -> NDArray[np.float64]:
    """``Δ = mean(x̂) − mean(ŷ)`` from two linear passes (centroids are not renormalised)."""
    return sx.total / sx.n - sy.total / sy.n


def gap_vector(
    x: ArrayLike, y: ArrayLike, *, normalize: bool = True, block_size: int = DEFAULT_BLOCK_SIZE
) -> NDArray[np.float64]:
    """Gap vector ``Δ = (1/N_x) Σ_i x̂_i − (1/N_y) Σ_j ŷ_j`` (Liang et al., "Mind the Gap", NeurIPS 2022, §4.1).

    The difference of the two modality centroids on the unit sphere; the centroids are NOT renormalised.
    Pairing plays no role, so ``x`` and ``y`` may hold different numbers of items (1:N data).

    Args:
        x: ``(N_x, d)`` embeddings of the first modality (e.g. images).
        y: ``(N_y, d)`` embeddings of the second modality (e.g. texts).
        normalize: L2-normalise every row first.
        block_size: Rows read at a time.

    Returns:
        ``(d,)`` float64 vector pointing from the second centroid to the first.

    Example:
        >>> gap_vector([[1.0, 0.0]], [[0.0, 2.0]])
        array([ 1., -1.])
    """
    x = check_matrix(x, "x")
    y = check_matrix(y, "y")
    check_same_dim(x, y, "x", "y")
    sx = linear_stats(x, "x", gram=False, normalize=normalize, block_size=block_size)
    sy = linear_stats(y, "y", gram=False, normalize=normalize, block_size=block_size)
    return gap_vector_from_stats(sx, sy)


def modality_gap(
    x: ArrayLike, y: ArrayLike, *, normalize: bool = True, block_size: int = DEFAULT_BLOCK_SIZE
) -> float:
    """Modality gap ``‖Δ‖₂ = ‖mean(x̂) − mean(ŷ)‖₂`` (Liang et al., NeurIPS 2022, §4.1; Grassucci et al. 2026).

    In [0, 2] for normalised inputs; 0 when both modalities share a centroid. Liang et al. report about 0.82
    for pretrained CLIP on MS-COCO. It depends on normalisation: on raw vectors it is a different number.

    Example:
        >>> round(modality_gap([[1.0, 0.0]], [[0.0, 3.0]]), 6)
        1.414214
    """
    return modality_gap_from_vector(gap_vector(x, y, normalize=normalize, block_size=block_size))


def modality_gap_from_vector(gap: NDArray[np.float64]) -> float:
    """``‖Δ‖₂`` of a gap vector: the one formula of the modality gap (used by :func:`modality_gap` and the engine)."""
    return float(np.linalg.norm(gap))


def _pairs(
    x: ArrayLike, y: ArrayLike, x_sample: ArrayLike | None, y_sample: ArrayLike | None
) -> tuple[NDArray[Any], NDArray[Any], NDArray[np.intp], NDArray[np.intp]]:
    x = check_matrix(x, "x")
    y = check_matrix(y, "y")
    check_same_dim(x, y, "x", "y")
    sx, sy = default_sample_index(x, y, x_sample, y_sample, "x", "y")
    ix, iy = true_pair_items(sx, sy, "x", "y")
    return x, y, ix, iy


def cos_tp(
    x: ArrayLike,
    y: ArrayLike,
    x_sample: ArrayLike | None = None,
    y_sample: ArrayLike | None = None,
    *,
    normalize: bool = True,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> float:
    """Mean cosine of the true pairs, ``Cos_TP = (1/P) Σ_(i,j) x̂_i · ŷ_j`` (Grassucci et al. 2026, §3).

    With 1:1 rows this is the mean of ``diag(X̂ Ŷᵀ)``. With 1:N data every item of the many-side counts once
    (five captions -> five pairs with their image). In [-1, 1]; higher = true pairs point the same way.

    Args:
        x, y: Embeddings of two modalities.
        x_sample, y_sample: Sample id per item (both or neither; neither pairs row i with row i).
        normalize: L2-normalise first.
        block_size: Pairs read at a time.

    Raises:
        InputError: Mismatched counts without sample ids, or neither side has one item per sample.

    Example:
        >>> round(cos_tp([[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 1.0]]), 6)
        0.853553
    """
    x, y, ix, iy = _pairs(x, y, x_sample, y_sample)
    return cos_tp_from_sum(paired_dot_sum(x, y, ix, iy, ("x", "y"), normalize=normalize, block_size=block_size),
                           ix.size)


def cos_tp_from_sum(true_sum: float, n_true: int) -> float:
    """``Cos_TP = (1/P) Σ_true x̂·ŷ`` from the summed true-pair cosines (one formula for :func:`cos_tp` and the engine)."""
    return float(true_sum) / n_true


def alignment_from_cos_tp(ctp: float) -> float:
    """Alignment from Cos_TP: ``‖x̂ − ŷ‖² = 2 − 2 x̂·ŷ`` for unit vectors (one formula for :func:`alignment` and the engine)."""
    return 2.0 - 2.0 * ctp


def cos_nonmatching_from_sums(sx: LinearStats, sy: LinearStats, true_sum: float, n_true: int) -> float:
    """Mean cosine over pairs of different samples from sums: ``((Σx̂)·(Σŷ) − Σ_true cos) / (N_x N_y − P)``.

    Under the 1:N convention the same-sample pairs are exactly the true pairs, so the all-pairs sum
    ``(Σx̂)·(Σŷ)`` minus the true-pair sum leaves the non-matching pairs: exact, O(N·d), no pair matrix.
    """
    n_pairs = sx.n * sy.n - n_true
    if n_pairs <= 0:
        raise InputError(
            "no non-matching pairs: every pair belongs to the same sample; give at least two samples"
        )
    return (float(sx.total @ sy.total) - true_sum) / n_pairs


def cos_nonmatching(
    x: ArrayLike,
    y: ArrayLike,
    x_sample: ArrayLike | None = None,
    y_sample: ArrayLike | None = None,
    *,
    normalize: bool = True,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> float:
    """Mean cosine over non-matching pairs (different samples): the baseline to read Cos_TP against.

    ``(1/|{s(i) ≠ s(j)}|) Σ_{s(i) ≠ s(j)} x̂_i · ŷ_j`` (reported beside Cos_TP as Grassucci et al. 2026 suggest;
    the off-diagonal of ``X̂ Ŷᵀ`` for 1:1 data). A large Cos_TP with an equally large non-matching cosine means
    the two modalities are simply close, not that pairs are aligned.

    Example:
        >>> round(cos_nonmatching([[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 1.0]]), 6)
        0.353553
    """
    x, y, ix, iy = _pairs(x, y, x_sample, y_sample)
    sx = linear_stats(x, "x", gram=False, normalize=normalize, block_size=block_size)
    sy = linear_stats(y, "y", gram=False, normalize=normalize, block_size=block_size)
    true_sum = paired_dot_sum(x, y, ix, iy, ("x", "y"), normalize=normalize, block_size=block_size)
    return cos_nonmatching_from_sums(sx, sy, true_sum, ix.size)


def alignment(
    x: ArrayLike,
    y: ArrayLike,
    x_sample: ArrayLike | None = None,
    y_sample: ArrayLike | None = None,
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> float:
    """Alignment ``(1/P) Σ_(i,j) ‖x̂_i − ŷ_j‖₂^α`` with α = 2 over true pairs (Wang & Isola, ICML 2020, §4.1).

    For unit vectors ``‖x̂ − ŷ‖² = 2 − 2 x̂·ŷ``, so alignment = 2 − 2·Cos_TP exactly; in [0, 4], lower = true
    pairs closer. Always computed on normalised vectors (the definition needs unit length).

    Example:
        >>> alignment([[1.0, 0.0]], [[0.0, 1.0]])
        2.0
    """
    return alignment_from_cos_tp(cos_tp(x, y, x_sample, y_sample, block_size=block_size))


# ---------------------------------------------------------------------------------------------------------
# From the passes of compute_all (the registry's value functions)
# ---------------------------------------------------------------------------------------------------------
def modality_gap_value(p: Passes, pair: str) -> float:
    """``modality_gap/<a-b>`` from the linear pass's sums; the gap vector goes to ``extras["gap_vector/<a-b>"]``."""

    def gap_vector_of_pair() -> NDArray[np.float64]:
        a, b = p.pair(pair)
        gv = gap_vector_from_stats(p.stats[a], p.stats[b])
        p.extras[f"gap_vector/{pair}"] = gv.tolist()
        return gv

    return modality_gap_from_vector(p.once(("gap_vector", pair), gap_vector_of_pair))


def cos_tp_value(p: Passes, pair: str) -> float:
    """``cos_tp/<a-b>`` from the paired pass."""
    return cos_tp_from_sum(*p.true_pairs[pair])


def alignment_value(p: Passes, pair: str) -> float:
    """``alignment/<a-b>`` from the paired pass (``2 − 2·Cos_TP``)."""
    return alignment_from_cos_tp(cos_tp_value(p, pair))


def cos_nonmatching_value(p: Passes, pair: str) -> float:
    """``cos_nonmatching/<a-b>`` from the linear pass's sums and the paired pass."""
    a, b = p.pair(pair)
    return cos_nonmatching_from_sums(p.stats[a], p.stats[b], *p.true_pairs[pair])
