"""Metrics against training step (``gapdiag plot --kind track``): how the geometry changes over a checkpoint series.

Reads a :class:`gapdiag.report.track.Track` (``gapdiag track --out``). One panel per base metric, one line per
qualifier (``modality_gap/image-text``; ``recall_at_1/image_to_text`` and ``/text_to_image`` share a panel), a
marker at every checkpoint: the steps measured are visible, nothing is interpolated between them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from matplotlib.figure import Figure

from gapdiag.errors import InputError
from gapdiag.figures.common import MARKERS, OKABE_ITO, new_figure
from gapdiag.report.presentation import order_metrics
from gapdiag.report.record import split_metric_name
from gapdiag.report.track import Track

#: The metrics drawn when none are chosen (base names; each draws all its qualifiers), where the track has them.
DEFAULT_TRACK_METRICS = ("modality_gap", "cos_tp", "angular_value", "uniformity_wang_isola", "effective_rank",
                         "recall_at_1")


def chosen_metrics(track: Track, metrics: Sequence[str] | None) -> list[str]:
    """The full metric names drawn: each of ``metrics`` (a full name, or a base name for all its qualifiers),
    else :data:`DEFAULT_TRACK_METRICS`, in the registry's order.

    Raises:
        InputError: A chosen metric that no checkpoint of the track has (naming those it has), or none to draw.
    """
    available = track.metric_names
    wanted = list(metrics) if metrics else list(DEFAULT_TRACK_METRICS)
    names: list[str] = []
    for want in wanted:
        found = [n for n in available if n == want or split_metric_name(n)[0] == want]
        if not found and metrics:
            bases = sorted({split_metric_name(n)[0] for n in available})
            raise InputError(f"--metrics {want!r}: no checkpoint of the track has it",
                             hint=f"choose from {', '.join(bases)} (or a full name such as {available[0]})")
        names += [n for n in found if n not in names]
    if not names:
        raise InputError("the track has none of the default metrics to draw",
                         hint="choose them with --metrics NAME,NAME")
    return order_metrics(names)


#: Line styles of the qualifiers of one metric when colour tells the series apart.
_LINE_STYLES = ("-", "--", ":", "-.")


def plot_track(tracks: Track | Sequence[Track], metrics: Sequence[str] | None = None, *,
               labels: Sequence[str] | None = None, title: str | None = None) -> Figure:
    """Each chosen metric against the step of its checkpoint, for one series or several side by side.

    One series: a colour per qualifier, ``gid="track/<full metric name>"`` per line. Several (e.g. InfoNCE and a
    gap-closing loss): a colour per series, a line style per qualifier, ``gid="track/<label>/<full name>"``.

    Args:
        tracks: The series (``gapdiag track --out``).
        metrics: Base or full metric names; ``None``: :data:`DEFAULT_TRACK_METRICS` where the first has them.
        labels: One name per series (default ``1``, ``2``, ...).
        title: Figure title; default names the dataset.

    Raises:
        InputError: A label count that differs from the series count, or a metric no series has.
    """
    series = [tracks] if isinstance(tracks, Track) else list(tracks)
    labels = list(labels) if labels is not None else [str(i + 1) for i in range(len(series))]
    if len(labels) != len(series):
        raise InputError(f"{len(labels)} --label values for {len(series)} --track files",
                         hint="give one --label per --track")
    names = chosen_metrics(series[0], metrics)
    panels: dict[str, list[str]] = {}
    for name in names:
        panels.setdefault(split_metric_name(name)[0], []).append(name)
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = new_figure(3.6 * ncols, 2.9 * nrows + 0.5)
    for i, (base, full_names) in enumerate(panels.items()):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        for k, (track, label) in enumerate(zip(series, labels, strict=True)):
            steps = [p.step for p in track.points]
            for j, name in enumerate(full_names):
                values = [p.report.metrics.get(name, math.nan) for p in track.points]
                qualifier = split_metric_name(name)[1] or base
                one = len(series) == 1
                ax.plot(steps, values, color=OKABE_ITO[(j if one else k) % len(OKABE_ITO)],
                        linestyle="-" if one else _LINE_STYLES[j % len(_LINE_STYLES)],
                        marker=MARKERS[(j if one else k) % len(MARKERS)], markersize=4, linewidth=1.4,
                        label=qualifier if one else f"{label} {qualifier}",
                        gid=f"track/{name}" if one else f"track/{label}/{name}")
        ax.set_title(base, fontsize="medium")
        ax.set_xlabel("step")
        ax.ticklabel_format(axis="y", useOffset=False)  # a 0.0003 change reads as its values, not as an offset
        if len(series) > 1 or len(full_names) > 1 or split_metric_name(full_names[0])[1]:
            ax.legend(fontsize="x-small")
    # The dataset only: the model is another checkpoint at every point.
    dataset = (series[0].points[0].report.provenance.get("dataset") or {}).get("name", "?")
    fig.suptitle(title or f"Metrics over training — {dataset}")
    return fig
