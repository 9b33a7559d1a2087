"""Image-folder reader: ``root/<class>/<image>``, the torchvision ImageFolder layout.

Each image is one sample labelled with its folder; class names are the sorted folder names with underscores
turned into spaces. The text modality holds, for every image, each prompt template filled with its class name
(``"a photo of a golden retriever."``), so retrieval and gap metrics compare images with their class prompts;
the templates are kept on the dataset for zero-shot classification.
"""

from __future__ import annotations

from collections.abc import Sequence
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
from gapdiag.data.images import IMAGE_EXTENSIONS, image_path_problem, is_image_file
from gapdiag.data.registry import register_reader
from gapdiag.errors import DatasetError


def _is_named_like_an_image(entry: Path) -> bool:
    return not entry.name.startswith(".") and entry.suffix.lower() in IMAGE_EXTENSIONS


def _named_images(folder: Path) -> list[Path]:
    """Every visible entry under ``folder`` (at any depth) named like an image, sorted, whatever it is on disk."""
    return sorted(filter(_is_named_like_an_image, folder.rglob("*")))


def _sub_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def class_folders(root: Path) -> list[Path]:
    """Visible sub-folders of ``root`` holding at least one entry named like an image (at any depth), sorted.

    An entry that is no regular file (a broken link, a FIFO) still makes its folder a class: the reader then
    names it, rather than a class vanishing from the list in silence.
    """
    return [d for d in _sub_folders(root) if any(map(_is_named_like_an_image, d.rglob("*")))]


def _image_files(folder: Path, entries: list[Path], skips: Skips) -> list[Path]:
    """The regular image files among ``entries``; an entry named like an image that is no regular file (a broken
    link, a FIFO, a device, a folder called ``x.jpg``) is named, never passed over in silence: leaving it out
    would measure another dataset than the one on disk. A class left with no image (under ``--skip-bad``) is
    dropped and listed too."""
    files = []
    for entry in entries:
        if is_image_file(entry):
            files.append(entry)
            continue
        problem = image_path_problem(entry)
        if problem is not None:
            skips.bad(problem, "remove or fix it, or pass --skip-bad", "image")
    if not files:
        skips.bad(f"{folder}: no readable image left in class folder {folder.name!r}", "fix its images", "class")
    return files


def read_imagefolder(
    root: Path, *, templates: Sequence[str] | None = None, split: str | None = None, memo_dir: Path | None = None,
    skip_bad: bool = False,
) -> PairedDataset:
    """Read ``root/<class>/**/<image>`` into an image-text :class:`PairedDataset`.

    Args:
        root: The folder holding one sub-folder per class.
        templates: Prompt templates with one ``{}`` (default ``("a photo of a {}.",)``).
        split: Read ``root/<split>/`` instead (e.g. ``train``/``test`` folders above the class folders).
        memo_dir: Folder of the fingerprint memo (:func:`gapdiag.data.base.fingerprint_files`); ``None``: none.
        skip_bad: Leave out entries named like images that are not regular files (broken links, FIFOs, devices)
            and list them, instead of failing.

    Raises:
        DatasetError: No class folder with images, an empty template list, or (without ``skip_bad``) an entry
            named like an image that is not a regular file.
    """
    if split is not None:
        if not (root / split).is_dir():
            raise DatasetError(
                f"{root}: no folder {split!r} for split {split!r} (drop --split or add the folder)"
            )
        root = root / split
    templates = tuple(templates) if templates else DEFAULT_TEMPLATES
    # One walk per class folder: which folders are classes and which files they hold come from the same listing.
    named = [(d, entries) for d in _sub_folders(root) if (entries := _named_images(d))]
    if not named:
        raise DatasetError(f"{root}: no images in class sub-folders (expected {root}/<class>/<image>.jpg)")
    skips = Skips(skip_bad)
    class_names: list[str] = []
    images: list[Path] = []
    labels: list[int] = []
    for folder, entries in named:
        files = _image_files(folder, entries, skips)
        if files:
            labels += [len(class_names)] * len(files)
            class_names.append(folder.name.replace("_", " "))
            images += files
    if not images:
        raise DatasetError(f"{root}: no image left: all {len(skips.lines)} dropped, first {skips.lines[0]}")
    label_arr = np.asarray(labels, dtype=np.int64)
    image_locs = [str(p.relative_to(root)) for p in images]
    items = ImageTextItems(images, image_locs).with_template_captions(label_arr, class_names, templates)
    return image_text_dataset(
        name=root.name,
        source=str(root),
        format="imagefolder",
        items=items,
        files=images,
        options={"split": split},
        skipped=skips.lines,
        labels=label_arr,
        class_names=class_names,
        templates=templates,
        memo_dir=memo_dir,
    )


def _detect(spec: str) -> str | None:
    p = Path(spec)
    if not p.is_dir():
        return None
    folders = class_folders(p)
    if not folders:
        return None
    shown = ", ".join(f"{d.name}/" for d in folders[:3]) + (", ..." if len(folders) > 3 else "")
    return f"class folder{'s' if len(folders) > 1 else ''} {shown}"


@register_reader(
    "imagefolder",
    detect=_detect,
    accepted="a folder of class sub-folders",
    help="root/<class>/<image>: captions are the prompt templates filled with the class name.",
    options=("templates", "split"),
    aliases=("folder", "image_folder"),
    order=20,
    reads_subfolders=True,
)
def load_imagefolder(spec: str, *, skip_bad: bool = False, **options: Any) -> PairedDataset:
    """Read an image folder (``skip_bad``: leave out image entries that are not regular files)."""
    return read_imagefolder(Path(spec), skip_bad=skip_bad, **options)
