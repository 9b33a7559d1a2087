"""Class labels as written: one label type per dataset, and numbers keep their values.

A dataset's labels are either **class ids** or **class names**, never a mix:

- a class id is a whole number from 0 to 2**31 - 1: a JSON or Parquet integer, a float with a whole value
  (``1.0`` is the class id 1: pandas writes an integer column that has blanks as floats), or text that writes
  one (``7``, ``007``, ``7.0``; CSV/TSV cells and WebDataset ``.cls`` members are text). Ids are kept as they are
  (``3`` stays 3): ``class_names[id]`` names them where the data gives names;
- a class name is any other text; names get ids in sorted order and become ``class_names``.

A boolean (``true``), a number that is not whole (``1.5``), a negative id, an id too large, and an object or a
list are errors naming the row, as is a dataset with ids in some rows and names in others.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gapdiag.errors import DatasetError

#: The largest class id (ids index class-name lists and prompt tables; 32-bit keeps every array small and exact).
MAX_CLASS_ID = 2**31 - 1
#: Ids that never occur but sit below the largest named id are named by their number, one zero-shot prompt each;
#: more than this many such unnamed ids is an error rather than millions of prompts.
MAX_UNNAMED_CLASSES = 100_000

_WHOLE = re.compile(r"[+-]?\d+(\.0*)?")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_TYPES = "one label type per dataset: class ids 0, 1, 2, ... or class names"


def label_value(value: Any, where: str) -> int | str:
    """One non-blank label as written: a class id (``int``) or a class name (``str``), see the module docstring.

    Args:
        value: The label cell (text, a number, or anything a JSON or Parquet cell holds).
        where: The row (``"m.jsonl:4"``), for the error message; the message says ``"{where}: label ..."``.

    Raises:
        DatasetError: A boolean, a number that is not a whole one, a negative or too large id, or another type.
    """
    if isinstance(value, bool):
        raise DatasetError(f"{where}: label {str(value).lower()} is a boolean, neither a class id nor a class name "
                           f"(write 0/1 or names such as no/yes)")
    if isinstance(value, float):
        if not (math.isfinite(value) and value.is_integer()):
            raise DatasetError(f"{where}: label {value} is not a whole number ({_TYPES})")
        return _class_id(int(value), str(value), where)
    if isinstance(value, int):
        return _class_id(value, str(value), where)
    if isinstance(value, str):
        text = value.strip()
        if _WHOLE.fullmatch(text):
            return _class_id(int(text.split(".")[0]), text, where)
        if _NUMBER.fullmatch(text):
            raise DatasetError(f"{where}: label {text} is not a whole number ({_TYPES})")
        return text
    kind = "an object" if isinstance(value, dict) else f"a {type(value).__name__}"
    raise DatasetError(f"{where}: label holds {kind}, not a class id or a class name ({_TYPES})")


def _class_id(value: int, written: str, where: str) -> int:
    if value < 0:
        raise DatasetError(f"{where}: label {written} is negative (class ids are 0, 1, 2, ...)")
    if value > MAX_CLASS_ID:
        raise DatasetError(f"{where}: label {written} is too large for a class id (at most {MAX_CLASS_ID}; "
                           f"number the classes 0, 1, 2, ... or use class names)")
    return value


def encode_labels(values: Sequence[Any], locations: Sequence[str],
                  what: str = "label") -> tuple[NDArray[np.int64], list[str] | None]:
    """Turn raw per-sample labels into class ids (see the module docstring).

    Args:
        values: One non-blank label per sample.
        locations: Where each sample came from (``"m.csv:4"``), for the error message.
        what: What the labels are called in messages (``"label"``, ``"cls member"``).

    Returns:
        ``(labels, class_names)``: ids kept as written and ``None``, or the ids of sorted names and the names.

    Raises:
        DatasetError: A label that is neither an id nor a name, or ids and names in one dataset (naming a row of
            each).
    """
    parsed = [label_value(v, loc) for v, loc in zip(values, locations)]
    is_name = [isinstance(p, str) for p in parsed]
    if any(is_name) and not all(is_name):
        name_at, id_at = is_name.index(True), is_name.index(False)
        raise DatasetError(f"{locations[name_at]}: {what} {parsed[name_at]!r} is a class name, but "
                           f"{locations[id_at]} has the class id {parsed[id_at]} ({_TYPES})")
    if not any(is_name):
        return np.asarray(parsed, dtype=np.int64), None
    names = sorted(set(parsed))  # type: ignore[arg-type]
    index = {name: i for i, name in enumerate(names)}
    return np.asarray([index[p] for p in parsed], dtype=np.int64), names  # type: ignore[index]


def class_names_by_id(
    labels: NDArray[np.int64], names: Sequence[str], locations: Sequence[str], what: str
) -> list[str]:
    """``class_names[id]`` from a per-sample class name; every label id must map to one name.

    Ids that never occur below the largest one are named by their number (their prompts are never matched to a
    sample).

    Args:
        labels: Class id per sample.
        names: Class name per sample.
        locations: Where each sample came from, for the error message.
        what: What holds the names (e.g. ``"column 'class_name'"``).

    Raises:
        DatasetError: One label id with two different names, or more than :data:`MAX_UNNAMED_CLASSES` ids
            without a name below the largest id.
    """
    by_id: dict[int, tuple[str, str]] = {}
    for label, name, loc in zip(labels.tolist(), names, locations):
        seen = by_id.setdefault(label, (name, loc))
        if seen[0] != name:
            raise DatasetError(
                f"{loc}: {what} {name!r} for label {label} differs from {seen[0]!r} at {seen[1]} "
                f"(use one name per label)"
            )
    if not by_id:
        return []
    top = max(by_id)
    if top + 1 - len(by_id) > MAX_UNNAMED_CLASSES:
        raise DatasetError(f"{by_id[top][1]}: label {top} leaves {top + 1 - len(by_id)} class ids below it without "
                           f"a name in {what} (number the named classes 0, 1, 2, ...)")
    return [by_id[i][0] if i in by_id else str(i) for i in range(top + 1)]
