"""Input checks shared by every metric: one place that turns bad arrays into one-line :class:`InputError`.

The checks run block by block (see :func:`gapdiag.metrics.blocked.iter_unit_blocks`) so that a memory-mapped
float16 cache is never converted to float32 as a whole.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from gapdiag.errors import InputError


def check_matrix(x: Any, name: str) -> NDArray[Any]:
    """Return ``x`` as a 2-D array (no copy); raise if it is not a non-empty ``(n, d)`` float matrix.

    Args:
        x: Candidate embedding matrix (ndarray or memory map).
        name: Argument / modality name used in the message.
    """
    arr = x if isinstance(x, np.ndarray) else np.asarray(x)
    if arr.ndim != 2:
        raise InputError(f"{name}: expected a 2-D (items, dim) array, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"{name}: empty embedding set (shape {arr.shape}); give at least one item")
    if not np.issubdtype(arr.dtype, np.floating):
        raise InputError(f"{name}: expected float vectors, got dtype {arr.dtype}")
    return arr


def check_same_dim(a: NDArray[Any], b: NDArray[Any], name_a: str, name_b: str) -> None:
    """Raise if two embedding matrices live in spaces of different dimension."""
    if a.shape[1] != b.shape[1]:
        raise InputError(
            f"dimension mismatch: {name_a} has dim {a.shape[1]} but {name_b} has dim {b.shape[1]}; "
            "embed both with the same model"
        )


def check_block_values(
    block: NDArray[Any], norms: NDArray[Any], name: str, offset: int | NDArray[np.intp]
) -> None:
    """Raise on NaN/inf entries or zero vectors in ``block``, given the L2 norms of its rows.

    A NaN or inf anywhere in a row makes its norm non-finite, so the norms (which the caller needs anyway)
    are enough to find a bad row; the block itself is only read to word the message.

    Args:
        block: A block of raw vectors.
        norms: L2 norm of each row of ``block``.
        name: Modality / argument name for the message.
        offset: Index of the block's first row in the full array, or the full-array index of every row, so
            that the message names the real item.
    """

    def row(k: int) -> int:
        return int(offset) + k if np.isscalar(offset) else int(np.asarray(offset)[k])

    bad = ~np.isfinite(norms)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        if np.isfinite(block[k]).all():
            raise InputError(f"{name}: item {row(k)} has a norm too large for float; rescale the embeddings")
        raise InputError(f"{name}: item {row(k)} contains NaN or inf; re-embed or drop that item")
    zero = norms == 0
    if zero.any():
        k = int(np.flatnonzero(zero)[0])
        raise InputError(
            f"{name}: item {row(k)} is a zero vector and cannot be L2-normalised; drop that item"
        )


def check_sample_index(sample: Any, n_items: int, name: str) -> NDArray[np.int64]:
    """Return ``sample`` as int64 of length ``n_items`` (item -> sample id); raise if it does not fit."""
    arr = np.asarray(sample)
    if arr.ndim != 1 or arr.shape[0] != n_items:
        raise InputError(
            f"{name}: sample_index has shape {arr.shape} but there are {n_items} items; give one sample id per item"
        )
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"{name}: sample_index must hold integers, got dtype {arr.dtype}")
    if arr.size and arr.min() < 0:
        raise InputError(f"{name}: sample_index has negative entries; sample ids start at 0")
    return arr.astype(np.int64, copy=False)


def default_sample_index(
    x: NDArray[Any], y: NDArray[Any], x_sample: Any, y_sample: Any, name_x: str, name_y: str
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Sample ids of two modalities; without them, row ``i`` of ``x`` is paired with row ``i`` of ``y`` (1:1)."""
    if x_sample is None and y_sample is None:
        if x.shape[0] != y.shape[0]:
            raise InputError(
                f"mismatched counts: {name_x} has {x.shape[0]} items but {name_y} has {y.shape[0]}; "
                "pass sample ids (x_sample, y_sample) for 1:N data"
            )
        ids = np.arange(x.shape[0], dtype=np.int64)
        return ids, ids
    if x_sample is None or y_sample is None:
        raise InputError("give both x_sample and y_sample, or neither (row i of x pairs with row i of y)")
    return check_sample_index(x_sample, x.shape[0], name_x), check_sample_index(y_sample, y.shape[0], name_y)


def one_per_sample(sample: NDArray[np.int64]) -> bool:
    """True when every sample id occurs exactly once (e.g. the image modality of COCO)."""
    return bool(np.unique(sample).size == sample.size)


def true_pair_items(
    x_sample: NDArray[np.int64], y_sample: NDArray[np.int64], name_x: str, name_y: str
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Item indices ``(ix, iy)`` of the true pairs between two modalities (the 1:N convention).

    When one modality has exactly one item per sample (e.g. the image), every item of the other modality is
    paired with the item of its sample; items whose sample is missing from the one-per-sample side are
    unpaired. Same-sample pairs are then exactly the true pairs, which the gap and Cos_TP code relies on.

    Raises:
        InputError: Neither modality has one item per sample, so "the true partner" is ambiguous.
    """
    if one_per_sample(x_sample):
        one, many, swap = x_sample, y_sample, False
    elif one_per_sample(y_sample):
        one, many, swap = y_sample, x_sample, True
    else:
        raise InputError(
            f"cannot pair {name_x} with {name_y}: neither has exactly one item per sample; "
            "pair-wise metrics (cos_tp, alignment) need one side with one item per sample"
        )
    lookup = np.full(int(max(one.max(), many.max())) + 1, -1, dtype=np.intp)
    lookup[one] = np.arange(one.size)
    partner = lookup[many]
    keep = np.flatnonzero(partner >= 0)
    if keep.size == 0:
        raise InputError(f"{name_x} and {name_y} share no sample id; nothing to pair")
    i_one, i_many = partner[keep], keep.astype(np.intp)
    return (i_many, i_one) if swap else (i_one, i_many)
