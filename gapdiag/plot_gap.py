"""The gap figure's old import path (``gapdiag.plot_gap.plot_gap``, named in docs/plotting.md); it lives in
:mod:`gapdiag.figures.gap` and is also re-exported by :mod:`gapdiag.plot`."""

from __future__ import annotations

from gapdiag.figures.gap import TOP_BARS, gap_projection, marginal_separation, plot_gap

__all__ = ["TOP_BARS", "gap_projection", "marginal_separation", "plot_gap"]
