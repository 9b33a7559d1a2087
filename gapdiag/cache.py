"""On-disk cache of embeddings: cache keys, checkpoint hashes, atomic chunked writes, checksums, resume, locking.

An entry is a directory that numpy alone can read (the layout is documented in ``docs/cache.md``)::

    <root>/<key>/meta.json                      written last: its presence marks a complete entry; holds checksums
    <root>/<key>/<modality>.npy                 (n_items, d) raw vectors, float32 or float16
    <root>/<key>/<modality>.sample_index.npy    (n_items,) int64
    <root>/<key>/labels.npy, class_embeddings.npy, attribute_embeddings.npz, attributes.npz   (optional)
    <root>/<key>/partial.json, chunks/<modality>.<start>-<end>.npy[.sha256]                (while building)
    <root>/<key>.lock, <key>.lock.owner         inter-process lock held for the whole build, and who holds it

Every file is written to a temporary file in the same directory, fsynced and moved into place with
``os.replace`` (:mod:`gapdiag.fsutil`), so a killed process leaves either the old file or the new one, never
half of one; its checksum is recorded before that rename and verified on every read
(:mod:`gapdiag.cache_integrity`). Vectors are committed in chunks of ``chunk_size`` items; a run that is killed
loses at most the chunk it was computing.

The key follows Hugging Face datasets' fingerprinting: a hash of everything that changes the vectors plus
:data:`CACHE_FORMAT_VERSION`. Batch size and device stay out although they change the last bits of float32
vectors (summation order, < 1e-6): far below any metric's precision, see ``docs/cache.md``.
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
from numpy.typing import NDArray

from gapdiag import fsutil
from gapdiag import cache_integrity as integrity
from gapdiag.embeddings import EmbeddingSet
from gapdiag.errors import CacheError, InputError
from gapdiag.settings import default_cache_dir  # noqa: F401 - lives with the settings that carry the root

if TYPE_CHECKING:
    from gapdiag.cache_writer import EntryWriter

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
        streaming pass (roughly 1-5 s per GB, see docs/cache.md). A file whose size, mtime, ctime and inode are
        unchanged since this process last verified it is not read again. ``progress`` shows the pass on stderr
        for large entries.

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
        from gapdiag.cache_writer import EntryWriter  # a module of its own; it imports this one

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
    except fsutil.NUMPY_READ_ERRORS as exc:
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
    except fsutil.NUMPY_READ_ERRORS as exc:
        raise _corrupt(path, key, _one_line(exc)) from exc


def __getattr__(name: str) -> Any:
    # ``gapdiag.cache.EntryWriter`` keeps working although the class lives in gapdiag.cache_writer.
    if name == "EntryWriter":
        from gapdiag.cache_writer import EntryWriter

        return EntryWriter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
