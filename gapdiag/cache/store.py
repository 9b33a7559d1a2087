"""On-disk cache of embeddings: open, read (verified), list, verify and remove entries.

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
(:mod:`gapdiag.cache.integrity`). Vectors are committed in chunks of ``chunk_size`` items; a run that is killed
loses at most the chunk it was computing.

This module is :class:`EmbeddingCache`, a directory of entries; the other modules of :mod:`gapdiag.cache` hold
the key, one file's write and read, the entry's build and the checksums, and callers import from the package.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypedDict

import filelock

from gapdiag.cache import integrity
from gapdiag.cache.entry import read_entry, read_meta
from gapdiag.cache.files import one_line
from gapdiag.cache.keys import HASHES_FILE, KEY_RE, check_key
from gapdiag.cache.writer import EntryWriter
from gapdiag.errors import CacheError, InputError
from gapdiag.fsutil import loads_json, unlink_quietly
from gapdiag.vectors import EmbeddingSet


class EntrySummary(TypedDict, total=False):
    """One row of :meth:`EmbeddingCache.ls`: every field has its documented type, whatever the entry's files hold.

    ``why`` is there for an incomplete entry, ``error`` for an entry whose ``meta.json`` or ``partial.json``
    cannot be trusted.
    """

    key: str
    complete: bool
    dataset: str | None
    model: str | None
    dtype: str | None
    created: str | None
    size_bytes: int
    counts: dict[str, int] | None
    why: str
    error: str


class FileProblem(TypedDict):
    """A file of an entry that failed its check, and why."""

    file: str
    reason: str


class EntryCheck(TypedDict):
    """One entry of :meth:`EmbeddingCache.verify`: ``ok`` when no file has a problem."""

    key: str
    complete: bool
    ok: bool
    files: int
    problems: list[FileProblem]


class EmbeddingCache:
    """A directory of embedding entries, one per cache key.

    Typical use (what ``gapdiag.embed`` does)::

        cache = EmbeddingCache(settings.cache_root)
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

    def __init__(self, root: str | Path) -> None:
        """Open (and create) the cache directory ``root``, resolved by the caller: the api resolves ``--cache-dir``,
        ``$GAPDIAG_CACHE_DIR`` or the user cache dir once (:meth:`gapdiag.settings.Settings.build`).

        Raises:
            InputError: ``root`` is empty (``Path('')`` would be the current folder).
            CacheError: The directory cannot be created or written.
        """
        if not str(root).strip():
            raise InputError("the cache root is empty", hint="give a folder (--cache-dir DIR)")
        self.root = Path(root).expanduser()
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
            unlink_quietly(probe)

    def path(self, key: str) -> Path:
        """Directory of the entry ``key`` (which need not exist)."""
        check_key(key)
        return self.root / key

    def get(self, key: str, *, mmap: bool = True, verify: bool = True, progress: bool = False) -> EmbeddingSet | None:
        """Load a complete entry; ``None`` if it is missing or still being built (see
        :func:`gapdiag.cache.entry.read_entry`: arrays memory-mapped with ``mmap``, every file's bytes checked
        against ``meta.json`` with ``verify``, the pass shown on stderr with ``progress``).

        Raises:
            CacheError: The entry is complete but damaged (unreadable or missing file, wrong shape or dtype,
                checksum mismatch): one line naming the entry's file.
        """
        return read_entry(self.path(key), key, mmap=mmap, verify=verify, progress=progress)

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
        return EntryWriter(self.root, key, meta, chunk_size=chunk_size, shared=shared, progress=progress)

    def _entry_dirs(self) -> list[Path]:
        try:
            # Only folders an entry build created; the root also holds gapdiag's own memos (fingerprints/,
            # model_configs/) which are neither listed nor removed by `rm all`.
            return sorted(p for p in self.root.iterdir() if p.is_dir() and KEY_RE.fullmatch(p.name)
                          and ((p / "meta.json").is_file() or (p / "partial.json").is_file()))
        except OSError as exc:
            raise CacheError(f"cannot list cache dir {self.root}: {exc.strerror or one_line(exc)}",
                             hint="set --cache-dir or GAPDIAG_CACHE_DIR") from exc

    def ls(self) -> list[EntrySummary]:
        """One summary per entry, oldest first: key, dataset, model, counts, dtype, size_bytes, created,
        complete (``False`` for an entry being built or left by a killed run, with ``why``), and ``error`` for
        an entry whose ``meta.json`` or ``partial.json`` cannot be trusted (that entry only: the others are
        listed as usual)."""
        rows = [self._describe(entry) for entry in self._entry_dirs()]
        return sorted(rows, key=lambda r: (r["created"] or "", r["key"]))

    def _describe(self, entry: Path) -> EntrySummary:
        """The :meth:`ls` row of one entry; whatever its files hold, every field has its documented type."""
        complete = (entry / "meta.json").is_file()
        row: EntrySummary = {"key": entry.name, "complete": complete}
        meta: Any = {}
        created: Any = None
        try:
            if complete:
                meta = loads_json((entry / "meta.json").read_bytes())
                created = meta.get("created") if isinstance(meta, dict) else None
                read_meta(entry.name, entry / "meta.json")  # the checks of a read, for `error`
            else:
                partial = loads_json((entry / "partial.json").read_bytes())
                if not isinstance(partial, dict):
                    raise ValueError("partial.json is not a JSON object")
                meta, created = partial.get("meta"), partial.get("started")
                row["why"] = self._why_incomplete(entry, partial)
        except CacheError as exc:
            row["error"] = exc.message
        except (OSError, ValueError) as exc:
            row["error"] = one_line(exc)
        meta = meta if isinstance(meta, dict) else {}
        dataset, model = (v if isinstance(v, dict) else {} for v in (meta.get("dataset"), meta.get("model")))
        counts = dataset.get("counts")
        row.update(dataset=_text(dataset.get("name")), model=_text(model.get("name")), dtype=_text(meta.get("dtype")),
                   created=_text(created), size_bytes=_size(entry),
                   counts={m: n for m, n in counts.items() if isinstance(n, int) and not isinstance(n, bool)}
                   if isinstance(counts, dict) else None)
        return row

    def _why_incomplete(self, entry: Path, partial: Mapping[str, Any]) -> str:
        """Why an entry is not complete: being built (by whom), or stopped (with the reason recorded)."""
        lock = integrity.entry_lock(self.root, entry.name)
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            return f"being built by {integrity.describe_owner(Path(lock.lock_file))}"
        lock.release()
        n_chunks = len(list((entry / "chunks").glob("*.npy")))
        reason = _text(partial.get("stopped"))
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

    def verify(self, key_or_prefix: str = "all", *, progress: bool = False) -> list[EntryCheck]:
        """Read every byte of the selected entries and check it against the recorded checksums.

        Complete entries: ``meta.json`` (format, its own checksum, its key), every file against
        ``meta.json["checksums"]`` (plus the header checks of :meth:`get`), and every result memoised from it
        under ``derived/<key>/`` against its sidecar. Partial entries: every committed chunk against its sidecar (a bad chunk would be computed
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
        results: list[EntryCheck] = []
        for entry in self._select(key_or_prefix):
            complete = (entry / "meta.json").is_file()
            problems: list[tuple[str, str]] = []
            if complete:
                n_files = 0
                try:
                    meta = read_meta(entry.name, entry / "meta.json")
                    n_files = len(integrity.entry_files(meta))
                    problems = integrity.verify_entry_files(entry, meta, memo=False, progress=progress)
                    if not problems:
                        self.get(entry.name, verify=False)  # shapes and dtypes against meta.json
                    memos = integrity.derived_files(self.root, entry.name)
                    n_files += len(memos)
                    problems += integrity.derived_problems(self.root, entry.name)
                except CacheError as exc:
                    problems = [("meta.json", exc.message)]
                except (KeyError, TypeError):
                    problems = [("meta.json", "field 'modalities' missing or malformed")]
            else:
                n_files = len(list((entry / "chunks").glob("*.npy")))
                problems = integrity.chunk_problems(entry / "chunks")
            results.append({"key": entry.name, "complete": complete, "ok": not problems, "files": n_files,
                            "problems": [{"file": f, "reason": r} for f, r in problems]})
        return results

    def rm(self, key_or_prefix: str) -> list[str]:
        """Remove one entry by key or unique key prefix, or every entry with ``"all"``; return removed keys.

        The entry's derived results (``derived/<key>/``) go with it. ``"all"`` also forgets the checkpoint hashes (``hashes.json``).

        Raises:
            InputError: The prefix matches no entry or several.
            CacheError: The entry is being written by another process.
        """
        targets = self._select(key_or_prefix)
        if key_or_prefix == "all":
            unlink_quietly(self.root / HASHES_FILE)
        removed = []
        for entry in targets:
            lock = integrity.entry_lock(self.root, entry.name)
            try:
                lock.acquire(timeout=0)
            except filelock.Timeout:
                raise CacheError(f"cache entry {entry.name} is being written by another gapdiag process",
                                 hint="wait for it to finish, then remove it") from None
            try:
                shutil.rmtree(entry)
                # The results derived from its vectors go with it (they could never be read again).
                shutil.rmtree(self.root / integrity.DERIVED_DIR / entry.name, ignore_errors=True)
            except OSError as exc:
                raise CacheError(f"cannot remove {entry}: {exc.strerror or one_line(exc)}",
                                 hint="check its permissions") from exc
            finally:
                # The lock file stays: deleting it could let two later writers lock two different files.
                lock.release()
            removed.append(entry.name)
        return removed


def _text(value: Any) -> str | None:
    """``value`` if it is a string, else ``None``: what :meth:`EmbeddingCache.ls` shows of a field."""
    return value if isinstance(value, str) else None


def _size(entry: Path) -> int:
    """Bytes of the files under ``entry``; a file removed while it is counted (a `cache rm` elsewhere) counts 0."""
    total = 0
    try:
        for path in entry.rglob("*"):
            try:
                if path.is_file():
                    total += path.stat().st_size
            except OSError:
                continue
    except OSError:
        pass
    return total
