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

from gapdiag import __version__
from gapdiag.embeddings import EmbeddingSet
from gapdiag.errors import CacheError, EmbeddingError, InputError

if TYPE_CHECKING:
    from typing_extensions import Self

log = logging.getLogger(__name__)

#: Bump whenever the layout of an entry or the way vectors are computed changes: every key changes with it.
CACHE_FORMAT_VERSION = 1

DTYPES = ("float32", "float16")
KEY_LENGTH = 20
HASHES_FILE = "hashes.json"

# Keys and modality names become file names: keep them to characters that are safe on every filesystem.
_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_MODALITY_RE = re.compile(r"[A-Za-z0-9_-]+")
# Modality names that would collide with the side arrays of an entry.
_RESERVED_MODALITIES = frozenset({"labels", "class_embeddings"})
_HASH_BLOCK = 1 << 20


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


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable. Not possible on every platform (Windows), where it is skipped.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_error(path: Path, exc: OSError) -> CacheError:
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return CacheError(f"disk full while writing {path}", hint="free space or use --cache-dir")
    return CacheError(f"cannot write {path}: {exc.strerror or _one_line(exc)}",
                      hint="check its permissions or use --cache-dir")


def _atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` through ``write(file)`` into a temp file in the same dir, fsync, then ``os.replace``.

    On any failure the temp file is removed and ``path`` keeps its previous content (or stays absent).

    Raises:
        CacheError: The write failed (disk full, permissions).
    """
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _unlink_quietly(tmp)
        raise _write_error(path, exc) from exc
    except BaseException:
        _unlink_quietly(tmp)
        raise
    _fsync_dir(path.parent)


def _atomic_write_json(path: Path, obj: Any) -> None:
    text = json.dumps(obj, indent=2, sort_keys=True, default=_json_default, allow_nan=False) + "\n"
    _atomic_write(path, lambda f: f.write(text.encode()))


def _atomic_save_npy(path: Path, array: NDArray[Any]) -> None:
    _atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))


def _atomic_save_npz(path: Path, arrays: Mapping[str, NDArray[Any]]) -> None:
    # What np.savez writes, without passing names as keyword arguments: an attribute value such as "file"
    # would collide with savez's own parameters.
    def write(f: IO[bytes]) -> None:
        with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            for name, array in arrays.items():
                with archive.open(f"{name}.npy", mode="w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)

    _atomic_write(path, write)


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

_HASH_MEMO: dict[tuple[str, int, int, int], str] = {}


def _sha256_of_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_HASH_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def _read_hashes(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # a missing or damaged memo only costs a re-hash
    return data if isinstance(data, dict) else {}


def file_sha256(path: str | Path, *, cache_dir: str | Path | None = None) -> str:
    """SHA-256 of a file (a checkpoint), memoised in-process and in ``<cache root>/hashes.json``.

    Hashing a multi-GB checkpoint takes seconds, so the digest is remembered per resolved path together with
    the file's size, mtime and ctime (nanoseconds): any edit or replacement of the file invalidates it. The
    on-disk memo is shared between processes and updated atomically under ``hashes.json.lock``; when the cache
    dir cannot be written the digest is still returned, just not remembered.

    Args:
        path: The file to hash.
        cache_dir: Cache root holding ``hashes.json``; default :func:`default_cache_dir`.

    Raises:
        InputError: The file does not exist or cannot be read.
    """
    p = Path(path).expanduser()
    try:
        resolved = p.resolve()
        st = resolved.stat()
    except OSError as exc:
        raise InputError(f"cannot read {p}: {exc.strerror or _one_line(exc)}",
                         hint="check the checkpoint path") from exc
    stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns}
    memo_key = (str(resolved), st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if memo_key in _HASH_MEMO:
        return _HASH_MEMO[memo_key]

    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    memo_path = root / HASHES_FILE
    entry = _read_hashes(memo_path).get(str(resolved))
    if isinstance(entry, dict) and {k: entry.get(k) for k in stamp} == stamp and isinstance(entry.get("sha256"), str):
        digest = entry["sha256"]
    else:
        try:
            digest = _sha256_of_file(resolved)
        except OSError as exc:
            raise InputError(f"cannot read {p}: {exc.strerror or _one_line(exc)}",
                             hint="check the checkpoint path") from exc
        try:
            root.mkdir(parents=True, exist_ok=True)
            # Read-modify-write under a lock so that two processes hashing different files keep both entries.
            with filelock.FileLock(str(root / f"{HASHES_FILE}.lock")):
                hashes = _read_hashes(memo_path)
                hashes[str(resolved)] = {**stamp, "sha256": digest}
                _atomic_write_json(memo_path, hashes)
        except (OSError, CacheError) as exc:
            log.debug("checkpoint hash not memoised in %s: %s", memo_path, exc)
    _HASH_MEMO[memo_key] = digest
    return digest


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

    def get(self, key: str, *, mmap: bool = True) -> EmbeddingSet | None:
        """Load a complete entry; ``None`` if it is missing or still being built.

        Cheap whatever the size: arrays are memory-mapped (``mmap=True``) and only their headers are checked
        against ``meta.json``; nothing is hashed.

        Raises:
            CacheError: The entry is complete but damaged (unreadable file, wrong shape or dtype).
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

    def writer(self, key: str, meta: Mapping[str, Any], *, chunk_size: int, shared: bool = False) -> EntryWriter:
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
        """
        return EntryWriter(self, key, meta, chunk_size=chunk_size, shared=shared)

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
                dataset, model = meta.get("dataset") or {}, meta.get("model") or {}
                row.update(dataset=dataset.get("name"), model=model.get("name"), counts=dataset.get("counts"),
                           dtype=meta.get("dtype"), created=created)
            except (OSError, ValueError, AttributeError) as exc:
                row.update(dataset=None, model=None, counts=None, dtype=None, created=None,
                           error=_one_line(exc))
            row["size_bytes"] = sum(f.stat().st_size for f in entry.rglob("*") if f.is_file())
            rows.append(row)
        return sorted(rows, key=lambda r: (r["created"] or "", r["key"]))

    def rm(self, key_or_prefix: str) -> list[str]:
        """Remove one entry by key or unique key prefix, or every entry with ``"all"``; return removed keys.

        ``"all"`` also forgets the checkpoint hashes (``hashes.json``).

        Raises:
            InputError: The prefix matches no entry or several.
            CacheError: The entry is being written by another process.
        """
        entries = self._entry_dirs()
        if key_or_prefix == "all":
            targets = entries
            _unlink_quietly(self.root / HASHES_FILE)
        else:
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
                 shared: bool = False) -> None:
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
        try:
            self._lock.acquire(timeout=0)
        except filelock.Timeout:
            log.info("waiting for another gapdiag process that is building cache entry %s", self.key)
            self._lock.acquire()
        try:
            self._prepare()
        except BaseException:
            self._lock.release()
            raise
        self._active = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._active = False
        if not self.shared:
            self._lock.release()

    def _prepare(self) -> None:
        if (self.dir / "meta.json").is_file():
            try:
                self.existing = self.cache.get(self.key)
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
        if self.dir.exists():
            try:
                previous = json.loads((self.dir / "partial.json").read_text())
            except (OSError, ValueError):
                previous = None
            if isinstance(previous, dict):
                previous.pop("started", None)
            if previous != description:
                if previous is not None or any(self.dir.iterdir()):
                    log.info("discarding partial cache entry %s built with other settings", self.key)
                self._discard()
        for directory in (self.dir, self._chunks):
            _mkdir(directory)
            for stray in directory.glob("*.tmp"):
                _unlink_quietly(stray)
        if not (self.dir / "partial.json").is_file():
            _atomic_write_json(self.dir / "partial.json", {**description, "started": _utc_now()})

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

        A chunk file that cannot be read or has the wrong shape or dtype is removed and reported not done.
        """
        self._check_active()
        if self.existing is not None:
            return True
        path = self._chunk_path(modality, start, end)
        if not path.is_file():
            return False
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
            valid = (array.ndim == 2 and array.shape[0] == end - start and array.dtype == np.dtype(self.dtype)
                     and array.shape[1] == self._dims.setdefault(modality, array.shape[1]))
            del array
        except (OSError, ValueError, EOFError):
            valid = False
        if not valid:
            log.warning("recomputing unreadable cache chunk %s", path)
            _unlink_quietly(path)
        return valid

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
        _atomic_save_npy(path, stored)

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

        for m in modalities:
            chunk_paths = [self._chunk_path(m, s, e) for s, e in ranges[m]]
            shape = (counts[m], self._dims[m])
            _atomic_write(self.dir / f"{m}.npy",
                          lambda f, paths=chunk_paths, shape=shape: _write_concatenated(f, paths, shape, self.dtype))
            _atomic_save_npy(self.dir / f"{m}.sample_index.npy", index[m])
        for name, array in side.items():
            _atomic_save_npy(self.dir / f"{name}.npy", array)
        written = list(side)
        if attributes is not None:
            # Plain unicode arrays, never object arrays: they load without pickle.
            _atomic_save_npz(self.dir / "attributes.npz",
                             {name: np.asarray(values).astype(str) for name, values in attributes.items()})
            written.append("attributes")
        if attribute_embeddings is not None:
            _atomic_save_npz(self.dir / "attribute_embeddings.npz",
                             {name: np.asarray(v, dtype=np.float32) for name, v in attribute_embeddings.items()})
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
        }
        _atomic_write_json(self.dir / "meta.json", meta)
        shutil.rmtree(self._chunks, ignore_errors=True)
        _unlink_quietly(self.dir / "partial.json")
        result = self.cache.get(self.key)
        assert result is not None  # meta.json was just written
        self.existing = result
        return result


def _check_finite(array: NDArray[Any], modality: str, start: int, hint: str) -> None:
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        first = start + int(np.argmin(finite))
        raise EmbeddingError(f"non-finite values (NaN or inf) in {modality} embeddings of items "
                             f"{start}-{start + len(array) - 1} (first at item {first})", hint=hint)


def _write_concatenated(f: IO[bytes], chunk_paths: list[Path], shape: tuple[int, int], dtype: str) -> None:
    """Write one ``.npy`` of ``shape`` from consecutive chunk files without holding them all in memory."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(f, header)
    for path in chunk_paths:
        f.write(np.ascontiguousarray(np.load(path, allow_pickle=False), dtype=dtype).data)
