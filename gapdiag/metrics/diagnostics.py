"""How :func:`~gapdiag.metrics.engine.compute_all` fills in the diagnostics beyond the centroid gap.

Gap decomposition and IsoScore come from the streamed statistics of the linear pass; the MMD test and TwoNN run
on the (optionally sampled) normalised vectors of the quadratic step; hubness reads the top-K lists of the
retrieval pass. The math lives in :mod:`decomposition`, :mod:`hubness` and :mod:`intrinsic`; this module only
names the results and puts the long lists in ``extras``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gapdiag.metrics.blocked import LinearStats, joint_stats
from gapdiag.metrics.decomposition import (
    MMD_PERMUTATIONS,
    MMD_SAMPLE,
    gap_decomposition_from_stats,
    mean_and_cov,
    mmd_test,
)
from gapdiag.metrics.hubness import HUBNESS_K, hubness
from gapdiag.metrics.intrinsic import TWONN_SAMPLE, isoscore_from_cov, twonn_estimate, twonn_rows
from gapdiag.metrics.rounding import NO_VARIANCE

DECOMPOSITION_LINEAR = {
    "gap_w2_squared": "w2_squared",
    "gap_bures": "bures",
    "gap_centroid_share": "centroid_share",
    "gap_dims_50": "dims_50",
    "gap_dims_90": "dims_90",
    "gap_dims_50_pca": "dims_50_pca",
    "gap_dims_90_pca": "dims_90_pca",
}
MMD = {"mmd_centred", "mmd_pvalue"}
HUBNESS = {"hubness_skewness": "skewness", "robin_hood": "robin_hood", "antihub_share": "antihub_share"}


def needs_gram(bases: set[str]) -> bool:
    """Whether the linear pass must accumulate Gram matrices for these diagnostics."""
    return bool(bases & (set(DECOMPOSITION_LINEAR) | {"isoscore"}))


def linear_diagnostics(
    bases: set[str],
    names: list[str],
    pairs: list[tuple[str, str]],
    stats: dict[str, LinearStats],
    values: dict[str, float],
    extras: dict[str, Any],
) -> None:
    """Gap decomposition per modality pair and IsoScore per modality and joint, from the streamed statistics."""

    if bases & set(DECOMPOSITION_LINEAR):
        for a, b in pairs:
            q = f"{a}-{b}"
            dec = gap_decomposition_from_stats(stats[a], stats[b])
            for base, key in DECOMPOSITION_LINEAR.items():
                if base in bases:
                    value = float(dec[key])
                    if key.startswith("dims") and dec["centroid"] == 0:  # Δ = 0: no share of it to carry
                        value = math.nan
                    why = ("the two modalities' Gaussian fits coincide (W2 = 0)" if key == "centroid_share"
                           else "the two centroids coincide: the gap has no direction")
                    _put(values, extras, f"{base}/{q}", value, why)
            extras[f"gap_decomposition/{q}"] = {
                k: dec[k]
                for k in ("centroid", "bures", "w2_squared", "top_dims", "contributions", "contributions_pca")
            }
    if "isoscore" in bases:
        joint = joint_stats([stats[m] for m in names])
        for q, st in [*((m, stats[m]) for m in names), ("joint", joint)]:
            _, cov = mean_and_cov(st)  # InputError without the Gram matrix
            # The largest eigenvalue against the scale of the sums that cancel in the covariance.
            noise = NO_VARIANCE * float(np.trace(st.gram)) / st.n
            _put(values, extras, f"isoscore/{q}", isoscore_from_cov(cov, noise=noise),
                 "no variance: every vector is the same (up to float rounding)")


def sampled_diagnostics(
    bases: set[str],
    names: list[str],
    pairs: list[tuple[str, str]],
    units: dict[str, NDArray[np.float32]],
    values: dict[str, float],
    extras: dict[str, Any],
    seed: int,
) -> None:
    """MMD test of the centred modalities per pair, TwoNN per modality and joint (bounded seeded samples)."""

    if bases & MMD:
        for a, b in pairs:
            q = f"{a}-{b}"
            if min(units[a].shape[0], units[b].shape[0]) < 2:
                for base in bases & MMD:
                    extras["skipped"][f"{base}/{q}"] = "needs at least 2 items per modality"
                continue
            mmd, p = mmd_test(units[a], units[b], seed=seed, normalize=False)
            if "mmd_centred" in bases:
                values[f"mmd_centred/{q}"] = mmd
            if "mmd_pvalue" in bases:
                values[f"mmd_pvalue/{q}"] = p
        extras["variants"]["mmd"] = (
            f"unbiased MMD^2, RBF at the median heuristic, mean-centred modalities, "
            f"<= {MMD_SAMPLE} items each, {MMD_PERMUTATIONS} permutations"
        )
    if "twonn_dimension" in bases:
        for q, pts in [*((m, units[m]) for m in names), ("joint", _joint_twonn_points(units, names, seed))]:
            value, why = twonn_estimate(pts, seed=seed, normalize=False)
            _put(values, extras, f"twonn_dimension/{q}", value, why or "")
        extras["variants"]["twonn_dimension"] = (
            f"TwoNN unbiased MLE (N-1)/sum log(r2/r1) on the distinct points, exact FAISS 2-NN (float64 below "
            f"float32 rounding), <= {TWONN_SAMPLE} points"
        )


def _joint_twonn_points(units: dict[str, NDArray[np.float32]], names: list[str], seed: int) -> NDArray[np.float32]:
    """The points TwoNN draws from the joint set (all modalities stacked), gathered without stacking them all."""
    sizes = [units[m].shape[0] for m in names]
    rows = twonn_rows(sum(sizes), seed=seed)
    if rows is None:
        return np.concatenate([units[m] for m in names])
    starts = np.cumsum([0, *sizes])
    return np.concatenate([units[m][rows[(rows >= starts[i]) & (rows < starts[i + 1])] - starts[i]]
                           for i, m in enumerate(names)])


def hubness_diagnostics(
    bases: set[str],
    direction: str,
    top: NDArray[np.int64],
    n_gallery: int,
    gallery_rows: NDArray[np.intp] | None,
    values: dict[str, float],
    extras: dict[str, Any],
) -> None:
    """Hubness of one retrieval direction from its top-K lists (``gallery_rows`` maps subset rows to items)."""

    h = hubness(top[:, : min(HUBNESS_K, top.shape[1])], n_gallery)
    for base, key in HUBNESS.items():
        if base in bases:
            _put(values, extras, f"{base}/{direction}", h[key], "all gallery items occur equally often")
    for hub in h["hubs"]:
        if gallery_rows is not None:
            hub["item"] = int(gallery_rows[hub["item"]])
    extras[f"hubness/{direction}"] = {"k": h["k"], "max_occurrence": h["max_occurrence"], "hubs": h["hubs"]}


def _put(values: dict[str, float], extras: dict[str, Any], name: str, value: float, why: str) -> None:
    if math.isfinite(value):
        values[name] = value
    else:
        extras["skipped"][name] = why
