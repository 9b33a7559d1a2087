"""The fused cross pass: cross-modal and joint uniformity, exact retrieval ranks and top-K lists in one walk.

It walks the tiles of ``Â B̂ᵀ`` (float32 BLAS, one tile in memory) and asks every score what the metrics need:
the log-sum-exp terms of uniformity (numpy, in place), and, in one compiled scan per row strip
(:mod:`gapdiag.metrics.strip_scan`), how many gallery items rank ahead of each query's best true item in both
directions and which entries are near-ties or top-K candidates. So retrieval R@K and hubness add little to
the product itself (``benchmarks/measure.py`` prints the stages as fractions of a bare pass).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from gapdiag.metrics.blocked import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_T,
    TileCallback,
    _check_block_size,
    _strips,
    _tile_view,
    _tiles,
    strip_uniformity,
)
from gapdiag.metrics.running_topk import RunningTopK


@dataclass
class CrossPassResult:
    """What :func:`cross_pass` measured between sets A and B.

    Attributes:
        lse_all: ``log Σ_{a,b} exp(−t‖â − b̂‖²)`` over all ``|A|·|B|`` pairs (joint uniformity term).
        lse_nonmatching: The same over pairs of different samples (cross-modal uniformity).
        n_all: ``|A|·|B|``.
        n_nonmatching: Number of pairs of different samples.
        rank_ab: Per A item (query) in the original order, the rank of its first true B item (number of
            other-sample B items ranked ahead of it, ties toward the lower index); -1 if it has none.
        rank_ba: The same for B items as queries over A.
        top_ab, top_ba: With ``topk > 0``: per query (original order) the original indices of its ``topk``
            best gallery items, same-sample items included (hubness).
    """

    lse_all: float = -math.inf
    lse_nonmatching: float = -math.inf
    n_all: int = 0
    n_nonmatching: int = 0
    rank_ab: NDArray[np.int64] | None = None
    rank_ba: NDArray[np.int64] | None = None
    top_ab: NDArray[np.int64] | None = None
    top_ba: NDArray[np.int64] | None = None


def _sorted_by_sample(
    z: NDArray[np.float32], sample: NDArray[np.int64]
) -> tuple[NDArray[np.float32], NDArray[np.int64], NDArray[np.intp]]:
    """Order items by sample id (stable) so that the true partners of a tile sit in a few nearby tiles."""
    if sample.size < 2 or bool(np.all(sample[1:] >= sample[:-1])):
        return z, sample, np.arange(sample.size)
    order = np.argsort(sample, kind="stable")
    return z[order], sample[order], order


def exact_scores(a: NDArray[np.float32], b: NDArray[np.float32]) -> NDArray[np.float64]:
    """Row-wise ``a_p · b_p`` in float64: float32 products are exact in float64, so equal vectors tie exactly."""
    return (a.astype(np.float64) * b.astype(np.float64)).sum(axis=-1)


def _score_tolerance(d: int) -> float:
    """Bound on |float32 BLAS score − exact score| for unit vectors (d·2⁻²⁴), doubled for safety."""
    return 2.0 * d * 2.0**-24


@dataclass
class _Direction:
    """Per-query state of one retrieval direction: exact best true score and the rank being counted.

    ``best``/``arg``: the highest exact true score and the lowest original gallery index reaching it.
    ``lo``/``hi``: float32 thresholds ``best ∓ tol``; tile scores above ``hi`` are surely ahead, scores in
    ``[lo, hi]`` are rescored exactly. Queries without a true item get ``+inf`` thresholds (never counted).
    """

    best: NDArray[np.float64]
    arg: NDArray[np.int64]
    rank: NDArray[np.int64]
    lo: NDArray[np.float32] = field(init=False)
    hi: NDArray[np.float32] = field(init=False)

    @classmethod
    def empty(cls, n: int) -> _Direction:
        return cls(
            np.full(n, -np.inf), np.full(n, np.iinfo(np.int64).max, dtype=np.int64), np.zeros(n, np.int64)
        )

    def update_best(
        self, rows: NDArray[np.intp], scores: NDArray[np.float64], gallery: NDArray[np.intp]
    ) -> None:
        """Fold candidate true pairs (query ``rows``, original ``gallery`` index, exact ``scores``) in."""
        order = np.lexsort((gallery, -scores, rows))  # per query: best score first, then lowest index
        r, sc, g = rows[order], scores[order], gallery[order]
        first = np.ones(order.size, dtype=bool)
        first[1:] = r[1:] != r[:-1]
        r, sc, g = r[first], sc[first], g[first]
        better = (sc > self.best[r]) | ((sc == self.best[r]) & (g < self.arg[r]))
        self.best[r[better]] = sc[better]
        self.arg[r[better]] = g[better]

    def freeze(self, tol: float) -> None:
        """Fix the near-tie band once every true pair has been seen."""
        found = np.isfinite(self.best)
        # nextafter: rounding best ∓ tol to float32 must not narrow the band.
        self.lo = np.nextafter(
            np.where(found, self.best - tol, np.inf).astype(np.float32), np.float32(-np.inf)
        )
        self.hi = np.nextafter(
            np.where(found, self.best + tol, np.inf).astype(np.float32), np.float32(np.inf)
        )

    def near_ties_won(
        self,
        local: NDArray[np.intp],
        queries: NDArray[np.intp],
        scores: NDArray[np.float32],
        query_vectors: NDArray[np.float32],
        gallery_vectors: NDArray[np.float32],
        gallery: NDArray[np.intp],
        gallery_order: NDArray[np.intp],
        size: int,
    ) -> NDArray[np.int64]:
        """Per query of a strip (``local`` index, ``size`` of them), how many of these other-sample candidate
        entries are near-ties that the exact score puts ahead of the query's best true item (higher exact score,
        or equal with a lower original gallery index)."""
        band = (scores >= self.lo[queries]) & (scores <= self.hi[queries])
        if not band.any():
            return np.zeros(size, dtype=np.int64)
        q, g = queries[band], gallery[band]
        exact = exact_scores(query_vectors[q], gallery_vectors[g])
        g_orig = gallery_order[g]
        wins = (exact > self.best[q]) | ((exact == self.best[q]) & (g_orig < self.arg[q]))
        return np.bincount(local[band][wins], minlength=size).astype(np.int64)


# Over 80 lines by its docstring (the exact tie rule is stated here); the tile loop reads best in one piece.
def cross_pass(
    a: NDArray[np.float32],
    b: NDArray[np.float32],
    a_sample: NDArray[np.int64],
    b_sample: NDArray[np.int64],
    *,
    t: float = DEFAULT_T,
    uniformity: bool = True,
    retrieval: bool = True,
    block_size: int = DEFAULT_BLOCK_SIZE,
    on_tile: TileCallback | None = None,
    topk: int = 0,
) -> CrossPassResult:
    """One fused pass over the tiles of ``Â B̂ᵀ`` (unit vectors in, float32 BLAS per tile).

    In each tile it (1) masks same-sample entries, (2) counts, per query in both directions, the
    other-sample items ranked ahead of the query's best true item (retrieval rank without any top-k sort:
    ``rank(q) = #{g ∉ sample(q): s_qg > s*} + #{g ∉ sample(q): s_qg = s*, g < g*}`` with ``s*`` the best true
    score and ``g*`` the lowest index reaching it; hit@k iff ``rank < k``) and (3) adds the tile's
    log-sum-exp of ``exp(−t‖â − b̂‖²)`` over other-sample pairs (cross-modal uniformity, Fahim et al.) and
    over same-sample pairs (completing the joint-set term of Wang & Isola).

    Ranks follow exact scores, as :func:`gapdiag.metrics.retrieval.recall_at_k` does: the best true score
    of each query is computed exactly (float64 sums of the float32 products) in a first pass over the few
    tiles that hold same-sample entries; in the main pass a float32 tile score more than the BLAS rounding
    bound ``2·d·2⁻²⁴`` above it counts as ahead, one more than that below it does not, and the rare scores
    in between are recomputed exactly, so exact ties (duplicate vectors) go to the lower index on every
    machine.

    Args:
        a, b: Unit vectors ``(n_a, d)`` and ``(n_b, d)``, float32.
        a_sample, b_sample: Sample id per item.
        t: Uniformity temperature.
        uniformity: Compute the log-sum-exp terms.
        retrieval: Compute the ranks.
        block_size: Tile side.
        on_tile: Called as ``on_tile(done, total)`` after each tile of the main pass.
        topk: Also keep each query's ``topk`` best gallery items in both directions (0 = no), on the tile scores
            before same-sample entries are masked (:class:`~gapdiag.metrics.running_topk.RunningTopK`).
    """
    _check_block_size(block_size)
    a, sa, oa = _sorted_by_sample(a, a_sample)
    b, sb, ob = _sorted_by_sample(b, b_sample)
    tiles_a, tiles_b = _tiles(a.shape[0], block_size), _tiles(b.shape[0], block_size)
    buf = np.empty(min(block_size, a.shape[0]) * min(block_size, b.shape[0]), dtype=np.float32)

    def overlaps(ta: tuple[int, int], tb: tuple[int, int]) -> bool:
        # Items are sorted by sample, so each tile spans a contiguous range of sample ids.
        return bool(sa[ta[0]] <= sb[tb[1] - 1] and sb[tb[0]] <= sa[ta[1] - 1])

    n_same = count_same_sample_pairs(sa, sb)
    result = CrossPassResult(n_all=a.shape[0] * b.shape[0], n_nonmatching=a.shape[0] * b.shape[0] - n_same)
    dir_a, dir_b = _Direction.empty(a.shape[0]), _Direction.empty(b.shape[0])
    if retrieval:
        # Exact best true score per query, from the same-sample entries of the few overlapping tiles.
        for ta in tiles_a:
            for tb in tiles_b:
                if overlaps(ta, tb):
                    r, c = np.nonzero(sa[ta[0] : ta[1], None] == sb[None, tb[0] : tb[1]])
                    r, c = r + ta[0], c + tb[0]
                    exact = exact_scores(a[r], b[c])
                    dir_a.update_best(r, exact, ob[c])
                    dir_b.update_best(c, exact, oa[r])
    # Without retrieval the +inf thresholds switch the rank counting off (nothing is above +inf).
    dir_a.freeze(_score_tolerance(a.shape[1]))
    dir_b.freeze(_score_tolerance(a.shape[1]))
    scan = _StripScan(a, b, oa, ob, dir_a, dir_b, topk)

    total = len(tiles_a) * len(tiles_b)
    for done, (ta, tb) in enumerate(itertools.product(tiles_a, tiles_b), start=1):
        s = _tile_view(buf, ta[1] - ta[0], tb[1] - tb[0])
        np.dot(a[ta[0] : ta[1]], b[tb[0] : tb[1]].T, out=s)
        check_same = overlaps(ta, tb)
        scan.begin_tile(tb)
        # Every elementwise step runs on cache-sized row strips of the tile, while they are hot.
        for r0, r1 in _strips(ta, tb[1] - tb[0]):
            strip = s[r0 - ta[0] : r1 - ta[0]]
            same = sa[r0:r1, None] == sb[None, tb[0] : tb[1]] if check_same else None
            if same is not None and not same.any():
                same = None
            if retrieval or topk:
                scan.strip(strip, (r0, r1), same)
            if uniformity:
                nm, same_term = strip_uniformity(strip, t, same)
                result.lse_nonmatching = float(np.logaddexp(result.lse_nonmatching, nm))
                result.lse_all = float(np.logaddexp(result.lse_all, np.logaddexp(nm, same_term)))
        if on_tile is not None:
            on_tile(done, total)
    if retrieval:
        result.rank_ab = _in_original_order(dir_a, oa)
        result.rank_ba = _in_original_order(dir_b, ob)
    if topk:
        result.top_ab, result.top_ba = scan.top_a.in_order(oa), scan.top_b.in_order(ob)
    return result


class _StripScan:
    """Applies :class:`~gapdiag.metrics.strip_scan.StripScanner` to a strip and folds its findings in: rank counts
    of both directions (near-ties decided on exact scores); the scan itself keeps both directions' top-K lists."""

    def __init__(
        self,
        a: NDArray[np.float32],
        b: NDArray[np.float32],
        oa: NDArray[np.intp],
        ob: NDArray[np.intp],
        dir_a: _Direction,
        dir_b: _Direction,
        topk: int,
    ) -> None:
        from gapdiag.metrics.strip_scan import StripScanner  # numba: compiled on first use

        self.scan_strip = StripScanner()
        self.a, self.b, self.oa, self.ob = a, b, oa, ob
        self.dir_a, self.dir_b = dir_a, dir_b
        self.top_a = RunningTopK(a.shape[0], topk)
        self.top_b = RunningTopK(b.shape[0], topk)

    def begin_tile(self, cols: tuple[int, int]) -> None:
        """Start a tile: its columns' K-th scores, copied contiguous for the scan (which keeps them in step)."""
        self.cols = cols
        k = self.top_b.k
        self.th_b = self.top_b.scores[cols[0] : cols[1], k - 1].copy() if k else np.full(
            cols[1] - cols[0], np.inf, dtype=np.float32)

    def strip(self, strip: NDArray[np.float32], rows: tuple[int, int], same: NDArray[np.bool_] | None) -> None:
        """Scan a row strip of the current tile (before the uniformity step may overwrite its scores)."""
        ra, cb = slice(*rows), slice(*self.cols)
        ahead_a, ahead_b, i, j = self.scan_strip(
            strip, same,
            (self.dir_a.hi[ra], self.dir_a.lo[ra], self.top_a.scores[ra], self.top_a.index[ra], self.ob[cb]),
            (self.dir_b.hi[cb], self.dir_b.lo[cb], self.top_b.scores[cb], self.top_b.index[cb], self.oa[ra],
             self.th_b),
        )
        if i.size:  # other-sample near-ties with a best true score: decided on exact scores
            v = strip[i, j]
            qa, qb = i + rows[0], j + self.cols[0]
            ahead_a += self.dir_a.near_ties_won(i, qa, v, self.a, self.b, qb, self.ob, size=ahead_a.size)
            ahead_b += self.dir_b.near_ties_won(j, qb, v, self.b, self.a, qa, self.oa, size=ahead_b.size)
        self.dir_a.rank[ra] += ahead_a
        self.dir_b.rank[cb] += ahead_b


def _in_original_order(direction: _Direction, order: NDArray[np.intp]) -> NDArray[np.int64]:
    ranks = np.where(np.isfinite(direction.best), direction.rank, -1)
    out = np.empty_like(ranks)
    out[order] = ranks
    return out


def count_same_sample_pairs(sa: NDArray[np.int64], sb: NDArray[np.int64]) -> int:
    """``Σ_s n_a(s)·n_b(s)``: the number of (a, b) item pairs that belong to the same sample."""
    ua, ca = np.unique(sa, return_counts=True)
    ub, cb = np.unique(sb, return_counts=True)
    _, ia, ib = np.intersect1d(ua, ub, assume_unique=True, return_indices=True)
    return int(np.dot(ca[ia].astype(np.int64), cb[ib].astype(np.int64)))


