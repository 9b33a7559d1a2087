"""COCO captions reader (``captions_val2017.json`` and files of the same shape, e.g. Flickr30k in COCO form).

The JSON holds ``images`` (``id``, ``file_name``) and ``annotations`` (``image_id``, ``caption``). Each image is
one sample; all its captions are text items pointing to it (five per image in MS-COCO).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gapdiag.data.base import (
    DuplicateKey,
    ImageTextItems,
    PairedDataset,
    Skips,
    image_text_dataset,
    is_existing_file,
    not_utf8,
    unique_keys,
)
from gapdiag.data.columns import captions_in_cell, describe_value, is_blank
from gapdiag.data.images import image_path_problem
from gapdiag.data.registry import register_reader
from gapdiag.errors import DatasetError
from gapdiag.fsutil import loads_json


def load_json(path: Path) -> Any:
    """Parse a JSON file.

    Raises:
        DatasetError: Not UTF-8, invalid JSON (the message gives the line and column), or an object that repeats
            a key (JSON would keep the last value silently).
    """
    try:
        with open(path, encoding="utf-8-sig") as f:
            return loads_json(f.read(), object_pairs_hook=unique_keys)
    except json.JSONDecodeError as exc:
        raise DatasetError(
            f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno} ({exc.msg}); fix the file"
        ) from None
    except DuplicateKey as exc:
        raise DatasetError(f"{path}: key {exc.args[0]!r} appears twice in one object; keep one") from None
    except UnicodeDecodeError:
        raise not_utf8(path.read_bytes(), str(path)) from None


def is_coco_data(data: Any) -> bool:
    """True for a JSON object with ``images`` and ``annotations`` lists."""
    return (
        isinstance(data, dict)
        and isinstance(data.get("images"), list)
        and isinstance(data.get("annotations"), list)
    )


def is_coco_json(path: Path) -> bool:
    """True if ``path`` holds a COCO captions object (reads the file).

    Raises:
        DatasetError: The file is not valid JSON (it is named, with the line and column): a ``.json`` that
            cannot be parsed is reported rather than called "unknown format".
    """
    return is_coco_data(load_json(path))


def image_root_candidates(json_path: Path) -> list[Path]:
    """Folders searched for the images when no ``image_root`` is given, in order.

    The JSON's own folder, its ``images`` sub-folder, and folders named after the file's split
    (``captions_val2017.json`` -> ``val2017``) beside the JSON or beside its folder (the COCO layout
    ``coco/annotations/captions_val2017.json`` + ``coco/val2017/``).
    """
    here = json_path.parent
    names = ["images", json_path.stem.rsplit("_", 1)[-1]]
    return list(dict.fromkeys([here] + [here / n for n in names] + [here.parent / n for n in names]))


def _resolve_image_root(json_path: Path, first_file: str, image_root: Path | None) -> Path:
    if image_root is not None:
        return image_root
    candidates = image_root_candidates(json_path)
    for root in candidates:
        if is_existing_file(root / first_file):
            return root
    tried = ", ".join(str(c) for c in candidates)
    raise DatasetError(f"{json_path.name}: cannot find image {first_file!r} in {tried} "
                       "(pass --image-root DIR; image_root= in Python)")


def read_coco(path: Path, *, image_root: Path | None = None, skip_bad: bool = False,
              memo_dir: Path | None = None) -> PairedDataset:
    """Read a COCO-captions JSON into an image-text :class:`PairedDataset`.

    Args:
        path: The captions JSON.
        image_root: Folder that ``images[].file_name`` is relative to (default: searched, see
            :func:`image_root_candidates`).
        skip_bad: Drop images without captions or without a file, and captions of unknown images, instead of
            failing; they are listed in ``extra["skipped"]``.

    Raises:
        DatasetError: Malformed JSON, an image without captions, a caption for an unknown image id, an empty
            caption or a missing image file.
    """
    name = path.name
    data = load_json(path)
    if not is_coco_data(data):
        raise DatasetError(f"{name}: not a COCO captions file (needs 'images' and 'annotations' lists)")
    skips = Skips(skip_bad)
    images_meta = _images_by_id(data["images"], name)
    captions_of = _captions_by_image(data["annotations"], images_meta, name, skips)

    root = _resolve_image_root(path, next(iter(images_meta.values()))["file_name"], image_root)
    items = ImageTextItems()
    for k, (image_id, img) in enumerate(images_meta.items()):
        where = f"{name}: images[{k}] (id {image_id})"
        if not captions_of[image_id]:
            skips.bad(f"{where} has no caption", "add one or pass --skip-bad", "image")
            continue
        file = root / img["file_name"]
        problem = image_path_problem(file)
        if problem is not None:
            skips.bad(f"{where}: {problem}", "fix the path or pass --skip-bad", "image")
            continue
        items.add(file, where, captions_of[image_id])

    return image_text_dataset(
        name=path.stem,
        source=str(path),
        format="coco",
        items=items,
        files=items.images,
        options={"image_root": str(root), "skip_bad": skip_bad},
        skipped=skips.lines,
        memo_dir=memo_dir,
    )


def _images_by_id(images: list[Any], name: str) -> dict[Any, dict[str, Any]]:
    """``images`` by id, checked: every entry an object with a unique integer or string ``id`` and a file name.

    Raises:
        DatasetError: Naming the entry (``images[3]``) and what is wrong with it.
    """
    images_meta: dict[Any, dict[str, Any]] = {}
    for k, img in enumerate(images):
        if not isinstance(img, dict) or "id" not in img or is_blank(img.get("file_name")):
            raise DatasetError(f"{name}: images[{k}] needs an 'id' and a 'file_name'")
        if not isinstance(img["id"], (int, str)) or isinstance(img["id"], bool):
            raise DatasetError(f"{name}: images[{k}] has id {img['id']!r}; ids must be integers or strings")
        if not isinstance(img["file_name"], str):
            raise DatasetError(f"{name}: images[{k}] field 'file_name' holds {describe_value(img['file_name'])}, "
                               f"not text (write the file name as a string)")
        if img["id"] in images_meta:
            raise DatasetError(f"{name}: images[{k}] repeats image id {img['id']} (ids must be unique)")
        images_meta[img["id"]] = img
    if not images_meta:
        raise DatasetError(f"{name}: the dataset is empty ('images' has no entries)")
    return images_meta


def _captions_by_image(annotations: list[Any], images_meta: dict[Any, Any], name: str,
                       skips: Skips) -> dict[Any, list[tuple[str, str]]]:
    """Every image's ``(caption, location)`` pairs from ``annotations``, as written.

    An annotation's ``caption`` is a string, or a list of strings (several captions); anything else is an error
    naming it. A caption of an unknown image id, a blank caption or an empty list fails, or is dropped with
    ``skip_bad`` (one line each).
    """
    captions_of: dict[Any, list[tuple[str, str]]] = {i: [] for i in images_meta}
    for k, ann in enumerate(annotations):
        where = f"{name}: annotations[{k}]"
        if not isinstance(ann, dict) or not isinstance(ann.get("image_id"), (int, str)) or isinstance(
                ann.get("image_id"), bool):
            raise DatasetError(f"{where} needs an 'image_id' (an integer or a string)")
        image_id = ann["image_id"]
        if image_id not in captions_of:
            skips.bad(f"{where} refers to unknown image id {image_id}", "fix the id or pass --skip-bad",
                      "annotation")
            continue
        captions = captions_in_cell(ann.get("caption"), f"{where} field 'caption'", text_lists=False)
        if captions == []:
            skips.bad(f"{where}: empty caption list for image id {image_id}", "write one or pass --skip-bad",
                      "annotation")
        for caption in [""] if captions is None else captions:
            if not caption.strip():
                skips.bad(f"{where}: empty caption for image id {image_id}", "write one or pass --skip-bad",
                          "caption")
                continue
            captions_of[image_id].append((caption.strip(), where))
    return captions_of


#: A folder with more top-level ``.json`` files than this holds per-sample sidecars, not COCO annotation files;
#: they are not parsed one by one to find out (name the COCO file with --data instead).
MAX_JSON_FILES_SEARCHED = 16


def _coco_files(folder: Path) -> list[Path]:
    files = [f for f in sorted(folder.glob("*.json")) if not f.name.startswith(".")]
    if len(files) > MAX_JSON_FILES_SEARCHED:
        return []
    return [f for f in files if is_coco_json(f)]


def _detect(spec: str) -> str | None:
    p = Path(spec)
    if p.is_dir():
        files = _coco_files(p)
        return None if not files else f"COCO {', '.join(f.name for f in files)}"
    if p.is_file() and p.suffix.lower() == ".json":
        return f"COCO {p.name}" if is_coco_json(p) else None
    return None


@register_reader(
    "coco",
    detect=_detect,
    accepted="a COCO captions .json",
    help="COCO captions JSON: one sample per image, all its captions as text items.",
    options=("image_root",),
    order=30,
    owns_subfolders=True,
)
def load_coco(spec: str, *, skip_bad: bool = False, image_root: str | Path | None = None,
              memo_dir: Path | None = None) -> PairedDataset:
    """Read a COCO captions file, or the one COCO file in a folder."""
    path = Path(spec)
    if path.is_dir():
        files = _coco_files(path)
        if len(files) != 1:
            found = ", ".join(f.name for f in files) or "none"
            raise DatasetError(
                f"{path}: expected one COCO captions .json in the folder, found {found}; pass the file with --data"
            )
        path = files[0]
    return read_coco(path, image_root=None if image_root is None else Path(image_root), skip_bad=skip_bad,
                     memo_dir=memo_dir)
