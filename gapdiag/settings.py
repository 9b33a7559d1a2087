"""Run settings resolved once at the edge (CLI or :mod:`gapdiag.api`) and handed down.

The cache root comes from ``--cache-dir``/``cache_dir=``, else ``$GAPDIAG_CACHE_DIR``, else the platform's
user cache directory: :meth:`Settings.build` is the one place that reads them (an empty ``--cache-dir`` is an
error, never the current folder). Code further down receives a
:class:`Settings` (or its ``cache_root``) as an argument; code that readers call deep inside (the dataset
fingerprint memo) reads :func:`current`, which :func:`use` sets for the duration of an API call, the way
scikit-learn's ``config_context`` works. So ``--cache-dir X`` keeps every file gapdiag writes under ``X``.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from gapdiag.errors import InputError

#: Points gapdiag at another copy of the bundled sample data (read here, where settings are built).
SAMPLE_DATA_ENV = "GAPDIAG_SAMPLE_DATA"


def cache_root(cache_dir: str | Path | None) -> Path:
    """The cache root for ``--cache-dir``/``cache_dir=``: that folder, else :func:`default_cache_dir`.

    Raises:
        InputError: ``cache_dir`` is empty (``--cache-dir ''``), which ``Path`` would silently read as the
            current folder.
    """
    if cache_dir is None:
        return default_cache_dir()
    if not str(cache_dir).strip():
        raise InputError("--cache-dir is empty", hint="give a folder, or leave it out for GAPDIAG_CACHE_DIR or the "
                                                      "user cache dir")
    return Path(cache_dir).expanduser()


def default_cache_dir() -> Path:
    """The cache root: ``$GAPDIAG_CACHE_DIR`` if set and non-empty, else the platform's user cache dir.

    Here and not in :mod:`gapdiag.cache`: readers resolve paths through the settings, and must not import the store.
    """
    env = os.environ.get("GAPDIAG_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("gapdiag", appauthor=False))


@dataclass(frozen=True)
class Settings:
    """What a run needs to know about its environment.

    Attributes:
        cache_root: Root of the embedding cache and of every memo (fingerprints, hashes, model configs).
        device: The ``--device`` request (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``); see
            :mod:`gapdiag.device` for its resolution.
        precision: ``fp32``, ``amp`` or ``bf16``.
        quiet: No progress display.
        sample_data: The bundled sample-data folder to use instead of the installed one (``$GAPDIAG_SAMPLE_DATA``).
    """

    cache_root: Path
    device: str = "auto"
    precision: str = "fp32"
    quiet: bool = False
    sample_data: Path | None = None

    @classmethod
    def build(cls, cache_dir: str | Path | None = None, *, device: str = "auto", precision: str = "fp32",
              quiet: bool = False) -> Settings:
        """Settings from explicit values; the cache root falls back to ``$GAPDIAG_CACHE_DIR`` or the user's
        cache directory (:func:`default_cache_dir`)."""
        root = cache_root(cache_dir)
        sample_data = os.environ.get(SAMPLE_DATA_ENV)
        return cls(cache_root=root, device=device, precision=precision, quiet=quiet,
                   sample_data=Path(sample_data).expanduser() if sample_data else None)


_CURRENT: contextvars.ContextVar[Settings | None] = contextvars.ContextVar("gapdiag_settings", default=None)


def current() -> Settings:
    """The settings of the API call in progress, or defaults built from the environment outside one."""
    return _CURRENT.get() or Settings.build()


#: Where numba keeps compiled code, under the cache root (set from the settings, see :func:`route_compiled_code`).
NUMBA_CACHE_SUBDIR = "numba"
_routed_numba_dir: str | None = None


def route_compiled_code(root: Path) -> None:
    """Point numba's on-disk compile cache at ``<root>/numba`` (``NUMBA_CACHE_DIR``), at the edge.

    Without it numba writes its cache beside the source of the compiled functions, i.e. into the installed
    package (``gapdiag/metrics/__pycache__``), against the rule that every file gapdiag writes goes under the
    cache root. numba reads ``NUMBA_CACHE_DIR`` when it is imported and fixes each function's cache folder when
    the function is decorated (``gapdiag.metrics.strip_scan`` is imported lazily, by the first pair pass), so
    this runs in :func:`use`, which every api verb enters before computing; a numba already imported is told
    through ``numba.core.config.reload_config``. The first root a process uses is where its compiled functions
    stay cached for the life of the process. A ``NUMBA_CACHE_DIR`` that the user set is the user's choice and is
    left alone.
    """
    global _routed_numba_dir
    given = os.environ.get("NUMBA_CACHE_DIR")
    if given and given != _routed_numba_dir:
        return
    wanted = str(root / NUMBA_CACHE_SUBDIR)
    if given == wanted:
        return
    os.environ["NUMBA_CACHE_DIR"] = _routed_numba_dir = wanted
    config = sys.modules.get("numba.core.config")
    if config is not None:
        config.reload_config()


@contextlib.contextmanager
def use(settings: Settings) -> Iterator[Settings]:
    """Make ``settings`` what :func:`current` returns inside the ``with`` block (nestable, thread-safe), and route
    numba's compile cache under its cache root (:func:`route_compiled_code`)."""
    route_compiled_code(settings.cache_root)
    token = _CURRENT.set(settings)
    try:
        yield settings
    finally:
        _CURRENT.reset(token)
