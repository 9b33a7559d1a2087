"""Cosine similarity of true pairs against random non-matching pairs: a histogram panel per modality pair.

The means shown are the exact ones over every pair (the metric table's ``cos_tp`` and ``cos_nonmatching``); the
bars are samples of pairs, and say so.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import NDArray

from gapdiag.errors import InputError
from gapdiag.figures.common import OKABE_ITO, figure_title, modality_pairs, new_figure
from gapdiag.metrics.blocked import linear_stats, paired_dot_sum, unit_rows
from gapdiag.metrics.gap import cos_nonmatching_from_sums, cos_tp_from_sum
from gapdiag.metrics.sampling import sorted_choice
from gapdiag.report.presentation import format_number
from gapdiag.vectors import EmbeddingSet


def random_non_matching_pairs(
    sample_a: NDArray[np.int64], sample_b: NDArray[np.int64], n: int, rng: np.random.Generator
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """``n`` uniformly drawn (item of A, item of B) pairs from different samples (rejection sampling)."""
    sample_a = np.asarray(sample_a)
    sample_b = np.asarray(sample_b)
    if n == 0 or len(np.union1d(sample_a, sample_b)) < 2:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    got_a: list[NDArray[np.int64]] = []
    got_b: list[NDArray[np.int64]] = []
    have = 0
    while have < n:
        ia = rng.integers(0, len(sample_a), size=2 * (n - have) + 16)
        ib = rng.integers(0, len(sample_b), size=len(ia))
        ok = sample_a[ia] != sample_b[ib]
        got_a.append(ia[ok])
        got_b.append(ib[ok])
        have += int(ok.sum())
    return np.concatenate(got_a)[:n].astype(np.int64), np.concatenate(got_b)[:n].astype(np.int64)


def _paired_cosines(
    x: NDArray[Any], y: NDArray[Any], ix: NDArray[np.intp], iy: NDArray[np.intp], names: tuple[str, str]
) -> NDArray[np.float64]:
    """``cos(x̂[ix[k]], ŷ[iy[k]])`` for every k, reading only the rows involved (in sorted order)."""
    if len(ix) == 0:
        return np.empty(0, dtype=np.float64)
    rows_x, inv_x = np.unique(ix, return_inverse=True)
    rows_y, inv_y = np.unique(iy, return_inverse=True)
    ux = unit_rows(x, names[0], rows=rows_x).astype(np.float64)
    uy = unit_rows(y, names[1], rows=rows_y).astype(np.float64)
    return np.einsum("ij,ij->i", ux[inv_x], uy[inv_y])


def plot_similarity_histograms(
    es: EmbeddingSet,
    *,
    seed: int = 0,
    bins: int = 50,
    max_pairs: int | None = 50_000,
    title: str | None = None,
) -> Figure:
    """Histograms of cos(x̂, ŷ) over true pairs and over as many random non-matching pairs, per modality pair.

    The dashed lines and the legend give the exact means over **every** pair, the numbers the metric table shows:
    Cos_TP (Grassucci et al.) and the non-matching cosine (``cos_nonmatching``), from one streamed O(N·d) pass
    over each modality (:mod:`gapdiag.metrics.gap`). The bars are drawn from samples of pairs, whose mean would
    differ by sampling noise (issue #25: 0.2648 against 0.2751); the legend says how many of how many. A
    well-aligned space separates the two histograms, and a modality gap pushes both towards low cosines together
    (Liang et al. 2022, Sec. 4).

    Args:
        es: Embeddings with at least two modalities.
        seed: Seeds the draw of non-matching pairs (and of true pairs beyond ``max_pairs``).
        bins: Number of histogram bins (shared by both histograms of a panel).
        max_pairs: At most this many true pairs per panel in the bars, drawn uniformly with ``seed`` (and as many
            non-matching pairs); only their rows are read for the bars. ``None`` uses every true pair.
        title: Figure title; default names the model and dataset.

    Returns:
        The figure: one axes per modality pair, each with two bar containers (true pairs first) and a dashed
        line at each exact mean.
    """
    names = es.modality_names
    if len(names) < 2:
        raise InputError(
            f"similarity histograms need two modalities, these embeddings have {names}",
            hint="use a paired dataset",
        )
    pairs = modality_pairs(names, es.sample_index)
    if not pairs:
        raise InputError(
            f"no modality pair of {names} has one item per sample on one side",
            hint="similarity histograms need true pairs (e.g. one image per sample)",
        )
    rng = np.random.default_rng(seed)
    fig = new_figure(5.0 * len(pairs), 4.2)
    axes = fig.subplots(1, len(pairs), squeeze=False)[0]
    for ax, (a, b, ia, ib) in zip(axes, pairs):
        means = _exact_means(es.vectors[a], es.vectors[b], ia, ib, (a, b))
        n_true = len(ia)
        if max_pairs is not None and n_true > max_pairs:
            pick = sorted_choice(rng, n_true, max_pairs)
            ia, ib = ia[pick], ib[pick]
        na, nb = random_non_matching_pairs(es.sample_index[a], es.sample_index[b], len(ia), rng)
        pos = _paired_cosines(es.vectors[a], es.vectors[b], ia, ib, (a, b))
        neg = _paired_cosines(es.vectors[a], es.vectors[b], na, nb, (a, b))
        both = np.concatenate([pos, neg])
        if both.size == 0:
            ax.text(0.5, 0.5, "no pairs", ha="center", va="center", transform=ax.transAxes)
        else:
            edges = np.linspace(both.min(), both.max() + 1e-9, bins + 1)
            for values, (label, total, mean), color in zip((pos, neg), means, OKABE_ITO[:2]):
                if values.size:
                    ax.hist(values, bins=edges, alpha=0.55, color=color,
                            label=f"{label} ({_drawn(values.size, total)}; mean {format_number(mean)})")
                    ax.axvline(mean, color=color, linestyle="--", linewidth=1)
            ax.legend(fontsize="small")
        shown = f"{len(ia)} of {n_true}" if len(ia) < n_true else f"{n_true}"
        ax.set_title(f"{a}–{b} ({shown} true pairs)")
        ax.set_xlabel("cosine similarity (dashed: mean over all pairs)")
        ax.set_ylabel("pairs")
    fig.suptitle(figure_title("Cosine similarity of pairs", es.provenance, title))
    return fig


def _drawn(n: int, total: int) -> str:
    """``all 50`` or ``10 of 1,200``: how many pairs the bars show."""
    return f"all {total:,}" if n == total else f"{n:,} of {total:,}"


def _exact_means(
    x: NDArray[Any], y: NDArray[Any], ix: NDArray[np.intp], iy: NDArray[np.intp], names: tuple[str, str]
) -> list[tuple[str, int, float]]:
    """``(label, pairs, mean)`` of the true and of the non-matching pairs, exactly as the metric table has them.

    The formulas and sums of :func:`gapdiag.metrics.gap.cos_tp` and :func:`~gapdiag.metrics.gap.cos_nonmatching`
    (one linear pass per modality, one over the true pairs); the non-matching mean is NaN without such pairs.
    """
    sx = linear_stats(x, names[0], gram=False)
    sy = linear_stats(y, names[1], gram=False)
    true_sum = paired_dot_sum(x, y, ix, iy, names)
    n_other = sx.n * sy.n - ix.size
    other = cos_nonmatching_from_sums(sx, sy, true_sum, ix.size) if n_other > 0 else math.nan
    return [("true pairs", ix.size, cos_tp_from_sum(true_sum, ix.size)), ("non-matching", n_other, other)]
