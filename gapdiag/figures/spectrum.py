"""Singular-value spectra of the normalised embeddings, per modality and jointly, with the effective rank."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from gapdiag.figures.common import figure_title, modality_colors, new_figure
from gapdiag.metrics.blocked import linear_stats
from gapdiag.metrics.rank import effective_rank_from_singular_values, singular_values_from_stats
from gapdiag.vectors import EmbeddingSet


def plot_spectrum(es: EmbeddingSet, *, title: str | None = None) -> Figure:
    """Singular values of the L2-normalised embedding matrix per modality and jointly, log scale.

    A collapsed (low-rank) space shows as a spectrum that drops off after a few directions. The effective
    rank of Roy & Vetterli (2007), ``exp(H(p))`` with ``p_k = σ_k / Σ_j σ_j``, is marked with a dashed
    vertical line per curve. The joint set stacks every item of every modality. Values come from
    :mod:`gapdiag.metrics.rank` through the same streamed Gram matrices as ``gapdiag measure``
    (memory ``O(d²)`` whatever the number of items), so the figure matches the ``effective_rank/*`` metrics.

    Returns:
        The figure: one line per modality plus ``"joint"`` (``gid="spectrum/<name>"``) and a vertical line
        per curve at its effective rank (``gid="erank/<name>"``).
    """
    names = es.modality_names
    stats = {m: linear_stats(es.vectors[m], m, gram=True) for m in names}
    if len(names) > 1:
        stats["joint"] = sum((stats[m] for m in names[1:]), stats[names[0]])
    colors = {**modality_colors(names), "joint": "#000000"}
    fig = new_figure(7.0, 4.8)
    ax = fig.add_subplot()
    for name, st in stats.items():
        sigma = singular_values_from_stats(st)
        erank = effective_rank_from_singular_values(sigma)
        ax.plot(
            np.arange(1, len(sigma) + 1),
            sigma,
            color=colors[name],
            linewidth=1.6,
            label=f"{name} (effective rank {erank:.1f})",
            gid=f"spectrum/{name}",
        )
        ax.axvline(erank, color=colors[name], linestyle="--", linewidth=1, alpha=0.8, gid=f"erank/{name}")
    ax.set_yscale("log")
    ax.set_xlabel("index k")
    ax.set_ylabel("singular value σ_k")
    ax.legend(fontsize="small")
    ax.grid(True, which="major", alpha=0.3)
    fig.suptitle(figure_title("Singular-value spectrum", es.provenance, title))
    return fig
