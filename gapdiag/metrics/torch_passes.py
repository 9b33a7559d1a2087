"""The uniformity pair passes of :mod:`gapdiag.metrics.blocked`, in torch, on the measure device (CUDA).

Same tiles, same sums: each tile of ``Â B̂ᵀ`` is one IEEE float32 matrix product (TF32 off), turned into
``v = 2t·(s − 1) = −t‖â − b̂‖²`` for unit vectors, and contributes ``m + log Σ exp(v − m)`` (``m`` its
maximum, the sum in float64); the tile terms stay on the device and are combined by one ``logsumexp`` at the
end, so the pass never waits on the host. Results equal the numpy passes to float32 rounding (tested to
1e-5 on CPU tensors). Retrieval ranks are not computed here: on a GPU, retrieval runs on the exact GPU
search (:func:`gapdiag.metrics.retrieval.search_topk`), so the cross pass only needs its uniformity terms.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gapdiag import device as devices
from gapdiag.metrics.blocked import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_T,
    TileCallback,
    check_block_size,
    tile_ranges,
)
from gapdiag.metrics.cross import CrossPassResult, count_same_sample_pairs


def pass_device(device: str) -> str | None:
    """The torch device the pair passes run on for measure's ``device``: a CUDA device, or None (numpy)."""

    dev = devices.parse(device)
    if dev.kind == "auto":
        if not devices.gpu_possible() or not devices.cuda_count():
            return None
        return "cuda"
    return str(dev) if dev.kind == "cuda" else None


def _tile_term(v: Any) -> Any:
    """``log Σ exp(v)`` of one tile as a 0-d float64 tensor (-inf for an all-masked tile), without a sync."""
    import torch

    m = v.max()
    shift = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    return shift.double() + torch.exp(v - shift).sum(dtype=torch.float64).log()


def _combine(terms: list[Any]) -> float:
    import torch

    if not terms:
        return -math.inf
    return float(torch.logsumexp(torch.stack(terms), dim=0))


class _NoTF32:
    """IEEE float32 products for the duration (TF32 keeps 10 mantissa bits: far from numpy's result)."""

    def __enter__(self) -> None:
        import torch

        self._saved = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False

    def __exit__(self, *exc: object) -> None:
        import torch

        torch.backends.cuda.matmul.allow_tf32 = self._saved


def within_pass_torch(
    z: NDArray[np.float32],
    *,
    device: str,
    t: float = DEFAULT_T,
    block_size: int = DEFAULT_BLOCK_SIZE,
    on_tile: TileCallback | None = None,
) -> float:
    """:func:`gapdiag.metrics.blocked.within_pass` on ``device``: ``log Σ_{i<j} exp(−t‖ẑ_i − ẑ_j‖²)``.

    Returns -inf when ``z`` has fewer than two rows.
    """
    import torch

    check_block_size(block_size)
    n = z.shape[0]
    tiles = tile_ranges(n, block_size)
    total, done = len(tiles) * (len(tiles) + 1) // 2, 0
    terms = []
    with _NoTF32(), torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32)).to(device)
        for ti, (i0, i1) in enumerate(tiles):
            for j0, j1 in tiles[ti:]:
                v = (x[i0:i1] @ x[j0:j1].T - 1.0) * (2.0 * t)
                if i0 == j0:  # diagonal tile: strict upper triangle (pairs i < j)
                    v = v.masked_fill(torch.ones_like(v, dtype=torch.bool).tril(), -math.inf)
                terms.append(_tile_term(v))
                done += 1
                if on_tile is not None:
                    on_tile(done, total)
        return _combine(terms)


def cross_uniformity_torch(
    a: NDArray[np.float32],
    b: NDArray[np.float32],
    a_sample: NDArray[np.int64],
    b_sample: NDArray[np.int64],
    *,
    device: str,
    t: float = DEFAULT_T,
    block_size: int = DEFAULT_BLOCK_SIZE,
    on_tile: TileCallback | None = None,
) -> CrossPassResult:
    """The uniformity terms of :func:`gapdiag.metrics.cross.cross_pass` on ``device`` (no ranks, no top-k).

    ``lse_all = log Σ_{a,b} exp(−t‖â − b̂‖²)`` over all pairs and ``lse_nonmatching`` over pairs of different
    samples (cross-modal uniformity, Fahim et al.; the joint term of Wang & Isola).
    """
    import torch

    check_block_size(block_size)
    n_same = count_same_sample_pairs(np.asarray(a_sample), np.asarray(b_sample))
    result = CrossPassResult(n_all=a.shape[0] * b.shape[0], n_nonmatching=a.shape[0] * b.shape[0] - n_same)
    tiles_a, tiles_b = tile_ranges(a.shape[0], block_size), tile_ranges(b.shape[0], block_size)
    total, done = len(tiles_a) * len(tiles_b), 0
    all_terms, nm_terms = [], []
    with _NoTF32(), torch.inference_mode():
        xa = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(device)
        xb = torch.from_numpy(np.ascontiguousarray(b, dtype=np.float32)).to(device)
        sa = torch.from_numpy(np.asarray(a_sample, dtype=np.int64)).to(device)
        sb = torch.from_numpy(np.asarray(b_sample, dtype=np.int64)).to(device)
        for a0, a1 in tiles_a:
            for b0, b1 in tiles_b:
                v = (xa[a0:a1] @ xb[b0:b1].T - 1.0) * (2.0 * t)
                all_terms.append(_tile_term(v))
                same = sa[a0:a1, None] == sb[None, b0:b1]
                nm_terms.append(_tile_term(v.masked_fill(same, -math.inf)))
                done += 1
                if on_tile is not None:
                    on_tile(done, total)
        result.lse_all = _combine(all_terms)
        result.lse_nonmatching = _combine(nm_terms)
    return result
