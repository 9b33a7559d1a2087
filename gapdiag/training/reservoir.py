"""The seeded sample of a stream of (image, captions) samples that :class:`~gapdiag.training.monitor.Monitor` keeps
for its pair metrics: at most ``capacity`` samples, on the host, whatever the length of the stream.

Two draws, both functions of the samples' ids and the seed only, so that the batches, their order and the number
of processes the samples arrive in change nothing:

* ``total`` known (the evaluation set's size): the samples of ``measure --sample capacity --seed seed`` on that set
  (:func:`~gapdiag.metrics.sampling.seeded_samples`), so the pair metrics equal ``measure``'s sampled ones;
* ``total`` unknown: the ``capacity`` samples of lowest :func:`~gapdiag.metrics.sampling.priority_keys` (bottom-k
  sampling), a uniform draw without replacement; two reservoirs merge by keeping the lowest keys of the union.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gapdiag.errors import InputError
from gapdiag.metrics.sampling import priority_keys, seeded_samples
from gapdiag.vectors import EmbeddingSet


def _empty_rows(d: int) -> NDArray[np.float32]:
    return np.empty((0, d), dtype=np.float32)


@dataclass
class Reservoir:
    """The kept samples: their ids (``ids``, with their ``keys``), image rows, caption rows (``text_owner``: the id of
    each caption's sample) and labels (None when the stream has none).

    Attributes:
        capacity: The most samples kept.
        seed: The seed of the draw.
        total: The number of samples of the stream, when known (then ids must be below it).
    """

    capacity: int
    seed: int
    total: int | None = None
    ids: NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    keys: NDArray[np.uint64] = field(default_factory=lambda: np.empty(0, np.uint64))
    image: NDArray[np.float32] | None = None
    text: NDArray[np.float32] | None = None
    text_owner: NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    labels: NDArray[np.int64] | None = None
    _drawn: NDArray[np.bool_] | None = None

    _seen: NDArray[np.bool_] | None = None

    def __post_init__(self) -> None:
        if self.total is not None:
            self._drawn = np.zeros(self.total, dtype=bool)
            self._drawn[seeded_samples(self.total, self.capacity, self.seed)] = True
            self._seen = np.zeros(self.total, dtype=bool)  # every id given so far: one given twice is known

    def wanted(self, ids: NDArray[np.int64]) -> NDArray[np.bool_]:
        """Which of these sample ids may enter: drawn (``total`` known), or with a key below the highest kept one
        while the reservoir is full (``total`` unknown). Few rows of a batch pass once the reservoir is full, so
        only those are copied from the device.

        Raises:
            InputError: An id outside ``0..total-1``, twice in ``ids``, or (``total`` known) given before.
        """
        unique, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise given_twice(int(unique[counts > 1][0]))
        if self._drawn is not None:
            outside = ids[(ids < 0) | (ids >= self.total)] if ids.size else ids
            if outside.size:
                raise InputError(f"monitor: sample index {int(outside[0])} is outside 0..{self.total - 1} "
                                 f"(the total={self.total} given to the Monitor)",
                                 hint="pass indices below total, or leave total out")
            assert self._seen is not None
            if self._seen[ids].any():
                raise given_twice(int(ids[self._seen[ids]][0]))
            return self._drawn[ids]
        if self.ids.size < self.capacity:
            return np.ones(ids.shape, dtype=bool)
        return priority_keys(ids, self.seed) < self.keys.max()

    def add(self, ids: NDArray[np.int64], image: NDArray[np.float32], text: NDArray[np.float32],
            text_owner: NDArray[np.int64], labels: NDArray[np.int64] | None) -> None:
        """Add these samples (ids, one image row each, their captions, labels) and keep the ``capacity`` best."""
        self.merge(Reservoir(self.capacity, self.seed, None, ids, priority_keys(ids, self.seed), image, text,
                             text_owner, labels))

    def merge(self, other: Reservoir) -> None:
        """Take ``other``'s samples in (another batch, or another rank's reservoir) and keep the ``capacity`` best.

        Raises:
            InputError: A sample id in both (a sample measured twice: it would count twice in every metric).
        """
        ids = np.concatenate([self.ids, other.ids])
        unique, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise given_twice(int(unique[counts > 1][0]))
        both = self._seen is not None and other._seen is not None  # another rank's reservoir: its ids too
        if both and (self._seen & other._seen).any():  # type: ignore[operator]
            raise given_twice(int(np.flatnonzero(self._seen & other._seen)[0]))  # type: ignore[operator]
        if (self.labels is None) != (other.labels is None) and self.ids.size and other.ids.size:
            raise InputError("monitor: labels were given for some batches and not for others",
                             hint="pass labels= to every update() or to none")
        # Checked: from here on nothing raises, so a refused merge leaves this reservoir as it was.
        if both:
            self._seen |= other._seen  # type: ignore[operator]
        if other.image is None:
            return
        if self.image is None:
            self.image, self.text = _empty_rows(other.image.shape[1]), _empty_rows(other.image.shape[1])
        keys = np.concatenate([self.keys, other.keys])
        # The kept samples: the capacity lowest keys (ties, never in practice, by id), or every drawn one; in id order.
        rows = np.lexsort((ids, keys))[: self.capacity] if self._drawn is None else np.arange(ids.size)
        rows = rows[np.argsort(ids[rows])]
        self.ids, self.keys = ids[rows], keys[rows]
        self.image = np.concatenate([self.image, other.image])[rows]
        if other.labels is not None:
            mine = self.labels if self.labels is not None else np.empty(0, np.int64)
            self.labels = np.concatenate([mine, other.labels])[rows]
        owner = np.concatenate([self.text_owner, other.text_owner])
        text = np.concatenate([self.text, other.text])  # type: ignore[list-item]
        # Captions of the kept samples, grouped by sample in id order, each sample's in arrival order.
        kept = np.isin(owner, self.ids)
        by_sample = np.argsort(np.searchsorted(self.ids, owner[kept]), kind="stable")
        self.text, self.text_owner = text[kept][by_sample], owner[kept][by_sample]

    def mark_seen(self, ids: NDArray[np.int64]) -> None:
        """Remember these ids as given (with ``total``), once their batch is added."""
        if self._seen is not None:
            self._seen[ids] = True

    def embedding_set(self, names: tuple[str, str] = ("image", "text")) -> EmbeddingSet:
        """The kept samples as an :class:`~gapdiag.vectors.EmbeddingSet` (modalities ``names``: images, captions;
        samples renumbered ``0..k-1`` in id order), for :func:`~gapdiag.metrics.engine.compute_all`."""
        assert self.image is not None and self.text is not None
        position = np.searchsorted(self.ids, self.text_owner)
        return EmbeddingSet({names[0]: self.image, names[1]: self.text},
                            {names[0]: np.arange(self.ids.size, dtype=np.int64), names[1]: position.astype(np.int64)},
                            int(self.ids.size), labels=self.labels)

    def __len__(self) -> int:
        return int(self.ids.size)


def given_twice(sample_id: int) -> InputError:
    """The one-line error for a sample measured twice."""
    return InputError(f"monitor: sample index {sample_id} was given twice (it would count twice in every metric)",
                      hint="give each sample once; a DistributedSampler repeats samples to fill the last batch: "
                           "pass the dataset indices and leave the repeats out")


def host_rows(x: Any) -> NDArray[Any]:
    """A torch tensor (any device) or an array as a host numpy array."""
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
