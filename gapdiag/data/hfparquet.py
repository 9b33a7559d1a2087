"""Hugging Face Parquet reader: image-text shards as ``datasets`` exports them, read without unpacking to files.

Accepted paths:

- one ``.parquet`` file, a glob (``data/train-*.parquet``), or a folder holding shards at its top level, in
  ``data/`` (``data/train-00000-of-00002.parquet``, the Hub layout) or in one sub-folder per split
  (``train/0000.parquet``); a sub-folder holding images is not searched (it is an image folder's class);
- the image column holds Hugging Face's ``Image`` feature, a ``{bytes, path}`` struct, or raw bytes. A row with
  only a ``path`` points at a file relative to the shard's folder;
- captions: ``caption`` / ``text`` / ``captions`` (a string or a list of strings) or ``caption_1..n``, as in a
  manifest; ``label``: integer class ids, named by the ``ClassLabel`` names that ``datasets`` stores in the file's
  metadata. Without captions, labelled rows get the prompt templates filled with their class name.

The split of a shard is its name's prefix (``train-00000-of-00002``) or its split folder; ``split=`` keeps one, and
shards of several splits without ``split=`` are an error rather than a silent mix. Images stay in the files: each
is a :class:`~gapdiag.data.images.ParquetImage` (shard, row group, row) decoded when embedded; the fingerprint
hashes the shard files, so it covers the image bytes.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gapdiag.data.base import (
    DEFAULT_TEMPLATES,
    ImageTextItems,
    PairedDataset,
    Skips,
    image_text_dataset,
)
from gapdiag.data.columns import (
    caption_columns,
    column_sources,
    duplicated_column,
    is_blank,
    pick_column,
    sample_captions,
)
from gapdiag.data.images import IMAGE_EXTENSIONS, ParquetImage, image_path_problem
from gapdiag.data.labels import encode_labels
from gapdiag.data.parquet import IMAGES, arrow, is_image_type, parquet_kinds, read_schema, readable
from gapdiag.data.registry import register_reader
from gapdiag.errors import DatasetError
from gapdiag.fsutil import loads_json

_SHARD_NAME = re.compile(r"^(?P<split>.+?)-\d+-of-\d+$")


def _has_images(path: Path) -> bool:
    return IMAGES in parquet_kinds(path)


def find_shards(spec: str) -> list[Path]:
    """The Parquet files with an image column that ``spec`` names: a file, a glob or a folder (see module doc)."""
    path = Path(spec)
    if path.is_file():
        return [path]
    if not path.is_dir():  # a glob pattern (a path that exists is never read as one: names may hold [ ])
        return [p for p in map(Path, sorted(glob.glob(spec, recursive=True))) if p.suffix == ".parquet"]
    subfolders = sorted(d for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    candidates = [*_parquet_files(path), *(p for d in subfolders for p in _parquet_files(d))]
    return [p for p in candidates if _has_images(p)]


def _parquet_files(folder: Path) -> list[Path]:
    """The visible ``.parquet`` files in ``folder``; none if it holds images (a class folder, not shards).

    Stopping at the first image keeps detection cheap beside an image folder of a million files.
    """
    found = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if Path(entry.name).suffix.lower() in IMAGE_EXTENSIONS:
                return []
            if entry.name.endswith(".parquet") and not entry.name.startswith(".") and entry.is_file():
                found.append(Path(entry.path))
    return sorted(found)


def shard_split(shard: Path, root: Path) -> str | None:
    """``train`` for ``train-00000-of-00002.parquet`` or ``train/0000.parquet``; ``None`` if the name has none."""
    match = _SHARD_NAME.match(shard.stem)
    if match:
        return match.group("split")
    if shard.parent != root and shard.parent.name != "data":
        return shard.parent.name
    return None


def _select_split(shards: list[Path], spec: str, split: str | None) -> list[Path]:
    root = Path(spec) if Path(spec).is_dir() else Path(spec).parent
    splits = {s: shard_split(s, root) for s in shards}
    found = sorted({v for v in splits.values() if v is not None})
    if split is not None:
        kept = [s for s in shards if splits[s] == split]
        if not kept:
            raise DatasetError(f"{spec}: no shard of split {split!r} (splits: {', '.join(found) or 'none'})")
        return kept
    if len(found) > 1:
        raise DatasetError(f"{spec}: shards of several splits ({', '.join(found)}); choose one with --split")
    return shards


def _class_names(schema: Any, column: str) -> list[str] | None:
    """The ``ClassLabel`` names ``datasets`` keeps in the schema metadata for ``column``, if any."""
    raw = (schema.metadata or {}).get(b"huggingface")
    if raw is None:
        return None
    try:
        features = loads_json(raw).get("info", {}).get("features", {})
    except (ValueError, AttributeError):
        return None
    feature = features.get(column) if isinstance(features, dict) else None
    names = feature.get("names") if isinstance(feature, dict) else None
    return [str(n) for n in names] if isinstance(names, list) else None


def _image_column(schema: Any, given: str | None, shard: Path) -> str:
    columns = list(schema.names)
    if given is not None:
        pick_column(columns, given, (), shard, "image", "--image-column")
        if not is_image_type(schema.field(given).type):
            kind = schema.field(given).type
            raise DatasetError(f"{shard.name}: column {given!r} holds {kind}, not image bytes; fix --image-column")
        return given
    found = [f.name for f in schema if is_image_type(f.type)]
    if len(found) > 1:
        raise DatasetError(
            f"{shard.name}: several image columns ({', '.join(found)}); choose one with --image-column"
        )
    if not found:
        raise DatasetError(
            f"{shard.name}: no image column ({{bytes, path}} struct or binary); columns: {', '.join(columns)}"
        )
    return found[0]


def read_hf_parquet(
    spec: str,
    *,
    image_column: str | None = None,
    text_columns: Sequence[str] | None = None,
    label_column: str | None = None,
    templates: Sequence[str] | None = None,
    split: str | None = None,
    skip_bad: bool = False,
    memo_dir: Path | None = None,
) -> PairedDataset:
    """Read Hugging Face Parquet shards into an image-text :class:`PairedDataset` (see the module docstring).

    Raises:
        DatasetError: No shard, mixed splits, shards with different columns, no image or caption column, or a
            row without image bytes, caption or label (with its file and row; dropped instead with ``skip_bad``).
    """
    shards = find_shards(spec)
    if not shards:
        raise DatasetError(f"{spec}: no Parquet file with an image column here (check the path or the pattern)")
    shards = _select_split(shards, spec, split)
    columns = _hf_columns(shards[0], image_column=image_column, text_columns=text_columns, label_column=label_column)
    items, raw_labels, skipped = _read_rows(shards, columns, skip_bad)

    labels, class_names = None, columns.class_names
    if columns.label is not None:
        labels, names = encode_labels(raw_labels, items.image_locations)
        class_names = names if names is not None else class_names
    templates = tuple(templates) if templates else DEFAULT_TEMPLATES
    if not columns.captions and labels is not None and class_names is not None:
        items = items.with_template_captions(labels, class_names, templates)
    if Path(spec).is_dir():
        name = Path(spec).name
    else:
        name = shards[0].stem if len(shards) == 1 else shards[0].parent.name
    return image_text_dataset(
        name=name,
        source=spec,
        format="huggingface",
        items=items,
        files=shards,
        # No split: the shard files it chose are hashed, so a glob of the same shards is the same data.
        options={"image_column": columns.image, "text_columns": columns.captions, "label_column": columns.label},
        labels=labels,
        class_names=class_names,
        templates=templates,
        skipped=skipped,
        memo_dir=memo_dir,
    )


@dataclass(frozen=True)
class _HfColumns:
    """The columns Hugging Face shards are read from, and the ``ClassLabel`` names of the label column."""

    image: str
    captions: list[str]
    label: str | None
    class_names: list[str] | None

    @property
    def needed(self) -> list[str]:
        """The columns every shard must have."""
        return [self.image, *self.captions, *([self.label] if self.label else [])]


def _hf_columns(shard: Path, *, image_column: str | None, text_columns: Sequence[str] | None,
                label_column: str | None) -> _HfColumns:
    """The columns given, or else found in the first shard's schema.

    Raises:
        DatasetError: No image column, or neither a caption column nor ``ClassLabel`` names.
    """
    schema = read_schema(shard)
    twice = duplicated_column(schema.names)
    if twice:
        raise DatasetError(f"{shard.name}: column {twice[0]!r} appears twice (columns {twice[1]} and {twice[2]}); "
                           f"rename one")
    image = _image_column(schema, image_column, shard)
    captions = caption_columns(schema.names, text_columns, shard)
    label = pick_column(schema.names, label_column, ("label", "labels"), shard, "label", "--label-column")
    class_names = None if label is None else _class_names(schema, label)
    if not captions and class_names is None:
        raise DatasetError(
            f"{shard.name}: no caption column (looked for caption, text, captions, caption_1..n; columns: "
            f"{', '.join(schema.names)}) and no ClassLabel names; name it with --text-column"
        )
    return _HfColumns(image, captions, label, class_names)


def _read_rows(shards: Sequence[Path], columns: _HfColumns,
               skip_bad: bool) -> tuple[ImageTextItems, list[Any], list[str]]:
    """Every row's image and captions, its raw label, and the rows skipped (a bad row fails without ``skip_bad``).

    Raises:
        DatasetError: A shard lacks a column of the first, or (without ``skip_bad``) a row has no image,
            a blank caption or a blank label.
    """
    img_col, cap_cols, label_col = columns.image, columns.captions, columns.label
    items, skips, raw_labels = ImageTextItems(), Skips(skip_bad), []
    for shard in shards:
        missing = [c for c in columns.needed if c not in read_schema(shard).names]
        if missing:
            raise DatasetError(f"{shard}: no column {missing[0]!r}, which {shards[0].name} has (shards must match)")
        row = 0
        for group, cells, has_bytes, paths in readable(shard, lambda p: _read_cells(p, columns.needed, img_col)):
            for index, cell in enumerate(cells):
                row += 1
                loc = f"{shard.name}:{row}"
                image = _image_item(shard, group, index, img_col, row, has_bytes[index], paths[index])
                if isinstance(image, str):
                    skips.bad(f"{loc} column {img_col!r}: {image}", "fix the row or pass --skip-bad", "row")
                    continue
                if label_col is not None and is_blank(cell.get(label_col)):
                    skips.bad(f"{loc}: blank label in column {label_col!r}", "fix the row or pass --skip-bad", "row")
                    continue
                caps = sample_captions(column_sources(cell, cap_cols, loc), loc, skips, text_lists=False)
                if cap_cols and not caps:
                    continue
                items.add(image, loc, caps)
                raw_labels.append(None if label_col is None else cell.get(label_col))
    return items, raw_labels, skips.lines


def _read_cells(
    shard: Path, columns: Sequence[str], img_col: str
) -> list[tuple[int, list[dict[str, Any]], list[bool], list[str | None]]]:
    """Per row group: its index, the rows' non-image cells, and per row whether it has image bytes and its path.

    The image bytes are read one row group at a time and dropped: images are read again when embedded.
    """
    out = []
    with arrow("pyarrow.parquet", shard).ParquetFile(shard) as f:
        for group in range(f.num_row_groups):
            cells = f.read_row_group(group, columns=[c for c in columns if c != img_col]).to_pylist()
            has_bytes, paths = _image_cells(f.read_row_group(group, columns=[img_col]).column(0))
            out.append((group, cells, has_bytes, paths))
    return out


def _image_cells(column: Any) -> tuple[list[bool], list[str | None]]:
    """Per row: whether the image column holds bytes, and the struct's ``path`` (for path-only rows)."""
    pa = arrow()

    array = column.combine_chunks()
    if pa.types.is_struct(array.type):
        present = np.asarray(array.is_valid()) & np.asarray(array.field("bytes").is_valid())
        names = {array.type.field(i).name for i in range(array.type.num_fields)}
        paths = array.field("path").to_pylist() if "path" in names else [None] * len(array)
        paths = [p if ok else None for p, ok in zip(paths, np.asarray(array.is_valid()))]
        return present.tolist(), paths
    return np.asarray(array.is_valid()).tolist(), [None] * len(array)


def _image_item(
    shard: Path, group: int, index: int, column: str, row: int, has_bytes: bool, path: str | None
) -> ParquetImage | Path | str:
    """The row's image item, or a string saying why there is none."""
    if has_bytes:
        return ParquetImage(shard, group, index, column, row)
    if path:  # datasets stores only the path when the image was never embedded: a file beside the shard
        file = Path(path) if Path(path).is_absolute() else shard.parent / path
        problem = image_path_problem(file)
        return file if problem is None else f"no image bytes, and {problem}"
    return "no image (null)"


def _detect(spec: str) -> str | None:
    path = Path(spec)
    if not path.is_dir() and path.suffix.lower() != ".parquet":
        return None  # a file or a pattern of another format
    shards = find_shards(spec)
    if not shards or (not path.is_dir() and not _has_images(shards[0])):
        return None
    more = f" and {len(shards) - 1} more" if len(shards) > 1 else ""
    return f"image shards {shards[0].name}{more}"


@register_reader(
    "huggingface",
    detect=_detect,
    accepted="Hugging Face Parquet shards with an image column",
    help="Parquet as Hugging Face datasets exports it: an image column of {bytes, path} or bytes, captions, label.",
    options=("image_column", "text_columns", "label_column", "templates", "split"),
    aliases=("hf", "hf-parquet", "hf_parquet"),
    order=60,
)
def load_hf_parquet(spec: str, *, skip_bad: bool = False, **options: Any) -> PairedDataset:
    """Read Hugging Face Parquet shards (see :func:`read_hf_parquet`)."""
    return read_hf_parquet(spec, skip_bad=skip_bad, **options)
