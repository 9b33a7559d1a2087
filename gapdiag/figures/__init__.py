"""Figures of an embedding space: modality-gap map, similarity histograms, spectra, gap, shift, comparisons.

The entry point of the figures (what the api and notebooks import: ``from gapdiag import figures``); each figure
family lives in its own module, whose public names this package re-exports:

* :mod:`~gapdiag.figures.common`: palette, markers, headless figures, titles, which samples and pairs to draw
* :mod:`~gapdiag.figures.embedding_map`: the modality-gap map (UMAP/PCA) and its memoised 2-D layout
* :mod:`~gapdiag.figures.interactive_map`: the same map in Plotly, for the HTML report
* :mod:`~gapdiag.figures.similarity`: cosine similarity of true vs non-matching pairs
* :mod:`~gapdiag.figures.spectrum`: singular-value spectra and effective rank
* :mod:`~gapdiag.figures.gap`: the joint set on the gap direction, and the dimensions that carry the gap
* :mod:`~gapdiag.figures.shift`: the embedding-shift experiment of Liang et al. (2022)
* :mod:`~gapdiag.figures.interventions`: the post-hoc interventions side by side (``gapdiag intervene``)
* :mod:`~gapdiag.figures.compare`: metric values of several reports side by side
* :mod:`~gapdiag.figures.kinds`: ``--kind`` parsing and building the figures of each kind
* :mod:`~gapdiag.figures.files`: saving figures (atomic, byte-reproducible)

Every module here imports matplotlib at its top (Plotly inside the functions that draw the interactive map).

Every ``plot_*`` function returns a :class:`matplotlib.figure.Figure` built without :mod:`matplotlib.pyplot`
(an Agg canvas is attached directly), so plotting is headless, thread-local and leaves no global figure
state behind. :func:`save_figure` writes one to PNG, SVG or PDF. UMAP is imported inside
:func:`map_coordinates` only when ``method="umap"``.

Colours follow the Okabe–Ito palette (Okabe & Ito 2008, "Color Universal Design"), which stays
distinguishable under the common forms of colour-vision deficiency. Titles carry the model and dataset
names from the embeddings' (or reports') provenance. File names are predictable:
``<kind>[-<method>].<format>``, e.g. ``map-umap.png``, ``hist.svg``, ``spectrum.pdf`` (see :func:`figure_stem`).
"""

from __future__ import annotations

from gapdiag.figures.common import (
    MARKERS,
    OKABE_ITO,
    StatusCallback,
    modality_colors,
    modality_pairs,
    select_samples,
)
from gapdiag.figures.compare import plot_compare, step_values
from gapdiag.figures.embedding_map import (
    COLOR_BY,
    METHODS,
    item_coordinates,
    map_coordinates,
    map_layout,
    plot_map,
)
from gapdiag.figures.files import FORMATS, MAX_DPI, check_dpi, check_pixels, save_figure, save_figures
from gapdiag.figures.gap import gap_projection, marginal_separation, plot_gap
from gapdiag.figures.interactive_map import build_interactive_map, interactive_map_html, item_labels
from gapdiag.figures.interventions import (
    load_interventions_result,
    plot_interventions,
    validate_interventions_result,
)
from gapdiag.figures.kinds import (
    DEFAULT_KINDS,
    EMBEDDING_KINDS,
    KINDS,
    check_options,
    figure_stem,
    make_figures,
    parse_kinds,
)
from gapdiag.figures.shift import load_shift_result, plot_shift, validate_shift_result
from gapdiag.figures.similarity import plot_similarity_histograms, random_non_matching_pairs
from gapdiag.figures.spectrum import plot_spectrum
from gapdiag.figures.track import DEFAULT_TRACK_METRICS, chosen_metrics, plot_track
from gapdiag.outputs import ensure_output_dir
from gapdiag.report.presentation import DEFAULT_DPI, describe_provenance

__all__ = [
    "COLOR_BY",
    "DEFAULT_DPI",
    "DEFAULT_KINDS",
    "DEFAULT_TRACK_METRICS",
    "EMBEDDING_KINDS",
    "FORMATS",
    "KINDS",
    "MARKERS",
    "MAX_DPI",
    "METHODS",
    "OKABE_ITO",
    "StatusCallback",
    "build_interactive_map",
    "check_dpi",
    "check_options",
    "check_pixels",
    "chosen_metrics",
    "describe_provenance",
    "ensure_output_dir",
    "figure_stem",
    "gap_projection",
    "interactive_map_html",
    "item_coordinates",
    "item_labels",
    "load_interventions_result",
    "load_shift_result",
    "make_figures",
    "map_coordinates",
    "map_layout",
    "marginal_separation",
    "modality_colors",
    "modality_pairs",
    "parse_kinds",
    "plot_compare",
    "plot_gap",
    "plot_interventions",
    "plot_map",
    "plot_shift",
    "plot_similarity_histograms",
    "plot_spectrum",
    "plot_track",
    "random_non_matching_pairs",
    "save_figure",
    "save_figures",
    "select_samples",
    "step_values",
    "validate_interventions_result",
    "validate_shift_result",
]
