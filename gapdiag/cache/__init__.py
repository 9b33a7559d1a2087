"""The embedding cache: entries of vectors on disk, keyed by everything that changes them (docs/cache.md).

* :mod:`~gapdiag.cache.store`: :class:`EmbeddingCache`, a directory of entries (get verified, ls, verify, rm);
* :mod:`~gapdiag.cache.entry`: reading one entry, its ``meta.json`` and files checked;
* :mod:`~gapdiag.cache.writer`: building one entry (:class:`EntryWriter`: chunks, resume, lock);
* :mod:`~gapdiag.cache.keys`: the key, the names files may take, the checkpoint hash in the key;
* :mod:`~gapdiag.cache.files`: one file's atomic, checksummed write and checked read;
* :mod:`~gapdiag.cache.integrity`: checksums of entry files and chunk sidecars, the entry lock;
* :mod:`~gapdiag.cache.derived`: results derived from an entry's vectors (reports, 2-D maps), memoised beside it.

Callers import the names below from here (``default_cache_dir`` is :mod:`gapdiag.settings`'; the
api resolves the root with it once, at the door, and hands it to :class:`EmbeddingCache`).
"""

from gapdiag.cache.keys import CACHE_FORMAT_VERSION, DTYPES, HASHES_FILE, KEY_LENGTH, cache_key, file_sha256
from gapdiag.cache.store import EmbeddingCache, EntryCheck, EntrySummary, FileProblem
from gapdiag.cache.writer import EntryWriter
from gapdiag.settings import default_cache_dir

__all__ = [
    "CACHE_FORMAT_VERSION",
    "DTYPES",
    "HASHES_FILE",
    "KEY_LENGTH",
    "EmbeddingCache",
    "EntryCheck",
    "EntrySummary",
    "EntryWriter",
    "FileProblem",
    "cache_key",
    "default_cache_dir",
    "file_sha256",
]
