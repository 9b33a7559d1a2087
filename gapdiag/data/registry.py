"""The table of dataset readers: each reader module registers itself here with :func:`register_reader`.

One entry carries everything the rest of gapdiag needs to know about a format: its name and aliases, how to
recognise it from a path, what it accepts (for messages), which reader options it understands and its help
line. :func:`gapdiag.data.detect_format` asks every entry whether it recognises a path and refuses to guess
when two do; :func:`gapdiag.data.load_dataset` checks the options against the entry and calls its reader.
Adding a format is one module in ``gapdiag/data/`` that calls :func:`register_reader` (found by
:func:`readers`, which imports every module of the package) plus its test.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: ``detect(spec) -> reason | None``: a short "why" ("manifest pairs.csv") when the reader recognises the path.
Detector = Callable[[str], "str | None"]


@dataclass(frozen=True)
class ReaderSpec:
    """One dataset format.

    Attributes:
        name: Format name (``--data-format``, ``format=``, ``extra["format"]``).
        read: ``read(spec, *, skip_bad, memo_dir, **options) -> PairedDataset`` for a path or a pattern
            (``memo_dir``: the folder of the fingerprint memo, or ``None``).
        detect: ``detect(spec) -> reason | None``; may raise :class:`~gapdiag.errors.DatasetError` for a file
            that claims the format but cannot be read (a COCO ``.json`` with a syntax error).
        accepted: What the format accepts, in words, for "unknown dataset format" messages.
        options: Reader options (``load_dataset`` keywords) the format understands; others raise.
        help: One line for the docs and the CLI.
        aliases: Other names accepted for ``format=``.
        order: Position in :data:`gapdiag.data.FORMATS` and in messages.
        owns_subfolders: Its files point at images in sub-folders (a manifest, COCO), so when it recognises a
            folder, the folder's image sub-folders are its images and not an image folder's classes.
        reads_subfolders: It recognises a folder by its image sub-folders alone (an image folder), a reading
            that gives way to a reader with ``owns_subfolders`` recognising the same folder.
    """

    name: str
    read: Callable[..., Any]
    detect: Detector
    accepted: str
    options: frozenset[str]
    help: str
    aliases: tuple[str, ...] = ()
    order: int = 100
    owns_subfolders: bool = False
    reads_subfolders: bool = False


_READERS: dict[str, ReaderSpec] = {}
_LOADED = False


def register_reader(
    name: str,
    *,
    detect: Detector,
    accepted: str,
    help: str,
    options: tuple[str, ...] = (),
    aliases: tuple[str, ...] = (),
    order: int = 100,
    owns_subfolders: bool = False,
    reads_subfolders: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator that registers ``read`` as the reader of format ``name`` (see :class:`ReaderSpec`)."""

    def decorate(read: Callable[..., Any]) -> Callable[..., Any]:
        taken = {a for spec in _READERS.values() if spec.name != name for a in (spec.name, *spec.aliases)}
        clash = taken & {name, *aliases}
        if clash:
            raise RuntimeError(f"dataset format name {min(clash)!r} registered twice")
        _READERS[name] = ReaderSpec(
            name,
            read,
            detect,
            accepted,
            frozenset(options),
            help,
            tuple(aliases),
            order,
            owns_subfolders,
            reads_subfolders,
        )
        return read

    return decorate


def readers() -> list[ReaderSpec]:
    """Every registered reader, in ``order``; imports the modules of :mod:`gapdiag.data` once to find them."""
    global _LOADED
    if not _LOADED:
        # The modules beside this one, found by path: importing the package here would be a cycle.
        for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
            importlib.import_module(f"{__package__}.{module.name}")
        _LOADED = True
    return sorted(_READERS.values(), key=lambda spec: (spec.order, spec.name))


def reader(name: str) -> ReaderSpec | None:
    """The reader called ``name`` or one of its aliases, or ``None``."""
    for spec in readers():
        if name == spec.name or name in spec.aliases:
            return spec
    return None
