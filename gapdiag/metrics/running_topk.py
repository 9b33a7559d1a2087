"""Per-query top-K lists of the fused cross pass (hubness needs them), filled tile by tile.

Each query keeps its K best (score, gallery index) so far, best first; the compiled strip scan
(:mod:`gapdiag.metrics.strip_scan`) inserts an entry only when it beats the K-th, so after the first tiles an
update is rare and costs O(K). Ordering is by (−score, original gallery index), as everywhere in gapdiag; scores
are the tile's float32 BLAS scores (not rescored exactly: hubness counts are insensitive to rounding-level
near-ties, unlike R@K's tie rule).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

_NO_INDEX = np.iinfo(np.int64).max


class RunningTopK:
    """Top-``k`` per query (``k = 0``: nothing is kept).

    Attributes:
        scores: ``(n, k)`` float32, best first (-inf while fewer than k items were seen).
        index: ``(n, k)`` int64 original gallery indices (``int64 max`` for empty slots).
    """

    def __init__(self, n: int, k: int) -> None:
        self.k = k
        self.scores = np.full((n, k), -np.inf, dtype=np.float32)
        self.index = np.full((n, k), _NO_INDEX, dtype=np.int64)

    @classmethod
    def merged(cls, parts: list[RunningTopK]) -> RunningTopK:
        """The top-``k`` of the union of several lists over disjoint galleries (the pass's workers' row lists):
        the same lists a single walk over every gallery item would have kept, whatever the split."""
        out = cls(parts[0].scores.shape[0], parts[0].k)
        if out.k == 0:
            return out
        scores = np.concatenate([p.scores for p in parts], axis=1)
        index = np.concatenate([p.index for p in parts], axis=1)
        order = np.lexsort((index, -scores), axis=-1)[:, : out.k]  # by (−score, index), as the scan inserts
        out.scores = np.take_along_axis(scores, order, axis=1)
        out.index = np.take_along_axis(index, order, axis=1)
        return out

    def in_order(self, order: NDArray[np.intp]) -> NDArray[np.int64]:
        """The index lists with queries back in their original order (``order[p]`` = original row of ``p``); an
        empty slot (a gallery of fewer than k items) is -1, as in :func:`~gapdiag.metrics.retrieval.search_topk`'s
        lists, which :func:`~gapdiag.metrics.hubness.k_occurrence` ignores."""
        out = np.empty_like(self.index)
        out[order] = np.where(self.index == _NO_INDEX, -1, self.index)
        return out
