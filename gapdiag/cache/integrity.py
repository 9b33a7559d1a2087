"""Checksums of cache files, and an entry's lock with the owner note beside it; used by :mod:`gapdiag.cache`.

Every array a cache entry stores carries a checksum (``"sha256:<hex>"`` of the file's bytes) recorded before
the rename that commits the file:

* the final files of a complete entry in ``meta.json["checksums"]`` (``meta.json`` is written last);
* each chunk of an entry being built in a sidecar ``chunks/<modality>.<start>-<end>.npy.sha256`` in
  ``sha256sum`` format (``sha256sum -c`` checks it), written before the chunk is renamed into place.

Reads verify them (see ``docs/cache.md`` for the cost): a complete entry in one streaming pass over its files,
a chunk before a resumed build counts it as done.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import filelock

from gapdiag import fsutil
from gapdiag.progress import progress_bar

#: Entries at least this large say that they are being verified (a progress display on stderr).
VERIFY_PROGRESS_BYTES = 256 << 20
SIDECAR_SUFFIX = f".{fsutil.ALGORITHM}"


def checksum(path: Path, on_block: Callable[[int], object] | None = None) -> str:
    """``"sha256:<hex>"`` of a file's bytes, uncached: the form stored in ``meta.json`` and chunk sidecars.

    Raises:
        OSError: The file cannot be read.
    """
    return f"{fsutil.ALGORITHM}:{fsutil.hash_file(path, on_block=on_block)}"


def entry_files(meta: Mapping[str, Any]) -> list[str]:
    """The files of a complete entry that must carry a checksum: every array ``meta.json`` points to.

    Raises:
        KeyError, TypeError: ``meta`` lacks ``modalities``.
    """
    names = [f for m in meta["modalities"] for f in (f"{m}.npy", f"{m}.sample_index.npy")]
    side = {"labels": "labels.npy", "class_embeddings": "class_embeddings.npy", "attributes": "attributes.npz",
            "attribute_embeddings": "attribute_embeddings.npz"}
    return names + [side[a] for a in meta.get("arrays", []) if a in side]


def verify_entry_files(entry: Path, meta: Mapping[str, Any], *, memo: bool = True,
                       progress: bool = False) -> list[tuple[str, str]]:
    """Check every file of a complete entry against ``meta["checksums"]`` in one streaming pass.

    Args:
        entry: The entry directory.
        meta: Its parsed ``meta.json``.
        memo: Reuse digests of files whose stats did not change since this process verified them
            (:func:`gapdiag.fsutil.file_digest`); ``False`` reads every byte (``gapdiag cache verify``).
        progress: Show a progress display on stderr when the entry holds at least
            :data:`VERIFY_PROGRESS_BYTES`.

    Returns:
        ``(file name, reason)`` of every file that fails; empty when all match.
    """
    stored = meta.get("checksums")
    if not isinstance(stored, dict):
        return [("meta.json", "no checksums recorded (an entry from an older gapdiag)")]
    try:
        names = entry_files(meta)
    except (KeyError, TypeError):
        return [("meta.json", "field 'modalities' missing or malformed")]
    problems: list[tuple[str, str]] = []
    sizes: dict[str, int] = {}
    for name in names:
        try:
            sizes[name] = (entry / name).stat().st_size
        except OSError:
            problems.append((name, "file is missing"))
    total = sum(sizes.values())
    with progress_bar(progress and total >= VERIFY_PROGRESS_BYTES, unit="MiB") as bar:
        task = bar.add_task(f"verify cache entry {entry.name}", total=total / 2**20)

        def advance(n: int) -> None:
            bar.advance(task, n / 2**20)

        for name in sizes:
            expected = stored.get(name)
            if not isinstance(expected, str):
                problems.append((name, "no checksum recorded in meta.json"))
                continue
            try:
                if memo:
                    found = f"{fsutil.ALGORITHM}:{fsutil.file_digest(entry / name, on_block=advance)}"
                else:
                    found = checksum(entry / name, on_block=advance)
            except OSError as exc:
                problems.append((name, f"cannot read: {exc.strerror or exc}"))
                continue
            if found != expected:
                mismatch = f"checksum mismatch (meta.json has {expected[:19]}…, file has {found[:19]}…)"
                problems.append((name, mismatch))
    return problems


# ------------------------------------------------------------------------------------------------ chunks


def sidecar(chunk: Path) -> Path:
    """The checksum file of a chunk: ``<chunk>.sha256``."""
    return chunk.with_name(chunk.name + SIDECAR_SUFFIX)


def write_sidecar(chunk: Path, value: str) -> None:
    """Record a chunk's checksum (``sha256sum`` format), atomically; call before the chunk is committed.

    Raises:
        OSError: The sidecar cannot be written.
    """
    fsutil.atomic_write_text(sidecar(chunk), f"{value.split(':', 1)[1]}  {chunk.name}\n")


def checksum_of_bytes(data: bytes) -> str:
    """``"sha256:<hex>"`` of bytes already in memory (a chunk being copied)."""
    return f"{fsutil.ALGORITHM}:{hashlib.new(fsutil.ALGORITHM, data).hexdigest()}"


def recorded_checksum(chunk: Path) -> str | None:
    """The checksum a chunk's sidecar records (``"sha256:<hex>"``), or ``None`` if there is none."""
    try:
        fields = sidecar(chunk).read_text().split()
    except OSError:
        return None
    return f"{fsutil.ALGORITHM}:{fields[0]}" if fields else None


def chunk_problem(chunk: Path) -> str | None:
    """Why a committed chunk cannot be used (no checksum recorded, unreadable, mismatch), or ``None``."""
    recorded = recorded_checksum(chunk)
    if recorded is None:
        return "no checksum recorded"
    try:
        found = checksum(chunk)
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    return None if found == recorded else "checksum mismatch"


def read_verified(path: Path) -> tuple[bytes | None, str | None]:
    """A file's bytes checked against its ``.sha256`` sidecar, read once (so nothing can change between the
    check and the use): ``(bytes, None)``, or ``(None, why not)``."""
    recorded = recorded_checksum(path)
    if recorded is None:
        return None, "no checksum recorded"
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, f"cannot read: {exc.strerror or exc}"
    found = checksum_of_bytes(data)
    if found != recorded:
        return None, f"checksum mismatch (its .sha256 has {recorded[:19]}…, the file has {found[:19]}…)"
    return data, None


# ------------------------------------------------------------------------------------------ derived results

#: Results derived from an entry's vectors live in ``<root>/derived/<key>/`` (:mod:`gapdiag.cache.derived`).
DERIVED_DIR = "derived"


def derived_files(root: Path, key: str) -> list[Path]:
    """The memoised results of entry ``key`` (each with its ``.sha256`` sidecar, not listed)."""
    folder = root / DERIVED_DIR / key
    try:
        return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                      and p.suffix not in (SIDECAR_SUFFIX, ".tmp"))
    except OSError:
        return []


def derived_problems(root: Path, key: str) -> list[tuple[str, str]]:
    """``("derived/<file>", reason)`` of every memoised result of entry ``key`` that fails its checksum."""
    problems = []
    for memo in derived_files(root, key):
        _, reason = read_verified(memo)
        if reason is not None:
            again = "the next run that needs it computes it again"
            problems.append((f"{DERIVED_DIR}/{memo.name}", f"{reason}; {again}"))
    return problems


def chunk_problems(chunks_dir: Path) -> list[tuple[str, str]]:
    """``(chunk file name, reason)`` of every chunk of a partial entry that fails its checksum."""
    if not chunks_dir.is_dir():
        return []
    problems = []
    for chunk in sorted(chunks_dir.glob("*.npy")):
        reason = chunk_problem(chunk)
        if reason is not None:
            problems.append((f"chunks/{chunk.name}", reason))
    return problems


# ------------------------------------------------------------------------------------------- lock owner


def entry_lock(root: Path, key: str) -> filelock.BaseFileLock:
    """The inter-process lock ``<root>/<key>.lock`` held while entry ``key`` is built or removed.

    The lock file outlives the entry: deleting it could let two later writers lock two different files.
    """
    return filelock.FileLock(str(root / f"{key}.lock"))


def owner_path(lock: Path) -> Path:
    """The note beside ``<key>.lock`` saying which process holds it: ``<key>.lock.owner``."""
    return lock.with_name(lock.name + ".owner")


def write_owner(lock: Path, started: str) -> None:
    """Record this process (pid, host, start time) as the lock's holder; best effort."""
    try:
        fsutil.atomic_write_json(owner_path(lock), {"pid": os.getpid(), "host": socket.gethostname(),
                                                    "started": started})
    except OSError:
        pass  # the note only improves a message; the lock itself is what excludes


def describe_owner(lock: Path) -> str:
    """``"pid 123 on host h since 2026-...``" from the owner note, or ``"another gapdiag process"``."""
    try:
        note = fsutil.loads_json(owner_path(lock).read_text())
        return f"pid {int(note['pid'])} on {note['host']} (since {note['started']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another gapdiag process"


def summarise(problems: Iterable[tuple[str, str]]) -> str:
    """One line: ``file: reason; file: reason``."""
    return "; ".join(f"{name}: {reason}" for name, reason in problems)
