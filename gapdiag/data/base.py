"""The in-memory description of a paired dataset, independent of its file format.

A dataset has ``n_samples`` *samples* (e.g. one COCO image with its five captions is one sample) and any
number of *modalities*. Each modality holds its own items (image paths, caption strings, or precomputed
vectors) and ``sample_index[i]``: the sample that item ``i`` belongs to. One image with five captions is one
image item and five text items whose ``sample_index`` all point to that image's sample. Nothing here fixes
the number of modalities at two.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from gapdiag import fsutil
from gapdiag.errors import DatasetError, InputError

ModalityKind = Literal["image", "text", "embedding"]

DEFAULT_TEMPLATES: tuple[str, ...] = ("a photo of a {}.",)


@dataclass
class Modality:
    """One modality of a dataset.

    Attributes:
        name: Modality name used in metric names and the cache ("image", "text", "audio", ...).
        kind: How items are encoded: ``"image"`` (paths to image files, through the model's preprocess),
            ``"text"`` (strings, through the model's tokenizer) or ``"embedding"`` (precomputed vectors).
        items: Image paths (``Path``), caption strings, or a 2-D array of vectors for ``"embedding"``.
        sample_index: ``int64`` array, ``sample_index[i]`` = sample of item ``i``.
        locations: Optional human-readable origin of each item (e.g. ``"captions.csv:17"``) for error messages.
    """

    name: str
    kind: ModalityKind
    items: Sequence[Any] | NDArray[Any]
    sample_index: NDArray[np.int64]
    locations: Sequence[str] | None = None

    def __len__(self) -> int:
        return len(self.items)

    def location(self, i: int) -> str:
        """Where item ``i`` came from, for one-line error messages."""
        if self.locations is not None:
            return str(self.locations[i])
        return f"{self.name} item {i}"


@dataclass
class PairedDataset:
    """Aligned items of several modalities plus optional class labels and attributes.

    Attributes:
        name: Short dataset name for titles and reports.
        source: Path (or URL-like string) the dataset was read from.
        modalities: Modality name -> :class:`Modality`, in a stable order (image first where present).
        n_samples: Number of samples.
        labels: Optional ``int64`` class label per sample.
        class_names: Names of the classes, ``class_names[label]``.
        templates: Prompt templates ("a photo of a {}.") for zero-shot classification.
        attributes: Optional per-sample attribute arrays (e.g. ``{"color": [...], "shape": [...]}``) of strings.
        fingerprint: Hash of everything in the data that changes embeddings (see :func:`fingerprint_files`).
    """

    name: str
    source: str
    modalities: dict[str, Modality]
    n_samples: int
    labels: NDArray[np.int64] | None = None
    class_names: list[str] | None = None
    templates: tuple[str, ...] = DEFAULT_TEMPLATES
    attributes: dict[str, NDArray[Any]] | None = None
    fingerprint: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def modality_names(self) -> list[str]:
        return list(self.modalities)

    def counts(self) -> dict[str, int]:
        return {name: len(m) for name, m in self.modalities.items()}


def not_utf8(data: bytes, where: str, fix: str = "re-save the file as UTF-8") -> DatasetError:
    """The one-line error for text that is not UTF-8, naming the first bad line and byte of ``data``.

    Found by decoding line by line: the offset in a ``UnicodeDecodeError`` raised while reading a text file
    counts from the start of the decoder's buffer, not of the file. A newline never sits inside a UTF-8
    multi-byte sequence, so decoding per line finds the same first bad byte.
    """
    for lineno, line in enumerate(data.splitlines(keepends=True), start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as exc:
            return DatasetError(f"{where}:{lineno}: not UTF-8 text (byte 0x{line[exc.start]:02x}); {fix}")
    return DatasetError(f"{where}: not UTF-8 text; {fix}")


class DuplicateKey(ValueError):
    """A JSON object names one key twice (``json.loads`` would keep the last value silently); ``args[0]`` is the key."""


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for the readers' JSON: the object as a dict, or :class:`DuplicateKey`."""
    obj = dict(pairs)
    if len(obj) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)
    return obj


def fingerprint_files(paths: Sequence[Path], extra: Any = None, *, memo_dir: Path | None = None) -> str:
    """Fingerprint a list of files by their contents and paths relative to each other, plus ``extra``.

    Content, not location: the same data in a fresh clone, in a CI checkout or on another machine (new paths,
    new mtimes) gets the same fingerprint, so cache entries and baseline reports stay valid; any edit of a
    file, a caption or a label changes it. Hashing every file is paid once per file *state*: the result is
    memoised in ``memo_dir`` (``<cache root>/fingerprints/``, handed down by the api; ``None`` keeps no memo)
    keyed by each file's resolved path, size, mtime, ctime and inode (:func:`gapdiag.fsutil.stat_key`), so an
    unchanged dataset costs only a ``stat`` per file, while a file replaced or rewritten in place with its old
    size and mtime restored is hashed again (its ctime or inode differ). Files changed less than :data:`gapdiag.fsutil.RACY_SECONDS` before hashing are not memoised (the
    clock that stamps them is coarse). Like Hugging Face datasets' fingerprinting, anything that changes the
    output goes in, nothing else does.
    """
    stats = [fsutil.stat_key(p) for p in paths]
    memo_name = fsutil.hash_json({"stats": stats, "extra": extra, "version": 3})[:32]
    memo = None if memo_dir is None else Path(memo_dir) / f"{memo_name}.txt"
    if memo is not None and memo.is_file():
        cached = memo.read_text().strip()
        if len(cached) == 64:
            return cached
    resolved = [Path(key[0]) for key in stats]
    root = Path(os.path.commonpath([str(p.parent) for p in resolved])) if resolved else Path(".")
    hashed_at = time.time_ns()
    entries = [[p.relative_to(root).as_posix(), fsutil.file_digest(p)] for p in resolved]
    fingerprint = fsutil.hash_json({"files": entries, "extra": extra})
    unchanged = [fsutil.stat_key(p) for p in resolved] == stats
    if memo is not None and unchanged and all(fsutil.settled(key, hashed_at) for key in stats):
        try:
            memo.parent.mkdir(parents=True, exist_ok=True)
            fsutil.atomic_write_text(memo, fingerprint + "\n")
        except OSError:
            pass  # an unwritable cache dir only costs re-hashing next time
    return fingerprint


# ---------------------------------------------------------------------------------------------------------
# Helpers shared by the readers in this package.
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Skips:
    """Bad rows of one read: the first raises, or with ``skip_bad`` each is dropped and listed.

    Every line says what was dropped (``"m.csv:4: empty caption in column 'caption_2' (caption dropped)"``); the
    lines become ``PairedDataset.extra["skipped"]``, which the CLI prints one per line (``skipped: ...``) and the
    report keeps in its provenance, so the count of skips is the count of lines.
    """

    skip_bad: bool
    lines: list[str] = field(default_factory=list)

    def bad(self, problem: str, fix: str, dropped: str) -> None:
        """``problem`` (``"file:row: what is wrong"``): raise it with ``fix``, or list it with what was ``dropped``.

        Raises:
            DatasetError: ``"{problem} ({fix})"`` unless ``skip_bad``.
        """
        if not self.skip_bad:
            raise DatasetError(f"{problem} ({fix})")
        self.lines.append(f"{problem} ({dropped} dropped)")

def is_existing_file(path: Path) -> bool:
    """``path.is_file()`` for a path read from a data file: a name the OS refuses (too long, a NUL byte) is no file.

    ``Path.is_file`` raises on ENAMETOOLONG instead of answering False (found by fuzzing a manifest); the row then
    gets the reader's one-line "image file not found" error, naming the path, rather than a traceback.
    """
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


#: Bumped whenever a reader changes what it produces from the same files in a way the fingerprint does not see,
#: so old cache entries stop matching. Not bumped for the readers of issue #24: what they return (captions and
#: their alignment, labels, class names) is hashed as returned (:func:`image_text_dataset`), so the fingerprint
#: changes exactly for the files read differently, and reports of data read as before stay comparable.
DATA_FINGERPRINT_VERSION = 1


def check_templates(templates: Sequence[str]) -> tuple[str, ...]:
    """Check prompt templates before any data is read: each needs exactly one ``{}`` for the class name.

    Raises:
        InputError: An empty list, or a template with no ``{}``, two of them, a named field or a stray brace;
            the message names the template.
    """
    import string

    templates = tuple(templates)
    if not templates:
        raise InputError("no prompt template given (pass at least one, e.g. --template 'a photo of a {}.')")
    for t in templates:
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(t) if f is not None]
        except ValueError as exc:  # "Single '}' encountered in format string"
            raise InputError(
                f"template {t!r}: {exc} (write {{{{ or }}}} for a literal brace, e.g. 'a photo of a {{}}.')"
            ) from None
        if fields != [""]:
            shown = ", ".join("{" + f + "}" for f in fields)
            problem = f"has {len(fields)} fields ({shown})" if fields else "has no {}"
            raise InputError(
                f"template {t!r} {problem}; it needs exactly one {{}} for the class name "
                f"(write e.g. 'a photo of a {{}}.')"
            )
    return templates


def template_captions(
    labels: NDArray[np.int64],
    class_names: Sequence[str],
    templates: Sequence[str],
    sample_locations: Sequence[str],
) -> tuple[list[str], NDArray[np.int64], list[str]]:
    """Captions made from class names: every template filled with the sample's class name.

    Returns:
        ``(captions, sample_index, locations)`` with ``len(templates)`` captions per sample, sample-major;
        a caption's location is its sample's location plus the template.
    """
    captions = [t.format(class_names[int(y)]) for y in labels for t in templates]
    sample_index = np.repeat(np.arange(len(labels), dtype=np.int64), len(templates))
    locations = [f"{loc} template {t!r}" for loc in sample_locations for t in templates]
    return captions, sample_index, locations


@dataclass
class ImageTextItems:
    """Image and caption items gathered by a reader: one image per sample, any number of captions.

    Attributes:
        images: One image item per sample (a path or a :class:`gapdiag.data.images.TarMember`).
        image_locations: Where each image came from.
        captions: All captions; ``caption_samples[j]`` is the sample of caption ``j``.
        caption_samples: Sample of each caption.
        caption_locations: Where each caption came from.
    """

    images: list[Any] = field(default_factory=list)
    image_locations: list[str] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    caption_samples: list[int] = field(default_factory=list)
    caption_locations: list[str] = field(default_factory=list)

    def add(self, image: Any, location: str, captions: Sequence[tuple[str, str]]) -> None:
        """Append one sample: its image and its ``(caption, location)`` pairs."""
        sample = len(self.images)
        self.images.append(image)
        self.image_locations.append(location)
        for caption, caption_location in captions:
            self.captions.append(caption)
            self.caption_samples.append(sample)
            self.caption_locations.append(caption_location)

    def with_template_captions(self, labels: NDArray[np.int64], class_names: Sequence[str],
                               templates: Sequence[str]) -> ImageTextItems:
        """These images with captions made from their class names instead (see :func:`template_captions`)."""
        captions, samples, locations = template_captions(labels, class_names, templates, self.image_locations)
        return ImageTextItems(self.images, self.image_locations, captions, samples.tolist(), locations)


def image_text_dataset(
    *,
    name: str,
    source: str,
    format: str,
    items: ImageTextItems,
    files: Sequence[Path],
    options: dict[str, Any] | None = None,
    labels: NDArray[np.int64] | None = None,
    class_names: list[str] | None = None,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    attributes: dict[str, NDArray[Any]] | None = None,
    skipped: Sequence[str] = (),
    memo_dir: Path | None = None,
) -> PairedDataset:
    """Assemble an image-text :class:`PairedDataset` (one image per sample, any number of captions).

    The fingerprint covers the image files (path, size, mtime) and everything else that changes the
    embeddings or the metrics: captions and their alignment, labels, class names, templates, attributes,
    the format and its options.

    Args:
        items: The images and captions with their alignment.
        files: Files whose size and mtime go into the fingerprint (image files, or tar shards).
        options: Reader options that change the output (columns used, split...).
        skipped: ``"location: reason"`` of every row left out by ``skip_bad``; kept in ``extra["skipped"]``.
        memo_dir: Folder of the fingerprint memo (:func:`fingerprint_files`); ``None``: no memo.

    Raises:
        DatasetError: No samples are left.
    """
    n = len(items.images)
    if n == 0:
        reason = f"; {len(skipped)} skipped, first: {skipped[0]}" if skipped else ""
        raise DatasetError(f"{source}: the dataset is empty (no image with a caption{reason})")
    sample_index = np.asarray(items.caption_samples, dtype=np.int64)
    templates = tuple(templates)
    attrs = {k: np.asarray(v, dtype=str) for k, v in attributes.items()} if attributes else None
    extra = {
        "version": DATA_FINGERPRINT_VERSION,
        "format": format,
        "options": options or {},
        # Where each image lives, relative to the data (the files' own relative paths and contents are hashed
        # by fingerprint_files): tar members by shard name + member name, files by their index in ``files``.
        "images": [[Path(x.shard).name, x.name] if hasattr(x, "shard") else Path(x).name for x in items.images],
        "captions": items.captions,
        "caption_samples": sample_index.tolist(),
        "labels": None if labels is None else labels.tolist(),
        "class_names": class_names,
        "templates": list(templates),
        "attributes": None if attrs is None else {k: v.tolist() for k, v in attrs.items()},
    }
    modalities = {
        "image": Modality(
            "image", "image", items.images, np.arange(n, dtype=np.int64), items.image_locations
        ),
        "text": Modality("text", "text", items.captions, sample_index, items.caption_locations),
    }
    return PairedDataset(
        name=name,
        source=source,
        modalities=modalities,
        n_samples=n,
        labels=labels,
        class_names=class_names,
        templates=templates,
        attributes=attrs,
        fingerprint=fingerprint_files(files, extra, memo_dir=memo_dir),
        extra={"format": format, "skipped": list(skipped)},
    )
