"""Compiled passes over the row strips of a pair-pass tile: rank counts, near-ties, top-K lists, uniformity sums.

The fused cross pass (:mod:`gapdiag.metrics.cross`) asks four questions of every score ``s_ij`` of a tile (rows
are A queries, columns B queries): is it surely ahead of row ``i``'s best true score (``s > hi_i``), surely
ahead of column ``j``'s (``s > hi_j``), inside one of the two near-tie bands (``lo ≤ s ≤ hi``, decided later
on exact scores), or at least one of the running top-K thresholds (``s ≥ θ``, hubness)? Asked with numpy,
that is about ten elementwise passes over the tile, each as long as a good part of its matrix product; here it
is one pass (:class:`StripScanner`) that keeps the counts, inserts top-K candidates into their lists as it meets
them and hands back only the few near-ties. What it reads and updates about the queries of each side of the strip
is one named structure, :class:`QueryState` (thresholds, top-K lists, insertion floors), and what it writes is a
:class:`ScanOutput`: NamedTuples of arrays, which numba compiles field by field like separate arguments.
:func:`exp_terms` sums the uniformity terms of a strip in one more pass (float32 terms, float64 sums; the
within-set pass uses it too).

numba is a dependency of umap-learn (gapdiag's map) and is declared by gapdiag too; the kernels are compiled once
per machine (``cache=True``) and are only imported by the quadratic passes, never on a cache hit.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic
from numpy.typing import NDArray

from gapdiag.errors import InputError


class QueryState(NamedTuple):
    """What the scan knows about the queries along one side of a strip (its rows, or its columns), and updates.

    A NamedTuple of arrays, which numba types field by field: the compiled scan reads each by name.

    Attributes:
        hi: ``(n,)`` float32: an other-sample score ``s > hi`` ranks ahead of the query's best true item.
        lo: ``(n,)`` float32: ``lo ≤ s ≤ hi`` is a near-tie, decided later on exact scores (``+inf`` in both
            switches the counting off: a query without a true item, or no ranks wanted).
        top_scores: ``(n, K)`` float32: the running top-K scores, best first, updated in place (``K = 0``: none).
        top_index: ``(n, K)`` int64: their original gallery indices.
        gallery: ``(m,)`` int64: the original index of each item on the *other* side, what a list records.
        threshold: ``(n,)`` float32 θ: entries below it are not inserted. It must start at or below the final K-th
            score (the list's current K-th, or a known floor under it; ``+inf`` with ``K = 0``); the scan raises it
            to the list's K-th as the list fills (contiguous, so the counting loop reads it at full speed).
    """

    hi: NDArray[np.float32]
    lo: NDArray[np.float32]
    top_scores: NDArray[np.float32]
    top_index: NDArray[np.int64]
    gallery: NDArray[np.int64]
    threshold: NDArray[np.float32]


class ScanOutput(NamedTuple):
    """Where the compiled scan writes: per row and per column the number of other-sample entries above ``hi``
    (``ahead_rows`` int64, ``ahead_cols`` int32, added to), and the coordinates of the near-ties (``near_i``,
    ``near_j``, room for every entry of the strip; the scan returns how many it wrote)."""

    ahead_rows: NDArray[np.int64]
    ahead_cols: NDArray[np.int32]
    near_i: NDArray[np.intp]
    near_j: NDArray[np.intp]


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _insert(scores, index, q, v, g):
    """Put (v, g) into query q's list, kept ordered by (−score, index), if it beats the last entry."""
    k = scores.shape[1]
    last = k - 1
    if v < scores[q, last] or (v == scores[q, last] and g > index[q, last]):
        return
    pos = last
    while pos > 0 and (v > scores[q, pos - 1] or (v == scores[q, pos - 1] and g < index[q, pos - 1])):
        scores[q, pos] = scores[q, pos - 1]
        index[q, pos] = index[q, pos - 1]
        pos -= 1
    scores[q, pos] = v
    index[q, pos] = g


@njit(cache=True, nogil=True, boundscheck=False)
def _scan(s, same, check_same, rows, cols, out):
    """One pass over a strip ``s`` (see :class:`StripScanner`); returns the number of near-ties written to ``out``."""
    # Named fields bound to locals once: the loops below see plain arrays, as when they were passed one by one.
    hi_r, lo_r, top_r, idx_r, gal_r, th_r = rows.hi, rows.lo, rows.top_scores, rows.top_index, rows.gallery, rows.threshold
    hi_c, lo_c, top_c, idx_c, gal_c, th_c = cols.hi, cols.lo, cols.top_scores, cols.top_index, cols.gallery, cols.threshold
    ahead_r, ahead_c, out_i, out_j = out.ahead_rows, out.ahead_cols, out.near_i, out.near_j
    n_rows, n_cols = s.shape
    k = top_r.shape[1]
    n = 0
    n_words = (n_cols + 7) // 8
    hits = np.zeros(n_words * 8, dtype=np.uint8)
    words = hits.view(np.uint64)  # 8 flags at a time: the few set ones are found without testing every entry
    for i in range(n_rows):
        row = s[i]
        hr = hi_r[i]
        lr = lo_r[i]
        tr = th_r[i]
        count = np.int32(0)
        flagged = 0
        # Branch-free, so that the loop vectorises: counts, and a 0/1 per entry that needs a closer look (a
        # near-tie or a top-K candidate); the few flagged entries are then handled one by one.
        if check_same:
            other = same[i]
            for j in range(n_cols):
                v = row[j]
                o = other[j] == 0
                count += np.int32(o & (v > hr))
                ahead_c[j] += np.int32(o & (v > hi_c[j]))
                hit = (o & (((v >= lr) & (v <= hr)) | ((v >= lo_c[j]) & (v <= hi_c[j])))) | (v >= tr) | (v >= th_c[j])
                hits[j] = hit
                flagged |= hit
        else:
            for j in range(n_cols):
                v = row[j]
                count += np.int32(v > hr)
                ahead_c[j] += np.int32(v > hi_c[j])
                hit = ((v >= lr) & (v <= hr)) | ((v >= lo_c[j]) & (v <= hi_c[j])) | (v >= tr) | (v >= th_c[j])
                hits[j] = hit
                flagged |= hit
        ahead_r[i] += count
        if not flagged:
            continue
        for w in range(n_words):
            if words[w] == 0:
                continue
            for j in range(8 * w, min(8 * w + 8, n_cols)):
                if not hits[j]:
                    continue
                v = row[j]
                # Top-K lists take every entry, same-sample ones included (hubness counts them). Thresholds only
                # rise: the K-th score, or a floor under the final K-th known from the start.
                if k and v >= th_r[i]:
                    _insert(top_r, idx_r, i, v, gal_r[j])
                    th_r[i] = max(th_r[i], top_r[i, k - 1])
                if k and v >= th_c[j]:
                    _insert(top_c, idx_c, j, v, gal_c[i])
                    th_c[j] = max(th_c[j], top_c[j, k - 1])
                o = True
                if check_same:
                    o = same[i, j] == 0
                if o and ((lr <= v <= hr) or (lo_c[j] <= v <= hi_c[j])):
                    out_i[n] = i
                    out_j[n] = j
                    n += 1
    return n


_NO_MASK = np.zeros((0, 0), dtype=np.uint8)

#: Above this ``2t`` the callers use numpy's exp on max-shifted strips instead of :func:`_exp_sums` (whose float32
#: terms ``exp(2t·s)`` stay far from overflow, and the rounding of ``2t·s`` small, up to here; the literature's t is 2).
MAX_TWO_T = 8.0


@intrinsic
def _float32_from_bits(typingctx, bits):  # type: ignore[no-untyped-def]
    """The float32 whose bit pattern is the int32 ``bits`` (an LLVM bitcast: it vectorises, a view would not)."""

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


# Cody-Waite split of ln 2 and the minimax polynomial of Cephes' expf (S. L. Moshier, Cephes Math Library).
_LOG2E = np.float32(1.44269504088896341)
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)


@njit(cache=True, nogil=True, boundscheck=False, inline="always", fastmath={"contract"})
def _exp32(x):
    """``exp(x)`` in float32 for ``|x| < 87``, within 2 ulp (1.2e-7 relative; 8.1e-8 measured, tested against numpy).

    Cephes' expf: ``x = k·ln 2 + r`` with ``|r| ≤ ln 2 / 2``, ``e^r ≈ 1 + r + r²·P(r)`` (P of degree 5), and
    ``2^k`` built from its exponent bits. Eight float32 lanes per AVX2 instruction where the float64 polynomial it
    replaced had four: the uniformity sums cost half as much.
    """
    k = np.floor(x * _LOG2E + np.float32(0.5))
    r = x - k * _LN2_HI
    r = r - k * _LN2_LO
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    p = p * (r * r) + r + np.float32(1.0)
    return p * _float32_from_bits((np.int32(k) + np.int32(127)) << np.int32(23))


#: Terms summed in float32 before they join a row's float64 sum. Vectorised in 8 lanes (AVX2), each float32
#: partial sum takes at most 32 of them: a relative rounding error of at most 32·2⁻²⁴ ≈ 2e-6 (256·2⁻²⁴ ≈ 1.5e-5
#: where the loop does not vectorise), ~1e-9 in practice (roundings of both signs), against the 2t·d·2⁻²⁴ that
#: the float32 scores may already carry.
#: Chunks of 256 cost 0.8 ns per term on the development machine, chunks of 64 1.0 ns (the float64 polynomial
#: this replaced 1.7 ns).
_CHUNK = 256


# fastmath "reassoc" lets the sums run in vector lanes (the order of a sum of positive terms changes its value by a
# few ulp); no flag that assumes finite values is set.
@njit(cache=True, nogil=True, boundscheck=False, fastmath={"reassoc", "contract"})
def _exp_sums(s, same, check_same, two_t, first_col, out):
    n_rows = s.shape[0]
    tt = np.float32(two_t)
    other = 0.0
    matched = 0.0
    for i in range(n_rows):
        start = max(0, i + first_col)
        row = s[i, start:]  # chunks counted from 0: with a variable start LLVM vectorised the loop 1.7x slower
        n = row.size
        acc = 0.0
        if check_same:
            flags = same[i, start:]
            acc_same = 0.0
            for c0 in range(0, n, _CHUNK):
                part = np.float32(0.0)
                part_same = np.float32(0.0)
                for j in range(c0, min(c0 + _CHUNK, n)):
                    e = _exp32(tt * row[j])
                    f = e * np.float32(flags[j])  # e or 0, exactly: branch-free, so the loop vectorises
                    part_same += f
                    part += e - f
                acc += part
                acc_same += part_same
            matched += acc_same
        else:
            for c0 in range(0, n, _CHUNK):
                part = np.float32(0.0)
                for j in range(c0, min(c0 + _CHUNK, n)):
                    part += _exp32(tt * row[j])
                acc += part
        other += acc
    out[0] = other
    out[1] = matched


def exp_terms(
    s: NDArray[np.float32], two_t: float, same: NDArray[np.bool_] | None = None, first_col: int | None = None
) -> tuple[float, float]:
    """``log Σ exp(2t·(s − 1))`` over a strip of scores (``2t ≤ MAX_TWO_T``); nothing is modified.

    Each term ``exp(2t·s)`` is a float32 within ``(|2t·s| + 2)·2⁻²⁴`` of its exact value, relatively (the
    rounding of ``2t·s`` and :func:`_exp32`'s 2 ulp; 3.6e-7 at t = 2), summed in float32 partial sums of at most
    32 terms in vector lanes (:data:`_CHUNK`) and in float64 beyond. The log-sum is within ~2e-6 of the exact one
    in the worst case (1.5e-5 where the loop does not vectorise) and ~1e-8 in practice (the roundings go both ways), far below the effect of the float32 rounding of the
    scores themselves (up to ``2t·d·2⁻²⁴`` per term).

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
        raise InputError(f"2t = {two_t} is beyond the compiled exp's range ({MAX_TWO_T}); use strip_uniformity")
    out = np.empty(2)
    mask = _NO_MASK if same is None else same.view(np.uint8)
    _exp_sums(s, mask, same is not None, float(two_t), -(1 << 62) if first_col is None else first_col, out)
    return tuple(math.log(v) - two_t if v > 0.0 else -math.inf for v in out)  # type: ignore[return-value]


class StripScanner:
    """Scans strips of scores with :func:`_scan`, reusing its output buffers (one strip's size) from strip to
    strip."""

    def __init__(self) -> None:
        self.out_i = self.out_j = np.empty(0, dtype=np.intp)

    def __call__(
        self, s: NDArray[np.float32], same: NDArray[np.bool_] | None, rows: QueryState, cols: QueryState
    ) -> tuple[NDArray[np.int64], NDArray[np.int32], NDArray[np.intp], NDArray[np.intp]]:
        """Scan one strip of scores (rows: A queries, columns: B queries); the scores are not modified.

        Args:
            s: ``(r, c)`` float32 scores, C-contiguous rows.
            same: ``(r, c)`` mask of same-sample entries (not counted as ahead nor as near-ties), or None.
            rows: The row queries' thresholds, top-K lists and insertion thresholds (:class:`QueryState`; its
                ``gallery`` names the columns' items).
            cols: The same for the column queries (its ``gallery`` names the rows' items).

        Returns:
            ``(ahead_rows, ahead_cols, i, j)``: per row and per column the number of other-sample entries above
            ``hi``, and the coordinates of the other-sample near-ties of a row or column (to be decided on exact
            scores), in row-major order (views valid until the next call).
        """
        if not isinstance(rows, QueryState) or not isinstance(cols, QueryState):
            raise TypeError("rows and cols are QueryState(hi=..., lo=..., top_scores=..., top_index=..., gallery=..., "
                            "threshold=...)")
        n_rows, n_cols = s.shape
        mask = _NO_MASK if same is None else same.view(np.uint8)
        if self.out_i.size < n_rows * n_cols:  # room for every entry: a scan is never repeated
            self.out_i = np.empty(n_rows * n_cols, dtype=np.intp)
            self.out_j = np.empty(n_rows * n_cols, dtype=np.intp)
        out = ScanOutput(np.zeros(n_rows, dtype=np.int64), np.zeros(n_cols, dtype=np.int32), self.out_i, self.out_j)
        found = _scan(s, mask, same is not None, rows, cols, out)
        return out.ahead_rows, out.ahead_cols, self.out_i[:found], self.out_j[:found]
