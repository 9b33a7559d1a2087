"""The verbs of the cache: :func:`cache_ls`, :func:`cache_verify`, :func:`cache_rm` and :func:`cache_dir`.

Each resolves the cache root once (``cache_dir``, else ``$GAPDIAG_CACHE_DIR``, else the user cache dir) and opens
the store there; the rows they return are the store's documented mappings
(:class:`~gapdiag.cache.EntrySummary`, :class:`~gapdiag.cache.EntryCheck`).
"""

from __future__ import annotations

from pathlib import Path

from gapdiag.cache import EmbeddingCache, EntryCheck, EntrySummary
from gapdiag.settings import Settings


def cache_verify(key: str = "all", *, cache_dir: str | Path | None = None,
                 progress: bool = False) -> list[EntryCheck]:
    """Check every byte of cache entries against the checksums recorded when they were written.

    Args:
        key: An entry key, a unique key prefix, or ``"all"``.
        cache_dir: The cache root (default: ``GAPDIAG_CACHE_DIR`` or the user cache dir).
        progress: Show a progress display on stderr for large entries.

    Returns:
        One :class:`~gapdiag.cache.EntryCheck` per entry: ``key``, ``complete``, ``ok``, ``files`` and
        ``problems`` (``[{"file", "reason"}]``); see :meth:`gapdiag.cache.EmbeddingCache.verify`.

    Raises:
        InputError: ``key`` matches no entry or several.
        CacheError: The cache dir cannot be used.
    """
    return _store(cache_dir).verify(key, progress=progress)


def cache_ls(*, cache_dir: str | Path | None = None) -> tuple[Path, list[EntrySummary]]:
    """The cache root and one :class:`~gapdiag.cache.EntrySummary` per entry (key, model, dataset, counts, dtype,
    size, created, complete).

    Raises:
        CacheError: The cache dir cannot be used.
    """
    cache = _store(cache_dir)
    return cache.root, cache.ls()


def cache_rm(key: str, *, cache_dir: str | Path | None = None) -> list[str]:
    """Remove cache entries by key, unique key prefix, or ``"all"``; returns the removed keys.

    Raises:
        InputError: ``key`` matches no entry or several.
    """
    return _store(cache_dir).rm(key)


def cache_dir(cache_dir: str | Path | None = None) -> Path:
    """The cache directory in use (``cache_dir``, else ``GAPDIAG_CACHE_DIR``, else the user cache dir)."""
    return _store(cache_dir).root


def _store(cache_dir: str | Path | None) -> EmbeddingCache:
    """The store at the cache root that ``cache_dir`` resolves to (the one place these verbs resolve it)."""
    return EmbeddingCache(Settings.build(cache_dir).cache_root)
