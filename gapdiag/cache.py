"""On-disk cache of embeddings: cache keys, checkpoint hashes, atomic chunked writes, resume and locking.

An entry is a directory that numpy alone can read (the layout is documented in ``docs/cache.md``)::

    <root>/<key>/meta.json                      written last: its presence marks a complete entry
    <root>/<key>/<modality>.npy                 (n_items, d) raw vectors, float32 or float16
    <root>/<key>/<modality>.sample_index.npy    (n_items,) int64
    <root>/<key>/labels.npy, class_embeddings.npy, attribute_embeddings.npz, attributes.npz   (optional)
    <root>/<key>/partial.json, chunks/<modality>.<start>-<end>.npy                        (while building)
    <root>/<key>.lock                           inter-process lock held for the whole build

Every file is written to a temporary file in the same directory, fsynced and moved into place with
``os.replace``, so a killed process leaves either the old file or the new one, never half of one. Vectors are
committed in chunks of ``chunk_size`` items; a run that is killed loses at most the chunk it was computing.

The key follows Hugging Face datasets' fingerprinting: a hash of everything that changes the vectors plus
:data:`CACHE_FORMAT_VERSION`; settings that do not change the vectors (batch size, workers, device) stay out.
"""

from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import io
import json
import logging
import os
import re
import shutil
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path, PurePath
from typing import IO, TYPE_CHECKING, Any

import filelock
import numpy as np
import platformdirs
from numpy.typing import ArrayLike, NDArray

from gapdiag import __version__, fsutil
from gapdiag import cache_integrity as integrity
from gapdiag.embeddings import EmbeddingSet
from gapdiag.errors import CacheError, EmbeddingError, InputError

if TYPE_CHECKING:
    from typing_extensions import Self

log = logging.getLogger(__name__)

#: Bump whenever the layout of an entry or the way vectors are computed changes: every key changes with it.
CACHE_FORMAT_VERSION = 2  # 2: checksums of every stored file (meta.json, chunk sidecars)

DTYPES = ("float32", "float16")
KEY_LENGTH = 20
HASHES_FILE = "hashes.json"

# Keys and modality names become file names: keep them to characters that are safe on every filesystem.
_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_MODALITY_RE = re.compile(r"[A-Za-z0-9_-]+")
# Modality names that would collide with the side arrays of an entry.
_RESERVED_MODALITIES = frozenset({"labels", "class_embeddings"})


# ------------------------------------------------------------------------------------------------ helpers


def default_cache_dir() -> Path:
    """The cache root: ``$GAPDIAG_CACHE_DIR`` if set and non-empty, else the platform's user cache dir."""
    env = os.environ.get("GAPDIAG_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("gapdiag", appauthor=False))


def _json_default(obj: Any) -> Any:
    # Only values with one obvious JSON form. Anything else must fail rather than fall back to ``str``:
    # a repr that hides a difference would turn into a wrong cache hit.
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, PurePath):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} value {obj!r} is not JSON-serialisable; cache keys and metadata "
                    "accept JSON values (str, int, float, bool, None, lists, dicts) only")


def _canonical_json(obj: Any) -> str:
    """Compact JSON with sorted keys: the same value gives the same text on every run and platform."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default, allow_nan=False)


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
    payload = _canonical_json({"parts": dict(parts), "cache_format_version": CACHE_FORMAT_VERSION})
    return hashlib.sha256(payload.encode()).hexdigest()[:KEY_LENGTH]


def _utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def _write_error(path: Path, exc: OSError) -> CacheError:
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return CacheError(f"disk full while writing {path}", hint="free space or use --cache-dir")
    return CacheError(f"cannot write {path}: {exc.strerror or _one_line(exc)}",
                      hint="check its permissions or use --cache-dir")


def _atomic_write(path: Path, write: Callable[[IO[bytes]], object], *,
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
        raise _write_error(path, exc) from exc


def _atomic_write_json(path: Path, obj: Any) -> None:
    text = json.dumps(obj, indent=2, sort_keys=True, default=_json_default, allow_nan=False) + "\n"
    _atomic_write(path, lambda f: f.write(text.encode()))


def _atomic_save_npy(path: Path, array: NDArray[Any], on_checksum: Callable[[str], object] | None = None) -> None:
    _atomic_write(path, lambda f: np.save(f, array, allow_pickle=False), on_checksum=on_checksum)


def _atomic_save_npz(path: Path, arrays: Mapping[str, NDArray[Any]],
                     on_checksum: Callable[[str], object] | None = None) -> None:
    # What np.savez writes, without passing names as keyword arguments: an attribute value such as "file"
    # would collide with savez's own parameters.
    def write(f: IO[bytes]) -> None:
        with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            for name, array in arrays.items():
                with archive.open(f"{name}.npy", mode="w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)

    _atomic_write(path, write, on_checksum=on_checksum)


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(path, exc) from exc


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
        raise InputError(f"invalid cache key {key!r}: use letters, digits, '-' and '_' only",
                         hint="see `gapdiag cache ls` for the keys")


# ---------------------------------------------------------------------------------------- checkpoint hash

def file_sha256(path: str | Path, *, cache_dir: str | Path | None = None) -> str:
    """SHA-256 of a file (a checkpoint), memoised in-process and in ``<cache root>/hashes.json``.

    Hashing a multi-GB checkpoint takes seconds, so the digest is remembered per resolved path together with
    the file's size, mtime, ctime (nanoseconds) and inode (:func:`gapdiag.fsutil.file_digest`): any edit or
    replacement of the file invalidates it. The on-disk memo is shared between processes; when the cache dir
    cannot be written the digest is still returned, just not remembered.

    Args:
        path: The file to hash.
        cache_dir: Cache root holding ``hashes.json``; default :func:`default_cache_dir`.

    Raises:
        InputError: The file does not exist or cannot be read.
    """
    p = Path(path).expanduser()
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    try:
        return fsutil.file_digest(p, memo_file=root / HASHES_FILE)
    except OSError as exc:
        raise InputError(f"cannot read {p}: {exc.strerror or _one_line(exc)}",
                         hint="check the checkpoint path") from exc


# ------------------------------------------------------------------------------------------------- cache


class EmbeddingCache:
    """A directory of embedding entries, one per cache key.

    Typical use (what ``gapdiag.embed`` does)::

        cache = EmbeddingCache(cache_dir)
        emb = cache.get(key)
        if emb is None:
            with cache.writer(key, meta, chunk_size=4096) as w:
                for name, modality in dataset.modalities.items():
                    for start, end in w.chunk_ranges(name, len(modality)):
                        if not w.is_done(name, start, end):
                            w.write_chunk(name, start, encode(modality, start, end))
                emb = w.finalize(sample_index={n: m.sample_index for n, m in dataset.modalities.items()})

    Attributes:
        root: The cache directory.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        """Open (and create) the cache directory.

        Raises:
            CacheError: The directory cannot be created or written.
        """
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        probe = self.root / f".write-test.{os.getpid()}.tmp"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            # os.access() says yes to root on a read-only mount; only a real write tells the truth.
            with open(probe, "wb"):
                pass
        except OSError as exc:
            raise CacheError(f"cache dir {self.root} is not writable",
                             hint="set --cache-dir or GAPDIAG_CACHE_DIR") from exc
        finally:
            _unlink_quietly(probe)

    def path(self, key: str) -> Path:
        """Directory of the entry ``key`` (which need not exist)."""
        _check_key(key)
        return self.root / key

    def _lock(self, key: str) -> filelock.BaseFileLock:
        return filelock.FileLock(str(self.root / f"{key}.lock"))

    def get(self, key: str, *, mmap: bool = True, verify: bool = True, progress: bool = False) -> EmbeddingSet | None:
        """Load a complete entry; ``None`` if it is missing or still being built.

        Arrays are memory-mapped (``mmap=True``); their headers are checked against ``meta.json`` and, with
        ``verify``, every file's bytes against the checksum ``meta.json`` recorded when it was written, in one
        streaming pass (about 1 s per GB; a file whose size, mtime, ctime and inode are unchanged since this
        process last verified it is not read again). ``progress`` shows that pass on stderr for large entries.

        Raises:
            CacheError: The entry is complete but damaged (unreadable or missing file, wrong shape or dtype,
                checksum mismatch): one line naming the entry's file.
        """
        entry = self.path(key)
        meta_path = entry / "meta.json"
        if not meta_path.is_file():
            return None
        meta = self._read_meta(key, meta_path)

        def load(name: str, shape: tuple[int, ...] | None, dtype: str | None) -> NDArray[Any]:
            return _load_checked(entry / name, key, shape=shape, dtype=dtype, mmap=mmap)

        try:
            modalities: list[str] = list(meta["modalities"])
            counts = {m: int(meta["dataset"]["counts"][m]) for m in modalities}
            dims = {m: int(meta["dims"][m]) for m in modalities}
            n_samples = int(meta["dataset"]["n_samples"])
            dtype = str(meta["dtype"])
            arrays = list(meta.get("arrays", []))
        except (KeyError, TypeError, ValueError) as exc:
            raise _corrupt(meta_path, key, f"field {_one_line(exc)} missing or malformed") from exc

        vectors = {m: load(f"{m}.npy", (counts[m], dims[m]), dtype) for m in modalities}
        sample_index = {m: load(f"{m}.sample_index.npy", (counts[m],), "int64") for m in modalities}
        labels = load("labels.npy", (n_samples,), "int64") if "labels" in arrays else None
        class_embeddings = load("class_embeddings.npy", None, "float32") if "class_embeddings" in arrays else None
        attributes = _load_npz(entry / "attributes.npz", key) if "attributes" in arrays else None
        attribute_embeddings = (_load_npz(entry / "attribute_embeddings.npz", key)
                                if "attribute_embeddings" in arrays else None)
        if verify:
            problems = integrity.verify_entry_files(entry, meta, progress=progress)
            if problems:
                name, reason = problems[0]
                raise _corrupt(entry / name, key, reason)
        return EmbeddingSet(
            vectors=vectors, sample_index=sample_index, n_samples=n_samples, labels=labels,
            class_names=meta.get("class_names"), class_embeddings=class_embeddings, attributes=attributes,
            attribute_embeddings=attribute_embeddings, provenance=meta,
        )

    @staticmethod
    def _read_meta(key: str, meta_path: Path) -> dict[str, Any]:
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise _corrupt(meta_path, key, _one_line(exc)) from exc
        if not isinstance(meta, dict):
            raise _corrupt(meta_path, key, "not a JSON object")
        return meta

    def writer(self, key: str, meta: Mapping[str, Any], *, chunk_size: int, shared: bool = False,
               progress: bool = False) -> EntryWriter:
        """An :class:`EntryWriter` (use it as a context manager) that builds or resumes entry ``key``.

        Args:
            key: The entry's key, from :func:`cache_key`.
            meta: JSON metadata stored in ``meta.json`` (model, checkpoint_sha256, dataset {name, source,
                fingerprint, n_samples, counts}, dtype, class_names, ...). ``dtype`` ("float32" default or
                "float16") is the stored dtype. It must be deterministic: a partial entry built with different
                ``meta`` is discarded, never mixed.
            chunk_size: Items per committed chunk (the most a killed run can lose).
            shared: Join a build that another process of the same distributed job prepared and locks (rank 0):
                no lock is taken and nothing is discarded; only :meth:`EntryWriter.write_chunk` of this rank's own
                chunks and :meth:`EntryWriter.is_done` may be used, never :meth:`EntryWriter.finalize`.
            progress: Show the checksum pass over a large complete entry found on entering.
        """
        return EntryWriter(self, key, meta, chunk_size=chunk_size, shared=shared, progress=progress)

    def _entry_dirs(self) -> list[Path]:
        try:
            # Only folders an entry build created; the root also holds gapdiag's own memos (fingerprints/,
            # model_configs/) which are neither listed nor removed by `rm all`.
            return sorted(p for p in self.root.iterdir() if p.is_dir() and _KEY_RE.fullmatch(p.name)
                          and ((p / "meta.json").is_file() or (p / "partial.json").is_file()))
        except OSError as exc:
            raise CacheError(f"cannot list cache dir {self.root}: {exc.strerror or _one_line(exc)}",
                             hint="set --cache-dir or GAPDIAG_CACHE_DIR") from exc

    def ls(self) -> list[dict[str, Any]]:
        """One summary per entry, oldest first: key, dataset, model, counts, dtype, size_bytes, created,
        complete (``False`` for an entry being built or left by a killed run; ``error`` if unreadable)."""
        rows = []
        for entry in self._entry_dirs():
            complete = (entry / "meta.json").is_file()
            row: dict[str, Any] = {"key": entry.name, "complete": complete}
            try:
                if complete:
                    meta = json.loads((entry / "meta.json").read_text())
                    created = meta.get("created")
                else:
                    partial = json.loads((entry / "partial.json").read_text())
                    meta, created = partial.get("meta", {}), partial.get("started")
                    row["why"] = self._why_incomplete(entry, partial)
                dataset, model = meta.get("dataset") or {}, meta.get("model") or {}
                row.update(dataset=dataset.get("name"), model=model.get("name"), counts=dataset.get("counts"),
                           dtype=meta.get("dtype"), created=created)
            except (OSError, ValueError, AttributeError) as exc:
                row.update(dataset=None, model=None, counts=None, dtype=None, created=None,
                           error=_one_line(exc))
            row["size_bytes"] = sum(f.stat().st_size for f in entry.rglob("*") if f.is_file())
            rows.append(row)
        return sorted(rows, key=lambda r: (r["created"] or "", r["key"]))

    def _why_incomplete(self, entry: Path, partial: Mapping[str, Any]) -> str:
        """Why an entry is not complete: being built (by whom), or stopped (with the reason recorded)."""
        lock = self._lock(entry.name)
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            return f"being built by {integrity.describe_owner(Path(lock.lock_file))}"
        lock.release()
        n_chunks = len(list((entry / "chunks").glob("*.npy")))
        reason = partial.get("stopped")
        return (f"stopped: {reason}" if reason else "stopped") + f"; {n_chunks} chunks committed, the next " \
            "run with the same settings resumes"

    def _select(self, key_or_prefix: str) -> list[Path]:
        """Entry dirs named by a key, a unique key prefix, or ``"all"``.

        Raises:
            InputError: The prefix matches no entry or several.
        """
        entries = self._entry_dirs()
        if key_or_prefix == "all":
            return entries
        if not key_or_prefix:
            raise InputError("empty cache key", hint="give a key or prefix from `gapdiag cache ls`, or 'all'")
        exact = [p for p in entries if p.name == key_or_prefix]
        targets = exact or [p for p in entries if p.name.startswith(key_or_prefix)]
        if not targets:
            raise InputError(f"no cache entry matches {key_or_prefix!r} in {self.root}",
                             hint="see `gapdiag cache ls`")
        if len(targets) > 1:
            shown = ", ".join(p.name for p in targets[:5]) + (", ..." if len(targets) > 5 else "")
            raise InputError(f"cache key prefix {key_or_prefix!r} matches {len(targets)} entries: {shown}",
                             hint="give more characters of the key")
        return targets

    def verify(self, key_or_prefix: str = "all", *, progress: bool = False) -> list[dict[str, Any]]:
        """Read every byte of the selected entries and check it against the recorded checksums.

        Complete entries: every file against ``meta.json["checksums"]`` (plus the header checks of
        :meth:`get`). Partial entries: every committed chunk against its sidecar (a bad chunk would be computed
        again by the next run, but is reported here). Nothing is memoised: this is the full check.

        Args:
            key_or_prefix: A key, a unique key prefix, or ``"all"``.
            progress: Show a progress display on stderr for large entries.

        Returns:
            One dict per entry: ``key``, ``complete``, ``ok``, ``files`` (how many were checked) and
            ``problems`` (``[{"file": name, "reason": ...}]``, empty when ``ok``).

        Raises:
            InputError: The prefix matches no entry or several.
        """
        results = []
        for entry in self._select(key_or_prefix):
            complete = (entry / "meta.json").is_file()
            problems: list[tuple[str, str]] = []
            if complete:
                n_files = 0
                try:
                    meta = self._read_meta(entry.name, entry / "meta.json")
                    n_files = len(integrity.entry_files(meta))
                except CacheError as exc:
                    problems = [("meta.json", exc.message)]
                except (KeyError, TypeError):
                    problems = [("meta.json", "field 'modalities' missing or malformed")]
                else:
                    problems = integrity.verify_entry_files(entry, meta, memo=False, progress=progress)
                    if not problems:
                        try:
                            self.get(entry.name, verify=False)  # shapes and dtypes against meta.json
                        except CacheError as exc:
                            problems = [("meta.json", exc.message)]
            else:
                n_files = len(list((entry / "chunks").glob("*.npy")))
                problems = integrity.chunk_problems(entry / "chunks")
            results.append({"key": entry.name, "complete": complete, "ok": not problems, "files": n_files,
                            "problems": [{"file": f, "reason": r} for f, r in problems]})
        return results

    def rm(self, key_or_prefix: str) -> list[str]:
        """Remove one entry by key or unique key prefix, or every entry with ``"all"``; return removed keys.

        ``"all"`` also forgets the checkpoint hashes (``hashes.json``).

        Raises:
            InputError: The prefix matches no entry or several.
            CacheError: The entry is being written by another process.
        """
        targets = self._select(key_or_prefix)
        if key_or_prefix == "all":
            _unlink_quietly(self.root / HASHES_FILE)
        removed = []
        for entry in targets:
            lock = self._lock(entry.name)
            try:
                lock.acquire(timeout=0)
            except filelock.Timeout:
                raise CacheError(f"cache entry {entry.name} is being written by another gapdiag process",
                                 hint="wait for it to finish, then remove it") from None
            try:
                shutil.rmtree(entry)
            except OSError as exc:
                raise CacheError(f"cannot remove {entry}: {exc.strerror or _one_line(exc)}",
                                 hint="check its permissions") from exc
            finally:
                # The lock file stays: deleting it could let two later writers lock two different files.
                lock.release()
            removed.append(entry.name)
        return removed


def _corrupt(path: Path, key: str, reason: str) -> CacheError:
    return CacheError(f"corrupt cache file {path}: {reason}",
                      hint=f"remove the entry with `gapdiag cache rm {key}` and run again")


def _load_checked(path: Path, key: str, *, shape: tuple[int, ...] | None, dtype: str | None,
                  mmap: bool) -> NDArray[Any]:
    """``np.load`` a cache array and check its header against what ``meta.json`` promises."""
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError as exc:
        raise _corrupt(path, key, "file is missing") from exc
    except (OSError, ValueError, EOFError) as exc:
        raise _corrupt(path, key, _one_line(exc)) from exc
    if shape is not None and array.shape != shape:
        raise _corrupt(path, key, f"expected shape {shape}, found {array.shape}")
    if shape is None and array.ndim != 2:
        raise _corrupt(path, key, f"expected a 2-D array, found shape {array.shape}")
    if dtype is not None and array.dtype != np.dtype(dtype):
        raise _corrupt(path, key, f"expected dtype {dtype}, found {array.dtype}")
    return array


def _load_npz(path: Path, key: str) -> dict[str, NDArray[Any]]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except FileNotFoundError as exc:
        raise _corrupt(path, key, "file is missing") from exc
    except (OSError, ValueError, EOFError) as exc:
        raise _corrupt(path, key, _one_line(exc)) from exc


# ------------------------------------------------------------------------------------------------ writer


class EntryWriter:
    """Builds one cache entry chunk by chunk under an exclusive inter-process lock; resumes killed builds.

    Use as a context manager (the lock is held between ``__enter__`` and ``__exit__``). On entry:

    * a complete entry (another process finished it while this one waited for the lock) is exposed as
      :attr:`existing`: :meth:`is_done` is then true for every chunk and :meth:`finalize` returns it;
    * a partial entry whose ``partial.json`` matches this build (same meta, dtype, chunk_size) is resumed:
      :meth:`is_done` is true for its committed chunks;
    * any other partial entry is discarded. Stray temp files and unreadable chunks are removed.

    Leaving the block without :meth:`finalize` (an exception, a kill) keeps the committed chunks for the
    next run.

    Attributes:
        key: The entry's key.
        dir: The entry's directory.
        dtype: Stored dtype ("float32" or "float16").
        chunk_size: Items per chunk.
        existing: The complete entry found on entering, else ``None``.
    """

    def __init__(self, cache: EmbeddingCache, key: str, meta: Mapping[str, Any], *, chunk_size: int,
                 shared: bool = False, progress: bool = False) -> None:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        self.cache = cache
        self.key = key
        self.dir = cache.path(key)
        # Round-trip through JSON so that the comparison with partial.json sees exactly what is stored.
        self.meta: dict[str, Any] = json.loads(_canonical_json(dict(meta)))
        self.dtype: str = self.meta.setdefault("dtype", "float32")
        if self.dtype not in DTYPES:
            raise ValueError(f"meta dtype must be one of {DTYPES}, got {self.dtype!r}")
        self.chunk_size = int(chunk_size)
        self.existing: EmbeddingSet | None = None
        self._lock = cache._lock(key)
        self._n_items: dict[str, int] = {}
        self._dims: dict[str, int] = {}
        self._active = False
        self.shared = shared
        self.progress = progress
        # Chunks this writer wrote or checked: is_done() need not read them again; finalize() still does.
        self._verified: set[Path] = set()

    @property
    def _chunks(self) -> Path:
        return self.dir / "chunks"

    def _build_description(self) -> dict[str, Any]:
        # What partial.json records; a resumed build must match it exactly.
        return {"key": self.key, "meta": self.meta, "dtype": self.dtype, "chunk_size": self.chunk_size,
                "cache_format_version": CACHE_FORMAT_VERSION}

    def __enter__(self) -> Self:
        if self.shared:
            # Rank 0 of the same job holds the lock and has prepared the entry (see EmbeddingCache.writer).
            if not (self.dir / "partial.json").is_file():
                raise CacheError(f"cache entry {self.key} was not prepared by rank 0",
                                 hint="start every rank with the same data, model and cache dir")
            self._active = True
            return self
        lock_path = Path(self._lock.lock_file)
        try:
            self._lock.acquire(timeout=0)
        except filelock.Timeout:
            # A warning, so that it shows without logging configured: a silent wait of minutes looks like a hang.
            log.warning("cache entry %s is being built by %s; waiting for it to finish (lock %s)",
                        self.key, integrity.describe_owner(lock_path), lock_path)
            self._lock.acquire()
        integrity.write_owner(lock_path, _utc_now())
        try:
            self._prepare()
        except BaseException:
            self._lock.release()
            raise
        self._active = True
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        self._active = False
        if exc is not None and not self.shared and self.existing is None:
            self._record_stop(exc)
        if not self.shared:
            _unlink_quietly(integrity.owner_path(Path(self._lock.lock_file)))
            self._lock.release()

    def _prepare(self) -> None:
        if (self.dir / "meta.json").is_file():
            try:
                self.existing = self.cache.get(self.key, progress=self.progress)
            except CacheError as exc:
                # We were asked to build this key and hold its lock: a damaged entry is rebuilt.
                log.warning("rebuilding damaged cache entry %s: %s", self.key, exc)
                self._discard()
            else:
                # A kill between meta.json and the clean-up leaves chunks behind; they are no longer needed.
                shutil.rmtree(self._chunks, ignore_errors=True)
                _unlink_quietly(self.dir / "partial.json")
                return
        description = self._build_description()
        started = _utc_now()
        if self.dir.exists():
            try:
                previous = json.loads((self.dir / "partial.json").read_text())
            except (OSError, ValueError):
                previous = None
            if isinstance(previous, dict):
                started = previous.pop("started", started)
                previous.pop("stopped", None)  # why the last run stopped: no longer true once this one runs
            if previous != description:
                if previous is not None or any(self.dir.iterdir()):
                    log.info("discarding partial cache entry %s built with other settings", self.key)
                self._discard()
                started = _utc_now()
        for directory in (self.dir, self._chunks):
            _mkdir(directory)
            for stray in directory.glob("*.tmp"):
                _unlink_quietly(stray)
        _atomic_write_json(self.dir / "partial.json", {**description, "started": started})

    def _record_stop(self, exc: BaseException) -> None:
        # Says in `gapdiag cache ls` why this partial entry stopped (its chunks stay for the next run).
        path = self.dir / "partial.json"
        try:
            partial = json.loads(path.read_text())
            reason = "interrupted" if isinstance(exc, KeyboardInterrupt) or type(exc).__name__ == "Interrupted" \
                else f"{type(exc).__name__}: {_one_line(exc)}"
            _atomic_write_json(path, {**partial, "stopped": reason[:300]})
        except (OSError, ValueError, TypeError, CacheError):
            pass  # the reason is a courtesy; the entry stays resumable without it

    def _discard(self) -> None:
        try:
            shutil.rmtree(self.dir)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise CacheError(f"cannot remove stale cache entry {self.dir}: {exc.strerror or _one_line(exc)}",
                             hint="check its permissions or use --cache-dir") from exc

    def _check_active(self) -> None:
        if not self._active:
            raise RuntimeError("use EntryWriter inside a `with cache.writer(...)` block")

    def chunk_ranges(self, modality: str, n_items: int) -> list[tuple[int, int]]:
        """The ``[start, end)`` item ranges of ``modality``, ``chunk_size`` items each (the last may be shorter).

        Deterministic, so a resumed run asks for the very chunks the killed run committed.
        """
        if not _MODALITY_RE.fullmatch(modality) or modality in _RESERVED_MODALITIES:
            raise ValueError(f"invalid modality name {modality!r} for the cache: use letters, digits, '-', '_' "
                             f"and none of {sorted(_RESERVED_MODALITIES)}")
        if n_items < 0:
            raise ValueError(f"n_items must be >= 0, got {n_items}")
        self._n_items[modality] = int(n_items)
        return [(s, min(s + self.chunk_size, n_items)) for s in range(0, n_items, self.chunk_size)]

    def _chunk_path(self, modality: str, start: int, end: int) -> Path:
        n = self._n_items.get(modality)
        if n is None:
            raise ValueError(f"call chunk_ranges({modality!r}, n_items) before writing or checking its chunks")
        if start < 0 or start % self.chunk_size or end != min(start + self.chunk_size, n) or start >= n:
            raise ValueError(f"items {start}-{end} of {modality!r} are not one of its chunk_ranges "
                             f"(chunk_size={self.chunk_size}, n_items={n})")
        return self._chunks / f"{modality}.{start}-{end}.npy"

    def is_done(self, modality: str, start: int, end: int) -> bool:
        """Whether chunk ``[start, end)`` of ``modality`` is already committed (by this or a killed run).

        A chunk committed by another run is read once and checked against its checksum sidecar; a chunk whose
        checksum fails, that cannot be read or has the wrong shape or dtype is removed (with a warning naming
        it) and reported not done, so that it is computed again.
        """
        self._check_active()
        if self.existing is not None:
            return True
        path = self._chunk_path(modality, start, end)
        if not path.is_file():
            return False
        if path in self._verified:
            return True
        reason = integrity.chunk_problem(path)
        if reason is None:
            try:
                array = np.load(path, mmap_mode="r", allow_pickle=False)
                if not (array.ndim == 2 and array.shape[0] == end - start and array.dtype == np.dtype(self.dtype)
                        and array.shape[1] == self._dims.setdefault(modality, array.shape[1])):
                    reason = f"shape {array.shape} {array.dtype} is not ({end - start}, d) {self.dtype}"
                del array
            except (OSError, ValueError, EOFError) as exc:
                reason = _one_line(exc)
        if reason is not None:
            log.warning("cache entry %s: re-embedding chunk %s (%s)", self.key, path.name, reason)
            _unlink_quietly(path)
            _unlink_quietly(integrity.sidecar(path))
            return False
        self._verified.add(path)
        return True

    def write_chunk(self, modality: str, start: int, vectors: ArrayLike) -> None:
        """Commit the vectors of items ``[start, start + len(vectors))`` of ``modality`` (atomic).

        Raises:
            EmbeddingError: ``vectors`` holds NaN or inf, or overflows float16 when stored as float16.
            CacheError: The disk is full or the file cannot be written (committed chunks stay intact).
        """
        self._check_active()
        if self.existing is not None:
            return
        array = np.asarray(vectors)
        if array.ndim != 2 or array.shape[0] == 0:
            raise ValueError(f"vectors of {modality!r} must be a non-empty 2-D array, got shape {array.shape}")
        end = start + array.shape[0]
        path = self._chunk_path(modality, start, end)
        dim = self._dims.setdefault(modality, array.shape[1])
        if array.shape[1] != dim:
            raise ValueError(f"vectors of {modality!r} items {start}-{end - 1} have dimension {array.shape[1]}, "
                             f"earlier chunks have {dim}")
        _check_finite(array, modality, start, "the model produced NaN/inf; check the checkpoint and inputs, "
                                               "or use --precision fp32")
        with np.errstate(over="ignore"):  # an overflow is reported just below, with the item range
            stored = np.ascontiguousarray(array, dtype=self.dtype)
        _check_finite(stored, modality, start, f"values overflow {self.dtype}; use --dtype float32")

        def record(value: str) -> None:
            try:
                integrity.write_sidecar(path, value)
            except OSError as exc:
                raise _write_error(integrity.sidecar(path), exc) from exc

        _atomic_save_npy(path, stored, on_checksum=record)
        self._verified.add(path)

    def _write_concatenated(self, f: IO[bytes], chunk_paths: list[Path], shape: tuple[int, int]) -> None:
        """Write one ``.npy`` of ``shape`` from consecutive chunk files, holding one chunk in memory.

        Each chunk is checked against its checksum as it is read: a chunk that changed since it was committed
        must not end up in a file whose checksum would then vouch for it.

        Raises:
            CacheError: A chunk fails its checksum (it is removed: the next run computes it again).
        """
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(self.dtype)), "fortran_order": False,
                  "shape": shape}
        np.lib.format.write_array_header_1_0(f, header)
        for path in chunk_paths:
            data = path.read_bytes()
            if integrity.recorded_checksum(path) != integrity.checksum_of_bytes(data):
                _unlink_quietly(path)
                _unlink_quietly(integrity.sidecar(path))
                raise CacheError(f"cache chunk {path} changed after it was committed (checksum mismatch)",
                                 hint="run again: the chunk is computed again")
            f.write(np.ascontiguousarray(np.load(io.BytesIO(data), allow_pickle=False), dtype=self.dtype).data)

    def finalize(
        self,
        *,
        sample_index: Mapping[str, ArrayLike],
        labels: ArrayLike | None = None,
        class_embeddings: ArrayLike | None = None,
        attributes: Mapping[str, ArrayLike] | None = None,
        attribute_embeddings: Mapping[str, ArrayLike] | None = None,
    ) -> EmbeddingSet:
        """Assemble the committed chunks into a complete entry and return it (memory-mapped).

        Writes ``<modality>.npy`` (streamed chunk by chunk, so memory stays at one chunk), the side arrays,
        then ``meta.json`` last, then removes ``chunks/`` and ``partial.json``. Each step is atomic, so a kill
        at any point leaves either a resumable partial entry or a complete one.

        Args:
            sample_index: Modality -> ``(n_items,)`` sample of each item; its keys (in order) are the modalities.
            labels: Optional ``(n_samples,)`` int class labels.
            class_embeddings: Optional ``(n_classes, d)`` zero-shot classifier (stored as float32).
            attributes: Optional per-sample attribute name -> ``(n_samples,)`` strings.
            attribute_embeddings: Optional attribute value -> ``(d,)`` vector (stored as float32).

        Raises:
            ValueError: A chunk is missing or an array has the wrong length.
            CacheError: The disk is full or a file cannot be written.
        """
        self._check_active()
        if self.shared:
            raise RuntimeError("only the process that holds the entry's lock (rank 0) may finalize it")
        if self.existing is not None:
            return self.existing
        modalities = list(sample_index)
        if not modalities:
            raise ValueError("finalize() needs the sample_index of at least one modality")
        index = {m: np.asarray(sample_index[m], dtype=np.int64) for m in modalities}
        counts = {m: int(index[m].shape[0]) for m in modalities}
        dataset = dict(self.meta.get("dataset") or {})
        n_samples = int(dataset.get("n_samples", max(int(i.max(initial=-1)) + 1 for i in index.values())))

        # Everything is validated before the first write, so a bad call leaves the chunks as they are.
        for m in modalities:
            if index[m].ndim != 1 or counts[m] == 0 or index[m].min() < 0 or index[m].max() >= n_samples:
                raise ValueError(f"sample_index of {m!r} must be a non-empty 1-D array with values in "
                                 f"[0, {n_samples})")
        side: dict[str, NDArray[Any]] = {}
        if labels is not None:
            side["labels"] = np.asarray(labels, dtype=np.int64)
            if side["labels"].shape != (n_samples,):
                raise ValueError(f"labels must have shape ({n_samples},), got {side['labels'].shape}")
        if class_embeddings is not None:
            side["class_embeddings"] = np.asarray(class_embeddings, dtype=np.float32)
            if side["class_embeddings"].ndim != 2:
                raise ValueError("class_embeddings must be a 2-D (n_classes, d) array")
            _check_finite(side["class_embeddings"], "class", 0, "check the text encoder and prompt templates")
        ranges = {m: self.chunk_ranges(m, counts[m]) for m in modalities}
        missing = [f"{m} items {s}-{e - 1}" for m in modalities for s, e in ranges[m] if not self.is_done(m, s, e)]
        if missing:
            raise ValueError(f"cannot finalize cache entry {self.key}: chunks not written: {', '.join(missing)}")

        checksums: dict[str, str] = {}

        def record(name: str) -> Callable[[str], None]:
            return lambda value: checksums.__setitem__(name, value)

        for m in modalities:
            chunk_paths = [self._chunk_path(m, s, e) for s, e in ranges[m]]
            shape = (counts[m], self._dims[m])
            _atomic_write(self.dir / f"{m}.npy",
                          lambda f, paths=chunk_paths, shape=shape: self._write_concatenated(f, paths, shape),
                          on_checksum=record(f"{m}.npy"))
            _atomic_save_npy(self.dir / f"{m}.sample_index.npy", index[m], record(f"{m}.sample_index.npy"))
        for name, array in side.items():
            _atomic_save_npy(self.dir / f"{name}.npy", array, record(f"{name}.npy"))
        written = list(side)
        if attributes is not None:
            # Plain unicode arrays, never object arrays: they load without pickle.
            _atomic_save_npz(self.dir / "attributes.npz",
                             {name: np.asarray(values).astype(str) for name, values in attributes.items()},
                             record("attributes.npz"))
            written.append("attributes")
        if attribute_embeddings is not None:
            _atomic_save_npz(self.dir / "attribute_embeddings.npz",
                             {name: np.asarray(v, dtype=np.float32) for name, v in attribute_embeddings.items()},
                             record("attribute_embeddings.npz"))
            written.append("attribute_embeddings")

        dataset["counts"] = counts
        dataset["n_samples"] = n_samples
        meta = {
            **self.meta,
            "key": self.key,
            "dataset": dataset,
            "modalities": modalities,
            "dims": {m: self._dims[m] for m in modalities},
            "dtype": self.dtype,
            "class_names": self.meta.get("class_names"),
            "arrays": sorted(written),
            "chunk_size": self.chunk_size,
            "gapdiag_version": __version__,
            "cache_format_version": CACHE_FORMAT_VERSION,
            "created": _utc_now(),
            # Recorded from the files as written, before meta.json (the entry's commit point) exists.
            "checksums": checksums,
        }
        _atomic_write_json(self.dir / "meta.json", meta)
        shutil.rmtree(self._chunks, ignore_errors=True)
        _unlink_quietly(self.dir / "partial.json")
        # The checksums were just taken from these very files: no second pass over them.
        result = self.cache.get(self.key, verify=False)
        assert result is not None  # meta.json was just written
        self.existing = result
        return result


def _check_finite(array: NDArray[Any], modality: str, start: int, hint: str) -> None:
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        first = start + int(np.argmin(finite))
        raise EmbeddingError(f"non-finite values (NaN or inf) in {modality} embeddings of items "
                             f"{start}-{start + len(array) - 1} (first at item {first})", hint=hint)
