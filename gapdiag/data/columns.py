"""Columns and cells of a table, shared by the table readers (:mod:`gapdiag.data.manifest`,
:mod:`gapdiag.data.hfparquet`): which column holds what, and what a cell holds.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gapdiag.errors import DatasetError
from gapdiag.fsutil import loads_json

CAPTION_COLUMNS: tuple[str, ...] = ("caption", "text", "captions")

_NUMBERED_CAPTION = re.compile(r"^caption_?(\d+)$")


def is_blank(value: Any) -> bool:
    """A cell with nothing in it: ``None``, NaN (pandas' and Parquet's empty float) or only white space."""
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == ""


def captions_in_cell(value: Any) -> list[str] | None:
    """The captions a cell holds: a list (Parquet/JSONL), a JSON list written as text, or one string.

    Returns ``None`` for a blank cell, and a list that may contain blank strings otherwise.
    """
    if isinstance(value, (list, tuple)):
        return [str(v) if v is not None else "" for v in value]
    if is_blank(value):
        return None
    text = str(value).strip()
    if text.startswith("["):
        try:
            parsed = loads_json(text)
        except json.JSONDecodeError:
            return [text]  # a caption that merely starts with a bracket
        if isinstance(parsed, list):
            return [str(v) if v is not None else "" for v in parsed]
    return [text]


def pick_column(
    columns: Sequence[str], given: str | None, candidates: Sequence[str], path: Path, what: str, option: str
) -> str | None:
    """The column to use: ``given`` if it exists (else an error), or the first candidate present."""
    if given is not None:
        if given not in columns:
            raise DatasetError(
                f"{path.name}: no {what} column {given!r} (columns: {', '.join(columns)}); fix {option}"
            )
        return given
    lower = {c.lower(): c for c in columns}
    return next((lower[c] for c in candidates if c in lower), None)


def caption_columns(columns: Sequence[str], given: Sequence[str] | None, path: Path) -> list[str]:
    """The caption columns: ``given`` (each must exist), else ``caption_1``..``caption_n`` in number order, else
    the first of :data:`CAPTION_COLUMNS` present (matched without case), else none."""
    if given:
        for c in given:
            pick_column(columns, c, (), path, "caption", "--text-column")
        return list(given)
    numbered = sorted(
        ((int(m.group(1)), c) for c in columns if (m := _NUMBERED_CAPTION.match(c.lower()))),
        key=lambda t: t[0],
    )
    if numbered:
        return [c for _, c in numbered]
    lower = {c.lower(): c for c in columns}
    return [lower[c] for c in CAPTION_COLUMNS if c in lower][:1]
