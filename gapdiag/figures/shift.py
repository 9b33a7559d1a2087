"""The embedding-shift experiment of Liang et al. (2022, Sec. 4.2): loss, gap and scores along the shift path.

Reads the result of :func:`gapdiag.training.shift.shift_experiment` (or the file of ``gapdiag shift --out``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.gridspec import GridSpec
from numpy.typing import NDArray

from gapdiag.errors import InputError
from gapdiag.figures.common import MARKERS, OKABE_ITO, figure_title, new_figure
from gapdiag.report.record import read_json

_SHIFT_KEYS = ("lambdas", "gap", "loss", "recall_at_1")


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
    data = read_json(path, "shift result", "gapdiag shift --out")
    return validate_shift_result(data, source=str(Path(path)))


def plot_shift(shift_result: Mapping[str, Any], *, title: str | None = None) -> Figure:
    """The embedding-shift experiment of Liang et al. (2022, Sec. 4.2, Fig. 4/Table 1).

    Top row: the contrastive loss along the shift path, one panel per temperature (each on its own scale;
    the minimum is marked, λ = 0 is the unmodified space). Liang et al. find that at CLIP's τ = 1/100 the
    existing gap is (close to) the minimum, while at higher τ it is not. Bottom row: the gap ‖Δ‖ and the
    retrieval R@1 / zero-shot accuracy along the same path.

    Args:
        shift_result: The dict of :func:`gapdiag.training.shift.shift_experiment` (or ``gapdiag shift --out``).
        title: Figure title; default uses ``shift_result["provenance"]`` when present.
    """
    result = validate_shift_result(dict(shift_result))
    lambdas = np.asarray(result["lambdas"], dtype=np.float64)
    losses = dict(result["loss"])
    ncols = max(len(losses), 2)
    fig = new_figure(3.4 * ncols, 6.6)
    grid = fig.add_gridspec(2, ncols)
    _draw_loss_panels(fig, grid, lambdas, losses)
    _draw_gap_panel(fig, grid, lambdas, result)
    _draw_score_panel(fig, grid, lambdas, result)
    fig.suptitle(figure_title("Embedding shift along the gap", result.get("provenance") or {}, title))
    return fig


def _draw_loss_panels(
    fig: Figure, grid: GridSpec, lambdas: NDArray[np.float64], losses: Mapping[str, Any]
) -> None:
    """Top row: a loss curve per temperature, its minimum marked (``gid="loss/<τ>"``, ``"loss_min/<τ>"``)."""
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


def _draw_gap_panel(
    fig: Figure, grid: GridSpec, lambdas: NDArray[np.float64], result: Mapping[str, Any]
) -> None:
    """Bottom left: ‖Δ‖ along the path (``gid="gap"``), and the signed gap where the result has it."""
    ax_gap = fig.add_subplot(grid[1, : grid.ncols // 2])
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


def _draw_score_panel(
    fig: Figure, grid: GridSpec, lambdas: NDArray[np.float64], result: Mapping[str, Any]
) -> None:
    """Bottom right: R@1 per direction and zero-shot accuracy along the path (``gid="score/<label>"``)."""
    ax_acc = fig.add_subplot(grid[1, grid.ncols // 2 :])
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
