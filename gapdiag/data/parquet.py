"""What a Parquet file holds, read from its schema alone, so that three readers can share the suffix.

A ``.parquet`` file is one of: a manifest table (image paths and captions), precomputed vectors (list-of-float
columns) or a Hugging Face datasets export (an image column of ``{bytes, path}`` structs or raw bytes). The
kinds are told apart by column types, never by name; a file with both vectors and images fits two formats, and
:func:`gapdiag.data.detect_format` says so instead of picking one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from gapdiag.errors import PARQUET, DatasetError, first_line, require

T = TypeVar("T")

VECTORS = "vectors"
IMAGES = "images"


def arrow(module: str = "pyarrow", path: Path | str | None = None) -> Any:
    """``module`` of pyarrow (the ``parquet`` extra), or one line naming ``path`` and the install command.

    Raises:
        MissingExtraError: pyarrow is not installed (or is broken).
    """
    return require(module, f"{path}: {PARQUET}" if path is not None else PARQUET)


def read_schema(path: Path) -> Any:
    """The file's ``pyarrow.Schema`` (its footer only).

    Raises:
        DatasetError: Not a readable Parquet file (empty, truncated, another format).
        MissingExtraError: pyarrow is not installed.
    """
    return readable(path, arrow("pyarrow.parquet", path).read_schema)


def read_table(path: Path) -> Any:
    """The whole file as a ``pyarrow.Table``.

    Raises:
        DatasetError: Not a readable Parquet file (empty, truncated, another format).
        MissingExtraError: pyarrow is not installed.
    """
    return readable(path, arrow("pyarrow.parquet", path).read_table)


def readable(path: Path, read: Callable[[Path], T]) -> T:
    """``read(path)``, with a corrupt file's errors turned into one line naming it.

    A damaged file fails in many places: the footer (``OSError``), a page (``ArrowException``), or a string
    column holding invalid UTF-8 when converted to Python (``UnicodeDecodeError``).
    """
    pa = arrow("pyarrow", path)

    try:
        return read(path)
    except (OSError, pa.ArrowException, UnicodeDecodeError) as exc:
        raise DatasetError(
            f"{path}: cannot read Parquet file ({first_line(exc)}); the file is truncated or not Parquet: "
            f"write it again"
        ) from None


def is_vector_type(t: Any) -> bool:
    """A list (or fixed-size list) of floats: one precomputed vector per row."""
    pa = arrow()

    return (
        pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)
    ) and pa.types.is_floating(t.value_type)


def is_image_type(t: Any) -> bool:
    """Raw bytes, or the ``{bytes, path}`` struct of Hugging Face's ``Image`` feature."""
    pa = arrow()

    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return True
    if not pa.types.is_struct(t):
        return False
    names = {t.field(i).name: t.field(i).type for i in range(t.num_fields)}
    return "bytes" in names and (pa.types.is_binary(names["bytes"]) or pa.types.is_large_binary(names["bytes"]))


def parquet_kinds(path: Path) -> set[str]:
    """``{"vectors"}``, ``{"images"}``, both, or empty (a plain table) for a Parquet file's columns."""
    schema = read_schema(path)
    kinds = set()
    for field in schema:
        if is_vector_type(field.type):
            kinds.add(VECTORS)
        elif is_image_type(field.type):
            kinds.add(IMAGES)
    return kinds
