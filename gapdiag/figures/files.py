"""Writing figures: PNG, SVG or PDF, atomically (:mod:`gapdiag.fsutil`) and byte for byte reproducibly."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from matplotlib import rc_context
from matplotlib.figure import Figure

from gapdiag.errors import InputError
from gapdiag.figures.common import DEFAULT_DPI, check_choice
from gapdiag.fsutil import atomic_path
from gapdiag.outputs import write_error

FORMATS: tuple[str, ...] = ("png", "svg", "pdf")


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
