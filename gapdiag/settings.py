"""Run settings resolved once at the edge (the api's verbs) and handed down as plain values.

The cache root comes from ``--cache-dir``/``cache_dir=``, else ``$GAPDIAG_CACHE_DIR``, else the platform's
user cache directory: :meth:`Settings.build` is the one place that reads them (an empty ``--cache-dir`` is an
error, never the current folder). Code further down receives the values it needs as arguments, the way
scikit-learn hands down ``random_state`` and ``n_jobs``: the cache root (:class:`gapdiag.cache.EmbeddingCache`,
the checkpoint hashes, the model configs a checkpoint carries), the fingerprint memo's folder (the dataset
readers) and the sample-data folder. Nothing below the api reads the environment or a default path of its
own, and no context variable carries settings: ``--cache-dir X`` keeps every file gapdiag writes under ``X``
because ``X`` is what each of them is given. The device is resolved at the edge too (:mod:`gapdiag.device`).
"""

from __future__ import annotations

import contextlib
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

    Read at the edge only (:meth:`Settings.build`); :mod:`gapdiag.cache` hands the name on for its documented
    path, and the store itself is always given its root.
    """
    env = os.environ.get("GAPDIAG_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("gapdiag", appauthor=False))


@dataclass(frozen=True)
class Settings:
    """What a run needs to know about its environment, resolved at the edge.

    Attributes:
        cache_root: Root of the embedding cache and of every memo (fingerprints, hashes, model configs).
        sample_data: The bundled sample-data folder to use instead of the installed one (``$GAPDIAG_SAMPLE_DATA``).
    """

    cache_root: Path
    sample_data: Path | None = None

    @classmethod
    def build(cls, cache_dir: str | Path | None = None) -> Settings:
        """Settings from an explicit cache root, else ``$GAPDIAG_CACHE_DIR`` or the user's cache directory
        (:func:`default_cache_dir`), and ``$GAPDIAG_SAMPLE_DATA``."""
        sample_data = os.environ.get(SAMPLE_DATA_ENV)
        return cls(cache_root=cache_root(cache_dir),
                   sample_data=Path(sample_data).expanduser() if sample_data else None)

    @property
    def fingerprint_memo(self) -> Path:
        """Where the dataset readers memoise fingerprints (:func:`gapdiag.data.base.fingerprint_files`)."""
        return self.cache_root / FINGERPRINTS_SUBDIR


def resolve(cache_dir: str | Path | None = None) -> Settings:
    """The settings of one api call, resolved at its door: :meth:`Settings.build`, and numba's compile cache
    routed under their cache root (:func:`route_compiled_code`) for everything the call computes."""
    built = Settings.build(cache_dir)
    route_compiled_code(built.cache_root)
    return built


#: The folder of the fingerprint memo under the cache root.
FINGERPRINTS_SUBDIR = "fingerprints"


#: Where numba keeps compiled code, under the cache root (set from the settings, see :func:`route_compiled_code`).
NUMBA_CACHE_SUBDIR = "numba"
_routed_numba_dir: str | None = None


def route_compiled_code(root: Path) -> None:
    """Point numba's on-disk compile cache at ``<root>/numba`` (``NUMBA_CACHE_DIR``), at the edge.

    Without it numba writes its cache beside the source of the compiled functions, i.e. into the installed
    package (``gapdiag/metrics/__pycache__``), against the rule that every file gapdiag writes goes under the
    cache root. numba reads ``NUMBA_CACHE_DIR`` when it is imported and fixes each function's cache folder when
    the function is decorated (``gapdiag.metrics.strip_scan`` is imported lazily, by the first pair pass), so
    this runs at the edge, when every api verb resolves its settings; a numba already imported is told
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
    """Route numba's compile cache under ``settings.cache_root`` (:func:`route_compiled_code`) for the code run
    inside the ``with`` block: what code that calls :mod:`gapdiag.metrics` directly, outside the api, does to keep
    every file under its cache root (every api verb routes it itself)."""
    route_compiled_code(settings.cache_root)
    yield settings
