"""How the cache writes and reads one file: atomic writes that hand over checksums, ``meta.json``'s own checksum,
and array loads checked against ``meta.json``; every failure is a one-line :class:`~gapdiag.errors.CacheError`.

Shared by :mod:`gapdiag.cache.store` and :mod:`gapdiag.cache.entry` (reading entries) and
:mod:`gapdiag.cache.writer` (building them). The crash-safe write itself, the JSON text and the JSON hash are
:mod:`gapdiag.fsutil`'s (one of each for gapdiag); this module adds the cache's error messages and the checksum
hand-over.
"""

from __future__ import annotations

import datetime as _dt
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

from gapdiag import fsutil
from gapdiag.cache import integrity
from gapdiag.errors import CacheError

#: The field of ``meta.json`` that holds the checksum of every other field (the key, the files' checksums...).
META_CHECKSUM = "meta_checksum"


def meta_checksum(meta: Mapping[str, Any]) -> str:
    """``"sha256:<hex>"`` of ``meta``'s canonical JSON without its own :data:`META_CHECKSUM` field.

    Canonical (sorted keys, no whitespace), so the indented ``meta.json`` on disk, parsed again, gives the same
    text: rewriting it with other whitespace keeps the checksum, changing any value (a class name, an entry of
    ``arrays``, the key) does not.
    """
    return f"{fsutil.ALGORITHM}:{fsutil.hash_json({k: v for k, v in meta.items() if k != META_CHECKSUM})}"


def utc_now() -> str:
    """The current UTC time to the second, ISO 8601 (``created``/``started`` stamps of an entry)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def one_line(exc: BaseException) -> str:
    """An exception's message folded onto one line (its type name when it has none)."""
    return " ".join(str(exc).split()) or type(exc).__name__


# ----------------------------------------------------------------------------------------------- writing


def write_error(path: Path, exc: OSError) -> CacheError:
    """The one-line error for a failed write of ``path``: disk full, or what the OS said, with the fix."""
    if fsutil.is_disk_full(exc):
        return CacheError(f"disk full while writing {path}", hint="free space or use --cache-dir")
    return CacheError(f"cannot write {path}: {exc.strerror or one_line(exc)}",
                      hint="check its permissions or use --cache-dir")


def atomic_write(path: Path, write: Callable[[IO[bytes]], object], *,
                 on_checksum: Callable[[str], object] | None = None) -> None:
    """:func:`gapdiag.fsutil.atomic_write` with cache errors; optionally hands over the file's checksum.

    ``on_checksum(checksum)`` gets the checksum of the written temp file before the rename that commits it, so
    that the checksum is recorded (chunk sidecar, or ``meta.json`` which is written last) before the file counts.

    Raises:
        CacheError: The write failed (disk full, permissions); ``path`` is unchanged.
    """
    def record(tmp: Path) -> None:
        if on_checksum is not None:
            on_checksum(integrity.checksum(tmp))

    try:
        fsutil.atomic_write(path, write, before_replace=record)
    except OSError as exc:
        raise write_error(path, exc) from exc


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` with the one JSON writer (:func:`gapdiag.fsutil.atomic_write_json`), failures worded as the
    cache's.

    Raises:
        CacheError: The write failed (disk full, permissions); ``path`` is unchanged.
    """
    try:
        fsutil.atomic_write_json(path, obj)
    except OSError as exc:
        raise write_error(path, exc) from exc


def atomic_save_npy(path: Path, array: NDArray[Any], on_checksum: Callable[[str], object] | None = None) -> None:
    """``np.save`` (no pickle) atomically; ``on_checksum`` as in :func:`atomic_write`."""
    atomic_write(path, lambda f: np.save(f, array, allow_pickle=False), on_checksum=on_checksum)


def atomic_save_npz(path: Path, arrays: Mapping[str, NDArray[Any]],
                    on_checksum: Callable[[str], object] | None = None) -> None:
    """An uncompressed ``.npz`` of ``arrays`` (no pickle), atomically; ``on_checksum`` as in :func:`atomic_write`."""
    # What np.savez writes, without passing names as keyword arguments: an attribute value such as "file"
    # would collide with savez's own parameters.
    def write(f: IO[bytes]) -> None:
        with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            for name, array in arrays.items():
                with archive.open(f"{name}.npy", mode="w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)

    atomic_write(path, write, on_checksum=on_checksum)


def make_dir(path: Path) -> None:
    """``mkdir -p`` with the cache's one-line error.

    Raises:
        CacheError: The directory cannot be created.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(path, exc) from exc


# ----------------------------------------------------------------------------------------------- reading


def corrupt(path: Path, key: str, reason: str) -> CacheError:
    """The one-line error for a damaged file of entry ``key``, naming the file and the fix."""
    return CacheError(f"corrupt cache file {path}: {reason}",
                      hint=f"remove the entry with `gapdiag cache rm {key}` and run again")


def load_checked(path: Path, key: str, *, shape: tuple[int, ...] | None, dtype: str | None,
                 mmap: bool) -> NDArray[Any]:
    """``np.load`` a cache array and check its header against what ``meta.json`` promises.

    ``shape=None`` asks for any 2-D array.

    Raises:
        CacheError: The file is missing or unreadable, or its shape or dtype differ.
    """
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError as exc:
        raise corrupt(path, key, "file is missing") from exc
    except fsutil.NUMPY_READ_ERRORS as exc:
        raise corrupt(path, key, one_line(exc)) from exc
    if shape is not None and array.shape != shape:
        raise corrupt(path, key, f"expected shape {shape}, found {array.shape}")
    if shape is None and array.ndim != 2:
        raise corrupt(path, key, f"expected a 2-D array, found shape {array.shape}")
    if dtype is not None and array.dtype != np.dtype(dtype):
        raise corrupt(path, key, f"expected dtype {dtype}, found {array.dtype}")
    return array


def load_npz(path: Path, key: str) -> dict[str, NDArray[Any]]:
    """Every array of a cache ``.npz``, read into memory.

    Raises:
        CacheError: The file is missing or unreadable.
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except FileNotFoundError as exc:
        raise corrupt(path, key, "file is missing") from exc
    except fsutil.NUMPY_READ_ERRORS as exc:
        raise corrupt(path, key, one_line(exc)) from exc
