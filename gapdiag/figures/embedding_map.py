"""The modality-gap map: every modality projected jointly to 2-D (UMAP or PCA), true pairs joined by lines.

UMAP is imported inside :func:`map_coordinates` only when ``method="umap"``; its seeded fit is memoised under
the vectors' cache entry (:mod:`gapdiag.cache.derived`), so a second ``plot`` or ``report`` skips it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from numpy.typing import NDArray

from gapdiag.cache import derived
from gapdiag.errors import InputError
from gapdiag.figures.common import (
    MARKERS,
    StatusCallback,
    check_choice,
    class_colors,
    figure_title,
    modality_colors,
    modality_pairs,
    new_figure,
    select_samples,
)
from gapdiag.metrics.blocked import unit_rows
from gapdiag.vectors import EmbeddingSet

METHODS: tuple[str, ...] = ("umap", "pca")
COLOR_BY: tuple[str, ...] = ("modality", "class")
#: Classes beyond this many get colours but no legend entries (the legend would hide the map).
_MAX_CLASS_LEGEND = 12


def map_coordinates(
    z: NDArray[np.float64], *, method: str = "umap", seed: int = 0, status: StatusCallback | None = None
) -> NDArray[np.float64]:
    """2-D coordinates of the rows of ``z`` (already unit-normalised) by PCA or UMAP.

    PCA (scikit-learn, full SVD) is deterministic. UMAP (McInnes et al. 2018) gets ``random_state=seed`` and
    one thread, which makes it deterministic on a given machine; its first fit in a process compiles numba
    code (~10 s), announced through ``status``.
    """
    check_choice(method, METHODS, "method")
    n = z.shape[0]
    if n < 3:
        raise InputError(
            f"a map needs at least 3 points, got {n}", hint="use more samples or raise --max-pairs"
        )
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, svd_solver="full").fit_transform(z)
    try:
        import umap
    except ImportError:
        raise InputError(
            "method 'umap' needs the umap-learn package", hint="pip install umap-learn, or use --method pca"
        ) from None
    # Identical vectors (a caption repeated for every image of its class) would fill each other's neighbour
    # lists at distance 0 and cut the graph into islands: fit on the distinct rows and map duplicates back.
    unique, inverse = np.unique(z, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    n = unique.shape[0]
    if n < 3:
        raise InputError(f"a map needs at least 3 distinct points, got {n}", hint="use more samples or --method pca")
    if status is not None:
        status(f"Fitting UMAP on {n} points (the first fit in a process compiles numba code, ~10 s)…")
    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=max(2, min(15, n - 1)),
        min_dist=0.1,
        # Points are unit vectors, so Euclidean distance is a monotone function of the cosine.
        metric="euclidean",
        # Spectral initialisation needs a connected graph of some size; tiny maps start at random.
        init="spectral" if n > 50 else "random",
        random_state=seed,
        n_jobs=1,
    )
    return np.asarray(reducer.fit_transform(unique), dtype=np.float64)[inverse]


def item_coordinates(es: EmbeddingSet, *, method: str = "pca", seed: int = 0,
                     status: StatusCallback | None = None) -> NDArray[np.float32]:
    """2-D coordinates of every item of ``es``, modality after modality (the rows of ``gapdiag export``): all
    modalities unit-normalised and projected together by :func:`map_coordinates`, as on the map figure."""
    z = np.vstack([unit_rows(es.vectors[m], m) for m in es.modality_names]).astype(np.float64)
    return map_coordinates(z, method=method, seed=seed, status=status).astype(np.float32)


def _memoised_map(
    es: EmbeddingSet, z: NDArray[np.float64], *, method: str, seed: int, status: StatusCallback | None
) -> NDArray[np.float64]:
    """:func:`map_coordinates`, read back from the cache when these very points were mapped before.

    UMAP is seeded (one thread), so its embedding is a function of the points, the method, its parameters and
    the umap version: kept under the vectors' cache entry (:mod:`gapdiag.cache.derived`), a second ``plot`` or
    ``report`` skips the fit (and numba's compilation).
    """
    parts = {
        "points": hashlib.blake2b(np.ascontiguousarray(z).tobytes(), digest_size=20).hexdigest(),
        "shape": list(z.shape),
        "method": method,
        "seed": seed,
        "umap": _package_version("umap-learn") if method == "umap" else None,
        "code": derived.code_stamp("figures/embedding_map.py"),
    }
    path = derived.memo_path(es, "map", parts, ".npy")
    xy = derived.load_array(path)
    if xy is None or xy.shape != (z.shape[0], 2):
        xy = map_coordinates(z, method=method, seed=seed, status=status)
        derived.save_array(path, xy)
    return xy


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def map_layout(
    es: EmbeddingSet,
    *,
    method: str = "umap",
    max_pairs: int | None = 2000,
    seed: int = 0,
    status: StatusCallback | None = None,
) -> tuple[NDArray[np.int64], dict[str, NDArray[Any]], dict[str, NDArray[Any]], dict[str, NDArray[Any]]]:
    """The points of a map, shared by the static map and the interactive one in the HTML report.

    Returns:
        ``(chosen, keep, coords, samples)``: the drawn samples (:func:`select_samples`), and per modality
        the row indices of its drawn items, their 2-D coordinates (all modalities projected jointly) and
        the sample of each drawn item.
    """
    names = es.modality_names
    chosen = select_samples(es.n_samples, max_pairs, seed)
    keep = {m: np.flatnonzero(np.isin(es.sample_index[m], chosen)) for m in names}
    blocks = [unit_rows(es.vectors[m], m, rows=keep[m]) for m in names]
    xy = _memoised_map(es, np.vstack(blocks).astype(np.float64), method=method, seed=seed, status=status)
    starts = np.cumsum([0] + [len(keep[m]) for m in names])
    coords = {m: xy[starts[i] : starts[i + 1]] for i, m in enumerate(names)}
    samples = {m: np.asarray(es.sample_index[m], dtype=np.int64)[keep[m]] for m in names}
    return chosen, keep, coords, samples


def plot_map(
    es: EmbeddingSet,
    *,
    method: str = "umap",
    max_pairs: int | None = 2000,
    seed: int = 0,
    color_by: str = "modality",
    title: str | None = None,
    status: StatusCallback | None = None,
) -> Figure:
    """All modalities embedded together in 2-D, with a thin line joining every true pair (Liang et al. 2022, Fig. 1).

    A modality gap shows as one cloud (cone) per modality with long parallel lines between them; a closed
    gap shows as mixed clouds with short lines. Vectors are L2-normalised first.

    Args:
        es: Embeddings; all modalities are projected jointly.
        method: ``"umap"`` (as in the paper) or ``"pca"`` (linear, fast, deterministic everywhere).
        max_pairs: At most this many samples (true pairs) are drawn, chosen uniformly with ``seed``;
            ``None`` draws all.
        seed: Seeds the subsample and UMAP.
        color_by: ``"modality"`` (a colour per modality) or ``"class"`` (a colour per class label; the
            marker still shows the modality).
        title: Figure title; default names the projection, model and dataset.
        status: Called with a message before the slow UMAP fit.

    Returns:
        The figure. Its axes hold one scatter collection per modality (``gid="points/<modality>"``) and
        one :class:`~matplotlib.collections.LineCollection` of the pairs (``gid="pairs"``).
    """
    check_choice(method, METHODS, "method")
    check_choice(color_by, COLOR_BY, "color-by")
    if color_by == "class" and es.labels is None:
        raise InputError(
            "color-by 'class' needs class labels, and these embeddings have none",
            hint="use --color-by modality or a dataset with labels",
        )
    chosen, _, coords, samples = map_layout(es, method=method, max_pairs=max_pairs, seed=seed, status=status)

    fig = new_figure(7.5, 6.5)
    ax = fig.add_subplot()
    has_pairs = _draw_pair_lines(ax, es.modality_names, coords, samples)
    point_class_colors = _draw_points(ax, es, coords, samples, color_by)
    ax.legend(handles=_legend_handles(es, color_by, point_class_colors, has_pairs), loc="best",
              fontsize="small", framealpha=0.85)
    ax.autoscale_view()
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(f"{method.upper()} 1")
    ax.set_ylabel(f"{method.upper()} 2")
    shown = (
        f"{len(chosen)} of {es.n_samples} samples"
        if len(chosen) < es.n_samples
        else f"{es.n_samples} samples"
    )
    fig.suptitle(figure_title(f"Embedding map ({method.upper()}, {shown})", es.provenance, title))
    return fig


def _draw_pair_lines(
    ax: Axes, names: Sequence[str], coords: Mapping[str, NDArray[Any]], samples: Mapping[str, NDArray[Any]]
) -> bool:
    """One grey segment per drawn true pair, under the points (``gid="pairs"``); whether there was any."""
    segments = [
        np.stack([coords[a][ia], coords[b][ib]], axis=1) for a, b, ia, ib in modality_pairs(names, samples)
    ]
    if segments:
        ax.add_collection(
            LineCollection(
                np.concatenate(segments), colors="0.55", linewidths=0.35, alpha=0.45, zorder=1, gid="pairs"
            )
        )
    return bool(segments)


def _draw_points(
    ax: Axes,
    es: EmbeddingSet,
    coords: Mapping[str, NDArray[Any]],
    samples: Mapping[str, NDArray[Any]],
    color_by: str,
) -> list[Any]:
    """One scatter per modality (its own marker), coloured by modality or class; returns the class colours
    (empty when coloured by modality)."""
    names = es.modality_names
    # Smaller points as the map fills up, within readable bounds.
    n_points = sum(len(c) for c in coords.values())
    size = float(np.clip(3000.0 / max(n_points, 1), 3.0, 30.0))
    mod_colors = modality_colors(names)
    colors_of_classes: list[Any] = []
    if color_by == "class":
        labels = np.asarray(es.labels, dtype=np.int64)
        colors_of_classes = class_colors(max(len(es.class_names or []), int(labels.max()) + 1))
    for i, m in enumerate(names):
        if color_by == "modality":
            color: dict[str, Any] = {"color": mod_colors[m]}
        else:
            color = {"c": [colors_of_classes[label] for label in labels[samples[m]]]}
        ax.scatter(
            coords[m][:, 0],
            coords[m][:, 1],
            s=size,
            marker=MARKERS[i % len(MARKERS)],
            linewidths=0,
            alpha=0.85,
            label=m,
            zorder=2,
            gid=f"points/{m}",
            **color,
        )
    return colors_of_classes


def _legend_handles(
    es: EmbeddingSet, color_by: str, colors_of_classes: Sequence[Any], has_pairs: bool
) -> list[Line2D]:
    """Legend entries: a marker per modality, then a colour per class (up to a dozen), then the pair line."""
    names = es.modality_names
    mod_colors = modality_colors(names)
    handles = [
        Line2D(
            [],
            [],
            marker=MARKERS[i % len(MARKERS)],
            linestyle="",
            color=mod_colors[m] if color_by == "modality" else "0.3",
            label=m,
        )
        for i, m in enumerate(names)
    ]
    if color_by == "class" and len(colors_of_classes) <= _MAX_CLASS_LEGEND:
        class_names = es.class_names or [str(c) for c in range(len(colors_of_classes))]
        handles += [
            Line2D([], [], marker="o", linestyle="", color=c, label=str(n))
            for c, n in zip(colors_of_classes, class_names)
        ]
    if has_pairs:
        handles.append(Line2D([], [], color="0.55", linewidth=0.8, label="true pair"))
    return handles
