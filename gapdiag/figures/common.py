"""What every figure shares: the Okabe–Ito palette, markers, headless figures, titles, and which samples and
modality pairs a figure draws.

Colours follow the Okabe–Ito palette (Okabe & Ito 2008, "Color Universal Design"), which stays
distinguishable under the common forms of colour-vision deficiency.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from itertools import combinations
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import hsv_to_rgb, to_hex
from matplotlib.figure import Figure
from numpy.typing import NDArray

from gapdiag.errors import InputError
from gapdiag.metrics.sampling import seeded_samples
from gapdiag.metrics.validation import one_per_sample, true_pair_items
from gapdiag.report.presentation import describe_provenance

#: Okabe–Ito colours, reordered so that the first two (blue, vermillion) separate image and text best.
OKABE_ITO: tuple[str, ...] = (
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#F0E442",  # yellow
    "#000000",  # black
)
#: One marker per modality, so modalities stay apart when colour encodes the class.
MARKERS: tuple[str, ...] = ("o", "^", "s", "D", "v", "P", "X", "*")

#: ``status(message)`` is called before slow steps (UMAP's first fit compiles numba code for ~10 s).
StatusCallback = Callable[[str], None]


def new_figure(width: float, height: float) -> Figure:
    """A constrained-layout figure of ``width`` × ``height`` inches on its own Agg canvas (no pyplot)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)  # headless: no pyplot, no GUI backend, no global figure registry
    return fig


def figure_title(what: str, provenance: Mapping[str, Any], title: str | None) -> str:
    """``title`` if given, else ``"<what> — <model> on <dataset>"`` (just ``what`` without provenance)."""
    if title is not None:
        return title
    return f"{what} — {describe_provenance(provenance)}" if provenance else what


def modality_colors(names: Sequence[str]) -> dict[str, str]:
    """A fixed Okabe–Ito colour per modality, by position (image blue, text vermillion, ...)."""
    return {name: OKABE_ITO[i % len(OKABE_ITO)] for i, name in enumerate(names)}


def class_colors(n_classes: int) -> list[str]:
    """One categorical colour per class (hex), shared by the static and the interactive map.

    Okabe–Ito while it has enough colours (8); up to 20 classes matplotlib's tab20 with its strong half first
    (so 10 classes get tab10, the palette most papers use); beyond, hues around the colour wheel by the golden
    angle with alternating saturation and brightness. Never a continuous colour map: classes have no order,
    and viridis's dark-to-light steps made ten digit classes read as a scale.
    """
    if n_classes <= len(OKABE_ITO):
        return list(OKABE_ITO[:n_classes])
    if n_classes <= 20:
        tab20 = colormaps["tab20"].colors
        return [to_hex(c) for c in (*tab20[0::2], *tab20[1::2])[:n_classes]]
    golden = (3 - 5**0.5) / 2  # consecutive classes land far apart on the hue circle, never in order
    return [to_hex(hsv_to_rgb(((i * golden) % 1.0, 0.75 if i % 3 else 0.5, 0.95 if i % 2 else 0.7)))
            for i in range(n_classes)]


def check_choice(value: str, choices: Sequence[str], option: str) -> None:
    """Raise a one-line :class:`InputError` naming ``option`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise InputError(f"unknown {option} {value!r}", hint=f"choose one of: {', '.join(choices)}")


def modality_pairs(
    names: Sequence[str], sample_index: Mapping[str, NDArray[np.int64]]
) -> list[tuple[str, str, NDArray[np.intp], NDArray[np.intp]]]:
    """``(a, b, ia, ib)`` for every modality pair in dataset order whose true pairs are well defined.

    True pairs follow the metrics' 1:N convention (:func:`gapdiag.metrics.validation.true_pair_items`):
    one side has one item per sample (the COCO image) and each item of the other side pairs with it. Pairs
    of modalities that both have several items per sample have no single partner and are left out.
    """
    out = []
    for a, b in combinations(names, 2):
        sa, sb = np.asarray(sample_index[a], dtype=np.int64), np.asarray(sample_index[b], dtype=np.int64)
        if (one_per_sample(sa) or one_per_sample(sb)) and np.intersect1d(sa, sb).size:
            ia, ib = true_pair_items(sa, sb, a, b)
            out.append((a, b, ia, ib))
    return out


def select_samples(n_samples: int, max_pairs: int | None, seed: int) -> NDArray[np.int64]:
    """The samples a plot shows: all of them, or a seeded uniform subset of ``max_pairs`` (sorted)."""
    if max_pairs is not None and max_pairs < 1:
        raise InputError(f"max_pairs must be at least 1, got {max_pairs}", hint="pass --max-pairs 1 or more")
    return seeded_samples(n_samples, n_samples if max_pairs is None else max_pairs, seed)


