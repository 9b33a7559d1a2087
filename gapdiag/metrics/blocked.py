"""Blocked passes over embeddings: the part of gapdiag that touches every vector or every pair.

Two kinds of pass, both exact:

* **Linear passes** (:func:`iter_unit_blocks`, :func:`linear_stats`) read ``block_size`` rows at a time, cast
  them to float32, check them and L2-normalise them. Sums, per-set Gram matrices and paired dot products are
  accumulated in float64, so a memory-mapped float16 cache of a million items is never converted whole.
* **Pair passes** (:func:`within_pass` here, :func:`~gapdiag.metrics.cross.cross_pass`) walk the ``N × M``
  score matrix ``Â B̂ᵀ`` in ``block_size × block_size`` tiles (float32 BLAS) and never hold more than one tile
  per worker thread (:mod:`gapdiag.metrics.tile_workers`), so memory is ``O(N·d + threads·block²)``. The
  within-set pass visits upper-triangle tiles only (the matrix is symmetric). The cross pass fuses, in the same tiles, the log-sum-exp terms of cross-modal and joint
  uniformity with exact retrieval ranks and top-K lists in both directions.

Log-sum-exp terms are streamed exactly: each row strip contributes ``log Σ exp(2t·(s − 1))``, summed in float64
(:func:`strip_uniformity`), and strips are combined with ``logaddexp``; nothing is dropped or sampled.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gapdiag.errors import InputError
from gapdiag.metrics.tile_workers import TileWorkers, resolve_threads
from gapdiag.metrics.validation import check_block_values, check_matrix

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
    check_block_size(block_size)
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


def joint_stats(parts: Sequence[LinearStats]) -> LinearStats:
    """The statistics of the joint set (the parts stacked): counts, sums and Gram matrices add up.

    Added left to right, ``((s₀ + s₁) + s₂) + …``: the order every joint value (rank, −W₂, IsoScore, the PCA
    basis of the gap decomposition) has always been computed in. The Gram matrix is None if a part has none.

    Raises:
        InputError: No part.
    """
    if not parts:
        raise InputError("joint statistics need at least one set of statistics")
    return sum(parts[1:], parts[0])


def linear_stats(
    x: NDArray[Any],
    name: str = "vectors",
    *,
    gram: bool = True,
    normalize: bool = True,
    block_size: int = DEFAULT_BLOCK_SIZE,
    units_out: NDArray[np.float32] | None = None,
) -> LinearStats:
    """One streamed pass: count, sum and (optionally) Gram matrix of the normalised rows of ``x``.

    The Gram matrix is accumulated in float64 so that small singular values survive the squaring. With
    ``units_out`` (an ``x``-shaped float32 array) the checked, normalised rows are also kept there: the same values
    :func:`unit_rows` gives, without a second pass over ``x``.
    """
    x = check_matrix(x, name)
    d = x.shape[1]
    total = np.zeros(d, dtype=np.float64)
    g = np.zeros((d, d), dtype=np.float64) if gram else None
    for start, block in iter_unit_blocks(x, name, block_size=block_size, normalize=normalize):
        if units_out is not None:
            units_out[start : start + block.shape[0]] = block
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
    checked_units: bool = False,
) -> float:
    """``Σ_p x̂[ix_p] · ŷ[iy_p]`` over the given pairs, streamed ``block_size`` pairs at a time.

    ``checked_units``: ``x`` and ``y`` are float32 unit vectors already checked (:func:`unit_rows`,
    ``linear_stats(units_out=...)``): their rows are used as they are, with the same sum as from the raw vectors.
    """
    total = 0.0
    if checked_units:
        for start in range(0, ix.size, block_size):
            bx, by = x[ix[start : start + block_size]], y[iy[start : start + block_size]]
            total += float(np.einsum("ij,ij->", bx, by, dtype=np.float64))
        return total
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


def check_block_size(block_size: int) -> None:
    if block_size < 1:
        raise InputError(f"block_size must be a positive integer, got {block_size}")


def tile_view(buf: NDArray[np.float32], rows: int, cols: int) -> NDArray[np.float32]:
    """A C-contiguous ``rows × cols`` view of a flat buffer (``np.dot(out=...)`` needs contiguity)."""
    return buf[: rows * cols].reshape(rows, cols)


def strip_uniformity(
    strip: NDArray[np.float32], t: float, same: NDArray[np.bool_] | None = None, first_col: int | None = None
) -> tuple[float, float]:
    """``log Σ exp(2t·(s − 1))`` over a strip of scores (``= log Σ exp(−t‖u − v‖²)`` for unit vectors).

    Args:
        strip: Scores; may be overwritten.
        t: Temperature.
        same: Entries summed separately (same-sample pairs), or None.
        first_col: Only columns ``j >= i + first_col`` of row ``i`` count (a diagonal tile's upper triangle).

    Returns:
        ``(other, same)`` log-sums (``-inf`` when empty). For the usual temperatures (``2t <= 8``; the
        literature's t is 2) one compiled pass sums float32 terms (a 2-ulp exp) in float32 chunks, and the chunks
        in float64 (:func:`gapdiag.metrics.strip_scan.exp_terms`); at higher temperatures, numpy's exp on the
        strip shifted by its maximum (no underflow to zero).
    """
    from gapdiag.metrics.strip_scan import MAX_TWO_T, exp_terms  # numba

    if 2.0 * t <= MAX_TWO_T:
        return exp_terms(strip, 2.0 * t, same, first_col)
    same_term = -math.inf
    if same is not None:
        same_term = _logsumexp_shifted(strip[same], t)
        strip[same] = -np.inf
    if first_col is not None:
        rows, cols = np.indices(strip.shape)
        strip[cols < rows + first_col] = -np.inf
    return _logsumexp_shifted(strip, t), same_term


def _logsumexp_shifted(scores: NDArray[np.float32], t: float) -> float:
    """``log Σ exp(2t·(s − 1))`` with numpy, shifted by the maximum, in place; −inf if empty."""
    smax = float(scores.max()) if scores.size else -math.inf
    if smax == -math.inf:
        return -math.inf
    # v − m = 2t·(s − smax) with m = 2t·(smax − 1), computed in place on the tile (no temporaries).
    np.subtract(scores, np.float32(smax), out=scores)
    np.multiply(scores, np.float32(2.0 * t), out=scores)
    np.exp(scores, out=scores)
    # A float32 pairwise sum of terms in (0, 1] is accurate to ~1e-7 relative; tiles are combined in float64.
    return 2.0 * t * (smax - 1.0) + math.log(float(scores.sum()))


#: ``on_tile(done, total)``: called after each tile of a quadratic pass (drives a progress bar with an ETA).
TileCallback = Callable[[int, int], None]


def within_pass(
    z: NDArray[np.float32],
    *,
    t: float = DEFAULT_T,
    block_size: int = DEFAULT_BLOCK_SIZE,
    on_tile: TileCallback | None = None,
    threads: int | None = None,
) -> float:
    """``log Σ_{i<j} exp(−t‖ẑ_i − ẑ_j‖²)`` over the unordered pairs of unit vectors ``z`` (upper tiles only).

    The tiles run on ``threads`` workers (None: every available core; the result does not depend on it, see
    :mod:`gapdiag.metrics.tile_workers`). Returns -inf when ``z`` has fewer than two rows.
    """
    check_block_size(block_size)
    n = z.shape[0]
    side = min(block_size, n)

    def tile_terms(job: tuple[int, int, int, int], buf: NDArray[np.float32], tick: Callable[[], None]) -> list[float]:
        i0, i1, j0, j1 = job
        s = tile_view(buf, i1 - i0, j1 - j0)
        np.dot(z[i0:i1], z[j0:j1].T, out=s)
        # Only pairs i < j count: a tile reaching the diagonal keeps, in row i, the columns j > i.
        terms = [strip_uniformity(s[r0:r1], t, first_col=i0 + r0 + 1 - j0 if j0 <= i0 + r0 else None)[0]
                 for r0, r1 in row_strips((0, i1 - i0), j1 - j0)]
        tick()
        return terms

    jobs = _upper_tiles(n, block_size)
    workers = TileWorkers(resolve_threads(threads), lambda: np.empty(side * side, dtype=np.float32), len(jobs))
    lse = -math.inf
    for terms in workers.map(jobs, tile_terms, tile_counter(on_tile, len(jobs))):
        for term in terms:  # combined in job order: the same float whatever the thread count
            lse = float(np.logaddexp(lse, term))
    return lse


#: A diagonal tile is computed as this many row bands, each from its own diagonal rightwards: 10/16 of the
#: tile's products instead of all of them (the pairs below the diagonal are not needed).
_DIAGONAL_BANDS = 4


def _upper_tiles(n: int, block_size: int) -> list[tuple[int, int, int, int]]:
    """``(row start, row stop, column start, column stop)`` products covering the pairs ``i < j`` of ``n`` items:
    the tiles right of the diagonal whole, the diagonal tiles as :data:`_DIAGONAL_BANDS` row bands."""
    jobs = []
    for i0, i1 in tile_ranges(n, block_size):
        band = -(-(i1 - i0) // _DIAGONAL_BANDS)
        jobs += [(r, min(r + band, i1), r, i1) for r in range(i0, i1, band)]
        jobs += [(i0, i1, j0, j1) for j0, j1 in tile_ranges(n, block_size) if j0 > i0]
    return jobs


def tile_counter(on_tile: TileCallback | None, total: int) -> Callable[[], None] | None:
    """A no-argument tick that calls ``on_tile(done, total)`` with a running count."""
    if on_tile is None:
        return None
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        on_tile(done, total)

    return tick


def tile_ranges(n: int, block_size: int) -> list[tuple[int, int]]:
    return [(s, min(s + block_size, n)) for s in range(0, n, block_size)]


# Row strips of about 1 MiB of float32 scores: they stay in a core's L2 across the elementwise steps.
_STRIP_ELEMENTS = 1 << 18


def row_strips(rows: tuple[int, int], n_cols: int) -> list[tuple[int, int]]:
    """Split the row range of a tile into strips of about ``_STRIP_ELEMENTS`` scores."""
    step = max(1, _STRIP_ELEMENTS // max(n_cols, 1))
    return [(r, min(r + step, rows[1])) for r in range(rows[0], rows[1], step)]


def hits_at_k(ranks: NDArray[np.int64], ks: Sequence[int]) -> dict[int, float]:
    """Recall@k from first-true-item ranks: the fraction of queries with ``0 <= rank < k``."""
    found = ranks >= 0
    return {int(k): float(np.mean(found & (ranks < k))) for k in ks}


def log_mean_exp(lse: float, count: int) -> float:
    """``log((1/count)·Σ exp(v))`` from a streamed ``log Σ exp(v)``; NaN when there are no pairs."""
    return lse - math.log(count) if count > 0 else math.nan
