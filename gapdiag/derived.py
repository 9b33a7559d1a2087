"""Results derived from a cache entry's vectors, kept beside the cache: measured reports and 2-D maps.

A warm ``gapdiag measure``, ``report`` or ``plot`` on unchanged vectors recomputes nothing: the metrics
(scikit-learn's k-means and logistic regression alone take seconds to import) and the UMAP embedding (numba
compilation, ~10 s) are read back. Each result lives in ``<cache root>/derived/<entry key>/<hash>.<ext>``
where the hash covers everything that changes the result: the parameters the caller passes and a stamp of
gapdiag's own code (version plus size and mtime of the modules that compute it), so editing or upgrading
gapdiag never serves an old result. An entry without a cache key (vectors passed in memory, precomputed
files) is never memoised. Writes are atomic; an unwritable cache only costs the recomputation.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from gapdiag import __version__
from gapdiag.cache_files import atomic_save_npy, atomic_write_json
from gapdiag.data.base import hash_json
from gapdiag.errors import GapdiagError
from gapdiag.report import Report

if TYPE_CHECKING:
    from gapdiag.embeddings import EmbeddingSet

log = logging.getLogger(__name__)

DERIVED_DIR = "derived"
_PACKAGE = Path(__file__).parent


@functools.lru_cache(maxsize=8)
def code_stamp(*modules: str) -> str:
    """Version of gapdiag plus (size, mtime) of the given package-relative files or folders."""
    stats = []
    for name in modules:
        path = _PACKAGE / name
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        stats += [(f.relative_to(_PACKAGE).as_posix(), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    return hash_json({"version": __version__, "files": stats})


def memo_path(es: EmbeddingSet, kind: str, parts: dict[str, Any], suffix: str) -> Path | None:
    """Where the result ``kind`` with ``parts`` of ``es``'s cache entry lives; None if ``es`` has no entry."""
    prov = es.provenance or {}
    key, entry = prov.get("key"), prov.get("path")
    if not key or not entry:
        return None
    return Path(entry).parent / DERIVED_DIR / str(key) / f"{kind}-{hash_json(parts)[:32]}{suffix}"


def load_report(path: Path | None) -> Report | None:
    """The memoised report at ``path``, or None (missing or unreadable: recompute)."""
    if path is None or not path.is_file():
        return None
    try:
        return Report.load(path)
    except (GapdiagError, OSError, ValueError) as exc:
        log.debug("ignoring memoised report %s: %s", path, exc)
        return None


def save_report(path: Path | None, report: Report) -> None:
    """Memoise ``report`` at ``path`` (best effort)."""
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, report.to_dict())
    except Exception as exc:  # noqa: BLE001 - a memo that cannot be written only costs recomputation
        log.debug("report not memoised at %s: %s", path, exc)


def load_array(path: Path | None) -> NDArray[Any] | None:
    """The memoised array at ``path`` (``.npy``), or None."""
    if path is None or not path.is_file():
        return None
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        log.debug("ignoring memoised array %s: %s", path, exc)
        return None


def save_array(path: Path | None, array: NDArray[Any]) -> None:
    """Memoise ``array`` at ``path`` (best effort)."""
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_save_npy(path, np.ascontiguousarray(array))
    except Exception as exc:  # noqa: BLE001
        log.debug("array not memoised at %s: %s", path, exc)
