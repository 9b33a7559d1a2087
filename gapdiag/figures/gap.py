"""``gapdiag plot --kind gap``: a figure that shows the modality gap instead of hiding it.

UMAP and PCA maps spend their two axes on the largest variance, which is rarely the gap: a model with a large
gap and its gap-closing twin can give look-alike maps. This figure puts the joint set on the gap direction
``Δ̂ = (μx − μy)/‖μx − μy‖`` (x axis) and on the first principal direction of what is left after removing the
Δ̂ component (y axis), with each modality's histogram of the Δ̂ projection in the top margin, next to a bar chart
of the per-dimension contributions ``Δ_j²/‖Δ‖²`` (the dimensions that carry the gap).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import NDArray

from gapdiag.errors import InputError
from gapdiag.figures.common import figure_title, modality_colors, new_figure
from gapdiag.metrics.blocked import linear_stats, unit_rows
from gapdiag.metrics.decomposition import contributions, dims_for_share, mean_and_cov
from gapdiag.metrics.linalg import eigh
from gapdiag.metrics.sampling import sorted_choice
from gapdiag.vectors import EmbeddingSet

#: Bars in the contribution chart.
TOP_BARS = 20


def gap_projection(
    es: EmbeddingSet, *, pair: tuple[str, str] | None = None, max_points: int | None = 2000, seed: int = 0
) -> dict[str, Any]:
    """Coordinates of the gap figure: per modality, the projection on Δ̂ (``x``) and on the residual's first
    principal direction (``y``), of at most ``max_points`` items per modality (seeded draw).

    Δ and the residual direction come from every item; only the drawn points are returned.

    Returns:
        ``{"pair": (a, b), "x": {m: array}, "y": {m: array}, "delta": Δ (d,), "separation": s}`` with ``s`` the
        separation of the two marginal histograms, :func:`marginal_separation`.
    """
    names = es.modality_names
    a, b = pair or (names[0], names[1]) if len(names) >= 2 else (None, None)
    if a is None or a not in names or b not in names:
        raise InputError(f"the gap figure needs two modalities, got {names}", hint="use paired data")
    sa, sb = linear_stats(es.vectors[a], a), linear_stats(es.vectors[b], b)
    delta = sa.total / sa.n - sb.total / sb.n
    norm = float(np.linalg.norm(delta))
    if norm == 0:
        raise InputError(f"{a} and {b} have the same centroid: there is no gap direction to plot")
    u = delta / norm
    mean, cov = mean_and_cov(sa + sb)
    # Covariance of the residual r = z − (z·u)u is P Σ P with P = I − uuᵀ: its top eigenvector is the y axis.
    p = np.eye(u.size) - np.outer(u, u)
    w, v = eigh(p @ cov @ p)
    axis_y = v[:, int(np.argmax(w))]
    rng = np.random.default_rng(seed)
    xs, ys = {}, {}
    for m in (a, b):
        n = es.vectors[m].shape[0]
        rows = None if max_points is None or n <= max_points else sorted_choice(rng, n, max_points)
        z = unit_rows(es.vectors[m], m, rows=rows).astype(np.float64) - mean
        xs[m], ys[m] = z @ u, z @ axis_y
    return {"pair": (a, b), "x": xs, "y": ys, "delta": delta, "separation": marginal_separation(xs[a], xs[b])}


def marginal_separation(xa: NDArray[np.float64], xb: NDArray[np.float64]) -> float:
    """``|mean(xa) − mean(xb)| / √((var(xa) + var(xb))/2)``: how many pooled standard deviations apart the two
    marginal histograms sit (Cohen's d); 0 = on top of each other."""
    pooled = math.sqrt((float(np.var(xa)) + float(np.var(xb))) / 2.0)
    diff = abs(float(np.mean(xa)) - float(np.mean(xb)))
    return diff / pooled if pooled > 0 else math.inf if diff > 0 else 0.0


def plot_gap(
    es: EmbeddingSet,
    *,
    pair: tuple[str, str] | None = None,
    max_points: int | None = 2000,
    seed: int = 0,
    title: str | None = None,
) -> Figure:
    """The gap figure (see the module docstring).

    Artists carry ``gid`` values for tests and tools: ``gap/scatter/<m>``, ``gap/hist/<m>`` and
    ``gap/contributions``.
    """
    proj = gap_projection(es, pair=pair, max_points=max_points, seed=seed)
    a, b = proj["pair"]
    colors = modality_colors(es.modality_names)
    fig = new_figure(11.0, 5.6)
    grid = fig.add_gridspec(2, 2, height_ratios=(1, 3), width_ratios=(3, 2))
    ax_hist = fig.add_subplot(grid[0, 0])
    ax = fig.add_subplot(grid[1, 0], sharex=ax_hist)
    ax_bar = fig.add_subplot(grid[:, 1])
    lo = min(float(proj["x"][m].min()) for m in (a, b))
    hi = max(float(proj["x"][m].max()) for m in (a, b))
    bins = np.linspace(lo, hi, 41) if hi > lo else 10
    for m in (a, b):
        ax.scatter(
            proj["x"][m],
            proj["y"][m],
            s=6,
            alpha=0.5,
            color=colors[m],
            label=m,
            gid=f"gap/scatter/{m}",
            rasterized=True,
        )
        ax_hist.hist(proj["x"][m], bins=bins, density=True, color=colors[m], alpha=0.55, gid=f"gap/hist/{m}")
    norm = float(np.linalg.norm(proj["delta"]))
    ax.set_xlabel(f"projection on the gap direction Δ̂ (‖Δ‖ = {norm:.3f})")
    ax.set_ylabel("first principal direction of the residual")
    ax.legend(fontsize="small", markerscale=2)
    ax_hist.set_ylabel("density")
    ax_hist.set_title(
        f"{a} vs {b}: marginal separation {proj['separation']:.2f} pooled s.d.", fontsize="medium"
    )
    ax_hist.tick_params(labelbottom=False)
    c = contributions(proj["delta"])
    order = np.argsort(-c, kind="stable")[:TOP_BARS]
    ax_bar.bar(np.arange(order.size), c[order], color="#555555", gid="gap/contributions")
    ax_bar.set_xticks(np.arange(order.size), [str(int(j)) for j in order], rotation=90, fontsize="x-small")
    ax_bar.set_xlabel("embedding dimension")
    ax_bar.set_ylabel("share of ‖Δ‖²  (Δ_j² / ‖Δ‖²)")
    ax_bar.set_title(
        f"{dims_for_share(c, 0.5)} dims carry 50 %, {dims_for_share(c, 0.9)} carry 90 % (of {c.size})",
        fontsize="medium",
    )
    fig.suptitle(figure_title("Modality gap", es.provenance, title))
    return fig
