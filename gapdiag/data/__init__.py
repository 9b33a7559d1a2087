"""Dataset readers: files in, :class:`~gapdiag.data.base.PairedDataset` out.

:func:`load_dataset` recognises the format from the path (see :func:`detect_format`) and calls one reader:

=============  ==============================================================================================
manifest       ``.csv`` / ``.tsv`` / ``.jsonl`` / ``.parquet`` table, or a folder holding ``manifest.<ext>``
imagefolder    a folder of class sub-folders of images (text = prompt templates filled with the class name)
coco           a COCO captions ``.json`` (``images`` + ``annotations``)
webdataset     a ``.tar`` shard, a brace pattern ``shard-{000..003}.tar``, or a folder of ``.tar`` shards
precomputed    ``.npz``, a folder of ``<modality>.npy`` (memory-mapped), or a Parquet file of vector columns
=============  ==============================================================================================

See docs/datasets.md for each format's columns and an example file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gapdiag.data.base import DEFAULT_TEMPLATES, Modality, PairedDataset, fingerprint_files
from gapdiag.data.coco import is_coco_json, read_coco
from gapdiag.data.imagefolder import class_folders, read_imagefolder
from gapdiag.data.images import TarMember, load_image
from gapdiag.data.manifest import MANIFEST_SUFFIXES, find_manifest, read_manifest
from gapdiag.data.precomputed import parquet_has_vectors, read_npy_dir, read_npz, read_parquet_vectors
from gapdiag.data.sample import default_dataset, sample_data_dir
from gapdiag.data.wds import is_shard_spec, read_webdataset
from gapdiag.errors import DatasetError, InputError

__all__ = [
    "DEFAULT_TEMPLATES",
    "FORMATS",
    "Modality",
    "PairedDataset",
    "TarMember",
    "default_dataset",
    "detect_format",
    "fingerprint_files",
    "load_dataset",
    "load_image",
    "sample_data_dir",
]

FORMATS: tuple[str, ...] = ("manifest", "imagefolder", "coco", "webdataset", "precomputed")
_ALIASES = {
    "wds": "webdataset",
    "folder": "imagefolder",
    "image_folder": "imagefolder",
    "embeddings": "precomputed",
    "npz": "precomputed",
    "csv": "manifest",
    "tsv": "manifest",
    "jsonl": "manifest",
}
_ACCEPTED = (
    "a manifest (.csv/.tsv/.jsonl/.parquet or a folder with manifest.csv), a folder of class sub-folders, "
    "a COCO captions .json, WebDataset .tar shards, or precomputed .npz/.npy/.parquet embeddings"
)

#: Reader options each format understands; any other option given raises instead of being ignored.
_OPTIONS: dict[str, frozenset[str]] = {
    "manifest": frozenset(
        {
            "image_column",
            "text_columns",
            "label_column",
            "class_name_column",
            "attribute_columns",
            "templates",
            "split",
            "skip_bad",
        }
    ),
    "imagefolder": frozenset({"templates", "split", "skip_bad"}),
    "coco": frozenset({"image_root", "skip_bad"}),
    "webdataset": frozenset({"skip_bad"}),
    "precomputed": frozenset({"skip_bad"}),
}


def detect_format(path: str | Path) -> str:
    """Which reader handles ``path``: one of :data:`FORMATS`.

    Raises:
        DatasetError: The path does not exist or matches no format.
    """
    spec = str(path)
    p = Path(spec)
    if is_shard_spec(spec) and ("{" in spec or p.is_file()):
        return "webdataset"
    if p.is_dir():
        if find_manifest(p) is not None:
            return "manifest"
        if any(p.glob("*.npy")):
            return "precomputed"
        if any(p.glob("*.tar")):
            return "webdataset"
        if class_folders(p):
            return "imagefolder"
        raise DatasetError(f"{p}: no images in this folder and no dataset file found (expected {_ACCEPTED})")
    if not p.exists():
        raise DatasetError(f"{p}: no such file or folder (check the path)")
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        return "precomputed" if parquet_has_vectors(p) else "manifest"
    if suffix in MANIFEST_SUFFIXES:
        return "manifest"
    if suffix in (".npz", ".npy"):
        return "precomputed"
    if suffix == ".json" and is_coco_json(p):
        return "coco"
    raise DatasetError(f"{p}: unknown dataset format (expected {_ACCEPTED})")


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
) -> PairedDataset:
    """Read any supported dataset into a :class:`PairedDataset`.

    Args:
        path: File, folder, or WebDataset brace pattern.
        format: ``"auto"`` (see :func:`detect_format`) or one of :data:`FORMATS`.
        image_column: Manifest column of image paths (default: ``image``/``image_path``/``filepath``/``path``).
        text_columns: Manifest caption columns (default: ``caption``/``text``/``captions`` or ``caption_1..n``).
        label_column: Manifest class label column (default: ``label``).
        class_name_column: Manifest class name column (default: ``class_name``).
        attribute_columns: Manifest per-sample attribute columns (default: ``color``, ``shape``, ... present).
        templates: Prompt templates with one ``{}``, for zero-shot classification and image-folder captions.
        split: Keep one split (manifest ``split`` column, or an image folder's ``<split>/`` sub-folder).
        image_root: COCO only: the folder ``file_name`` is relative to.
        skip_bad: Leave out rows whose image file is missing or whose caption/label is blank (listed in
            ``extra["skipped"]``) instead of failing. Images are not decoded here; undecodable images are
            skipped by the embed step, which calls :func:`load_image`.

    Raises:
        DatasetError: Unreadable data (the message names the file, row and column, and the fix).
        InputError: An option the format does not use, or a template without ``{}``.
    """
    if "{" not in str(path) and not Path(path).exists():
        raise DatasetError(f"{path}: no such file or folder (check the path)")
    fmt = _ALIASES.get(format, format)
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt not in FORMATS:
        raise InputError(f"unknown dataset format {format!r} (use auto or one of {', '.join(FORMATS)})")
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
    given = {k for k, v in options.items() if v is not None}
    unused = sorted(given - _OPTIONS[fmt])
    if unused:
        raise InputError(f"{path}: option {unused[0]} does not apply to the {fmt} format (drop it)")
    for t in templates or ():
        if "{}" not in t:
            raise InputError(
                f"template {t!r} has no {{}} for the class name (write e.g. 'a photo of a {{}}.')"
            )

    p = Path(path)
    if fmt == "manifest":
        if p.is_dir():
            found = find_manifest(p)
            if found is None:
                raise DatasetError(
                    f"{p}: manifest not found (expected one of manifest.csv/.tsv/.jsonl/.parquet)"
                )
            p = found
        return read_manifest(
            p,
            image_column=image_column,
            text_columns=text_columns,
            label_column=label_column,
            class_name_column=class_name_column,
            attribute_columns=attribute_columns,
            templates=templates,
            split=split,
            skip_bad=skip_bad,
        )
    if fmt == "imagefolder":
        return read_imagefolder(p, templates=templates, split=split)
    if fmt == "coco":
        return read_coco(p, image_root=None if image_root is None else Path(image_root), skip_bad=skip_bad)
    if fmt == "webdataset":
        return read_webdataset(path, skip_bad=skip_bad)
    if p.is_dir():
        return read_npy_dir(p)
    if p.suffix.lower() == ".npy":
        return read_npy_dir(p.parent)
    if p.suffix.lower() == ".parquet":
        return read_parquet_vectors(p)
    return read_npz(p)
