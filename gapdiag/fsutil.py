"""Crash-safe writes and memoised file digests: the one place gapdiag writes a file atomically or hashes one.

* :func:`atomic_path` / :func:`atomic_write` (and the ``_text``/``_json``/``_bytes`` shorthands) write to a
  temporary file in the target's directory, fsync it and move it into place with ``os.replace``: a killed
  process leaves the old file or the new one, never half of one.
* :func:`hash_file` streams a file through SHA-256; :func:`file_digest` remembers the result per file *state*,
  keyed by resolved path, size, mtime, ctime (nanoseconds) and inode (see :func:`stat_key`), optionally also in
  a JSON memo file shared between processes.

The memo rule (also documented in ``docs/cache.md``): a digest is reused only while all five stats are
unchanged. mtime alone is not enough (``touch -d`` or ``cp -p`` restore it); ctime cannot be set from user
space and changes on every write or rename, and the inode changes when a file is replaced by another one. A
digest taken less than :data:`RACY_SECONDS` after the file's last change is not remembered (git's "racily
clean" rule): file systems stamp times with a coarse clock, so a second write within the same tick would
otherwise keep every stat the same.

SHA-256 because on CPUs with SHA extensions hashlib's OpenSSL SHA-256 is the fastest stdlib hash (measured
~0.8 GB/s for a 100 MB array, versus ~0.3 GB/s for BLAKE2b; see ``docs/cache.md``).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import stat
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path, PurePath
from tokenize import TokenError
from typing import IO, Any

import numpy as np

#: Digest algorithm of :func:`hash_file` and :func:`file_digest` (prefix of stored checksums).
ALGORITHM = "sha256"
#: What ``np.load`` raises on an empty, truncated or foreign file: a 0-byte ``.npy`` raises ``EOFError`` (which
#: click would report as a Ctrl-C "aborted"), a cut ``.npz`` ``zipfile.BadZipFile`` or ``zlib.error``, and a
#: damaged ``.npy`` header (parsed as a Python literal) ``SyntaxError`` or ``tokenize.TokenError`` (found by
#: fuzzing). Readers and the cache both catch exactly these.
NUMPY_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, SyntaxError, TokenError)
#: A digest taken sooner than this after the file's last change (ctime) is not memoised.
RACY_SECONDS = 2.0
_BLOCK = 1 << 20

StatKey = tuple[str, int, int, int, int]
_MEMO: dict[StatKey, str] = {}
_MEMO_LOCK = threading.Lock()


# ------------------------------------------------------------------------------------------- atomic writes


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


def unlink_quietly(path: Path) -> None:
    """Remove ``path`` if it can be removed; a missing or protected file is left as it is."""
    try:
        path.unlink()
    except OSError:
        pass


def is_special_file(path: Path) -> bool:
    """Whether ``path`` (links followed) exists and is neither a regular file nor a folder: a FIFO, a device, a
    socket (``/dev/null``, ``/dev/stdout`` and ``>(cmd)`` pipes among them)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _temp_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (another user's counts); unsure means yes."""
    if os.name == "nt":  # os.kill(pid, 0) would send CTRL_C_EVENT there: never guess
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # EPERM: it exists, it is someone else's
    return True


def remove_stale_temps(directory: Path, name: str | None = None) -> None:
    """Remove the ``.<name>.<pid>.<thread>.tmp`` files that a killed writer left in ``directory``.

    Only those of ``name`` (every name when ``None``: a folder gapdiag owns, such as ``derived/<key>/``), and
    only when their process is no longer alive on this machine: a live writer's temporary file is its own.
    (A writer on another machine sharing the folder over a network file system is not seen; its file could be
    removed while it writes, which makes that write fail rather than be torn.)
    """
    pattern = re.compile(re.escape(f".{name}.") if name is not None else r"\..+\.")
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for entry in names:
        match = _TEMP_SUFFIX.search(entry)
        if match is None or not pattern.fullmatch(entry[:match.start()]):
            continue
        pid = int(match.group(1))
        if pid != os.getpid() and not _pid_alive(pid):
            unlink_quietly(directory / entry)


_TEMP_SUFFIX = re.compile(r"(?<=\.)(\d+)\.\d+\.tmp$")


@contextlib.contextmanager
def atomic_path(path: str | Path, *, before_replace: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; when the block succeeds, fsync it and move it onto ``path``.

    For writers that want a file name (``savefig``, ``torch.save``). ``before_replace(tmp)`` runs after the
    fsync and before the rename that commits the file (e.g. to record its checksum first). On any exception the
    temporary file is removed and ``path`` keeps its previous content (or stays absent). Temporary files of
    ``path`` that a killed writer left behind are removed first (:func:`remove_stale_temps`).

    An existing ``path`` that is not a regular file (a FIFO, a device such as ``/dev/null``, a pipe behind
    ``/dev/stdout``) is yielded itself and written directly: a rename would replace the node, and as root
    ``--out /dev/null`` would turn the system's ``/dev/null`` into a regular file. Nothing is atomic about such a
    write, and nothing needs to be. With ``before_replace`` (a checksummed cache file) it is refused.

    Raises:
        OSError: The temporary file cannot be written, synced or renamed; or ``before_replace`` is given for a
            path that is not a regular file.
    """
    target = Path(path)
    if is_special_file(target):
        if before_replace is not None:
            raise OSError(errno.EINVAL, "not a regular file", str(target))
        yield target
        return
    remove_stale_temps(target.parent, target.name)
    tmp = _temp_name(target)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        if before_replace is not None:
            before_replace(tmp)
        os.replace(tmp, target)
    except BaseException:
        unlink_quietly(tmp)
        raise
    _fsync_dir(target.parent)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], object], *,
                 before_replace: Callable[[Path], None] | None = None) -> None:
    """Write ``path`` through ``write(binary file)`` atomically (see :func:`atomic_path`).

    Raises:
        OSError: The write failed (disk full, permissions); ``path`` is unchanged.
    """
    with atomic_path(path, before_replace=before_replace) as tmp, open(tmp, "wb") as f:
        write(f)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode(encoding))


def json_default(obj: Any) -> Any:
    """JSON form of numpy scalars and arrays and of paths; ``TypeError`` for anything else.

    Only values with one obvious JSON form: anything else must fail rather than fall back to ``str``, since a
    repr that hides a difference would turn into a wrong cache hit (and a file that cannot be read back).
    """
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, PurePath):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} value {obj!r} is not JSON-serialisable; gapdiag writes and hashes JSON "
                    "values (str, int, float, bool, None, lists, dicts), numpy values and paths only")


def json_text(obj: Any, *, sort_keys: bool = True, allow_nan: bool = False) -> str:
    """``obj`` as the JSON text gapdiag writes to files: indented by two, keys sorted unless ``sort_keys`` is
    false, numpy values and paths as :func:`json_default` gives them, a final newline; NaN and infinities
    refused unless ``allow_nan``."""
    return json.dumps(obj, indent=2, sort_keys=sort_keys, default=json_default, allow_nan=allow_nan) + "\n"


def atomic_write_json(path: str | Path, obj: Any, *, sort_keys: bool = True, allow_nan: bool = False) -> None:
    """Write ``obj`` as :func:`json_text` to ``path`` atomically: the one JSON writer of gapdiag.

    Raises:
        OSError: The write failed (disk full, permissions); ``path`` is unchanged.
        TypeError: ``obj`` holds a value without a JSON form (:func:`json_default`).
    """
    atomic_write_text(path, json_text(obj, sort_keys=sort_keys, allow_nan=allow_nan))


def canonical_json(obj: Any) -> str:
    """Compact JSON with sorted keys: the same value gives the same text on every run and platform (what
    :func:`hash_json` and the cache's checksums hash)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=json_default, allow_nan=False)


def hash_json(obj: Any) -> str:
    """SHA-256 (hex) of :func:`canonical_json` of ``obj``: the one hash of a JSON value in gapdiag (dataset
    fingerprints, cache keys, memo names, code stamps)."""
    return hashlib.new(ALGORITHM, canonical_json(obj).encode()).hexdigest()


def loads_json(text: str | bytes, *,
               object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None) -> Any:
    """``json.loads`` that also reports nesting too deep to parse as a ``json.JSONDecodeError``.

    Python's parser recurses once per nesting level, so ``'[' * 100000`` raises ``RecursionError`` rather than a
    decode error; every reader of JSON that a user or a damaged file can hand us calls this instead, so one
    ``except json.JSONDecodeError`` covers both and the caller names the file as it does for any bad JSON.
    ``object_pairs_hook`` is ``json.loads``' (the dataset readers refuse an object that repeats a key with it).
    """
    try:
        return json.loads(text, object_pairs_hook=object_pairs_hook)
    except RecursionError:
        doc = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        raise json.JSONDecodeError("nested too deeply to parse", doc, 0) from None


def is_disk_full(exc: OSError) -> bool:
    """Whether a failed write means the disk (or the user's quota) is full.

    ``ENOSPC``/``EDQUOT``, and also numpy's short write: ``np.save`` writes arrays with C ``fwrite``, which
    reports a full disk as ``OSError("3200 requested and 992 written")`` with no errno.
    """
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return True
    return exc.errno is None and _SHORT_WRITE.search(str(exc)) is not None


_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")


# ------------------------------------------------------------------------------------------------ digests


def stat_key(path: str | Path) -> StatKey:
    """``(resolved path, size, mtime_ns, ctime_ns, inode)``: what a memoised digest is keyed by.

    Raises:
        OSError: The file does not exist or cannot be stat'ed.
    """
    resolved = Path(path).expanduser().resolve()
    st = resolved.stat()
    return str(resolved), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


def hash_file(path: str | Path, *, on_block: Callable[[int], object] | None = None) -> str:
    """Hex SHA-256 of a file's bytes in one streaming pass (memory stays at one 1 MiB block); no memo.

    ``on_block(n_bytes)`` is called after each block (for a progress display).

    Raises:
        OSError: The file cannot be read.
    """
    h = hashlib.new(ALGORITHM)
    buffer = bytearray(_BLOCK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buffer):
            h.update(view[:n])
            if on_block is not None:
                on_block(n)
    return h.hexdigest()


def settled(key: StatKey, hashed_at_ns: int) -> bool:
    """Whether a file with stats ``key``, hashed from ``hashed_at_ns`` on, can be recognised by its stats later.

    Only if it had not changed for :data:`RACY_SECONDS`: a write within the same tick of the file system's
    coarse clock would keep size, mtime, ctime and inode all the same.
    """
    return hashed_at_ns - key[3] >= RACY_SECONDS * 1e9


def file_digest(path: str | Path, *, memo_file: str | Path | None = None,
                on_block: Callable[[int], object] | None = None) -> str:
    """Hex SHA-256 of a file, memoised by :func:`stat_key` in-process and optionally in ``memo_file``.

    ``memo_file`` is a JSON object ``{resolved path: {size, mtime_ns, ctime_ns, inode, sha256}}`` shared
    between processes (updated under ``<memo_file>.lock``); when it cannot be written the digest is still
    returned, just not remembered there.

    Raises:
        OSError: The file does not exist or cannot be read.
    """
    key = stat_key(path)
    with _MEMO_LOCK:
        known = _MEMO.get(key)
    if known is not None:
        return known
    stamp = dict(zip(("size", "mtime_ns", "ctime_ns", "inode"), key[1:]))
    if memo_file is not None:
        entry = _read_memo(Path(memo_file)).get(key[0])
        if isinstance(entry, dict) and {k: entry.get(k) for k in stamp} == stamp \
                and isinstance(entry.get(ALGORITHM), str):
            with _MEMO_LOCK:
                _MEMO[key] = entry[ALGORITHM]
            return entry[ALGORITHM]
    hashed_at = time.time_ns()
    digest = hash_file(key[0], on_block=on_block)
    # Stats taken after hashing must still match, else the file changed under us: return, but never memoise.
    if stat_key(path) != key or not settled(key, hashed_at):
        return digest
    with _MEMO_LOCK:
        _MEMO[key] = digest
    if memo_file is not None:
        _remember(Path(memo_file), key[0], {**stamp, ALGORITHM: digest})
    return digest


def _read_memo(path: Path) -> dict[str, Any]:
    try:
        data = loads_json(path.read_text())
    except (OSError, ValueError):
        return {}  # a missing or damaged memo only costs a re-hash
    return data if isinstance(data, dict) else {}


def _remember(memo_file: Path, name: str, entry: dict[str, Any]) -> None:
    import filelock

    try:
        memo_file.parent.mkdir(parents=True, exist_ok=True)
        # Read-modify-write under a lock so that two processes hashing different files keep both entries.
        with filelock.FileLock(str(memo_file.with_name(memo_file.name + ".lock"))):
            memo = _read_memo(memo_file)
            memo[name] = entry
            atomic_write_json(memo_file, memo)
    except OSError:
        pass  # an unwritable memo only costs re-hashing next time


def forget_digests() -> None:
    """Drop the in-process memo (tests; a long-lived process that wants to re-verify everything)."""
    with _MEMO_LOCK:
        _MEMO.clear()
