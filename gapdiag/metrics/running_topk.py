"""A per-query top-K kept up to date tile by tile, for the fused cross pass (hubness needs the top-K lists).

Each query keeps its K best (score, gallery index) so far and the K-th score ``θ`` as a threshold: a new tile
only contributes its entries ``>= θ`` (found by :mod:`gapdiag.metrics.strip_scan` in the same scan as the
retrieval ranks), which after the first tile are few, so an update is a small merge. Ordering is by
(−score, original gallery index), as everywhere in gapdiag; scores are the tile's float32 BLAS scores (not
rescored exactly: hubness counts are insensitive to rounding-level near-ties, unlike R@K's tie rule).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

_NO_INDEX = np.iinfo(np.int64).max


class RunningTopK:
    """Top-``k`` per query over tiles of scores (``k = 0``: nothing is kept and no entry is a candidate).

    Attributes:
        scores: ``(n, k)`` float32, best first (-inf while fewer than k items were seen).
        index: ``(n, k)`` int64 original gallery indices (``int64 max`` for empty slots).
    """

    def __init__(self, n: int, k: int) -> None:
        self.k = k
        self.scores = np.full((n, k), -np.inf, dtype=np.float32)
        self.index = np.full((n, k), _NO_INDEX, dtype=np.int64)

    def thresholds(self, tile: NDArray[np.float32], start: int, axis: int = 1) -> NDArray[np.float32]:
        """Per query of a tile (queries ``start..``; ``axis`` is the gallery axis), the score an entry must reach
        to enter its top-K: the current K-th score, or for a query that has seen fewer than K items a score that
        at least K of this tile's entries reach (so a first tile does not make every entry a candidate)."""
        n_q, n_g = (tile.shape[0], tile.shape[1]) if axis == 1 else (tile.shape[1], tile.shape[0])
        if self.k == 0:
            return np.full(n_q, np.inf, dtype=np.float32)
        theta = self.scores[start : start + n_q, -1].copy()
        empty = ~np.isfinite(theta)
        if empty.any() and n_g >= self.k:
            theta[empty] = _kth_lower_bound(tile, self.k, axis)[empty]
        return theta

    def merge(self, queries: NDArray[np.intp], gallery: NDArray[np.intp], scores: NDArray[np.float32]) -> None:
        """Fold in candidate entries (query row, original gallery index, score); any order, repeats of a query
        allowed. Every candidate at least as good as its query's K-th score must be given."""
        if queries.size == 0:
            return
        order = np.argsort(queries, kind="stable")
        queries, gallery, scores = queries[order], np.asarray(gallery, dtype=np.int64)[order], scores[order]
        touched, first, counts = np.unique(queries, return_index=True, return_counts=True)
        width = self.k + int(counts.max())
        if touched.size * width <= 4 * (touched.size * self.k + queries.size):
            self._merge_rows(touched, first, counts, gallery, scores, width)
        else:  # a few queries with very many candidates (ties): one flat sort instead of wide padded rows
            self._merge_flat(touched, queries, gallery, scores)

    def _merge_rows(self, touched: NDArray[np.intp], first: NDArray[np.intp], counts: NDArray[np.intp],
                    gallery: NDArray[np.int64], scores: NDArray[np.float32], width: int) -> None:
        """Each touched query's old K entries and its candidates side by side in a padded row, sorted per row."""
        k = self.k
        s = np.full((touched.size, width), -np.inf, dtype=np.float32)
        g = np.full((touched.size, width), _NO_INDEX, dtype=np.int64)
        s[:, :k], g[:, :k] = self.scores[touched], self.index[touched]
        row = np.repeat(np.arange(touched.size), counts)
        col = k + np.arange(scores.size) - np.repeat(first, counts)
        s[row, col], g[row, col] = scores, gallery
        best = np.lexsort((g, -s), axis=-1)[:, :k]
        self.scores[touched] = np.take_along_axis(s, best, axis=1)
        self.index[touched] = np.take_along_axis(g, best, axis=1)

    def _merge_flat(self, touched: NDArray[np.intp], queries: NDArray[np.intp], gallery: NDArray[np.int64],
                    scores: NDArray[np.float32]) -> None:
        """The same as :meth:`_merge_rows` with one sort by (query, −score, index) over all entries."""
        k = self.k
        all_rows = np.concatenate([np.repeat(touched, k), queries])
        all_s = np.concatenate([self.scores[touched].ravel(), scores])
        all_i = np.concatenate([self.index[touched].ravel(), gallery])
        order = np.lexsort((all_i, -all_s, all_rows))
        grouped = all_rows[order]
        first = np.searchsorted(grouped, touched)
        pos = np.arange(order.size) - np.repeat(first, np.diff(np.append(first, order.size)))
        keep = order[pos < k]  # every touched row has at least its k old entries, so exactly k are kept
        self.scores[touched] = all_s[keep].reshape(-1, k)
        self.index[touched] = all_i[keep].reshape(-1, k)

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
