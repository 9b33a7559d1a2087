"""Caveats about the data that change how a report reads (one line each, printed under the measure table).

Repeated items: when many captions are the same text (ImageFolder/template captions, "a photo of a dog." for
every dog; or captions drawn from a few phrasings per class), a text query cannot tell the images of its class
apart, so R@K measures class-level retrieval near chance within a class rather than instance retrieval
(Radford et al. 2021 evaluate such data by zero-shot classification instead).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from gapdiag.metrics.blocked import iter_unit_blocks
from gapdiag.vectors import EmbeddingSet

#: Items that repeat another are reported once at least this share of a modality repeats (COCO has a few
#: identical captions by chance; that does not change what R@K means).
REPEAT_SHARE = 0.01
#: Decimals kept of each unit-vector coordinate: two encodings of one text agree far closer than 1e-4, two
#: different texts differ far more in some coordinate.
_DECIMALS = 4


def count_repeats(x: NDArray[Any], *, block_size: int = 65536) -> int:
    """How many rows of ``x`` repeat an earlier row (same direction, to 4 decimals): ``n - distinct``.

    Each normalised row, rounded, is hashed to 64 bits (a seeded random projection of the integer
    coordinates, wrapping arithmetic), block by block, so a memory-mapped million-row set is read once in
    ``block_size`` rows; two different rows share a hash with probability about n² / 2⁶⁴.
    """
    n, d = x.shape
    weights = np.random.default_rng(0).integers(1, 2**62, size=d, dtype=np.int64)
    hashes = np.empty(n, dtype=np.int64)
    for start, block in iter_unit_blocks(x, "vectors", block_size=block_size):
        rounded = np.rint(block.astype(np.float64) * 10**_DECIMALS).astype(np.int64)
        with np.errstate(over="ignore"):
            hashes[start:start + len(block)] = rounded @ weights
    return int(n - np.unique(hashes).size)


def count_repeated_items(items: Any) -> int:
    """How many of ``items`` (captions, image paths) repeat an earlier one: ``n - distinct``."""
    return len(items) - len({str(item) for item in items})


def repeat_notes(es: EmbeddingSet, metric_names: list[str]) -> tuple[dict[str, int], list[str]]:
    """Repeated items per modality and, where they matter, a one-line note pointing to zero-shot accuracy.

    The counts come from the dataset's captions and paths when :func:`gapdiag.api.embed` recorded them
    (``provenance["repeated_items"]``), else from the vectors (:func:`count_repeats`; precomputed embeddings).

    Returns:
        ``({modality: repeated items}, [note, ...])``.
    """
    known = es.provenance.get("repeated_items") or {}
    counts = {m: int(known[m]) if m in known else count_repeats(es.vectors[m]) for m in es.modality_names}
    has_zero_shot = any(name.startswith("zero_shot_accuracy") for name in metric_names)
    notes: list[str] = []
    if not any(name.startswith("recall_at_") for name in metric_names):
        return counts, notes  # the note is about R@K
    for m, repeats in counts.items():
        n = es.vectors[m].shape[0]
        if repeats and repeats >= REPEAT_SHARE * n:
            where = ("read zero_shot_accuracy for these class-level captions" if has_zero_shot
                     else "use captions that differ per item for instance retrieval")
            notes.append(f"{repeats:,} of {n:,} {m} items repeat another (class-level or template captions): "
                         "R@K cannot tell apart the items that share one, so it is not instance retrieval; "
                         f"{where}")
    return counts, notes
