"""Dataset readers: files in, :class:`~gapdiag.data.base.PairedDataset` out.

Every reader registers itself in :mod:`gapdiag.data.registry` (name, aliases, detection, options, help).
:func:`load_dataset` recognises the format from the path (see :func:`detect_format`) and calls that reader:

=============  ==============================================================================================
manifest       ``.csv`` / ``.tsv`` / ``.jsonl`` / ``.parquet`` table, or a folder holding one such table
imagefolder    a folder of class sub-folders of images (text = prompt templates filled with the class name)
coco           a COCO captions ``.json`` (``images`` + ``annotations``), or a folder holding one
webdataset     a ``.tar`` shard, a brace pattern ``shard-{000..003}.tar``, or a folder of ``.tar`` shards
precomputed    ``.npz``, a folder of ``<modality>.npy`` (memory-mapped), or a Parquet file of vector columns
huggingface    Parquet shards exported by Hugging Face datasets (an image column of bytes), file/folder/glob
=============  ==============================================================================================

See docs/datasets.md for each format's columns and an example file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gapdiag.data.base import DEFAULT_TEMPLATES, Modality, PairedDataset, check_templates, fingerprint_files
from gapdiag.data.images import TarMember, load_image
from gapdiag.data.registry import ReaderSpec, reader, readers
from gapdiag.data.sample import default_dataset, sample_data_dir
from gapdiag.errors import DatasetError, InputError

__all__ = [
    "DEFAULT_TEMPLATES",
    "FORMATS",
    "Modality",
    "PairedDataset",
    "ReaderSpec",
    "TarMember",
    "default_dataset",
    "detect_format",
    "fingerprint_files",
    "is_pattern",
    "load_dataset",
    "load_image",
    "sample_data_dir",
]


def __getattr__(name: str) -> object:
    # FORMATS is read from the registry when asked for, so that a reader module registered later is listed.
    if name == "FORMATS":
        return tuple(spec.name for spec in readers())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _accepted() -> str:
    accepted = [spec.accepted for spec in readers()]
    return ", ".join(accepted[:-1]) + f", or {accepted[-1]}" if len(accepted) > 1 else accepted[0]


def is_pattern(spec: str) -> bool:
    """True for a brace or glob pattern (``shard-{000..003}.tar``, ``data/*.parquet``) rather than a path."""
    return any(c in spec for c in "{*?[")


def detect_format(path: str | Path) -> str:
    """Which reader handles ``path``: the one registered reader that recognises it.

    Every reader is asked; detection never picks between two readings. The one exception is an image folder
    beside a file that points at images (a folder holding one manifest table, or one COCO ``.json``, and an
    ``images/`` sub-folder): the sub-folders are that file's images, not classes.

    Raises:
        DatasetError: The path does not exist, no reader recognises it, or two do (the message names both and
            how to choose with ``--data-format`` / ``format=``).
    """
    spec = str(path)
    if not is_pattern(spec) and not Path(spec).exists():
        raise DatasetError(f"{spec}: no such file or folder (check the path)")
    found = [(r, why) for r in readers() if (why := r.detect(spec))]
    if any(r.owns_subfolders for r, _ in found):
        found = [(r, why) for r, why in found if not r.reads_subfolders]
    if not found:
        if Path(spec).is_dir():
            raise DatasetError(
                f"{spec}: no images in this folder and no dataset file found (expected {_accepted()})"
            )
        raise DatasetError(f"{spec}: unknown dataset format (expected {_accepted()})")
    if len(found) > 1:
        readings = " and ".join(f"{r.name} ({why})" for r, why in found)
        choose = " or ".join(f"--data-format {r.name}" for r, _ in found)
        raise DatasetError(
            f"{spec}: fits two dataset formats, {readings}; choose one with {choose} "
            f"(format= in Python), or point --data at the file itself"
        )
    return found[0][0].name


def load_dataset(
    path: str | Path,
    *,
    format: str = "auto",
    image_column: str | None = None,
    text_columns: Sequence[str] | None = None,
    label_column: str | None = None,
    class_name_column: str | None = None,
    attribute_columns: Sequence[str] | None = None,
    templates: Sequence[str] | None = None,
    split: str | None = None,
    image_root: str | Path | None = None,
    skip_bad: bool = False,
    memo_dir: str | Path | None = None,
) -> PairedDataset:
    """Read any supported dataset into a :class:`PairedDataset`.

    Args:
        path: File, folder, or a brace/glob pattern (``shard-{000..003}.tar``, ``data/train-*.parquet``).
        format: ``"auto"`` (see :func:`detect_format`) or a format name or alias (see :data:`FORMATS`).
        image_column: Manifest/Parquet column of images (default: ``image``/``image_path``/``filepath``/``path``).
        text_columns: Caption columns (default: ``caption``/``text``/``captions`` or ``caption_1..n``).
        label_column: Class label column (default: ``label``).
        class_name_column: Manifest class name column (default: ``class_name``).
        attribute_columns: Manifest per-sample attribute columns (default: ``color``, ``shape``, ... present).
        templates: Prompt templates with exactly one ``{}``, for zero-shot classification and class captions.
        split: Keep one split (manifest ``split`` column, an image folder's ``<split>/`` sub-folder, or the
            Hugging Face shards of that split).
        image_root: COCO only: the folder ``file_name`` is relative to.
        skip_bad: Leave out bad rows and blank captions instead of failing (a missing image, a blank caption or
            label, an empty caption list, a row with too many fields, the rest of a truncated shard); each drop
            is one line in ``extra["skipped"]`` saying what was dropped (docs/datasets.md). Images are not
            decoded here; undecodable images are skipped by the embed step, which calls :func:`load_image`.
        memo_dir: Where the dataset fingerprint is memoised per file state (the api passes
            ``<cache root>/fingerprints``); ``None`` hashes every file and remembers nothing. The data room
            receives this folder: it never looks for a cache of its own.

    Raises:
        DatasetError: Unreadable data (the message names the file, row and column, and the fix).
        InputError: An option the format does not use, or a template without exactly one ``{}``.
    """
    spec = str(path)
    if not is_pattern(spec) and not Path(spec).exists():
        raise DatasetError(f"{spec}: no such file or folder (check the path)")
    if templates is not None:
        check_templates(templates)
    if format == "auto":
        chosen = reader(detect_format(spec))
    else:
        chosen = reader(format)
        if chosen is None:
            names = ", ".join(r.name for r in readers())
            raise InputError(f"unknown dataset format {format!r} (use auto or one of {names})")
    assert chosen is not None  # detect_format only returns registered names
    options = {
        "image_column": image_column,
        "text_columns": text_columns,
        "label_column": label_column,
        "class_name_column": class_name_column,
        "attribute_columns": attribute_columns,
        "templates": templates,
        "split": split,
        "image_root": image_root,
    }
    given = {k: v for k, v in options.items() if v is not None}
    unused = sorted(set(given) - chosen.options)
    if unused:
        raise InputError(f"{spec}: option {unused[0]} does not apply to the {chosen.name} format (drop it)")
    return chosen.read(spec, skip_bad=skip_bad, memo_dir=None if memo_dir is None else Path(memo_dir), **given)

