"""A per-query top-K kept up to date tile by tile, for the fused cross pass (hubness needs the top-K lists).

Each query keeps its K best (score, gallery index) so far and the K-th score ``θ`` as a threshold: a new tile
only contributes its entries ``>= θ``, which after the first tile are few, so the update costs one comparison
pass over the tile plus a small merge. Ordering is by (−score, original gallery index), as everywhere in
gapdiag; scores are the tile's float32 BLAS scores (not rescored exactly: hubness counts are insensitive to
rounding-level near-ties, unlike R@K's tie rule).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

_NO_INDEX = np.iinfo(np.int64).max


class RunningTopK:
    """Top-``k`` per query over tiles of scores.

    Attributes:
        scores: ``(n, k)`` float32, best first (-inf while fewer than k items were seen).
        index: ``(n, k)`` int64 original gallery indices (``int64 max`` for empty slots).
    """

    def __init__(self, n: int, k: int) -> None:
        self.k = k
        self.scores = np.full((n, k), -np.inf, dtype=np.float32)
        self.index = np.full((n, k), _NO_INDEX, dtype=np.int64)

    def update(self, tile: NDArray[np.float32], start: int, gallery: NDArray[np.intp], axis: int = 1) -> None:
        """Fold in a tile of scores whose queries are ``start..`` and whose gallery items have original indices
        ``gallery``; ``axis`` is the gallery axis (1: queries are rows; 0: queries are columns, no transpose)."""
        n_q, n_g = (tile.shape[0], tile.shape[1]) if axis == 1 else (tile.shape[1], tile.shape[0])
        k = self.k
        theta = self.scores[start : start + n_q, -1].copy()
        empty = ~np.isfinite(theta)
        if empty.any() and n_g >= k:
            theta[empty] = _kth_lower_bound(tile, k, axis)[empty]
        mask = tile >= (theta[:, None] if axis == 1 else theta[None, :])
        if not mask.any():
            return
        # nonzero on the mask as laid out in memory (a transposed view would be many times slower).
        r, c = np.nonzero(mask) if axis == 1 else np.nonzero(mask)[::-1]
        vals = tile[r, c] if axis == 1 else tile[c, r]
        touched = np.unique(r)
        q = touched + start
        all_rows = np.concatenate([np.repeat(touched, k), r])
        all_s = np.concatenate([self.scores[q].ravel(), vals])
        all_i = np.concatenate([self.index[q].ravel(), np.asarray(gallery, dtype=np.int64)[c]])
        order = np.lexsort((all_i, -all_s, all_rows))
        grouped = all_rows[order]
        first = np.searchsorted(grouped, touched)
        pos = np.arange(order.size) - np.repeat(first, np.diff(np.append(first, order.size)))
        keep = order[pos < k]  # every touched row has at least its k old entries, so exactly k are kept
        self.scores[q] = all_s[keep].reshape(-1, k)
        self.index[q] = all_i[keep].reshape(-1, k)

    def in_order(self, order: NDArray[np.intp]) -> NDArray[np.int64]:
        """The index lists with queries back in their original order (``order[p]`` = original row of ``p``)."""
        out = np.empty_like(self.index)
        out[order] = np.where(self.index == _NO_INDEX, -1, self.index)
        return out


def _kth_lower_bound(tile: NDArray[np.float32], k: int, axis: int) -> NDArray[np.float32]:
    """Per query, a score that at least ``k`` of its tile entries reach: the k-th largest of the maxima of
    ``4k`` column groups (k distinct entries are at least that high). A full partition of every row would cost
    about half a tile product; the group maxima cost one pass."""
    n_g = tile.shape[axis]
    groups = min(n_g, 4 * k)
    width = n_g // groups
    part = tile[:, : groups * width] if axis == 1 else tile[: groups * width]
    if axis == 1:
        maxima = part.reshape(tile.shape[0], groups, width).max(axis=2)
        return np.partition(maxima, groups - k, axis=1)[:, groups - k]
    maxima = part.reshape(groups, width, tile.shape[1]).max(axis=1)
    return np.partition(maxima, groups - k, axis=0)[groups - k]
