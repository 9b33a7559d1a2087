"""Which figures to draw and drawing them: ``--kind`` parsing, option checks and one builder per kind (what
``gapdiag plot`` and ``gapdiag report`` call through :mod:`gapdiag.draw`).

File names are predictable: ``<kind>[-<method>].<format>``, e.g. ``map-umap.png``, ``hist.svg``,
``spectrum.pdf`` (see :func:`figure_stem`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure

from gapdiag.errors import InputError
from gapdiag.figures.common import StatusCallback, check_choice
from gapdiag.figures.compare import plot_compare
from gapdiag.figures.embedding_map import COLOR_BY, METHODS, plot_map
from gapdiag.figures.files import FORMATS
from gapdiag.figures.gap import plot_gap
from gapdiag.figures.interventions import plot_interventions
from gapdiag.figures.shift import plot_shift
from gapdiag.figures.similarity import plot_similarity_histograms
from gapdiag.figures.spectrum import plot_spectrum
from gapdiag.figures.track import plot_track
from gapdiag.report import Report
from gapdiag.report.track import Track
from gapdiag.vectors import EmbeddingSet

#: Every figure kind, in the order ``--kind all`` draws them.
KINDS: tuple[str, ...] = ("map", "hist", "spectrum", "gap", "shift", "interventions", "compare", "track")
#: Kinds drawn from embeddings (the others read a shift or intervention result, reports or a track record).
EMBEDDING_KINDS: tuple[str, ...] = ("map", "hist", "spectrum", "gap")
#: Embedding figures drawn without ``--kind`` and by ``--kind all`` (``gap`` is asked for by name).
DEFAULT_KINDS: tuple[str, ...] = ("map", "hist", "spectrum")
#: Kinds drawn from a result file, and the option (with the command that writes it) that gives it.
RESULT_KINDS: dict[str, str] = {
    "shift": "pass --shift shift.json (from `gapdiag shift --out`)",
    "interventions": "pass --interventions interventions.json (from `gapdiag intervene --out`)",
}


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
            check_choice(value, choices, option)


def parse_kinds(
    values: Iterable[str] | None, *, have_shift: bool = False, have_reports: bool = False,
    have_interventions: bool = False, have_track: bool = False,
) -> list[str]:
    """Turn ``--kind`` values (repeatable, comma lists, ``all``) into an ordered list of figure kinds.

    Without any value: the shift, intervention, compare and/or track figures when their inputs are given, else
    the embedding figures. ``all`` means the embedding figures plus those whose inputs are given.
    """
    requested = [
        part.strip().lower() for value in (values or []) for part in str(value).split(",") if part.strip()
    ]
    given = {"shift": have_shift, "interventions": have_interventions, "compare": have_reports, "track": have_track}
    implied = [kind for kind, have in given.items() if have]
    if not requested:
        return [k for k in KINDS if k in implied] or list(DEFAULT_KINDS)
    kinds: list[str] = []
    for kind in requested:
        if kind == "all":
            expanded = list(DEFAULT_KINDS) + implied
        elif kind in KINDS:
            expanded = [kind]
        else:
            raise InputError(f"unknown --kind {kind!r}", hint=f"choose from {', '.join(KINDS)}, all")
        kinds += [k for k in expanded if k not in kinds]
    for kind, hint in RESULT_KINDS.items():
        if kind in kinds and not given[kind]:
            raise InputError(f"--kind {kind} needs {'a shift' if kind == 'shift' else 'an intervention'} result",
                             hint=hint)
    if "compare" in kinds and not have_reports:
        raise InputError("--kind compare needs reports", hint="pass --report A.json --report B.json")
    if "track" in kinds and not have_track:
        raise InputError("--kind track needs a track record", hint="pass --track track.json (from `gapdiag track --out`)")
    return [k for k in KINDS if k in kinds]


def figure_stem(kind: str, method: str | None = None) -> str:
    """File stem of a figure: ``<kind>[-<method>]`` (only the map has a method)."""
    return f"{kind}-{method}" if kind == "map" and method else kind


def make_figures(
    kinds: Sequence[str],
    *,
    embeddings: EmbeddingSet | None = None,
    shift_result: Mapping[str, Any] | None = None,
    interventions_result: Mapping[str, Any] | None = None,
    reports: Sequence[Report] | None = None,
    labels: Sequence[str] | None = None,
    track: Track | Sequence[Track] | None = None,
    track_metrics: Sequence[str] | None = None,
    track_labels: Sequence[str] | None = None,
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
            figures[kind] = plot_gap(embeddings, max_points=max_pairs, seed=seed)
        elif kind == "shift":
            if shift_result is None:
                raise InputError("--kind shift needs a shift result", hint="pass --shift shift.json")
            figures[kind] = plot_shift(shift_result)
        elif kind == "interventions":
            if interventions_result is None:
                raise InputError("--kind interventions needs an intervention result", hint=RESULT_KINDS[kind])
            figures[kind] = plot_interventions(interventions_result)
        elif kind == "compare":
            if not reports:
                raise InputError("--kind compare needs reports", hint="pass --report A.json --report B.json")
            figures[kind] = plot_compare(
                reports, labels if labels is not None else [str(i) for i in range(len(reports))]
            )
        elif kind == "track":
            if track is None:
                raise InputError("--kind track needs a track record", hint="pass --track track.json")
            figures[kind] = plot_track(track, track_metrics, labels=track_labels)
        else:
            raise InputError(f"unknown figure kind {kind!r}", hint=f"choose from {', '.join(KINDS)}")
    return figures
