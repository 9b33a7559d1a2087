"""The fused cross pass: cross-modal and joint uniformity, exact retrieval ranks and top-K lists in one walk.

It walks the tiles of ``Â B̂ᵀ`` (float32 BLAS, one tile per worker in memory; column bands on every core, see
:mod:`gapdiag.metrics.tile_workers`) and asks every score what the metrics need: the log-sum-exp terms of
uniformity, and, in one compiled scan per row strip (:mod:`gapdiag.metrics.strip_scan`), how many gallery items
rank ahead of each query's best true item in both directions and which entries are near-ties or top-K
candidates. So retrieval R@K and hubness add little to the product itself (``benchmarks/measure.py`` prints the
stages as fractions of a bare pass).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from gapdiag.metrics.blocked import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_T,
    TileCallback,
    check_block_size,
    row_strips,
    strip_uniformity,
    tile_counter,
    tile_ranges,
    tile_view,
)
from gapdiag.metrics.rounding import score_tolerance
from gapdiag.metrics.running_topk import RunningTopK
from gapdiag.metrics.tile_workers import TileWorkers, resolve_threads

if TYPE_CHECKING:
    from gapdiag.metrics.strip_scan import StripScanner


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
            best gallery items, same-sample items included (hubness); -1 pads a list past a gallery of fewer
            than ``topk`` items.
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
    threads: int | None = None,
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
        threads: Workers walking the column bands (None: every available core); the result does not depend on
            it (:mod:`gapdiag.metrics.tile_workers`).
    """
    check_block_size(block_size)
    a, sa, oa = _sorted_by_sample(a, a_sample)
    b, sb, ob = _sorted_by_sample(b, b_sample)
    tiles_a = tile_ranges(a.shape[0], block_size)

    def overlaps(ta: tuple[int, int], tb: tuple[int, int]) -> bool:
        # Items are sorted by sample, so each tile spans a contiguous range of sample ids.
        return bool(sa[ta[0]] <= sb[tb[1] - 1] and sb[tb[0]] <= sa[ta[1] - 1])

    n_same = count_same_sample_pairs(sa, sb)
    result = CrossPassResult(n_all=a.shape[0] * b.shape[0], n_nonmatching=a.shape[0] * b.shape[0] - n_same)
    dir_a, dir_b = _Direction.empty(a.shape[0]), _Direction.empty(b.shape[0])
    if retrieval:
        # Exact best true score per query, from the same-sample pairs.
        for r, c in _same_sample_pairs(sa, sb):
            exact = exact_scores(a[r], b[c])
            dir_a.update_best(r, exact, ob[c])
            dir_b.update_best(c, exact, oa[r])
    # Without retrieval the +inf thresholds switch the rank counting off (nothing is above +inf).
    dir_a.freeze(score_tolerance(a.shape[1]))
    dir_b.freeze(score_tolerance(a.shape[1]))
    walk = _ColumnWalk(a, b, sa, sb, oa, ob, dir_a, dir_b, RunningTopK(b.shape[0], topk), tiles_a, overlaps,
                       t if uniformity else None, retrieval or topk > 0,
                       _kth_score_floor(a, b, topk), _kth_score_floor(b, a, topk))
    # One job per column band, so only one worker updates a column's counts and top-K list (the rows' are per
    # worker).
    bands = _column_bands(b.shape[0], max(1, block_size // 2))
    workers = TileWorkers(_affordable_workers(resolve_threads(threads), a.shape[0], topk), walk.new_worker, len(bands))
    terms = workers.map(bands, walk.column, tile_counter(on_tile, len(tiles_a) * len(bands)))
    for ia in range(len(tiles_a)):  # combined in the order of a one-thread walk: the same floats on any machine
        for column in terms:
            for nm, same_term in column[ia]:
                result.lse_nonmatching = float(np.logaddexp(result.lse_nonmatching, nm))
                result.lse_all = float(np.logaddexp(result.lse_all, np.logaddexp(nm, same_term)))
    if retrieval:
        dir_a.rank = sum((w.rank_a for w in workers.states), np.zeros(a.shape[0], dtype=np.int64))
        result.rank_ab = _in_original_order(dir_a, oa)
        result.rank_ba = _in_original_order(dir_b, ob)
    if topk:
        top_a = RunningTopK.merged([w.top_a for w in workers.states])
        result.top_ab, result.top_ba = top_a.in_order(oa), walk.top_b.in_order(ob)
    return result


@dataclass
class _Worker:
    """One worker's scratch and partial results: its tile buffer and scanner, and for the row queries the rank
    counts and top-K lists over the column bands it walked (summed / merged after the pass)."""

    buf: NDArray[np.float32]
    scan: StripScanner
    rank_a: NDArray[np.int64]
    top_a: RunningTopK
    th_a: NDArray[np.float32]  # the rows' insertion thresholds (see StripScanner)


@dataclass
class _ColumnWalk:
    """Walks one column band of ``Â B̂ᵀ`` down all row tiles: the products, the compiled strip scan (rank counts
    of both directions, near-ties decided on exact scores, top-K lists) and the uniformity terms."""

    a: NDArray[np.float32]
    b: NDArray[np.float32]
    sa: NDArray[np.int64]
    sb: NDArray[np.int64]
    oa: NDArray[np.intp]
    ob: NDArray[np.intp]
    dir_a: _Direction
    dir_b: _Direction
    top_b: RunningTopK
    tiles_a: list[tuple[int, int]]
    overlaps: Callable[[tuple[int, int], tuple[int, int]], bool]
    t: float | None  # None: no uniformity terms
    scanning: bool  # ranks or top-K lists wanted
    floor_a: NDArray[np.float32]  # per query, a score at or below its final K-th (+inf: no lists)
    floor_b: NDArray[np.float32]

    def new_worker(self) -> _Worker:
        """A worker's state; its tile buffer grows to the first tile it computes."""
        from gapdiag.metrics.strip_scan import StripScanner  # numba: compiled on first use

        return _Worker(np.empty(0, dtype=np.float32), StripScanner(), np.zeros(len(self.a), dtype=np.int64),
                       RunningTopK(len(self.a), self.top_b.k), self.floor_a.copy())

    def column(self, tb: tuple[int, int], w: _Worker, tick: Callable[[], None]) -> list[list[tuple[float, float]]]:
        """Walk column band ``tb``; returns per row tile the ``(other, same)`` uniformity terms of its strips."""
        sa, sb, cb = self.sa, self.sb, slice(*tb)
        n_cols = tb[1] - tb[0]
        # The columns' insertion thresholds, contiguous for the scan (which raises them as the lists fill). A band
        # is one job, walked once, so its columns' lists are still empty here: the floors are where they start.
        th_b = self.floor_b[cb].copy()
        terms = []
        for ta in self.tiles_a:
            if w.buf.size < (ta[1] - ta[0]) * n_cols:
                w.buf = np.empty((ta[1] - ta[0]) * n_cols, dtype=np.float32)
            s = tile_view(w.buf, ta[1] - ta[0], n_cols)
            np.dot(self.a[ta[0] : ta[1]], self.b[cb].T, out=s)
            check_same = self.overlaps(ta, tb)
            tile_terms = []
            # Every elementwise step runs on cache-sized row strips of the tile, while they are hot.
            for r0, r1 in row_strips(ta, n_cols):
                strip = s[r0 - ta[0] : r1 - ta[0]]
                same = sa[r0:r1, None] == sb[None, cb] if check_same else None
                if same is not None and not same.any():
                    same = None
                if self.scanning:
                    self.scan_strip(w, strip, (r0, r1), tb, same, th_b)
                if self.t is not None:
                    tile_terms.append(strip_uniformity(strip, self.t, same))
            terms.append(tile_terms)
            tick()
        return terms

    def scan_strip(self, w: _Worker, strip: NDArray[np.float32], rows: tuple[int, int], cols: tuple[int, int],
                   same: NDArray[np.bool_] | None, th_b: NDArray[np.float32]) -> None:
        """Scan a row strip (before the uniformity step may overwrite its scores) and fold its findings in."""
        from gapdiag.metrics.strip_scan import QueryState  # numba: loaded by the quadratic passes only

        ra, cb = slice(*rows), slice(*cols)
        ahead_a, ahead_b, i, j = w.scan(
            strip, same,
            QueryState(hi=self.dir_a.hi[ra], lo=self.dir_a.lo[ra], top_scores=w.top_a.scores[ra],
                       top_index=w.top_a.index[ra], gallery=self.ob[cb], threshold=w.th_a[ra]),
            QueryState(hi=self.dir_b.hi[cb], lo=self.dir_b.lo[cb], top_scores=self.top_b.scores[cb],
                       top_index=self.top_b.index[cb], gallery=self.oa[ra], threshold=th_b),
        )
        if i.size:  # other-sample near-ties with a best true score: decided on exact scores
            v = strip[i, j]
            qa, qb = i + rows[0], j + cols[0]
            ahead_a += self.dir_a.near_ties_won(i, qa, v, self.a, self.b, qb, self.ob, size=ahead_a.size)
            ahead_b += self.dir_b.near_ties_won(j, qb, v, self.b, self.a, qa, self.oa, size=ahead_b.size)
        w.rank_a[ra] += ahead_a
        self.dir_b.rank[cb] += ahead_b


def _column_bands(n: int, width: int) -> list[tuple[int, int]]:
    """Bands of ``width`` columns, then the last ``2·width`` columns in bands a quarter as wide.

    Jobs are handed out in order, so the pass ends on short jobs: the last one, which may run while the other
    workers have nothing left, is short (at 50,000 × 512 a band of 1,024 columns is about a second). The bands do
    not depend on the number of workers, so neither do the values.
    """
    tail = max(0, n - 2 * width)
    return tile_ranges(tail, width) + [(tail + s, tail + e) for s, e in tile_ranges(n - tail, max(1, width // 4))]


#: Memory all workers' own row state may take together (rank counts, thresholds, top-K lists).
_WORKER_STATE_BUDGET = 1 << 30


def _affordable_workers(threads: int, n_rows: int, topk: int) -> int:
    """``threads``, or fewer when each worker's copy of the row state would together exceed
    :data:`_WORKER_STATE_BUDGET` (a million queries with top-10 lists take 132 MB per worker)."""
    per_worker = n_rows * (8 + 4 + 12 * topk)
    return max(1, min(threads, _WORKER_STATE_BUDGET // max(per_worker, 1)))


#: Gallery items scored up front per query to find a floor under its final K-th score (see _kth_score_floor).
_FLOOR_GALLERY = 256


def _kth_score_floor(q: NDArray[np.float32], g: NDArray[np.float32], k: int) -> NDArray[np.float32]:
    """Per query, a float32 score at or below the K-th best tile score it will have over the whole gallery.

    The K-th best score over any ``_FLOOR_GALLERY`` gallery items is at most the K-th over all of them, and
    lowering it by twice the BLAS rounding bound covers a tile product rounding the same score differently. The
    scan inserts nothing below it, so the top-K lists start selective instead of taking every entry of their
    first tiles (at 30,000 × 512 those insertions had cost about 0.1 of a pass). +inf with ``k = 0`` (no lists);
    -inf when the gallery has ``k`` items or fewer (every item is in every list).
    """
    if k == 0:
        return np.full(q.shape[0], np.inf, dtype=np.float32)
    m = min(g.shape[0], max(_FLOOR_GALLERY, k))
    if m <= k:
        return np.full(q.shape[0], -np.inf, dtype=np.float32)
    floor = np.empty(q.shape[0], dtype=np.float32)
    step = max(1, (1 << 22) // m)  # about 16 MiB of scores at a time
    for r in range(0, q.shape[0], step):
        kth = np.partition(q[r : r + step] @ g[:m].T, m - k, axis=1)[:, m - k]
        floor[r : r + step] = kth - np.float32(2.0 * score_tolerance(q.shape[1]))
    return np.nextafter(floor, np.float32(-np.inf))


def _in_original_order(direction: _Direction, order: NDArray[np.intp]) -> NDArray[np.int64]:
    ranks = np.where(np.isfinite(direction.best), direction.rank, -1)
    out = np.empty_like(ranks)
    out[order] = ranks
    return out


#: Same-sample pairs scored exactly at a time (a few MiB of float64 copies of their vectors).
_PAIR_BATCH = 4096


def _same_sample_pairs(
    sa: NDArray[np.int64], sb: NDArray[np.int64]
) -> Iterator[tuple[NDArray[np.intp], NDArray[np.intp]]]:
    """``(rows, cols)`` of every pair with ``sa[row] == sb[col]`` (both sorted), in batches of about
    :data:`_PAIR_BATCH` pairs: a binary search per row, so the cost follows the number of items and pairs, not
    that of the tiles they sit in."""
    first = np.searchsorted(sb, sa, side="left")
    count = np.searchsorted(sb, sa, side="right") - first
    ends = np.cumsum(count)
    row = 0
    while row < sa.size:
        # Rows whose pairs fit in the batch (at least one row, however many pairs it has).
        stop = max(row + 1, int(np.searchsorted(ends, ends[row] - count[row] + _PAIR_BATCH, side="right")))
        rows = np.repeat(np.arange(row, stop), count[row:stop])
        if rows.size:
            # Column of each pair: its row's first match plus its position among that row's matches.
            starts = np.repeat(ends[row:stop] - count[row:stop], count[row:stop])
            cols = np.repeat(first[row:stop], count[row:stop]) + np.arange(rows.size) - (starts - starts[0])
            yield rows, cols
        row = stop


def count_same_sample_pairs(sa: NDArray[np.int64], sb: NDArray[np.int64]) -> int:
    """``Σ_s n_a(s)·n_b(s)``: the number of (a, b) item pairs that belong to the same sample."""
    ua, ca = np.unique(sa, return_counts=True)
    ub, cb = np.unique(sb, return_counts=True)
    _, ia, ib = np.intersect1d(ua, ub, assume_unique=True, return_indices=True)
    return int(np.dot(ca[ia].astype(np.int64), cb[ib].astype(np.int64)))


