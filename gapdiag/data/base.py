"""The in-memory description of a paired dataset, independent of its file format.

A dataset has ``n_samples`` *samples* (e.g. one COCO image with its five captions is one sample) and any
number of *modalities*. Each modality holds its own items (image paths, caption strings, or precomputed
vectors) and ``sample_index[i]``: the sample that item ``i`` belongs to. One image with five captions is one
image item and five text items whose ``sample_index`` all point to that image's sample. Nothing here fixes
the number of modalities at two.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
from numpy.typing import NDArray

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


def hash_json(obj: Any) -> str:
    """SHA-256 of a JSON-serialisable object with sorted keys (stable across runs and platforms)."""
    payload = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(payload).hexdigest()


def fingerprint_files(paths: Sequence[Path], extra: Any = None) -> str:
    """Fingerprint a list of files by path, size and mtime (nanoseconds), plus ``extra`` (captions, labels).

    Cheap (no file contents are read) and invalidates whenever a file is replaced or edited. Like Hugging
    Face datasets' fingerprinting, anything that changes the output goes in; nothing else does.
    """
    entries = []
    for p in paths:
        st = Path(p).stat()
        entries.append([str(Path(p).resolve()), st.st_size, st.st_mtime_ns])
    return hash_json({"files": entries, "extra": extra})
