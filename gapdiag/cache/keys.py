"""Names in the cache: the key of an entry, the names its files may take, and the checkpoint hash in the key.

The key follows Hugging Face datasets' fingerprinting: a hash of everything that changes the vectors plus
:data:`CACHE_FORMAT_VERSION`. Batch size and device stay out although they change the last bits of float32
vectors (summation order, < 1e-6): far below any metric's precision, see ``docs/cache.md``. Re-exported by
:mod:`gapdiag.cache`, where callers import them from.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gapdiag import fsutil
from gapdiag.cache.files import one_line
from gapdiag.errors import InputError

#: Bump whenever the layout of an entry or the way vectors are computed changes: every key changes with it.
#: 2: checksums of every stored file (meta.json, chunk sidecars); 3: meta.json carries its own checksum over
#: everything else in it, the entry's key included (an edited meta.json or a moved entry folder is detected).
CACHE_FORMAT_VERSION = 3

DTYPES = ("float32", "float16")
KEY_LENGTH = 20
#: The memo of checkpoint digests under the cache root (see :func:`file_sha256`).
HASHES_FILE = "hashes.json"

# Keys and modality names become file names: keep them to characters that are safe on every filesystem.
KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
MODALITY_RE = re.compile(r"[A-Za-z0-9_-]+")
#: Modality names that would collide with the side arrays of an entry.
RESERVED_MODALITIES = frozenset({"labels", "class_embeddings"})


def cache_key(parts: Mapping[str, Any]) -> str:
    """Stable cache key: the first 20 hex digits of SHA-256 over ``parts`` and :data:`CACHE_FORMAT_VERSION`.

    ``parts`` must hold everything that changes the vectors (model name and config, checkpoint SHA-256,
    precision, dataset fingerprint, prompt templates, dtype, ...) and nothing that does not (batch size,
    workers, device): the latter would only cause needless misses. Dict key order does not matter; list order
    does.

    Raises:
        TypeError: A value is not JSON-serialisable (numpy scalars/arrays and paths are converted).

    Example:
        >>> cache_key({"a": 1, "b": [1, 2]}) == cache_key({"b": [1, 2], "a": 1})
        True
    """
    return fsutil.hash_json({"parts": dict(parts), "cache_format_version": CACHE_FORMAT_VERSION})[:KEY_LENGTH]


def check_key(key: str) -> None:
    """Refuse a key that is not a safe file name: letters, digits, ``-`` and ``_``, starting with a letter or digit.

    Raises:
        InputError: ``key`` is not a valid cache key.
    """
    if not isinstance(key, str) or not KEY_RE.fullmatch(key):
        raise InputError(f"invalid cache key {key!r}: use letters, digits, '-' and '_' only",
                         hint="see `gapdiag cache ls` for the keys")


def check_modality_name(modality: str) -> None:
    """Refuse a modality name that is not a safe file name or would collide with an entry's side arrays.

    Raises:
        ValueError: ``modality`` cannot name a cache file.
    """
    if not MODALITY_RE.fullmatch(modality) or modality in RESERVED_MODALITIES:
        raise ValueError(f"invalid modality name {modality!r} for the cache: use letters, digits, '-', '_' "
                         f"and none of {sorted(RESERVED_MODALITIES)}")


def file_sha256(path: str | Path, *, cache_dir: str | Path | None = None) -> str:
    """SHA-256 of a file (a checkpoint), memoised in-process and in ``<cache root>/hashes.json``.

    Hashing a multi-GB checkpoint takes seconds, so the digest is remembered per resolved path together with
    the file's size, mtime, ctime (nanoseconds) and inode (:func:`gapdiag.fsutil.file_digest`): any edit or
    replacement of the file invalidates it. The on-disk memo is shared between processes; when the cache dir
    cannot be written the digest is still returned, just not remembered.

    Args:
        path: The file to hash.
        cache_dir: Cache root holding ``hashes.json``; ``None`` remembers the digest in this process only.

    Raises:
        InputError: The file does not exist or cannot be read.
    """
    p = Path(path).expanduser()
    memo_file = None if cache_dir is None else Path(cache_dir) / HASHES_FILE
    try:
        return fsutil.file_digest(p, memo_file=memo_file)
    except OSError as exc:
        raise InputError(f"cannot read {p}: {exc.strerror or one_line(exc)}",
                         hint="check the checkpoint path") from exc
