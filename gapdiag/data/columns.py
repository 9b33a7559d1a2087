"""Columns and cells of a table, shared by the table readers (:mod:`gapdiag.data.manifest`,
:mod:`gapdiag.data.hfparquet`): which column holds what, and what a cell holds.

Captions are kept exactly as written (less surrounding white space): a cell holds one caption (a string) or
several (a list of strings, or a JSON list written as text in a CSV cell); anything else in a caption cell (a
number, a boolean, an object) is an error naming the row and column, never its Python text.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gapdiag.data.base import Skips
from gapdiag.errors import DatasetError
from gapdiag.fsutil import loads_json

CAPTION_COLUMNS: tuple[str, ...] = ("caption", "text", "captions")

_NUMBERED_CAPTION = re.compile(r"^caption_?(\d+)$")


def is_blank(value: Any) -> bool:
    """A cell with nothing in it: ``None``, NaN (pandas' and Parquet's empty float) or only white space."""
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == ""


def describe_value(value: Any) -> str:
    """What a non-text cell holds, for messages: ``a number (5)``, ``a boolean (true)``, ``an object``."""
    if isinstance(value, bool):
        return f"a boolean ({json.dumps(value)})"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, (bytes, bytearray)):
        return "bytes"
    return f"a {type(value).__name__}"


def _listed_caption(value: Any, where: str) -> str:
    """One element of a caption list: a string, or ``""`` for a null (a blank caption, reported as such)."""
    if value is None or isinstance(value, str):
        return value or ""
    raise DatasetError(f"{where} holds a list with {describe_value(value)}; a list holds captions as strings "
                       f"(quote each one)")


def captions_in_cell(value: Any, where: str, *, text_lists: bool = True) -> list[str] | None:
    """The captions a cell holds: a list (Parquet/JSONL), a JSON list written as text, or one string.

    Args:
        value: The cell.
        where: The row and column (``"m.jsonl:3: column 'caption'"``), for the error message.
        text_lists: Read a string that holds a JSON list (``["a", "b"]``) as that list: for CSV/TSV, whose cells
            are all text. Formats with real lists (JSON, Parquet) keep every string as one caption, as written.

    Returns:
        ``None`` for a blank cell; otherwise a list, which may be empty (``[]``) or hold blank strings.

    Raises:
        DatasetError: The cell holds a number, a boolean, an object or bytes, or a list holding one.
    """
    if isinstance(value, (list, tuple)):
        return [_listed_caption(v, where) for v in value]
    if is_blank(value):
        return None
    if not isinstance(value, str):
        raise DatasetError(f"{where} holds {describe_value(value)}, not text (write the caption as a string)")
    text = value.strip()
    if text_lists and text.startswith("["):
        try:
            parsed = loads_json(text)
        except json.JSONDecodeError:
            return [text]  # a caption that merely starts with a bracket
        if isinstance(parsed, list):
            return [_listed_caption(v, where) for v in parsed]
    return [text]


#: Where a sample's captions come from: ``(name for messages, location of its captions, the cell)``, e.g.
#: ``("column 'caption_2'", "m.csv:4 column 'caption_2'", "a cat")``.
CaptionSource = tuple[str, str, Any]


def column_sources(cells: Mapping[str, Any], columns: Sequence[str], loc: str) -> list[CaptionSource]:
    """The caption columns of one table row as :data:`CaptionSource` triples."""
    return [(f"column {c!r}", f"{loc} column {c!r}", cells.get(c)) for c in columns]


def sample_captions(sources: Sequence[CaptionSource], loc: str, skips: Skips, *, text_lists: bool = True,
                    sample: str = "row") -> list[tuple[str, str]]:
    """One sample's ``(caption, location)`` pairs, in source order, each stripped of surrounding white space.

    A blank caption or an empty caption list (``[]``) fails; with ``skip_bad`` it is dropped (one line each), or,
    when the ``sample`` (a row, a sample) is left without any caption, the sample is (one line naming every
    problem). Its caller drops a sample for which this returns nothing. ``text_lists``: see
    :func:`captions_in_cell`.

    Raises:
        DatasetError: A cell that is not text (see :func:`captions_in_cell`), or a blank caption or empty list
            without ``skip_bad``.
    """
    kept, problems = [], []
    for name, location, value in sources:
        cell = captions_in_cell(value, f"{loc}: {name}", text_lists=text_lists)
        if cell == []:
            problems.append((f"empty caption list in {name}", "write at least one caption", "empty list"))
        for caption in [""] if cell is None else cell:
            if caption.strip():
                kept.append((caption.strip(), location))
            else:
                problems.append((f"empty caption in {name}", "write one", "caption"))
    if problems and not kept:
        skips.bad(f"{loc}: " + "; ".join(p for p, _, _ in problems), f"{problems[0][1]}, or pass --skip-bad",
                  sample)
    for problem, fix, dropped in problems if kept else ():
        skips.bad(f"{loc}: {problem}", f"{fix}, or pass --skip-bad to drop it", dropped)
    return kept


def duplicated_column(columns: Sequence[str]) -> tuple[str, int, int] | None:
    """The first column name that occurs twice, with both 1-based positions; unnamed (blank) columns are ignored."""
    first: dict[str, int] = {}
    for i, name in enumerate(columns, start=1):
        if not name.strip():
            continue
        if name in first:
            return name, first[name], i
        first[name] = i
    return None


def pick_column(
    columns: Sequence[str], given: str | None, candidates: Sequence[str], path: Path, what: str, option: str
) -> str | None:
    """The column to use: ``given`` if it exists (else an error), or the first candidate present (any case).

    Raises:
        DatasetError: ``given`` is not a column, or a candidate matches two columns that differ only in case.
    """
    if given is not None:
        if given not in columns:
            raise DatasetError(
                f"{path.name}: no {what} column {given!r} (columns: {', '.join(columns)}); fix {option}"
            )
        return given
    for candidate in candidates:
        found = [c for c in columns if c.lower() == candidate]
        if len(found) > 1:
            raise DatasetError(f"{path.name}: columns {found[0]!r} and {found[1]!r} differ only in case; "
                               f"rename one or name the {what} column with {option}")
        if found:
            return found[0]
    return None


def caption_columns(columns: Sequence[str], given: Sequence[str] | None, path: Path) -> list[str]:
    """The caption columns: ``given`` (each must exist, in the order given), else every column of one kind.

    The kinds: ``caption`` and ``caption_1`` .. ``caption_N`` (``caption`` first, then by number, so that
    ``caption_10`` comes after ``caption_2``), or ``text``, or ``captions`` (names matched without case). Two kinds
    in one table are not guessed between.

    Raises:
        DatasetError: A given column that does not exist, or columns of two kinds.
    """
    if given:
        for c in given:
            pick_column(columns, c, (), path, "caption", "--text-column")
        return list(given)
    numbered = sorted((int(m.group(1)), i) for i, c in enumerate(columns)
                      if (m := _NUMBERED_CAPTION.match(c.lower())))
    kinds = [[c for c in columns if c.lower() == "caption"] + [columns[i] for _, i in numbered]]
    kinds += [[c for c in columns if c.lower() == name] for name in CAPTION_COLUMNS[1:]]
    kinds = [kind for kind in kinds if kind]
    if len(kinds) > 1:
        raise DatasetError(
            f"{path.name}: columns {kinds[0][0]!r} and {kinds[1][0]!r} both hold captions; name the caption "
            f"columns with --text-column (once per column; text_columns= in Python)"
        )
    return kinds[0] if kinds else []
