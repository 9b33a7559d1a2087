"""Embedded vectors of a dataset (:class:`EmbeddingSet`): what the cache stores and what metrics and plots read.

The record every room passes, on the ground floor beside the errors: the embedding room writes it through the
cache, and the cache, the metrics, the figures and the report read it; it imports none of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray


@dataclass
class EmbeddingSet:
    """Raw (not normalised) embeddings of every modality of a dataset, with the alignment between them.

    Attributes:
        vectors: Modality name -> ``(n_items, d)`` array (float32 or float16; may be a memory map).
        sample_index: Modality name -> ``(n_items,)`` int64, the sample each item belongs to.
        n_samples: Number of samples.
        labels: Optional int64 class label per sample.
        class_names: Optional class names.
        class_embeddings: Optional ``(n_classes, d)`` zero-shot classifier (mean of normalised prompt
            embeddings per class, renormalised), in the space of the text modality.
        attributes: Optional per-sample attribute arrays (strings).
        attribute_embeddings: Optional ``{attribute value: (d,) vector}`` text embeddings of attribute words,
            used by the multimodal-arithmetic metric.
        provenance: Model, checkpoint hash, dataset fingerprint, dtype... (copied into reports).
    """

    vectors: dict[str, NDArray[Any]]
    sample_index: dict[str, NDArray[np.int64]]
    n_samples: int
    labels: NDArray[np.int64] | None = None
    class_names: list[str] | None = None
    class_embeddings: NDArray[np.float32] | None = None
    attributes: dict[str, NDArray[Any]] | None = None
    attribute_embeddings: dict[str, NDArray[np.float32]] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def modality_names(self) -> list[str]:
        return list(self.vectors)

    @property
    def dim(self) -> int:
        return int(next(iter(self.vectors.values())).shape[1])

    def counts(self) -> dict[str, int]:
        return {name: int(v.shape[0]) for name, v in self.vectors.items()}
