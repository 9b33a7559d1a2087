"""A manifest table (CSV, TSV, JSON Lines or Parquet) read into rows of cells, every cell as written.

Nothing is dropped or merged on the way: a CSV/TSV row with more fields than the header (an unquoted comma or an
extra tab inside a value) is a bad row, and a column name used twice (a CSV/TSV/Parquet header, or a key repeated
inside one JSON Lines object) is an error naming it. A row shorter than the header has blank cells for the
missing fields, as in ``csv.DictReader``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gapdiag.data import parquet
from gapdiag.data.base import DuplicateKey, Skips, not_utf8, unique_keys
from gapdiag.data.columns import duplicated_column
from gapdiag.errors import DatasetError
from gapdiag.fsutil import loads_json

MANIFEST_SUFFIXES: tuple[str, ...] = (".csv", ".tsv", ".jsonl", ".parquet")


@dataclass
class Table:
    """Rows of a manifest as dicts, with the location of each row for messages."""

    path: Path
    columns: list[str]
    rows: list[dict[str, Any]]
    locations: list[str]
    #: Every cell is text (CSV/TSV): a cell holding a JSON list (``["a", "b"]``) is read as a list of captions.
    text_only: bool = False


def read_table(path: Path, skips: Skips) -> Table:
    """Read a CSV/TSV/JSONL/Parquet table with every cell as read (strings for CSV/TSV).

    Args:
        path: The table.
        skips: Where a CSV/TSV row with too many fields or a JSON Lines object with a repeated key goes: an
            error, or with ``skip_bad`` a dropped row.

    Raises:
        DatasetError: The file is missing, malformed, has a repeated column name, a bad row (see ``skips``), or
            no data rows.
    """
    if not path.is_file():
        raise DatasetError(f"{path}: manifest not found (check the path)")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        table = _text_errors(path, lambda p: _read_delimited(p, "\t" if suffix == ".tsv" else ",", skips))
    elif suffix == ".jsonl":
        table = _text_errors(path, lambda p: _read_jsonl(p, skips))
    elif suffix == ".parquet":
        table = _read_parquet(path)
    else:
        raise DatasetError(f"{path}: not a manifest (use one of {', '.join(MANIFEST_SUFFIXES)})")
    if not table.rows:
        raise DatasetError(f"{path}: the manifest has no data rows (add one row per image)")
    return table


def _text_errors(path: Path, read: Callable[[Path], Table]) -> Table:
    """Run ``read(path)`` and turn encoding and CSV syntax errors into one-line messages naming the file."""
    try:
        return read(path)
    except UnicodeDecodeError:
        raise not_utf8(path.read_bytes(), path.name) from None
    except csv.Error as exc:
        raise DatasetError(f"{path.name}: malformed table ({exc}); check the delimiter and quoting") from None


def _read_delimited(path: Path, delimiter: str, skips: Skips) -> Table:
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            return Table(path, [], [], [], text_only=True)
        columns = [c.strip() for c in header]
        twice = duplicated_column(columns)
        if twice:
            raise DatasetError(f"{path.name}:1: column {twice[0]!r} appears twice in the header "
                               f"(columns {twice[1]} and {twice[2]}); rename one")
        separator = "a tab" if delimiter == "\t" else "a comma"
        rows, locations = [], []
        start = reader.line_num + 1
        for record in reader:
            location = f"{path.name}:{start}"
            # A quoted cell may span lines: the next record starts after the last line this one used.
            start = reader.line_num + 1
            if not any(cell.strip() for cell in record):
                continue
            if len(record) > len(columns):
                skips.bad(f"{location}: {len(record)} fields but the header has {len(columns)} columns",
                          f"quote a value that holds {separator}, or pass --skip-bad", "row")
                continue
            rows.append(dict(zip(columns, record + [""] * (len(columns) - len(record)))))
            locations.append(location)
    return Table(path, columns, rows, locations, text_only=True)


def _read_jsonl(path: Path, skips: Skips) -> Table:
    columns: dict[str, None] = {}
    rows, locations = [], []
    with open(path, encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = loads_json(line, object_pairs_hook=unique_keys)
            except json.JSONDecodeError as exc:
                raise DatasetError(
                    f"{path.name}:{lineno}: invalid JSON at column {exc.colno} ({exc.msg}); "
                    f"write one object per line"
                ) from None
            except DuplicateKey as exc:
                skips.bad(f"{path.name}:{lineno}: key {exc.args[0]!r} appears twice in the object",
                          "keep one, or pass --skip-bad", "row")
                continue
            if not isinstance(row, dict):
                raise DatasetError(
                    f"{path.name}:{lineno}: expected a JSON object per line, got {type(row).__name__}"
                )
            columns.update(dict.fromkeys(row))
            rows.append(row)
            locations.append(f"{path.name}:{lineno}")
    # A key missing from a row is a blank cell (as in CSV), not a KeyError later (found by fuzzing).
    rows = [{c: row.get(c) for c in columns} for row in rows]
    return Table(path, list(columns), rows, locations)


def _read_parquet(path: Path) -> Table:
    twice = duplicated_column(parquet.read_schema(path).names)  # before pyarrow's own "multiple matches" error
    if twice:
        raise DatasetError(f"{path.name}: column {twice[0]!r} appears twice (columns {twice[1]} and {twice[2]}); "
                           f"rename one")
    arrow = parquet.read_table(path)
    rows = parquet.readable(path, lambda _: arrow.to_pylist())
    return Table(path, arrow.column_names, rows, [f"{path.name}:{i + 1}" for i in range(len(rows))])
