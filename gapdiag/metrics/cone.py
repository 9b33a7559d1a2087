"""Angular value: the cone effect of one modality (Liang et al. 2022, §3; Grassucci et al. 2026)."""

from __future__ import annotations

from numpy.typing import ArrayLike

from gapdiag.errors import InputError
from gapdiag.metrics._validation import check_matrix
from gapdiag.metrics.blocked import DEFAULT_BLOCK_SIZE, LinearStats, linear_stats
from gapdiag.metrics.passes import Passes


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
