"""Results derived from a cache entry's vectors, kept beside the cache: measured reports and 2-D maps.

The store keeps values, not records: a report is memoised as its JSON (``Report.to_dict()``) and read back as
JSON, which the api turns into a :class:`~gapdiag.report.Report` again; the cache imports nothing of the report.

A warm ``gapdiag measure``, ``report`` or ``plot`` on unchanged vectors recomputes nothing: the metrics
(scikit-learn's k-means and logistic regression alone take seconds to import) and the UMAP embedding (numba
compilation, ~10 s) are read back. Each result lives in ``<cache root>/derived/<entry key>/<hash>.<ext>``
where the hash covers everything that changes the result: the parameters the caller passes, the entry's
``meta_checksum`` (so a memo belongs to the very bytes it was computed from: the memos of another entry, or of
this key before it was rebuilt, are never found) and a stamp of gapdiag's own code (version plus size and
mtime of the modules that compute it), so editing or upgrading gapdiag never serves an old result. An entry
without a cache key (vectors passed in memory, precomputed files) is never memoised.

Memos carry checksums exactly like vectors: a ``<memo>.sha256`` sidecar (``sha256sum`` format) is written
before the rename that commits the memo and checked on every read, from the very bytes that are then parsed.
A memo that fails it (edited, damaged, no sidecar) is never used: one warning line says so, the memo is
removed and the result computed again (and memoised anew); ``gapdiag cache verify`` reports it. Writes are
atomic; an unwritable cache only costs the recomputation.
"""

from __future__ import annotations

import functools
import io
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from gapdiag import __version__
from gapdiag.cache import integrity
from gapdiag.cache.files import atomic_write
from gapdiag.errors import GapdiagError
from gapdiag.fsutil import (
    NUMPY_READ_ERRORS,
    hash_json,
    json_text,
    loads_json,
    remove_stale_temps,
    unlink_quietly,
)

if TYPE_CHECKING:
    from gapdiag.vectors import EmbeddingSet

log = logging.getLogger(__name__)

DERIVED_DIR = integrity.DERIVED_DIR
_PACKAGE = Path(__file__).parents[1]  # the gapdiag package: code_stamp names files relative to it
T = TypeVar("T")


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
    """Where the result ``kind`` with ``parts`` of ``es``'s cache entry lives; None if ``es`` is no verified entry."""
    prov = es.provenance or {}
    key, entry, sealed = prov.get("key"), prov.get("path"), prov.get("meta_checksum")
    if not key or not entry or not sealed:
        return None
    name = hash_json({**parts, "entry": sealed})[:32]
    return Path(entry).parent / DERIVED_DIR / str(key) / f"{kind}-{name}{suffix}"


def _load(path: Path | None, what: str, parse: Callable[[bytes], T]) -> T | None:
    """The memo at ``path`` parsed from bytes that passed its checksum; None (recompute) otherwise.

    A memo that exists but fails its checksum is removed with one warning line naming it.
    """
    if path is None or not path.is_file():
        return None
    data, reason = integrity.read_verified(path)
    if data is None:
        log.warning("memoised %s %s: %s; computing it again", what, path, reason)
        unlink_quietly(path)
        unlink_quietly(integrity.sidecar(path))
        return None
    try:
        return parse(data)
    except (GapdiagError, *NUMPY_READ_ERRORS) as exc:  # checksum right, content not ours (another version)
        log.debug("ignoring memoised %s %s: %s", what, path, exc)
        return None


def _save(path: Path | None, write: Callable[[Any], object]) -> None:
    """Memoise at ``path`` through ``write(binary file)``, its sidecar recorded before the rename (best effort)."""
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path.parent)  # gapdiag's own folder: any killed writer's temporary file goes
        atomic_write(path, write, on_checksum=lambda value: integrity.write_sidecar(path, value))
    except Exception as exc:  # noqa: BLE001 - a memo that cannot be written only costs recomputation
        log.debug("not memoised at %s: %s", path, exc)


def load_json(path: Path | None) -> Any:
    """The JSON value memoised at ``path`` (a measured report's ``to_dict()``), or None (missing, unreadable or
    failing its checksum: recompute)."""
    return _load(path, "result", loads_json)


def save_json(path: Path | None, value: Any) -> None:
    """Memoise the JSON value ``value`` at ``path`` (best effort: a value that has no JSON form is not memoised)."""
    # Keys in the order given: a report read back lists its metrics as the run that measured it did.
    _save(path, lambda f: f.write(json_text(value, sort_keys=False).encode()))


def load_array(path: Path | None) -> NDArray[Any] | None:
    """The memoised array at ``path`` (``.npy``), or None."""
    return _load(path, "array", lambda data: np.load(io.BytesIO(data), allow_pickle=False))


def save_array(path: Path | None, array: NDArray[Any]) -> None:
    """Memoise ``array`` at ``path`` (best effort)."""
    _save(path, lambda f: np.save(f, np.ascontiguousarray(array), allow_pickle=False))
