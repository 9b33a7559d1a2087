"""Building one cache entry: chunked atomic writes with checksums, resume, and the entry's lock.

Split from :mod:`gapdiag.cache.store` (which opens, lists, verifies and removes entries) and handed out by
:meth:`gapdiag.cache.EmbeddingCache.writer`; see ``docs/cache.md``.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import filelock
import numpy as np
from numpy.typing import ArrayLike, NDArray

from gapdiag import __version__
from gapdiag.cache import integrity
from gapdiag.cache.entry import read_entry
from gapdiag.cache.files import (
    META_CHECKSUM,
    atomic_save_npy,
    atomic_save_npz,
    atomic_write,
    make_dir,
    meta_checksum,
    one_line,
    utc_now,
    write_error,
    write_json,
)
from gapdiag.cache.keys import CACHE_FORMAT_VERSION, DTYPES, check_key, check_modality_name
from gapdiag.errors import CacheError, EmbeddingError
from gapdiag.fsutil import canonical_json, loads_json, unlink_quietly
from gapdiag.vectors import EmbeddingSet

if TYPE_CHECKING:
    from typing_extensions import Self

# The cache's one logger name (users filter on it), although the writer is a module of its own.
log = logging.getLogger("gapdiag.cache")


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
        root: The cache directory the entry lives in.
        key: The entry's key.
        dir: The entry's directory.
        dtype: Stored dtype ("float32" or "float16").
        chunk_size: Items per chunk.
        existing: The complete entry found on entering, else ``None``.
    """

    def __init__(self, root: Path, key: str, meta: Mapping[str, Any], *, chunk_size: int,
                 shared: bool = False, progress: bool = False) -> None:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        check_key(key)
        self.root = Path(root)
        self.key = key
        self.dir = self.root / key
        # Round-trip through JSON so that the comparison with partial.json sees exactly what is stored.
        self.meta: dict[str, Any] = json.loads(canonical_json(dict(meta)))
        self.dtype: str = self.meta.setdefault("dtype", "float32")
        if self.dtype not in DTYPES:
            raise ValueError(f"meta dtype must be one of {DTYPES}, got {self.dtype!r}")
        self.chunk_size = int(chunk_size)
        self.existing: EmbeddingSet | None = None
        self._lock = integrity.entry_lock(self.root, key)
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
        integrity.write_owner(lock_path, utc_now())
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
            unlink_quietly(integrity.owner_path(Path(self._lock.lock_file)))
            self._lock.release()

    def _prepare(self) -> None:
        if (self.dir / "meta.json").is_file():
            try:
                self.existing = read_entry(self.dir, self.key, progress=self.progress)
            except CacheError as exc:
                # We were asked to build this key and hold its lock: a damaged entry is rebuilt, and the warning
                # says what was damaged (not the error's "remove the entry" hint: nothing is left to do).
                log.warning("cache entry %s is damaged (%s); embedding it again", self.key, exc.message)
                self._discard()
            else:
                # A kill between meta.json and the clean-up leaves chunks behind; they are no longer needed.
                shutil.rmtree(self._chunks, ignore_errors=True)
                unlink_quietly(self.dir / "partial.json")
                return
        description = self._build_description()
        started = utc_now()
        if self.dir.exists():
            try:
                previous = loads_json((self.dir / "partial.json").read_text())
            except (OSError, ValueError):
                previous = None
            if isinstance(previous, dict):
                started = previous.pop("started", started)
                previous.pop("stopped", None)  # why the last run stopped: no longer true once this one runs
            if previous != description:
                if previous is not None or any(self.dir.iterdir()):
                    log.info("discarding partial cache entry %s built with other settings", self.key)
                self._discard()
                started = utc_now()
        for directory in (self.dir, self._chunks):
            make_dir(directory)
            for stray in directory.glob("*.tmp"):
                unlink_quietly(stray)
        write_json(self.dir / "partial.json", {**description, "started": started})

    def _record_stop(self, exc: BaseException) -> None:
        # Says in `gapdiag cache ls` why this partial entry stopped (its chunks stay for the next run).
        path = self.dir / "partial.json"
        try:
            partial = loads_json(path.read_text())
            reason = "interrupted" if isinstance(exc, KeyboardInterrupt) or type(exc).__name__ == "Interrupted" \
                else f"{type(exc).__name__}: {one_line(exc)}"
            write_json(path, {**partial, "stopped": reason[:300]})
        except (OSError, ValueError, TypeError, CacheError):
            pass  # the reason is a courtesy; the entry stays resumable without it

    def _discard(self) -> None:
        try:
            shutil.rmtree(self.dir)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise CacheError(f"cannot remove stale cache entry {self.dir}: {exc.strerror or one_line(exc)}",
                             hint="check its permissions or use --cache-dir") from exc

    def _check_active(self) -> None:
        if not self._active:
            raise RuntimeError("use EntryWriter inside a `with cache.writer(...)` block")

    def chunk_ranges(self, modality: str, n_items: int) -> list[tuple[int, int]]:
        """The ``[start, end)`` item ranges of ``modality``, ``chunk_size`` items each (the last may be shorter).

        Deterministic, so a resumed run asks for the very chunks the killed run committed.
        """
        check_modality_name(modality)
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
                reason = one_line(exc)
        if reason is not None:
            log.warning("cache entry %s: re-embedding chunk %s (%s)", self.key, path.name, reason)
            unlink_quietly(path)
            unlink_quietly(integrity.sidecar(path))
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
                raise write_error(integrity.sidecar(path), exc) from exc

        atomic_save_npy(path, stored, on_checksum=record)
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
                unlink_quietly(path)
                unlink_quietly(integrity.sidecar(path))
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
        if not sample_index:
            raise ValueError("finalize() needs the sample_index of at least one modality")
        index = {m: np.asarray(values, dtype=np.int64) for m, values in sample_index.items()}
        dataset = dict(self.meta.get("dataset") or {})
        n_samples = int(dataset.get("n_samples", max(int(i.max(initial=-1)) + 1 for i in index.values())))

        # Everything is validated before the first write, so a bad call leaves the chunks as they are.
        side = _side_arrays(index, n_samples, labels, class_embeddings)
        ranges = self._committed_chunk_ranges(index)

        checksums: dict[str, str] = {}
        self._write_vectors(index, ranges, checksums)
        written = self._write_side_arrays(side, attributes, attribute_embeddings, checksums)
        dataset["counts"] = {m: len(i) for m, i in index.items()}
        dataset["n_samples"] = n_samples
        self._write_meta(dataset, list(index), sorted(written), checksums)
        shutil.rmtree(self._chunks, ignore_errors=True)
        unlink_quietly(self.dir / "partial.json")
        # The checksums were just taken from these very files: no second pass over them.
        result = read_entry(self.dir, self.key, verify=False)
        if result is None:  # meta.json was just written: only another process removing the entry gets here
            raise CacheError(f"cache entry {self.key} was removed while it was being finished",
                             hint="run again without removing the cache entry meanwhile")
        self.existing = result
        return result

    def _committed_chunk_ranges(self, index: Mapping[str, NDArray[np.int64]]) -> dict[str, list[tuple[int, int]]]:
        """Each modality's chunk ranges, once every one of them is committed.

        Raises:
            ValueError: Chunks are missing (named by modality and items).
        """
        ranges = {m: self.chunk_ranges(m, len(i)) for m, i in index.items()}
        missing = [f"{m} items {s}-{e - 1}" for m in index for s, e in ranges[m] if not self.is_done(m, s, e)]
        if missing:
            raise ValueError(f"cannot finalize cache entry {self.key}: chunks not written: {', '.join(missing)}")
        return ranges

    def _write_vectors(self, index: Mapping[str, NDArray[np.int64]], ranges: Mapping[str, list[tuple[int, int]]],
                       checksums: dict[str, str]) -> None:
        """``<modality>.npy`` (streamed from the chunks) and ``<modality>.sample_index.npy`` of every modality."""
        for m, modality_index in index.items():
            chunk_paths = [self._chunk_path(m, s, e) for s, e in ranges[m]]
            shape = (len(modality_index), self._dims[m])
            atomic_write(self.dir / f"{m}.npy",
                         lambda f, paths=chunk_paths, shape=shape: self._write_concatenated(f, paths, shape),
                         on_checksum=_record_into(checksums, f"{m}.npy"))
            atomic_save_npy(self.dir / f"{m}.sample_index.npy", modality_index,
                            _record_into(checksums, f"{m}.sample_index.npy"))

    def _write_side_arrays(self, side: Mapping[str, NDArray[Any]], attributes: Mapping[str, ArrayLike] | None,
                           attribute_embeddings: Mapping[str, ArrayLike] | None,
                           checksums: dict[str, str]) -> list[str]:
        """Labels, class embeddings, attributes and attribute embeddings; returns the names of those written."""
        for name, array in side.items():
            atomic_save_npy(self.dir / f"{name}.npy", array, _record_into(checksums, f"{name}.npy"))
        written = list(side)
        if attributes is not None:
            # Plain unicode arrays, never object arrays: they load without pickle.
            atomic_save_npz(self.dir / "attributes.npz",
                            {name: np.asarray(values).astype(str) for name, values in attributes.items()},
                            _record_into(checksums, "attributes.npz"))
            written.append("attributes")
        if attribute_embeddings is not None:
            atomic_save_npz(self.dir / "attribute_embeddings.npz",
                            {name: np.asarray(v, dtype=np.float32) for name, v in attribute_embeddings.items()},
                            _record_into(checksums, "attribute_embeddings.npz"))
            written.append("attribute_embeddings")
        return written

    def _write_meta(self, dataset: dict[str, Any], modalities: list[str], arrays: list[str],
                    checksums: dict[str, str]) -> None:
        """``meta.json``, written last: the commit point of the entry."""
        meta = {
            **self.meta,
            "key": self.key,
            "dataset": dataset,
            "modalities": modalities,
            "dims": {m: self._dims[m] for m in modalities},
            "dtype": self.dtype,
            "class_names": self.meta.get("class_names"),
            "arrays": arrays,
            "chunk_size": self.chunk_size,
            "gapdiag_version": __version__,
            "cache_format_version": CACHE_FORMAT_VERSION,
            "created": utc_now(),
            # Recorded from the files as written, before meta.json (the entry's commit point) exists.
            "checksums": checksums,
        }
        # As it will read back (JSON types only), then sealed: the key, the arrays listed and every file's
        # checksum are inside what meta_checksum covers, so an edit or a moved folder is caught on reading.
        meta = json.loads(canonical_json(meta))
        meta[META_CHECKSUM] = meta_checksum(meta)
        write_json(self.dir / "meta.json", meta)


def _side_arrays(index: Mapping[str, NDArray[np.int64]], n_samples: int, labels: ArrayLike | None,
                 class_embeddings: ArrayLike | None) -> dict[str, NDArray[Any]]:
    """Check every sample index, and return the labels and class embeddings to store, checked.

    Raises:
        ValueError: A sample index is empty, not 1-D or out of ``[0, n_samples)``; the labels or class
            embeddings have the wrong shape.
        EmbeddingError: The class embeddings hold NaN or inf.
    """
    for m, modality_index in index.items():
        if modality_index.ndim != 1 or len(modality_index) == 0 or modality_index.min() < 0 \
                or modality_index.max() >= n_samples:
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
    return side


def _record_into(checksums: dict[str, str], name: str) -> Callable[[str], None]:
    """An ``on_checksum`` callback that records a file's checksum as ``checksums[name]``."""
    return lambda value: checksums.__setitem__(name, value)


def _check_finite(array: NDArray[Any], modality: str, start: int, hint: str) -> None:
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        first = start + int(np.argmin(finite))
        raise EmbeddingError(f"non-finite values (NaN or inf) in {modality} embeddings of items "
                             f"{start}-{start + len(array) - 1} (first at item {first})", hint=hint)
