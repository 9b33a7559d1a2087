"""Run settings resolved once at the edge (CLI or :mod:`gapdiag.api`) and handed down.

The cache root comes from ``--cache-dir``/``cache_dir=``, else ``$GAPDIAG_CACHE_DIR``, else the platform's
user cache directory: :meth:`Settings.build` is the one place that reads them. Code further down receives a
:class:`Settings` (or its ``cache_root``) as an argument; code that readers call deep inside (the dataset
fingerprint memo) reads :func:`current`, which :func:`use` sets for the duration of an API call, the way
scikit-learn's ``config_context`` works. So ``--cache-dir X`` keeps every file gapdiag writes under ``X``.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import platformdirs

#: Points gapdiag at another copy of the bundled sample data (read here, where settings are built).
SAMPLE_DATA_ENV = "GAPDIAG_SAMPLE_DATA"


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
        root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        sample_data = os.environ.get(SAMPLE_DATA_ENV)
        return cls(cache_root=root, device=device, precision=precision, quiet=quiet,
                   sample_data=Path(sample_data).expanduser() if sample_data else None)


_CURRENT: contextvars.ContextVar[Settings | None] = contextvars.ContextVar("gapdiag_settings", default=None)


def current() -> Settings:
    """The settings of the API call in progress, or defaults built from the environment outside one."""
    return _CURRENT.get() or Settings.build()


@contextlib.contextmanager
def use(settings: Settings) -> Iterator[Settings]:
    """Make ``settings`` what :func:`current` returns inside the ``with`` block (nestable, thread-safe)."""
    token = _CURRENT.set(settings)
    try:
        yield settings
    finally:
        _CURRENT.reset(token)
