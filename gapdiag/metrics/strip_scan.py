"""One compiled scan per row strip of a cross-pass tile: rank counts in both directions and the rare entries.

The fused cross pass (:mod:`gapdiag.metrics.cross`) asks four questions of every score ``s_ij`` of a tile (rows
are A queries, columns B queries): is it surely ahead of row ``i``'s best true score (``s > hi_i``), surely
ahead of column ``j``'s (``s > hi_j``), inside one of the two near-tie bands (``lo ≤ s ≤ hi``, decided later
on exact scores), or at least one of the running top-K thresholds (``s ≥ θ``, hubness)? Asked with numpy,
that is about ten elementwise passes over the tile, each as long as a good part of its matrix product; here it
is one pass that keeps only counts and emits the few ``(i, j)`` that need more (the bands and the top-K
candidates), so the cross pass costs little more than its product and the uniformity ``exp``.

numba is a dependency of umap-learn (gapdiag's map) and is declared by gapdiag too; the kernel is compiled once
per machine (``cache=True``) and is only imported by the quadratic passes, never on a cache hit.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numpy.typing import NDArray


@njit(cache=True, nogil=True, boundscheck=False)
def _scan(s, same, check_same, hi_r, lo_r, th_r, hi_c, lo_c, th_c, ahead_r, ahead_c, out_i, out_j):
    n_rows, n_cols = s.shape
    n = 0
    cap = out_i.shape[0]
    for i in range(n_rows):
        row = s[i]
        hr = hi_r[i]
        lr = lo_r[i]
        tr = th_r[i]
        count = 0
        flagged = False
        # Branch-free counting so that the loop vectorises; a second loop emits the entries of flagged rows.
        if check_same:
            other = same[i]
            for j in range(n_cols):
                v = row[j]
                o = other[j] == 0
                count += o & (v > hr)
                ahead_c[j] += o & (v > hi_c[j])
                flagged |= (o & (v >= lr) & (v <= hr)) | (o & (v >= lo_c[j]) & (v <= hi_c[j])) | (v >= tr) | (
                    v >= th_c[j]
                )
        else:
            for j in range(n_cols):
                v = row[j]
                count += v > hr
                ahead_c[j] += v > hi_c[j]
                flagged |= ((v >= lr) & (v <= hr)) | ((v >= lo_c[j]) & (v <= hi_c[j])) | (v >= tr) | (v >= th_c[j])
        ahead_r[i] += count
        if flagged:
            for j in range(n_cols):
                v = row[j]
                o = True
                if check_same:
                    o = same[i, j] == 0
                if (o and ((lr <= v <= hr) or (lo_c[j] <= v <= hi_c[j]))) or v >= tr or v >= th_c[j]:
                    if n < cap:
                        out_i[n] = i
                        out_j[n] = j
                    n += 1
    return n


_NO_MASK = np.zeros((0, 0), dtype=np.uint8)

#: exp(x) is evaluated as p(x / 2^k)^(2^k), p the degree-10 Taylor polynomial: |x / 2^k| <= 1/2 keeps p's
#: relative error under 2e-11 and the k squarings multiply it by 2^k (< 2e-9; ~1e-15 at the default t = 2,
#: where |x| <= 4). Above ``MAX_TWO_T`` the callers use numpy's exp on max-shifted tiles instead.
_SQUARINGS = 6
MAX_TWO_T = 0.5 * 2**_SQUARINGS


@njit(cache=True, nogil=True, boundscheck=False, inline="always", fastmath={"reassoc", "contract"})
def _exp(x):
    r = x * (0.5**_SQUARINGS)
    p = 1.0 + r * (1.0 + r * (1.0 / 2 + r * (1.0 / 6 + r * (1.0 / 24 + r * (1.0 / 120 + r * (
        1.0 / 720 + r * (1.0 / 5040 + r * (1.0 / 40320 + r * (1.0 / 362880 + r * (1.0 / 3628800))))))))))
    for _ in range(_SQUARINGS):
        p = p * p
    return p


# fastmath "reassoc" lets the float64 sums run in vector lanes (the order of a float64 sum of positive terms
# changes its value by ~1e-16 relative); no flag that assumes finite values is set.
@njit(cache=True, nogil=True, boundscheck=False, fastmath={"reassoc", "contract"})
def _exp_sums(s, same, check_same, two_t, first_col, out):
    n_rows, n_cols = s.shape
    other = 0.0
    matched = 0.0
    for i in range(n_rows):
        row = s[i]
        start = max(0, i + first_col)
        acc = 0.0
        if check_same:
            flags = same[i]
            acc_same = 0.0
            for j in range(start, n_cols):
                e = _exp(two_t * row[j])
                if flags[j]:
                    acc_same += e
                else:
                    acc += e
            matched += acc_same
        else:
            for j in range(start, n_cols):
                acc += _exp(two_t * row[j])
        other += acc
    out[0] = other
    out[1] = matched


def exp_terms(
    s: NDArray[np.float32], two_t: float, same: NDArray[np.bool_] | None = None, first_col: int | None = None
) -> tuple[float, float]:
    """``log Σ exp(2t·(s − 1))`` over a strip of scores, in float64 (``2t ≤ MAX_TWO_T``); nothing is modified.

    Args:
        s: ``(r, c)`` float32 scores of unit vectors.
        two_t: ``2t``, the uniformity temperature doubled.
        same: Entries whose sum is returned separately (same-sample pairs), or None.
        first_col: Only columns ``j >= i + first_col`` of row ``i`` count (a diagonal tile's upper triangle),
            or None for all.

    Returns:
        ``(other, same)`` log-sums; ``-inf`` for an empty sum.
    """
    if two_t > MAX_TWO_T:
        raise ValueError(f"2t = {two_t} is beyond the polynomial exp's range ({MAX_TWO_T})")
    out = np.empty(2)
    mask = _NO_MASK if same is None else same.view(np.uint8)
    _exp_sums(s, mask, same is not None, float(two_t), -(1 << 62) if first_col is None else first_col, out)
    return tuple(math.log(v) - two_t if v > 0.0 else -math.inf for v in out)  # type: ignore[return-value]


class StripScanner:
    """Scans strips of scores with :func:`_scan`, reusing its output buffers from strip to strip."""

    def __init__(self) -> None:
        self.out_i = self.out_j = np.empty(0, dtype=np.intp)

    def __call__(
        self,
        s: NDArray[np.float32],
        same: NDArray[np.bool_] | None,
        row_bounds: tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]],
        col_bounds: tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]],
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.intp], NDArray[np.intp]]:
        """Scan one strip of scores (rows: A queries, columns: B queries); nothing is modified.

        Args:
            s: ``(r, c)`` float32 scores, C-contiguous rows.
            same: ``(r, c)`` mask of same-sample entries (not counted as ahead nor as near-ties), or None.
            row_bounds, col_bounds: ``(hi, lo, θ)`` per row / per column: ``s > hi`` counts as ahead,
                ``lo ≤ s ≤ hi`` is a near-tie, ``s ≥ θ`` a top-K candidate (``+inf`` switches a test off).

        Returns:
            ``(ahead_rows, ahead_cols, i, j)``: per row and per column the number of other-sample entries above
            ``hi``, and the coordinates of every entry that is a near-tie of its row or column (other-sample)
            or reaches a top-K threshold (any entry), in row-major order (views valid until the next call).
        """
        n_rows, n_cols = s.shape
        mask = _NO_MASK if same is None else same.view(np.uint8)
        if self.out_i.size < 64 * n_rows:
            self._grow(max(16384, 64 * n_rows))
        while True:
            ahead_r = np.zeros(n_rows, dtype=np.int64)
            ahead_c = np.zeros(n_cols, dtype=np.int64)
            found = _scan(s, mask, same is not None, *row_bounds, *col_bounds, ahead_r, ahead_c, self.out_i,
                          self.out_j)
            if found <= self.out_i.size:
                return ahead_r, ahead_c, self.out_i[:found], self.out_j[:found]
            self._grow(found)  # rare (the first tiles of a top-K): scan again with room for every entry

    def _grow(self, capacity: int) -> None:
        self.out_i = np.empty(capacity, dtype=np.intp)
        self.out_j = np.empty(capacity, dtype=np.intp)
