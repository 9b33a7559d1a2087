"""Blocked passes over embeddings: the part of gapdiag that touches every vector or every pair.

Two kinds of pass, both exact:

* **Linear passes** (:func:`iter_unit_blocks`, :func:`linear_stats`) read ``block_size`` rows at a time, cast
  them to float32, check them and L2-normalise them. Sums, per-set Gram matrices and paired dot products are
  accumulated in float64, so a memory-mapped float16 cache of a million items is never converted whole.
* **Pair passes** (:func:`within_pass`, :func:`cross_pass`) walk the ``N × M`` score matrix ``Â B̂ᵀ`` in
  ``block_size × block_size`` tiles (float32 BLAS) and never hold more than one tile, so memory is
  ``O(N·d + block²)``. The within-set pass visits upper-triangle tiles only (the matrix is symmetric).
  :func:`cross_pass` fuses, in the same tiles, the log-sum-exp terms of cross-modal and joint uniformity
  with exact retrieval ranks in both directions, so a diagnosis costs about two ``X·Yᵀ`` passes in total.

Log-sum-exp terms are streamed exactly: each tile contributes ``m + log Σ exp(v − m)`` with ``m`` its own
maximum, combined with ``logaddexp``; nothing is dropped or sampled.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gapdiag.errors import InputError
from gapdiag.metrics._validation import check_block_values, check_matrix

DEFAULT_BLOCK_SIZE = 2048
# Wang & Isola's temperature; exp(-t·‖u - v‖²) = exp(2t·(u·v - 1)) for unit vectors.
DEFAULT_T = 2.0


def iter_unit_blocks(
    x: NDArray[Any],
    name: str,
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
    rows: NDArray[np.intp] | None = None,
    normalize: bool = True,
) -> Iterator[tuple[int, NDArray[np.float32]]]:
    """Yield ``(offset, block)``: float32 copies of consecutive rows, checked and (by default) L2-normalised.

    Args:
        x: ``(n, d)`` raw vectors, any float dtype, possibly a memory map.
        name: Modality / argument name for error messages.
        block_size: Rows per block.
        rows: Optional row indices to read instead of ``0..n-1`` (sorted indices read a memory map in order).
        normalize: Divide each row by its L2 norm (``x̂ = x / ‖x‖₂``).

    Raises:
        InputError: NaN/inf entries or a zero vector (named by its row).
    """
    _check_block_size(block_size)
    n = x.shape[0] if rows is None else rows.shape[0]
    for start in range(0, n, block_size):
        stop = min(start + block_size, n)
        raw = x[start:stop] if rows is None else x[rows[start:stop]]
        block = np.array(raw, dtype=np.float32, copy=True)
        norms = np.sqrt(np.einsum("ij,ij->i", block, block, dtype=np.float64))
        check_block_values(block, norms, name, start if rows is None else rows[start:stop])
        if normalize:
            block /= norms.astype(np.float32)[:, None]
        yield start, block


def unit_rows(
    x: NDArray[Any],
    name: str,
    *,
    rows: NDArray[np.intp] | None = None,
    normalize: bool = True,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> NDArray[np.float32]:
    """A checked float32 (normalised) copy of ``x`` or of ``x[rows]``, built block by block."""
    x = check_matrix(x, name)
    n = x.shape[0] if rows is None else rows.shape[0]
    out = np.empty((n, x.shape[1]), dtype=np.float32)
    for start, block in iter_unit_blocks(x, name, block_size=block_size, rows=rows, normalize=normalize):
        out[start : start + block.shape[0]] = block
    return out


@dataclass
class LinearStats:
    """What one linear pass over a set of unit vectors yields.

    Attributes:
        n: Number of vectors.
        total: ``Σ_i x̂_i`` (float64, ``(d,)``): gap, angular value, W₂ mean.
        gram: ``Σ_i x̂_i x̂_iᵀ`` (float64, ``(d, d)``) or None: singular values, W₂ covariance.
    """

    n: int
    total: NDArray[np.float64]
    gram: NDArray[np.float64] | None = None

    def __add__(self, other: LinearStats) -> LinearStats:
        gram = None if self.gram is None or other.gram is None else self.gram + other.gram
        return LinearStats(self.n + other.n, self.total + other.total, gram)


def linear_stats(
    x: NDArray[Any],
    name: str = "vectors",
    *,
    gram: bool = True,
    normalize: bool = True,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> LinearStats:
    """One streamed pass: count, sum and (optionally) Gram matrix of the normalised rows of ``x``.

    The Gram matrix is accumulated in float64 so that small singular values survive the squaring.
    """
    x = check_matrix(x, name)
    d = x.shape[1]
    total = np.zeros(d, dtype=np.float64)
    g = np.zeros((d, d), dtype=np.float64) if gram else None
    for _, block in iter_unit_blocks(x, name, block_size=block_size, normalize=normalize):
        b64 = block.astype(np.float64)
        total += b64.sum(axis=0)
        if g is not None:
            g += b64.T @ b64
    return LinearStats(x.shape[0], total, g)


def paired_dot_sum(
    x: NDArray[Any],
    y: NDArray[Any],
    ix: NDArray[np.intp],
    iy: NDArray[np.intp],
    names: tuple[str, str] = ("x", "y"),
    *,
    normalize: bool = True,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> float:
    """``Σ_p x̂[ix_p] · ŷ[iy_p]`` over the given pairs, streamed ``block_size`` pairs at a time."""
    total = 0.0
    blocks_x = iter_unit_blocks(
        x, names[0], block_size=block_size, rows=_unless_all(ix, x.shape[0]), normalize=normalize
    )
    blocks_y = iter_unit_blocks(
        y, names[1], block_size=block_size, rows=_unless_all(iy, y.shape[0]), normalize=normalize
    )
    for (_, bx), (_, by) in zip(blocks_x, blocks_y):
        total += float(np.einsum("ij,ij->", bx, by, dtype=np.float64))
    return total


def _unless_all(rows: NDArray[np.intp], n: int) -> NDArray[np.intp] | None:
    """None when ``rows`` is ``0..n-1``, so the common 1:1 case reads contiguous blocks instead of gathering."""
    return None if rows.size == n and bool(np.all(rows == np.arange(n))) else rows


def _check_block_size(block_size: int) -> None:
    if block_size < 1:
        raise InputError(f"block_size must be a positive integer, got {block_size}")


def _tile_view(buf: NDArray[np.float32], rows: int, cols: int) -> NDArray[np.float32]:
    """A C-contiguous ``rows × cols`` view of a flat buffer (``np.dot(out=...)`` needs contiguity)."""
    return buf[: rows * cols].reshape(rows, cols)


#: Up to this ``2t``, ``exp(2t·s)`` for scores ``s ∈ [−1, 1]`` stays far inside float32's range (e^±88).
_UNSHIFTED_MAX_2T = 40.0


def _logsumexp_scores(scores: NDArray[np.float32], t: float) -> float:
    """``log Σ exp(2t·(s − 1))`` over a score tile, in place (the tile is overwritten); −inf if empty.

    ``exp(2t(s − 1)) = exp(−t‖u − v‖²)`` for unit vectors. For the usual temperatures (``2t ≤ 40``) every
    term ``exp(2t·s)`` lies in ``[e^−2t, e^2t]``, so the tile is exponentiated as it is (two passes over it,
    where shifting by its maximum took four); for larger ``t``, shifting by the tile's own maximum keeps the
    sum exact (no underflow to zero).
    """
    if scores.size == 0:
        return -math.inf
    if 2.0 * t <= _UNSHIFTED_MAX_2T:
        np.multiply(scores, np.float32(2.0 * t), out=scores)
        return _logsumexp_scaled(scores, 2.0 * t)
    smax = float(scores.max())
    if smax == -math.inf:
        return -math.inf
    # v − m = 2t·(s − smax) with m = 2t·(smax − 1), computed in place on the tile (no temporaries).
    np.subtract(scores, np.float32(smax), out=scores)
    np.multiply(scores, np.float32(2.0 * t), out=scores)
    np.exp(scores, out=scores)
    # A float32 pairwise sum of terms in (0, 1] is accurate to ~1e-7 relative; tiles are combined in float64.
    return 2.0 * t * (smax - 1.0) + math.log(float(scores.sum()))


def _logsumexp_scaled(scaled: NDArray[np.float32], two_t: float) -> float:
    """``log Σ exp(v − 2t)`` over a tile that already holds ``v = 2t·s`` (``2t ≤ 40``), in place."""
    np.exp(scaled, out=scaled)
    # Terms lie in [e^-2t, e^2t]: a float32 pairwise sum keeps ~1e-6 relative; tiles are combined in float64.
    total = float(scaled.sum())
    return math.log(total) - two_t if total > 0.0 else -math.inf


#: ``on_tile(done, total)``: called after each tile of a quadratic pass (drives a progress bar with an ETA).
TileCallback = Callable[[int, int], None]


def within_pass(
    z: NDArray[np.float32],
    *,
    t: float = DEFAULT_T,
    block_size: int = DEFAULT_BLOCK_SIZE,
    on_tile: TileCallback | None = None,
) -> float:
    """``log Σ_{i<j} exp(−t‖ẑ_i − ẑ_j‖²)`` over the unordered pairs of unit vectors ``z`` (upper tiles only).

    Returns -inf when ``z`` has fewer than two rows.
    """
    _check_block_size(block_size)
    n = z.shape[0]
    buf = np.empty(min(block_size, n) ** 2, dtype=np.float32)
    lower = np.tri(min(block_size, n), dtype=bool)  # diagonal and below: pairs j <= i
    lse = -math.inf
    n_tiles = -(-n // block_size)
    total, done = n_tiles * (n_tiles + 1) // 2, 0
    # For the usual temperatures the row block is scaled by 2t once, so BLAS writes 2t·s and the tile needs
    # only exp and sum (see _logsumexp_scores).
    scaled = 2.0 * t <= _UNSHIFTED_MAX_2T
    for i0 in range(0, n, block_size):
        zi = z[i0 : i0 + block_size]
        if scaled:
            zi = zi * np.float32(2.0 * t)
        for j0 in range(i0, n, block_size):
            zj = z[j0 : j0 + block_size]
            s = _tile_view(buf, zi.shape[0], zj.shape[0])
            np.dot(zi, zj.T, out=s)
            for r0, r1 in _strips((0, zi.shape[0]), zj.shape[0]):
                strip = s[r0:r1]
                if j0 == i0:
                    # Diagonal tile: keep the strict upper triangle (pairs i < j).
                    strip[lower[r0:r1, : zj.shape[0]]] = -np.inf
                term = _logsumexp_scaled(strip, 2.0 * t) if scaled else _logsumexp_scores(strip, t)
                lse = float(np.logaddexp(lse, term))
            done += 1
            if on_tile is not None:
                on_tile(done, total)
    return lse


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


def _tiles(n: int, block_size: int) -> list[tuple[int, int]]:
    return [(s, min(s + block_size, n)) for s in range(0, n, block_size)]


# Row strips of about 1 MiB of float32 scores: they stay in a core's L2 across the elementwise steps.
_STRIP_ELEMENTS = 1 << 18


def _strips(rows: tuple[int, int], n_cols: int) -> list[tuple[int, int]]:
    """Split the row range of a tile into strips of about ``_STRIP_ELEMENTS`` scores."""
    step = max(1, _STRIP_ELEMENTS // max(n_cols, 1))
    return [(r, min(r + step, rows[1])) for r in range(rows[0], rows[1], step)]


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

    def count_tile(
        self,
        scores: NDArray[np.float32],
        q_rows: slice,
        axis: int,
        queries: NDArray[np.float32],
        gallery: NDArray[np.float32],
        g_orig: NDArray[np.intp],
    ) -> None:
        """Add, per query of this tile, the other-sample gallery items ranked ahead of its first true item.

        ``axis`` is the gallery axis of ``scores`` (same-sample entries already -inf); ``gallery`` holds
        this tile's gallery vectors and ``g_orig`` their original indices. Ahead = exact score above the
        best true score, or equal to it with a lower original gallery index.
        """
        shape = (-1, 1) if axis == 1 else (1, -1)
        lo, hi = self.lo[q_rows].reshape(shape), self.hi[q_rows].reshape(shape)
        # Counting through a uint8 view is about twice as fast as summing booleans.
        ahead = (scores > hi).view(np.uint8).sum(axis=axis, dtype=np.int32).astype(np.int64)
        at_least = scores >= lo
        if np.count_nonzero(at_least) > ahead.sum():
            # Near-ties with the best true score: decide them on exact scores.
            at_least &= scores <= hi
            q, g = np.nonzero(at_least) if axis == 1 else np.nonzero(at_least.T)
            qa = q + q_rows.start
            exact = exact_scores(queries[qa], gallery[g])
            wins = (exact > self.best[qa]) | ((exact == self.best[qa]) & (g_orig[g] < self.arg[qa]))
            ahead += np.bincount(q[wins], minlength=ahead.size)
        self.rank[q_rows] += ahead


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
    from gapdiag.metrics.running_topk import RunningTopK

    _check_block_size(block_size)
    a, sa, oa = _sorted_by_sample(a, a_sample)
    b, sb, ob = _sorted_by_sample(b, b_sample)
    tiles_a, tiles_b = _tiles(a.shape[0], block_size), _tiles(b.shape[0], block_size)
    buf = np.empty(min(block_size, a.shape[0]) * min(block_size, b.shape[0]), dtype=np.float32)

    def overlaps(ta: tuple[int, int], tb: tuple[int, int]) -> bool:
        # Items are sorted by sample, so each tile spans a contiguous range of sample ids.
        return bool(sa[ta[0]] <= sb[tb[1] - 1] and sb[tb[0]] <= sa[ta[1] - 1])

    def tile(ta: tuple[int, int], tb: tuple[int, int]) -> NDArray[np.float32]:
        s = _tile_view(buf, ta[1] - ta[0], tb[1] - tb[0])
        np.dot(a[ta[0] : ta[1]], b[tb[0] : tb[1]].T, out=s)
        return s

    n_same = _count_same_sample_pairs(sa, sb)
    result = CrossPassResult(n_all=a.shape[0] * b.shape[0], n_nonmatching=a.shape[0] * b.shape[0] - n_same)
    dir_a, dir_b = _Direction.empty(a.shape[0]), _Direction.empty(b.shape[0])
    top_a, top_b = (RunningTopK(a.shape[0], topk), RunningTopK(b.shape[0], topk)) if topk else (None, None)
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
        tol = _score_tolerance(a.shape[1])
        dir_a.freeze(tol)
        dir_b.freeze(tol)

    total = len(tiles_a) * len(tiles_b)
    for done, (ta, tb) in enumerate(itertools.product(tiles_a, tiles_b), start=1):
        s = tile(ta, tb)
        check_same = overlaps(ta, tb)
        rows_b = slice(*tb)
        # Every elementwise step runs on cache-sized row strips of the tile, while they are hot.
        for r0, r1 in _strips(ta, tb[1] - tb[0]):
            strip = s[r0 - ta[0] : r1 - ta[0]]
            if top_a is not None and top_b is not None:
                top_a.update(strip, r0, ob[rows_b])
                top_b.update(strip, tb[0], oa[r0:r1], axis=0)
            same_vals = None
            if check_same:
                same = sa[r0:r1, None] == sb[None, rows_b]
                if same.any():
                    same_vals = strip[same]
                    strip[same] = -np.inf
            if retrieval:
                dir_a.count_tile(strip, slice(r0, r1), 1, a, b[rows_b], ob[rows_b])
                dir_b.count_tile(strip, rows_b, 0, b, a[r0:r1], oa[r0:r1])
            if uniformity:
                nm = _logsumexp_scores(strip, t)
                result.lse_nonmatching = float(np.logaddexp(result.lse_nonmatching, nm))
                if same_vals is not None:
                    nm = float(np.logaddexp(nm, _logsumexp_scores(same_vals, t)))
                result.lse_all = float(np.logaddexp(result.lse_all, nm))
        if on_tile is not None:
            on_tile(done, total)
    if retrieval:
        result.rank_ab = _in_original_order(dir_a, oa)
        result.rank_ba = _in_original_order(dir_b, ob)
    if top_a is not None and top_b is not None:
        result.top_ab, result.top_ba = top_a.in_order(oa), top_b.in_order(ob)
    return result


def _in_original_order(direction: _Direction, order: NDArray[np.intp]) -> NDArray[np.int64]:
    ranks = np.where(np.isfinite(direction.best), direction.rank, -1)
    out = np.empty_like(ranks)
    out[order] = ranks
    return out


def _count_same_sample_pairs(sa: NDArray[np.int64], sb: NDArray[np.int64]) -> int:
    """``Σ_s n_a(s)·n_b(s)``: the number of (a, b) item pairs that belong to the same sample."""
    ua, ca = np.unique(sa, return_counts=True)
    ub, cb = np.unique(sb, return_counts=True)
    _, ia, ib = np.intersect1d(ua, ub, assume_unique=True, return_indices=True)
    return int(np.dot(ca[ia].astype(np.int64), cb[ib].astype(np.int64)))


def hits_at_k(ranks: NDArray[np.int64], ks: Sequence[int]) -> dict[int, float]:
    """Recall@k from first-true-item ranks: the fraction of queries with ``0 <= rank < k``."""
    found = ranks >= 0
    return {int(k): float(np.mean(found & (ranks < k))) for k in ks}


def log_mean_exp(lse: float, count: int) -> float:
    """``log((1/count)·Σ exp(v))`` from a streamed ``log Σ exp(v)``; NaN when there are no pairs."""
    return lse - math.log(count) if count > 0 else math.nan
