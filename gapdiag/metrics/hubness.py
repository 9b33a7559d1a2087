"""Hubness of cross-modal retrieval: how unevenly gallery items appear in the queries' top-K lists.

In high dimensions a few points ("hubs") are among the K nearest neighbours of very many queries while many
("anti-hubs") are nobody's neighbour (Radovanović et al., JMLR 2010). In retrieval, a hub is returned for
queries it does not match: hubness is how the geometry of the gap turns into retrieval errors.

Everything here is a pure function of the top-K index lists that the retrieval pass already produced
(:func:`gapdiag.metrics.retrieval.search_topk` or the fused blocked pass), so it costs O(N·K).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gapdiag.errors import InputError
from gapdiag.metrics.passes import Passes, Value, finite_or_skip

#: Depth of the top-K lists hubness is measured on (Radovanović et al. use k = 5 and 10).
HUBNESS_K = 10
#: Hubs listed in the report.
TOP_HUBS = 10


def k_occurrence(top: ArrayLike, n_gallery: int) -> NDArray[np.int64]:
    """``N_k(g)``: in how many queries' top-K lists each gallery item ``g`` appears (-1 entries ignored).

    Example:
        >>> k_occurrence([[0, 1], [0, 2], [0, 1]], 4).tolist()
        [3, 2, 1, 0]
    """
    idx = np.asarray(top, dtype=np.int64)
    if idx.ndim != 2:
        raise InputError(f"top-K lists must be a (queries, K) array, got shape {idx.shape}")
    if idx.size and idx.max() >= n_gallery:
        raise InputError(
            f"top-K lists name gallery item {int(idx.max())} but the gallery has {n_gallery} items"
        )
    return np.bincount(idx[idx >= 0], minlength=n_gallery).astype(np.int64)


def skewness(n_k: ArrayLike) -> float:
    """Standardised third moment ``E[(N_k − μ)³] / σ³`` (population moments; Radovanović et al., eq. 1).

    0 for a symmetric distribution, large and positive when a few hubs dominate; NaN when all ``N_k`` are equal.
    """
    v = np.asarray(n_k, dtype=np.float64)
    c = v - v.mean()
    sd = math.sqrt(float(np.mean(c**2)))
    return float(np.mean(c**3)) / sd**3 if sd > 0 else math.nan


def robin_hood(n_k: ArrayLike) -> float:
    """Robin Hood index ``Σ|N_k(g) − mean N_k| / (2 Σ N_k)`` (Feldbauer et al., 2018, eq. 3; Hoover 1936).

    The share of all top-K occurrences that would have to move from hubs to other items to give every item
    the same count: 0 = perfectly even, → 1 = one item takes every slot.
    """
    v = np.asarray(n_k, dtype=np.float64)
    total = v.sum()
    return float(np.abs(v - v.mean()).sum() / (2.0 * total)) if total > 0 else math.nan


def hubness(top: ArrayLike, n_gallery: int, *, n_hubs: int = TOP_HUBS) -> dict[str, Any]:
    """Hubness statistics of one retrieval direction from its top-K lists.

    Returns:
        ``skewness``, ``robin_hood``, ``antihub_share`` (fraction of gallery items with ``N_k = 0``), ``k``,
        ``max_occurrence`` and ``hubs``: the ``n_hubs`` items with the largest ``N_k`` (ties to the lower index)
        as ``{"item": g, "occurrence": N_k}``.
    """
    idx = np.asarray(top, dtype=np.int64)
    n_k = k_occurrence(idx, n_gallery)
    order = np.argsort(-n_k, kind="stable")[:n_hubs]
    return {
        "k": int(idx.shape[1]) if idx.ndim == 2 else 0,
        "skewness": skewness(n_k),
        "robin_hood": robin_hood(n_k),
        "antihub_share": float(np.mean(n_k == 0)),
        "max_occurrence": int(n_k.max()) if n_k.size else 0,
        "hubs": [{"item": int(g), "occurrence": int(n_k[g])} for g in order if n_k[g] > 0],
    }


def hubness_value(p: Passes, direction: str, *, key: str) -> Value:
    """One statistic (``key``: ``skewness``, ``robin_hood``, ``antihub_share``) of a direction's hubness, from its
    top-K lists (compute_all's value function). The statistics are computed once per direction, and the hubs,
    named by their item rows, go to ``extras["hubness/<q_to_g>"]``."""

    def of_direction() -> dict[str, Any]:
        gallery = p.direction(direction)[1]
        top = p.top[direction]
        h = hubness(top[:, : min(HUBNESS_K, top.shape[1])], p.units[gallery].shape[0])
        rows = p.rows.get(gallery)  # the drawn items (sample=n): hubs are named by their rows in the data
        for hub in h["hubs"]:
            if rows is not None:
                hub["item"] = int(rows[hub["item"]])
        p.extras[f"hubness/{direction}"] = {"k": h["k"], "max_occurrence": h["max_occurrence"], "hubs": h["hubs"]}
        return h

    return finite_or_skip(p.once(("hubness", direction), of_direction)[key], "all gallery items occur equally often")
