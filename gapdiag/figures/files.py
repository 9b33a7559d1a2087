"""Writing figures: PNG, SVG or PDF, atomically (:mod:`gapdiag.fsutil`) and byte for byte reproducibly."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from matplotlib import rc_context
from matplotlib.figure import Figure

from gapdiag.errors import InputError
from gapdiag.figures.common import check_choice
from gapdiag.fsutil import atomic_path
from gapdiag.outputs import ensure_output_dir, write_error
from gapdiag.report.presentation import DEFAULT_DPI

FORMATS: tuple[str, ...] = ("png", "svg", "pdf")


#: The finest resolution figures are drawn at: print quality is 300-600 dpi, and 100,000 dpi asked the renderer
#: for gigabytes (a MemoryError from Agg, not one line).
MAX_DPI = 1200
#: The most pixels one figure may have (about 400 MB as RGBA), and per side Agg's own limit (< 2**16).
MAX_PIXELS = 100_000_000
MAX_SIDE = 2**16 - 1


def check_dpi(dpi: int | None) -> int:
    """``dpi`` (``None`` = :data:`DEFAULT_DPI`) if it is a whole number in ``1..MAX_DPI``.

    Raises:
        InputError: Naming ``--dpi`` and the range.
    """
    if dpi is None:
        return DEFAULT_DPI
    if isinstance(dpi, bool) or not isinstance(dpi, int) or not 1 <= dpi <= MAX_DPI:
        raise InputError(f"--dpi {dpi!r} is outside 1..{MAX_DPI}",
                         hint=f"pass --dpi from 1 to {MAX_DPI} (default {DEFAULT_DPI}; 300-600 for print)")
    return dpi


def check_pixels(figures: Mapping[str, Figure], dpi: int) -> None:
    """Refuse before rendering a figure that would be too large at ``dpi`` (a wide comparison or many pairs).

    Raises:
        InputError: Naming the figure, its size in pixels and the largest ``--dpi`` that fits.
    """
    for name, fig in figures.items():
        width, height = fig.get_size_inches()
        w, h = width * dpi, height * dpi
        if w * h > MAX_PIXELS or max(w, h) > MAX_SIDE:
            fits = int(min((MAX_PIXELS / (width * height)) ** 0.5, MAX_SIDE / max(width, height)))
            raise InputError(f"the {name} figure would be {w:.0f} x {h:.0f} pixels at --dpi {dpi} (at most "
                             f"{MAX_PIXELS:,} pixels and {MAX_SIDE} per side)", hint=f"pass --dpi {fits} or less")


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

    The file is written atomically (:func:`gapdiag.fsutil.atomic_path`), so an interrupted run never leaves a
    truncated figure. The layout is computed once, at the first save, and then frozen, and the files carry no
    timestamp: the same figure saves to the same bytes every time.

    Raises:
        InputError: unknown format, or the directory cannot be created or written.
    """
    path = Path(path)
    fmt = (format or path.suffix.lstrip(".") or "png").lower()
    check_choice(fmt, FORMATS, "format")
    if dpi < 1:
        raise InputError(f"dpi must be positive, got {dpi}", hint="pass --dpi 150")
    ensure_output_dir(path.parent)
    _freeze_layout(fig)
    # No timestamp and a fixed SVG id salt (random by default): the same figure gives the same bytes.
    metadata = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}.get(fmt)
    try:
        with atomic_path(path) as tmp, rc_context({"svg.hashsalt": "gapdiag"}):
            fig.savefig(tmp, format=fmt, dpi=dpi, metadata=metadata)
    except OSError as e:
        raise write_error(path, e, what="figure") from None
    return path


def save_figures(
    figures: Mapping[str, Figure], out_dir: str | Path, *, format: str = "png", dpi: int = DEFAULT_DPI
) -> list[Path]:
    """Save every figure as ``<out_dir>/<stem>.<format>`` and return the paths in order."""
    check_choice(format, FORMATS, "format")
    out = ensure_output_dir(out_dir)
    return [save_figure(fig, out / f"{stem}.{format}", format, dpi) for stem, fig in figures.items()]
