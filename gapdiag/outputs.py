"""The paths a command writes: checked before any work, and one wording for a write that fails (issue #23).

:func:`check_outputs` is the one check every command makes (through its api verb) before it reads or computes
anything. An output is refused, in one line naming the option and the fix, when it

* is empty (``--out ''``: ``Path("")`` is the current folder);
* should be a file but names a folder: it ends with ``/`` or is an existing folder (gapdiag does not invent a
  file name inside it: ``measure --out reports/`` says to give one, e.g. ``reports/report.json``);
* should be a folder but is an existing file;
* **is one of the command's inputs**: the same file after resolving links, symbolic or hard
  (``os.path.samefile``), e.g. ``check --baseline b.json --markdown b.json`` or ``export -d in.csv --out in.csv``;
  for an output folder, each file the command will write in it is compared;
* names the same file as another output of the command (``--markdown x --junit x``).

Only paths given to the command are compared: the files a dataset names inside it (the images of a manifest)
and a ``$GITHUB_STEP_SUMMARY`` that points at an input are not. How a file is then written (atomically, or
directly into a FIFO or a device) is :func:`gapdiag.fsutil.atomic_path`'s business; :func:`write_error` words
its failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gapdiag.errors import InputError
from gapdiag.fsutil import is_disk_full

PathLike = str | os.PathLike[str]


def check_outputs(files: Mapping[str, PathLike | None], inputs: Mapping[str, Any] = {}, *,
                  folders: Mapping[str, tuple[PathLike | None, Sequence[str]]] = {}) -> None:
    """Refuse outputs that are empty, of the wrong kind, an input, or another output (see the module docstring).

    Args:
        files: Option (``"--markdown"``) -> the file it writes, or ``None`` when not given.
        inputs: Option (``"--baseline"``, ``"--data"``, ``"REPORTS"``) -> what it reads: a path, a list of paths,
            or anything else (a model name, a dataset object, ``None``), which is no file and is ignored.
        folders: Option -> (the folder it writes into, the names of the files it will write there).

    Raises:
        InputError: One line naming the option, the path, the input it would destroy, and the fix.
    """
    written: list[tuple[str, Path]] = []
    for option, path in files.items():
        if path is not None:
            written.append((option, output_file(path, option)))
    for option, (path, names) in folders.items():
        if path is not None:
            folder = output_folder(path, option)
            written += [(option, folder / name) for name in names]
    # Only what exists can be destroyed (a model name such as ViT-B-32 is no file).
    sources = [(option, Path(p)) for option, given in inputs.items() for p in _paths(given) if os.path.exists(p)]
    for i, (option, path) in enumerate(written):
        for source, read in sources:
            if _same_file(path, read):
                shown = f"{path}" if path == read else f"{path} (= {read})"
                raise InputError(f"{option} {shown} is the {source} input, the same file: writing it would "
                                 "destroy what this command reads", hint=f"choose another path for {option}")
        for other, earlier in written[:i]:
            if _same_file(path, earlier):
                raise InputError(f"{other} and {option} both name {path}, the same file",
                                 hint="give each output its own file")


def output_file(path: PathLike, option: str) -> Path:
    """``path`` as a file to write, refused in one line when it is empty or names a folder.

    Raises:
        InputError: An empty path, a path ending with ``/``, or an existing folder.
    """
    text = os.fspath(path)
    if not text.strip():
        raise InputError(f"{option} is empty", hint=f"give {option} a file name")
    if text.endswith(("/", os.sep)) or Path(text).is_dir():
        raise InputError(f"{option} {text} is a folder, not a file",
                         hint=f"give a file name, e.g. {Path(text) / _example(option)}")
    return Path(text)


def output_folder(path: PathLike, option: str) -> Path:
    """``path`` as a folder to write into, refused in one line when it is empty or an existing file.

    Raises:
        InputError: An empty path, or a file (that is not a folder) already there.
    """
    text = os.fspath(path)
    if not text.strip():
        raise InputError(f"{option} is empty", hint=f"give {option} a folder")
    folder = Path(text)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{option} {text} is a file, not a folder", hint=f"give {option} a folder to write into")
    return folder


def write_error(path: PathLike, exc: OSError, *, what: str = "file", option: str = "--out") -> InputError:
    """The one-line error of a failed write of an output: ``disk full while writing …`` (``ENOSPC``, a quota,
    numpy's short write), else what the OS said."""
    if is_disk_full(exc):
        return InputError(f"disk full while writing {what} {path}", hint=f"free space or choose another {option}")
    return InputError(f"cannot write {what} {path}: {exc.strerror or exc}", hint=f"choose a writable {option} path")


def ensure_output_dir(path: str | Path) -> Path:
    """Create ``path`` (and parents) as a directory, or raise a one-line :class:`InputError` saying why not."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise InputError(
            f"cannot create output directory {path}: it or a parent is a file",
            hint="pass a directory path to --out",
        ) from None
    except OSError as e:
        raise InputError(
            f"cannot create output directory {path}: {e.strerror}", hint="pass a writable directory to --out"
        ) from None
    return path


def _example(option: str) -> str:
    return {"--junit": "junit.xml", "--markdown": "summary.md"}.get(option, "report.json")


def _paths(given: Any) -> Iterable[PathLike]:
    """The paths in an input value: a path, or a list or tuple of them; anything else holds none."""
    if isinstance(given, (str, os.PathLike)):
        return [given] if os.fspath(given) else []
    if isinstance(given, (list, tuple)):
        return [g for g in given if isinstance(g, (str, os.PathLike)) and os.fspath(g)]
    return []


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are one file: the same inode when both exist (links of any kind, other spellings),
    else the same resolved path."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        pass
    try:
        return a.resolve() == b.resolve()
    except (OSError, RuntimeError, ValueError):
        return False
