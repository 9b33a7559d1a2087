"""Manifest reader: a table (CSV, TSV, JSON Lines or Parquet) with one row per image.

Columns (auto-detected by name unless given):

- image path (``image``, ``image_path``, ``filepath``, ``path``, ``file_name``, ``filename``), relative to the
  manifest's folder or absolute;
- captions: every ``caption`` and ``caption_1`` .. ``caption_N`` column (``caption`` first, then by number), or
  ``text``, or ``captions`` (:func:`gapdiag.data.columns.caption_columns`). Several columns, or a cell holding a
  list of strings, give several captions of the same image (1:N in modality ``"text"``), each as written;
- optional ``label`` (class ids or class names, one type per dataset: :mod:`gapdiag.data.labels`),
  ``class_name``, ``split`` (filtered by ``split=``) and attribute columns (``color``, ``shape``, ...).

Every error names the row as ``manifest.csv:17``: the line number in CSV/TSV (header = line 1) and JSON Lines
files, the 1-based row number in Parquet files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gapdiag.data import parquet
from gapdiag.data.base import (
    DEFAULT_TEMPLATES,
    ImageTextItems,
    PairedDataset,
    Skips,
    image_text_dataset,
)
from gapdiag.data.columns import (
    CAPTION_COLUMNS,
    caption_columns,
    column_sources,
    is_blank,
    pick_column,
    sample_captions,
)
from gapdiag.data.images import image_path_problem
from gapdiag.data.labels import class_names_by_id, encode_labels
from gapdiag.data.registry import register_reader
from gapdiag.data.tables import MANIFEST_SUFFIXES, Table, read_table
from gapdiag.errors import DatasetError

MANIFEST_NAMES: tuple[str, ...] = tuple(f"manifest{s}" for s in MANIFEST_SUFFIXES)
IMAGE_COLUMNS: tuple[str, ...] = ("image", "image_path", "filepath", "path", "file_name", "filename")
LABEL_COLUMNS: tuple[str, ...] = ("label",)
CLASS_NAME_COLUMNS: tuple[str, ...] = ("class_name", "classname")
SPLIT_COLUMN = "split"
#: Columns read as per-sample attributes (``PairedDataset.attributes``) when present and not named otherwise.
ATTRIBUTE_COLUMNS: tuple[str, ...] = ("color", "colour", "shape", "size", "position", "material", "texture")


def find_manifest(directory: Path) -> Path | None:
    """The one manifest table inside ``directory``, or ``None`` if it holds none.

    A file named ``manifest.<ext>`` is the manifest; without one, the folder's only table file
    (``.csv``/``.tsv``/``.jsonl``, or a ``.parquet`` without vector or image columns) is. Two candidates are
    not guessed between.

    Raises:
        DatasetError: Several candidate tables (the message names them).
    """
    named = [directory / n for n in MANIFEST_NAMES if (directory / n).is_file()]
    tables = named or [
        f
        for f in sorted(directory.iterdir())
        if f.suffix.lower() in MANIFEST_SUFFIXES
        and not f.name.startswith(".")
        and f.is_file()
        and (f.suffix.lower() != ".parquet" or not parquet.parquet_kinds(f))
    ]
    if len(tables) > 1:
        raise DatasetError(
            f"{directory}: several manifest tables ({', '.join(f.name for f in tables)}); "
            f"pass the one to read with --data {directory / tables[0].name}"
        )
    return tables[0] if tables else None


def _labels(
    table: Table, label_col: str | None, cname_col: str | None, wanted: NDArray[np.bool_], skips: Skips
) -> tuple[NDArray[np.bool_], NDArray[np.int64] | None, list[str] | None]:
    """Class id of every row (-1 where blank), over all rows so that every split shares the ids.

    A blank label fails (anywhere in the file), or with ``skip_bad`` drops its row; only rows in ``wanted`` (the
    split read) are listed as dropped.

    Returns:
        ``(rows kept, labels per row or None, class names or None)``.
    """
    rows, locs = table.rows, table.locations
    keep = np.ones(len(rows), dtype=bool)
    if label_col is None:
        return keep, None, None
    for i, row in enumerate(rows):
        if is_blank(row.get(label_col)):
            problem = f"{locs[i]}: blank label in column {label_col!r}"
            if wanted[i] or not skips.skip_bad:  # fails in any split; listed as dropped in the split read
                skips.bad(problem, "fill every row, drop the column, or pass --skip-bad", "row")
            keep[i] = False
    kept = np.flatnonzero(keep)
    encoded, class_names = encode_labels([rows[i][label_col] for i in kept], [locs[i] for i in kept])
    if cname_col is not None and cname_col != label_col:
        class_names = class_names_by_id(
            encoded,
            [str(rows[i][cname_col]).strip() for i in kept],
            [locs[i] for i in kept],
            f"column {cname_col!r}",
        )
    labels = np.full(len(rows), -1, dtype=np.int64)
    labels[kept] = encoded
    return keep, labels, class_names


def _split_mask(table: Table, split_col: str | None, split: str | None) -> NDArray[np.bool_]:
    """Rows whose split column equals ``split`` (every row for ``None``)."""
    name = table.path.name
    if split is None:
        return np.ones(len(table.rows), dtype=bool)
    if split_col is None:
        raise DatasetError(
            f"{name}: split {split!r} asked for but there is no {SPLIT_COLUMN!r} column (add one or drop --split)"
        )
    values = [str(r.get(split_col, "")).strip() for r in table.rows]
    mask = np.array([v == split for v in values])
    if not mask.any():
        raise DatasetError(f"{name}: no row has split {split!r} (splits: {', '.join(sorted(set(values)))})")
    return mask


def _row_image(table: Table, i: int, column: str, skips: Skips) -> Path | None:
    """Row ``i``'s image path (relative to the manifest's folder); ``None`` if skipped as blank or missing."""
    loc, raw = table.locations[i], table.rows[i].get(column)
    if is_blank(raw):
        skips.bad(f"{loc}: empty image path in column {column!r}", "fill it or pass --skip-bad", "row")
        return None
    image = Path(str(raw).strip()).expanduser()
    image = image if image.is_absolute() else table.path.parent / image
    problem = image_path_problem(image)
    if problem is not None:
        skips.bad(f"{loc} column {column!r}: {problem}", "fix the path or pass --skip-bad", "row")
        return None
    return image


def read_manifest(
    path: Path,
    *,
    image_column: str | None = None,
    text_columns: Sequence[str] | None = None,
    label_column: str | None = None,
    class_name_column: str | None = None,
    attribute_columns: Sequence[str] | None = None,
    templates: Sequence[str] | None = None,
    split: str | None = None,
    skip_bad: bool = False,
    memo_dir: Path | None = None,
) -> PairedDataset:
    """Read a manifest table into an image-text :class:`PairedDataset`.

    Labels and class names are computed over all rows *before* the split filter, so every split of one
    manifest shares the same class ids. Without caption columns but with labels and class names, the captions
    are the ``templates`` filled with each sample's class name (as for an image folder).

    Args:
        path: The manifest file.
        image_column: Image path column (default: auto-detected, see module docstring).
        text_columns: Caption columns (default: auto-detected).
        label_column: Class label column (default: ``label`` if present).
        class_name_column: Class name column (default: ``class_name`` if present).
        attribute_columns: Per-sample attribute columns (default: those of :data:`ATTRIBUTE_COLUMNS` present).
        templates: Zero-shot prompt templates with one ``{}`` (default ``("a photo of a {}.",)``).
        split: Keep only rows whose ``split`` column equals this.
        skip_bad: Drop bad rows (a missing image, a blank label, no caption, too many fields) and blank captions
            instead of failing; each drop is one line in ``extra["skipped"]`` saying what was dropped
            (docs/datasets.md, "Bad input and skip_bad"). Images are not decoded here.

    Raises:
        DatasetError: A missing column, image, caption or label, with its row and column.
    """
    skips = Skips(skip_bad)
    table = read_table(path, skips)
    columns = _manifest_columns(table, image_column=image_column, text_columns=text_columns,
                                label_column=label_column, class_name_column=class_name_column,
                                attribute_columns=attribute_columns)
    templates = tuple(templates) if templates else DEFAULT_TEMPLATES

    wanted = _split_mask(table, columns.split, split)
    keep, labels_all, class_names = _labels(table, columns.label, columns.class_name, wanted, skips)
    keep &= wanted
    if not columns.captions and not (labels_all is not None and class_names is not None):
        raise DatasetError(
            f"{path.name}: no caption column (looked for {', '.join(CAPTION_COLUMNS)}, caption_1.."
            f"caption_n; columns: {', '.join(table.columns)}); name it with --text-column"
        )
    items, sample_rows = _gather_rows(table, np.flatnonzero(keep).tolist(), columns, skips)

    labels = None if labels_all is None else labels_all[sample_rows]
    if not columns.captions and labels is not None and class_names is not None:
        items = items.with_template_captions(labels, class_names, templates)
    attributes = {c: np.array([str(table.rows[i][c]).strip() for i in sample_rows], dtype=str)
                  for c in columns.attributes}
    return image_text_dataset(
        name=path.parent.name if path.stem == "manifest" else path.stem,
        source=str(path),
        format="manifest",
        items=items,
        files=items.images,
        options={**columns.options(), "split": split, "skip_bad": skip_bad},
        labels=labels,
        class_names=class_names,
        templates=templates,
        attributes=attributes or None,
        skipped=skips.lines,
        memo_dir=memo_dir,
    )


@dataclass(frozen=True)
class _ManifestColumns:
    """The columns a manifest is read from (see :func:`_manifest_columns`)."""

    image: str
    captions: list[str]
    #: The label column, else the class-name column (its names then are the labels).
    label: str | None
    class_name: str | None
    attributes: list[str]
    split: str | None

    def options(self) -> dict[str, Any]:
        """The column options as the dataset records them."""
        return {"image_column": self.image, "text_columns": self.captions, "label_column": self.label,
                "class_name_column": self.class_name, "attribute_columns": self.attributes}


def _manifest_columns(table: Table, *, image_column: str | None, text_columns: Sequence[str] | None,
                      label_column: str | None, class_name_column: str | None,
                      attribute_columns: Sequence[str] | None) -> _ManifestColumns:
    """The columns given, or else found by name (see the module docstring).

    Raises:
        DatasetError: No image column, or a column given that the table does not have.
    """
    cols, path = table.columns, table.path
    image = pick_column(cols, image_column, IMAGE_COLUMNS, path, "image", "--image-column")
    if image is None:
        raise DatasetError(
            f"{path.name}: no image column (looked for {', '.join(IMAGE_COLUMNS)}; "
            f"columns: {', '.join(cols)}); name it with --image-column"
        )
    captions = caption_columns(cols, text_columns, path)
    label = pick_column(cols, label_column, LABEL_COLUMNS, path, "label", "--label-column")
    class_name = pick_column(cols, class_name_column, CLASS_NAME_COLUMNS, path, "class name",
                             "--class-name-column")
    if attribute_columns is None:
        attributes = [c for c in cols if c.lower() in ATTRIBUTE_COLUMNS]
    else:
        attributes = [pick_column(cols, c, (), path, "attribute", "attribute_columns") for c in attribute_columns]
    split = pick_column(cols, None, (SPLIT_COLUMN,), path, "split", "--split")
    return _ManifestColumns(image, captions, label or class_name, class_name, attributes, split)


def _gather_rows(table: Table, rows: Sequence[int], columns: _ManifestColumns,
                 skips: Skips) -> tuple[ImageTextItems, list[int]]:
    """The image and captions of each of ``rows``, and which rows they came from (bad rows fail or are skipped)."""
    items = ImageTextItems()
    sample_rows: list[int] = []
    for i in rows:
        image = _row_image(table, i, columns.image, skips)
        if image is None:
            continue
        loc = table.locations[i]
        row_caps = sample_captions(column_sources(table.rows[i], columns.captions, loc), loc, skips,
                                   text_lists=table.text_only)
        if columns.captions and not row_caps:
            continue
        items.add(image, table.locations[i], row_caps)
        sample_rows.append(i)
    return items, sample_rows


# ---------------------------------------------------------------------------------------------------------
# Registration: how a manifest is recognised and read from a path.
# ---------------------------------------------------------------------------------------------------------


def _detect(spec: str) -> str | None:
    p = Path(spec)
    if p.is_dir():
        found = find_manifest(p)
        return None if found is None else f"table {found.name}"
    suffix = p.suffix.lower()
    if not p.is_file() or suffix not in MANIFEST_SUFFIXES:
        return None
    if suffix == ".parquet" and parquet.parquet_kinds(p):
        return None  # vector or image columns: another reader's Parquet
    return f"table {p.name}"


@register_reader(
    "manifest",
    detect=_detect,
    accepted="a manifest (.csv/.tsv/.jsonl/.parquet, or a folder holding one)",
    help="One row per image: image path, caption(s), optional label, class name, split and attributes.",
    options=(
        "image_column",
        "text_columns",
        "label_column",
        "class_name_column",
        "attribute_columns",
        "templates",
        "split",
    ),
    aliases=("csv", "tsv", "jsonl"),
    order=10,
    owns_subfolders=True,
)
def load_manifest(spec: str, *, skip_bad: bool = False, **options: Any) -> PairedDataset:
    """Read a manifest file, or the one manifest table in a folder (see :func:`find_manifest`)."""
    path = Path(spec)
    if path.is_dir():
        found = find_manifest(path)
        if found is None:
            raise DatasetError(
                f"{path}: manifest not found (expected one .csv/.tsv/.jsonl/.parquet table in the folder)"
            )
        path = found
    return read_manifest(path, skip_bad=skip_bad, **options)
