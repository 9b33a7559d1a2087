"""Figures of an embedding space: the modality-gap map, similarity histograms, spectra, shift and comparisons.

Every ``plot_*`` function returns a :class:`matplotlib.figure.Figure` built without :mod:`matplotlib.pyplot`
(an Agg canvas is attached directly), so plotting is headless, thread-local and leaves no global figure
state behind. :func:`save_figure` writes one to PNG, SVG or PDF. UMAP is imported inside :func:`plot_map`
only when ``method="umap"``.

Colours follow the Okabe–Ito palette (Okabe & Ito 2008, "Color Universal Design"), which stays
distinguishable under the common forms of colour-vision deficiency. Titles carry the model and dataset
names from the embeddings' (or reports') provenance. File names are predictable: ``<kind>[-<method>].<format>``,
e.g. ``map-umap.png``, ``hist.svg``, ``spectrum.pdf`` (see :func:`figure_stem`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from numpy.typing import NDArray

from gapdiag.embeddings import EmbeddingSet
from gapdiag.errors import InputError
from gapdiag.metrics.blocked import unit_rows
from gapdiag.metrics.sampling import seeded_samples
from gapdiag.presentation import format_number, order_metrics
from gapdiag.report import Report, split_metric_name

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

#: Every figure kind, in the order ``--kind all`` draws them.
KINDS: tuple[str, ...] = ("map", "hist", "spectrum", "gap", "shift", "compare")
#: Kinds drawn from embeddings (the others read a shift result or reports).
EMBEDDING_KINDS: tuple[str, ...] = ("map", "hist", "spectrum", "gap")
#: Embedding figures drawn without ``--kind`` and by ``--kind all`` (``gap`` is asked for by name).
DEFAULT_KINDS: tuple[str, ...] = ("map", "hist", "spectrum")
METHODS: tuple[str, ...] = ("umap", "pca")
COLOR_BY: tuple[str, ...] = ("modality", "class")
FORMATS: tuple[str, ...] = ("png", "svg", "pdf")
#: PNG resolution of every figure, in files (``gapdiag plot``) and in the HTML report alike.
DEFAULT_DPI = 150

#: ``status(message)`` is called before slow steps (UMAP's first fit compiles numba code for ~10 s).
StatusCallback = Callable[[str], None]

_SHIFT_KEYS = ("lambdas", "gap", "loss", "recall_at_1")
# Labels such as "3", "epoch 3", "step_1000", "ep-2" turn a comparison into a curve over training.
_STEP_LABEL = re.compile(
    r"^\s*(?:epoch|step|ep|iter(?:ation)?|it|e|s)?[\s_=:-]*(\d+(?:\.\d+)?)\s*$", re.IGNORECASE
)


# ---------------------------------------------------------------------------------------------------------
# Helpers shared by the figures
# ---------------------------------------------------------------------------------------------------------


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)  # headless: no pyplot, no GUI backend, no global figure registry
    return fig


def describe_provenance(provenance: Mapping[str, Any]) -> str:
    """``"<model> on <dataset>"`` from a provenance dict (``{"model": {"name"}, "dataset": {"name"}}``)."""
    model = (provenance.get("model") or {}).get("name") or "unknown model"
    pretrained = (provenance.get("model") or {}).get("pretrained")
    if pretrained and pretrained not in str(model):
        model = f"{model} ({pretrained})"
    dataset = (provenance.get("dataset") or {}).get("name") or "unknown data"
    return f"{model} on {dataset}"


def _title(what: str, provenance: Mapping[str, Any], title: str | None) -> str:
    if title is not None:
        return title
    return f"{what} — {describe_provenance(provenance)}" if provenance else what


def modality_colors(names: Sequence[str]) -> dict[str, str]:
    """A fixed Okabe–Ito colour per modality, by position (image blue, text vermillion, ...)."""
    return {name: OKABE_ITO[i % len(OKABE_ITO)] for i, name in enumerate(names)}


def _class_colors(n_classes: int) -> list[Any]:
    if n_classes <= len(OKABE_ITO):
        return list(OKABE_ITO[:n_classes])
    # More classes than any colour-blind-safe qualitative palette holds: viridis stays ordered in lightness.
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(i / max(n_classes - 1, 1)) for i in range(n_classes)]


def modality_pairs(
    names: Sequence[str], sample_index: Mapping[str, NDArray[np.int64]]
) -> list[tuple[str, str, NDArray[np.intp], NDArray[np.intp]]]:
    """``(a, b, ia, ib)`` for every modality pair in dataset order whose true pairs are well defined.

    True pairs follow the metrics' 1:N convention (:func:`gapdiag.metrics._validation.true_pair_items`):
    one side has one item per sample (the COCO image) and each item of the other side pairs with it. Pairs
    of modalities that both have several items per sample have no single partner and are left out.
    """
    from gapdiag.metrics._validation import one_per_sample, true_pair_items

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


def _check_choice(value: str, choices: Sequence[str], option: str) -> None:
    if value not in choices:
        raise InputError(f"unknown {option} {value!r}", hint=f"choose one of: {', '.join(choices)}")


def check_options(
    *, method: str | None = None, color_by: str | None = None, format: str | None = None
) -> None:
    """Validate plotting options up front (the CLI calls this before spending time on embeddings)."""
    for value, choices, option in (
        (method, METHODS, "method"),
        (color_by, COLOR_BY, "color-by"),
        (format, FORMATS, "format"),
    ):
        if value is not None:
            _check_choice(value, choices, option)


# ---------------------------------------------------------------------------------------------------------
# The modality-gap map
# ---------------------------------------------------------------------------------------------------------


def map_coordinates(
    z: NDArray[np.float64], *, method: str = "umap", seed: int = 0, status: StatusCallback | None = None
) -> NDArray[np.float64]:
    """2-D coordinates of the rows of ``z`` (already unit-normalised) by PCA or UMAP.

    PCA (scikit-learn, full SVD) is deterministic. UMAP (McInnes et al. 2018) gets ``random_state=seed`` and
    one thread, which makes it deterministic on a given machine; its first fit in a process compiles numba
    code (~10 s), announced through ``status``.
    """
    _check_choice(method, METHODS, "method")
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


def _memoised_map(
    es: EmbeddingSet, z: NDArray[np.float64], *, method: str, seed: int, status: StatusCallback | None
) -> NDArray[np.float64]:
    """:func:`map_coordinates`, read back from the cache when these very points were mapped before.

    UMAP is seeded (one thread), so its embedding is a function of the points, the method, its parameters and
    the umap version: kept under the vectors' cache entry (:mod:`gapdiag.derived`), a second ``plot`` or
    ``report`` skips the fit (and numba's compilation).
    """
    import hashlib

    from gapdiag import derived

    parts = {
        "points": hashlib.blake2b(np.ascontiguousarray(z).tobytes(), digest_size=20).hexdigest(),
        "shape": list(z.shape),
        "method": method,
        "seed": seed,
        "umap": _package_version("umap-learn") if method == "umap" else None,
        "code": derived.code_stamp("plot.py"),
    }
    path = derived.memo_path(es, "map", parts, ".npy")
    xy = derived.load_array(path)
    if xy is None or xy.shape != (z.shape[0], 2):
        xy = map_coordinates(z, method=method, seed=seed, status=status)
        derived.save_array(path, xy)
    return xy


def _package_version(name: str) -> str | None:
    import importlib.metadata

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
    _check_choice(method, METHODS, "method")
    _check_choice(color_by, COLOR_BY, "color-by")
    if color_by == "class" and es.labels is None:
        raise InputError(
            "color-by 'class' needs class labels, and these embeddings have none",
            hint="use --color-by modality or a dataset with labels",
        )
    names = es.modality_names
    chosen, _, coords, samples = map_layout(es, method=method, max_pairs=max_pairs, seed=seed, status=status)

    fig = _new_figure(7.5, 6.5)
    ax = fig.add_subplot()
    segments = [
        np.stack([coords[a][ia], coords[b][ib]], axis=1) for a, b, ia, ib in modality_pairs(names, samples)
    ]
    if segments:
        ax.add_collection(
            LineCollection(
                np.concatenate(segments), colors="0.55", linewidths=0.35, alpha=0.45, zorder=1, gid="pairs"
            )
        )
    n_points = sum(len(c) for c in coords.values())
    size = float(np.clip(3000.0 / max(n_points, 1), 3.0, 30.0))
    mod_colors = modality_colors(names)
    class_colors: list[Any] = []
    if color_by == "class":
        labels = np.asarray(es.labels, dtype=np.int64)
        class_colors = _class_colors(max(len(es.class_names or []), int(labels.max()) + 1))
    for i, m in enumerate(names):
        if color_by == "modality":
            color: dict[str, Any] = {"color": mod_colors[m]}
        else:
            color = {"c": [class_colors[label] for label in labels[samples[m]]]}
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
    if color_by == "class" and len(class_colors) <= 12:
        class_names = es.class_names or [str(c) for c in range(len(class_colors))]
        handles += [
            Line2D([], [], marker="o", linestyle="", color=c, label=str(n))
            for c, n in zip(class_colors, class_names)
        ]
    if segments:
        handles.append(Line2D([], [], color="0.55", linewidth=0.8, label="true pair"))
    ax.legend(handles=handles, loc="best", fontsize="small", framealpha=0.85)
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
    fig.suptitle(_title(f"Embedding map ({method.upper()}, {shown})", es.provenance, title))
    return fig


# ---------------------------------------------------------------------------------------------------------
# Cosine similarity of true vs non-matching pairs
# ---------------------------------------------------------------------------------------------------------


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

    The mean of the true-pair histogram is Cos_TP (Grassucci et al.); a well-aligned space separates the two
    histograms, and a modality gap pushes both towards low cosines together (Liang et al. 2022, Sec. 4).

    Args:
        es: Embeddings with at least two modalities.
        seed: Seeds the draw of non-matching pairs (and of true pairs beyond ``max_pairs``).
        bins: Number of histogram bins (shared by both histograms of a panel).
        max_pairs: At most this many true pairs per panel, drawn uniformly with ``seed`` (and as many
            non-matching pairs); only their rows are read, so a memory-mapped million-item cache is fine.
            ``None`` uses every true pair.
        title: Figure title; default names the model and dataset.

    Returns:
        The figure: one axes per modality pair, each with two bar containers (true pairs first).
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
    fig = _new_figure(5.0 * len(pairs), 4.2)
    axes = fig.subplots(1, len(pairs), squeeze=False)[0]
    for ax, (a, b, ia, ib) in zip(axes, pairs):
        n_true = len(ia)
        if max_pairs is not None and n_true > max_pairs:
            pick = np.sort(rng.choice(n_true, size=max_pairs, replace=False))
            ia, ib = ia[pick], ib[pick]
        na, nb = random_non_matching_pairs(es.sample_index[a], es.sample_index[b], len(ia), rng)
        pos = _paired_cosines(es.vectors[a], es.vectors[b], ia, ib, (a, b))
        neg = _paired_cosines(es.vectors[a], es.vectors[b], na, nb, (a, b))
        both = np.concatenate([pos, neg])
        if both.size == 0:
            ax.text(0.5, 0.5, "no pairs", ha="center", va="center", transform=ax.transAxes)
        else:
            edges = np.linspace(both.min(), both.max() + 1e-9, bins + 1)
            for values, label, color in (
                (pos, "true pairs", OKABE_ITO[0]),
                (neg, "non-matching", OKABE_ITO[1]),
            ):
                if values.size:
                    ax.hist(
                        values,
                        bins=edges,
                        alpha=0.55,
                        color=color,
                        label=f"{label} (mean {format_number(values.mean())})",
                    )
                    ax.axvline(values.mean(), color=color, linestyle="--", linewidth=1)
            ax.legend(fontsize="small")
        shown = f"{len(ia)} of {n_true}" if len(ia) < n_true else f"{n_true}"
        ax.set_title(f"{a}–{b} ({shown} true pairs)")
        ax.set_xlabel("cosine similarity")
        ax.set_ylabel("pairs")
    fig.suptitle(_title("Cosine similarity of pairs", es.provenance, title))
    return fig


# ---------------------------------------------------------------------------------------------------------
# Singular-value spectra
# ---------------------------------------------------------------------------------------------------------


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
    from gapdiag.metrics.blocked import linear_stats
    from gapdiag.metrics.rank import effective_rank_from_singular_values, singular_values_from_stats

    names = es.modality_names
    stats = {m: linear_stats(es.vectors[m], m, gram=True) for m in names}
    if len(names) > 1:
        stats["joint"] = sum((stats[m] for m in names[1:]), stats[names[0]])
    colors = {**modality_colors(names), "joint": "#000000"}
    fig = _new_figure(7.0, 4.8)
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
    fig.suptitle(_title("Singular-value spectrum", es.provenance, title))
    return fig


# ---------------------------------------------------------------------------------------------------------
# Embedding-shift experiment
# ---------------------------------------------------------------------------------------------------------


def validate_shift_result(result: Any, *, source: str = "shift result") -> dict[str, Any]:
    """Check the structure written by ``gapdiag shift --out`` and return it.

    Raises:
        InputError: a key is missing or a curve does not have one value per λ.
    """
    if not isinstance(result, dict):
        raise InputError(
            f"{source}: not a shift result (expected a JSON object)",
            hint="pass a file written by `gapdiag shift --out`",
        )
    for key in _SHIFT_KEYS:
        if key not in result:
            raise InputError(
                f"{source}: missing key {key!r}", hint="pass a file written by `gapdiag shift --out`"
            )
    n = len(result["lambdas"])
    curves: dict[str, Any] = {"gap": result["gap"]}
    curves.update({f"loss[{t}]": v for t, v in dict(result["loss"]).items()})
    curves.update({f"recall_at_1[{d}]": v for d, v in dict(result["recall_at_1"]).items()})
    if result.get("zero_shot_accuracy") is not None:
        curves["zero_shot_accuracy"] = result["zero_shot_accuracy"]
    for key, values in curves.items():
        if len(values) != n:
            raise InputError(
                f"{source}: {key} has {len(values)} values for {n} lambdas",
                hint="pass an unmodified file written by `gapdiag shift --out`",
            )
    return result


def load_shift_result(path: str | Path) -> dict[str, Any]:
    """Read and validate a shift result written by ``gapdiag shift --out``."""
    import json

    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(
            f"{path}: shift result not found", hint="run `gapdiag shift --out FILE` first"
        ) from None
    except IsADirectoryError:
        raise InputError(
            f"{path}: is a directory, not a shift result",
            hint="pass the file written by `gapdiag shift --out`",
        ) from None
    except json.JSONDecodeError as e:
        raise InputError(
            f"{path}:{e.lineno}: not valid JSON ({e.msg})",
            hint="pass the file written by `gapdiag shift --out`",
        ) from None
    return validate_shift_result(data, source=str(path))


def plot_shift(shift_result: Mapping[str, Any], *, title: str | None = None) -> Figure:
    """The embedding-shift experiment of Liang et al. (2022, Sec. 4.2, Fig. 4/Table 1).

    Top row: the contrastive loss along the shift path, one panel per temperature (each on its own scale;
    the minimum is marked, λ = 0 is the unmodified space). Liang et al. find that at CLIP's τ = 1/100 the
    existing gap is (close to) the minimum, while at higher τ it is not. Bottom row: the gap ‖Δ‖ and the
    retrieval R@1 / zero-shot accuracy along the same path.

    Args:
        shift_result: The dict of :func:`gapdiag.shift.shift_experiment` (or ``gapdiag shift --out``).
        title: Figure title; default uses ``shift_result["provenance"]`` when present.
    """
    result = validate_shift_result(dict(shift_result))
    lambdas = np.asarray(result["lambdas"], dtype=np.float64)
    losses = dict(result["loss"])
    ncols = max(len(losses), 2)
    fig = _new_figure(3.4 * ncols, 6.6)
    grid = fig.add_gridspec(2, ncols)
    for i, (temp, values) in enumerate(losses.items()):
        ax = fig.add_subplot(grid[0, i])
        y = np.asarray(values, dtype=np.float64)
        ax.plot(lambdas, y, color=OKABE_ITO[0], linewidth=1.6, gid=f"loss/{temp}")
        if np.isfinite(y).any():
            k = int(np.nanargmin(y))
            ax.plot(
                [lambdas[k]],
                [y[k]],
                "o",
                color=OKABE_ITO[1],
                gid=f"loss_min/{temp}",
                label=f"min at λ={lambdas[k]:g}",
            )
            ax.legend(fontsize="x-small")
        ax.axvline(0.0, color="0.4", linestyle=":", linewidth=1)
        ax.set_title(f"loss, τ = {temp}", fontsize="medium")
        ax.set_xlabel("shift λ")
    ax_gap = fig.add_subplot(grid[1, : ncols // 2])
    ax_gap.plot(
        lambdas,
        np.asarray(result["gap"], dtype=np.float64),
        color=OKABE_ITO[2],
        linewidth=1.6,
        gid="gap",
        label="‖Δ‖",
    )
    if result.get("gap_signed") is not None and len(result["gap_signed"]) == len(lambdas):
        # Negative once the modalities have crossed: tells "closed" from "overshot" where ‖Δ‖ cannot.
        ax_gap.plot(
            lambdas,
            np.asarray(result["gap_signed"], dtype=np.float64),
            color=OKABE_ITO[2],
            linewidth=1.2,
            linestyle="--",
            gid="gap_signed",
            label="signed",
        )
        ax_gap.axhline(0.0, color="0.7", linewidth=0.8)
        ax_gap.legend(fontsize="small")
    ax_gap.axvline(0.0, color="0.4", linestyle=":", linewidth=1)
    ax_gap.set_xlabel("shift λ")
    ax_gap.set_ylabel("modality gap ‖Δ‖")
    ax_acc = fig.add_subplot(grid[1, ncols // 2 :])
    curves = {f"R@1 {d.replace('_', ' ')}": v for d, v in dict(result["recall_at_1"]).items()}
    if result.get("zero_shot_accuracy") is not None:
        curves["zero-shot accuracy"] = result["zero_shot_accuracy"]
    for i, (label, values) in enumerate(curves.items()):
        ax_acc.plot(
            lambdas,
            np.asarray(values, dtype=np.float64),
            color=OKABE_ITO[(i + 3) % len(OKABE_ITO)],
            marker=MARKERS[i % len(MARKERS)],
            markersize=3,
            linewidth=1.4,
            label=label,
            gid=f"score/{label}",
        )
    ax_acc.axvline(0.0, color="0.4", linestyle=":", linewidth=1)
    ax_acc.set_xlabel("shift λ")
    ax_acc.set_ylabel("score")
    ax_acc.legend(fontsize="small")
    fig.suptitle(_title("Embedding shift along the gap", result.get("provenance") or {}, title))
    return fig


# ---------------------------------------------------------------------------------------------------------
# Comparing reports
# ---------------------------------------------------------------------------------------------------------


def step_values(labels: Sequence[str]) -> list[float] | None:
    """Numbers behind labels such as ``"epoch 3"``, ``"step_1000"``, ``"5"``; ``None`` if any label is not one."""
    values = []
    for label in labels:
        match = _STEP_LABEL.match(str(label))
        if match is None:
            return None
        values.append(float(match.group(1)))
    return values


def plot_compare(
    reports: Sequence[Report],
    labels: Sequence[str],
    metrics: Sequence[str] | None = None,
    *,
    title: str | None = None,
) -> Figure:
    """Metric values of two or more reports side by side: one small panel per metric.

    When every label names a training step or epoch (``"epoch 3"``, ``"step_1000"``, ``"5"``), each panel is a
    line over the steps; otherwise a bar per report. Bootstrap intervals, where the reports have them, are
    drawn as error bars.

    Args:
        reports: The reports, at least two, measured with the same metric definitions.
        labels: One label per report.
        metrics: Metric names to show; default: every metric present in all reports.
        title: Figure title; default names the models and datasets.

    Raises:
        InputError: fewer than two reports, label count mismatch, or a requested metric missing from a report.
        ProvenanceError: the reports use different metric definitions.
    """
    from matplotlib.patches import Patch

    from gapdiag.errors import ProvenanceError
    from gapdiag.metrics import REGISTRY

    if len(reports) < 2:
        raise InputError(
            f"compare needs at least two reports, got {len(reports)}",
            hint="pass --report A.json --report B.json",
        )
    if len(labels) != len(reports):
        raise InputError(
            f"{len(labels)} labels for {len(reports)} reports", hint="give one --label per --report"
        )
    versions = {r.metric_definitions_version for r in reports}
    if len(versions) > 1:
        raise ProvenanceError(
            f"reports {', '.join(map(str, labels))} use different metric definitions {sorted(versions)}",
            hint="re-measure them with one gapdiag version",
        )
    if metrics is None:
        # Panels in the CLI table's order (registry families), not in whatever order a report lists them.
        metrics = order_metrics(m for m in reports[0].metrics if all(m in r.metrics for r in reports[1:]))
        if not metrics:
            raise InputError(
                f"reports {', '.join(map(str, labels))} share no metric",
                hint="compare reports measured with the same --metrics",
            )
    for label, report in zip(labels, reports):
        missing = [m for m in metrics if m not in report.metrics]
        if missing:
            raise InputError(
                f"report {label!r} has no metric {missing[0]!r}",
                hint="choose metrics present in every report",
            )
    steps = step_values(labels)
    ncols = min(4, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig = _new_figure(3.3 * ncols, 2.7 * nrows + 0.6)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    x = np.asarray(steps) if steps is not None else np.arange(len(reports), dtype=np.float64)
    colors = [OKABE_ITO[i % len(OKABE_ITO)] for i in range(len(reports))]
    order = np.argsort(x, kind="stable")
    for ax, name in zip(axes, metrics):
        y = np.array([r.metrics[name] for r in reports], dtype=np.float64)
        info = REGISTRY.get(split_metric_name(name)[0])
        lo_hi = [r.intervals.get(name) for r in reports]
        err = None
        if all(iv is not None for iv in lo_hi):
            err = np.array(
                [[y[i] - lo_hi[i][0] for i in range(len(y))], [lo_hi[i][1] - y[i] for i in range(len(y))]]
            )
        if steps is not None:
            drawn = ax.errorbar(
                x[order],
                y[order],
                yerr=None if err is None else err[:, order],
                color=OKABE_ITO[0],
                marker="o",
                markersize=4,
                linewidth=1.5,
                capsize=3,
            )
            drawn.lines[0].set_gid(f"metric/{name}")
            for xi, yi in zip(x[order], y[order]):
                ax.annotate(format_number(yi), (xi, yi), textcoords="offset points", xytext=(0, 5),
                            ha="center", fontsize="x-small")
            ax.set_xlabel("epoch" if all("ep" in str(label).lower() for label in labels) else "step")
        else:
            bars = ax.bar(x, y, color=colors, yerr=err, capsize=3, gid=f"metric/{name}")
            ax.bar_label(bars, labels=[format_number(v) for v in y], fontsize="x-small", padding=2)
            ax.set_xticks(x, [str(label) for label in labels], rotation=30, ha="right", fontsize="small")
        # Which way is better, from the metric registry (descriptive metrics have none).
        direction = {True: "\n↑ higher is better", False: "\n↓ lower is better", None: ""}[
            None if info is None else info.higher_is_better
        ]
        ax.set_title(name + direction, fontsize="medium")
        ax.margins(y=0.15)  # room for the value labels
        ax.grid(True, axis="y", alpha=0.3)
    for ax in axes[len(metrics) :]:
        ax.set_visible(False)
    if steps is None:
        # One legend entry per bar colour, in the bars' (columns') left-to-right order: one row when it fits,
        # else one column, so that reading order and column order agree (matplotlib fills columns first).
        handles = [Patch(color=c, label=str(label)) for c, label in zip(colors, labels)]
        fig.legend(handles=handles, loc="outside lower center", ncol=len(handles) if len(handles) <= 6 else 1,
                   fontsize="small", frameon=False)
    described = sorted({describe_provenance(r.provenance) for r in reports})
    default = "Comparison — " + ("; ".join(described) if len(described) <= 3 else f"{len(described)} setups")
    fig.suptitle(title if title is not None else default)
    return fig


# ---------------------------------------------------------------------------------------------------------
# Choosing, building and saving figures (what `gapdiag plot` and `gapdiag report` call)
# ---------------------------------------------------------------------------------------------------------


def parse_kinds(
    values: Iterable[str] | None, *, have_shift: bool = False, have_reports: bool = False
) -> list[str]:
    """Turn ``--kind`` values (repeatable, comma lists, ``all``) into an ordered list of figure kinds.

    Without any value: the shift and/or compare figures when their inputs are given, else the embedding
    figures. ``all`` means the embedding figures plus shift/compare when their inputs are given.
    """
    requested = [
        part.strip().lower() for value in (values or []) for part in str(value).split(",") if part.strip()
    ]
    if not requested:
        implied = (["shift"] if have_shift else []) + (["compare"] if have_reports else [])
        return implied or list(DEFAULT_KINDS)
    kinds: list[str] = []
    for kind in requested:
        if kind == "all":
            expanded = (
                list(DEFAULT_KINDS)
                + (["shift"] if have_shift else [])
                + (["compare"] if have_reports else [])
            )
        elif kind in KINDS:
            expanded = [kind]
        else:
            raise InputError(f"unknown --kind {kind!r}", hint=f"choose from {', '.join(KINDS)}, all")
        kinds += [k for k in expanded if k not in kinds]
    if "shift" in kinds and not have_shift:
        raise InputError(
            "--kind shift needs a shift result", hint="pass --shift shift.json (from `gapdiag shift --out`)"
        )
    if "compare" in kinds and not have_reports:
        raise InputError("--kind compare needs reports", hint="pass --report A.json --report B.json")
    return [k for k in KINDS if k in kinds]


def figure_stem(kind: str, method: str | None = None) -> str:
    """File stem of a figure: ``<kind>[-<method>]`` (only the map has a method)."""
    return f"{kind}-{method}" if kind == "map" and method else kind


def make_figures(
    kinds: Sequence[str],
    *,
    embeddings: EmbeddingSet | None = None,
    shift_result: Mapping[str, Any] | None = None,
    reports: Sequence[Report] | None = None,
    labels: Sequence[str] | None = None,
    method: str = "umap",
    color_by: str = "modality",
    max_pairs: int | None = 2000,
    seed: int = 0,
    status: StatusCallback | None = None,
) -> dict[str, Figure]:
    """Build the figures of ``kinds`` (see :func:`parse_kinds`), keyed by :func:`figure_stem`."""
    if any(k in EMBEDDING_KINDS for k in kinds) and embeddings is None:
        raise InputError(
            f"figures {', '.join(k for k in kinds if k in EMBEDDING_KINDS)} need embeddings",
            hint="pass --data/--model",
        )
    figures: dict[str, Figure] = {}
    for kind in kinds:
        if kind == "map":
            figures[figure_stem(kind, method)] = plot_map(
                embeddings, method=method, max_pairs=max_pairs, seed=seed, color_by=color_by, status=status
            )
        elif kind == "hist":
            figures[kind] = plot_similarity_histograms(embeddings, seed=seed)
        elif kind == "spectrum":
            figures[kind] = plot_spectrum(embeddings)
        elif kind == "gap":
            from gapdiag.plot_gap import plot_gap

            figures[kind] = plot_gap(embeddings, max_points=max_pairs, seed=seed)
        elif kind == "shift":
            if shift_result is None:
                raise InputError("--kind shift needs a shift result", hint="pass --shift shift.json")
            figures[kind] = plot_shift(shift_result)
        elif kind == "compare":
            if not reports:
                raise InputError("--kind compare needs reports", hint="pass --report A.json --report B.json")
            figures[kind] = plot_compare(
                reports, labels if labels is not None else [str(i) for i in range(len(reports))]
            )
        else:
            raise InputError(f"unknown figure kind {kind!r}", hint=f"choose from {', '.join(KINDS)}")
    return figures


def ensure_output_dir(path: str | Path) -> Path:
    """Create ``path`` (and parents) as a directory, or raise a one-line :class:`InputError` saying why not."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise InputError(
            f"cannot create output directory {path}: it or a parent is a file",
            hint="pass a directory path to --out",
        ) from None
    except OSError as e:
        raise InputError(
            f"cannot create output directory {path}: {e.strerror}", hint="pass a writable directory to --out"
        ) from None
    return path


def _freeze_layout(fig: Figure) -> None:
    """Run the figure's layout engine once, then switch it off.

    Constrained layout otherwise re-runs at every save; an axes edge that lands on a rounding boundary of the
    PDF writer then moves by one unit between saves and the same figure gives different bytes.
    """
    if fig.get_layout_engine() is None:
        return
    fig.draw_without_rendering()
    fig.set_layout_engine("none")


def save_figure(fig: Figure, path: str | Path, format: str | None = None, dpi: int = DEFAULT_DPI) -> Path:
    """Write ``fig`` to ``path`` as PNG, SVG or PDF (``format`` defaults to the file suffix).

    The file is written under a temporary name in the same directory and then renamed, so an interrupted
    run never leaves a truncated figure. The layout is computed once, at the first save, and then frozen,
    and the files carry no timestamp: the same figure saves to the same bytes every time.

    Raises:
        InputError: unknown format, or the directory cannot be created or written.
    """
    path = Path(path)
    fmt = (format or path.suffix.lstrip(".") or "png").lower()
    _check_choice(fmt, FORMATS, "format")
    if dpi < 1:
        raise InputError(f"dpi must be positive, got {dpi}", hint="pass --dpi 150")
    ensure_output_dir(path.parent)
    _freeze_layout(fig)
    tmp = path.with_name(f".{path.name}.tmp")
    # No timestamp and a fixed SVG id salt (random by default): the same figure gives the same bytes.
    metadata = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}.get(fmt)
    try:
        with rc_context({"svg.hashsalt": "gapdiag"}):
            fig.savefig(tmp, format=fmt, dpi=dpi, metadata=metadata)
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise InputError(
            f"cannot write {path}: {e.strerror}", hint="pass a writable directory to --out"
        ) from None
    return path


def save_figures(
    figures: Mapping[str, Figure], out_dir: str | Path, *, format: str = "png", dpi: int = DEFAULT_DPI
) -> list[Path]:
    """Save every figure as ``<out_dir>/<stem>.<format>`` and return the paths in order."""
    _check_choice(format, FORMATS, "format")
    out = ensure_output_dir(out_dir)
    return [save_figure(fig, out / f"{stem}.{format}", format, dpi) for stem, fig in figures.items()]
