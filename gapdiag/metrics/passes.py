"""What the passes of :func:`~gapdiag.metrics.engine.compute_all` measured, as the metrics read it.

Every metric's registry entry (:class:`~gapdiag.metrics.registry.MetricInfo`) names the passes it needs
(``needs``, from the constants below) and holds the function that turns their results into its value for one
qualifier: ``value(passes, qualifier) -> float | Skip``. The engine plans the passes from the union of the needs
of the metrics asked for, runs each pass once, fills a :class:`Passes` and calls the value functions; it knows no
metric by name. A value function reads only what its entry's needs promise (and the data in ``passes.es``).

Work that several metrics share (the gap decomposition's seven numbers, a direction's hubness statistics, the
MMD test's statistic and p-value, a spectrum) is done once per qualifier through :meth:`Passes.once`, which also
writes its long lists to ``extras`` (gap vector, spectra, hubs) when the first metric that needs it is computed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from gapdiag.metrics.blocked import LinearStats, iter_unit_blocks, joint_stats
from gapdiag.metrics.cross import CrossPassResult
from gapdiag.vectors import EmbeddingSet

# What a registry entry can need. Linear needs use every item, always:
#: One streamed pass per modality: the count and ``Σx̂`` (:class:`~gapdiag.metrics.blocked.LinearStats`).
SUMS = "sums"
#: The same pass also accumulating the Gram matrix ``Σx̂x̂ᵀ`` (spectra, covariances).
GRAM = "gram"
#: Per modality pair: the sum of the true-pair cosines and the number of true pairs.
PAIRED = "paired"
#: Every item's unit vector once more, block by block, after the linear pass (:meth:`Passes.unit_blocks`).
ITEMS = "items"
#: Every item's raw vector as stored, before normalisation, block by block (:meth:`Passes.raw_blocks`).
RAW = "raw"
# Quadratic needs use every item or, with ``sample=n``, the items of n drawn samples:
#: The unit vectors and sample ids of the items in play (``Passes.units``, ``Passes.sub``).
SAMPLE = "sample"
#: Per modality: the within-set pair pass, ``log Σ_{i<j} exp(−t‖ẑ_i − ẑ_j‖²)`` (``Passes.within``).
WITHIN = "within"
#: Per modality pair: the fused cross pass's uniformity terms (``Passes.cross``).
CROSS = "cross"
#: Per retrieval direction: R@K for the entry's ``k`` (fused cross pass, or an exact search; ``Passes.recall``).
RANKS = "ranks"
#: Per retrieval direction: each query's ``k`` best gallery items (``Passes.top``).
TOP_K = "top_k"
# Data a metric reads beside the vectors; its value function returns a Skip saying what is missing:
LABELS = "labels"
CLASS_EMBEDDINGS = "class_embeddings"
ATTRIBUTES = "attributes"

LINEAR_NEEDS = frozenset({SUMS, GRAM, PAIRED, ITEMS, RAW})
QUADRATIC_NEEDS = frozenset({SAMPLE, WITHIN, CROSS, RANKS, TOP_K})
DATA_NEEDS = frozenset({LABELS, CLASS_EMBEDDINGS, ATTRIBUTES})
NEEDS = LINEAR_NEEDS | QUADRATIC_NEEDS | DATA_NEEDS

T = TypeVar("T")


@dataclass(frozen=True)
class Skip:
    """A value that this data cannot give, and why (it goes to ``extras["skipped"]``, never into the values)."""

    reason: str


#: What a value function returns: the metric's value for one qualifier, or why there is none.
Value = float | Skip
#: ``value(passes, qualifier)``: a registry entry's function from the passes' results to its value.
ValueFunction = Callable[["Passes", str], Value]


@dataclass(frozen=True)
class Plan:
    """The passes :func:`~gapdiag.metrics.engine.compute_all` runs: the union of the needs of the metrics asked
    for (:func:`~gapdiag.metrics.engine.plan_passes`), the K of every R@K (``ks``) and the depth of the top-K
    lists (``top_k``, 0 = none)."""

    needs: frozenset[str] = frozenset()
    ks: tuple[int, ...] = ()
    top_k: int = 0

    @property
    def stats(self) -> bool:
        """A linear pass per modality."""
        return bool(self.needs & {SUMS, GRAM})

    @property
    def gram(self) -> bool:
        """The linear pass also accumulates Gram matrices."""
        return GRAM in self.needs

    @property
    def paired(self) -> bool:
        """A pass over the true pairs of every modality pair."""
        return PAIRED in self.needs

    @property
    def quadratic(self) -> bool:
        """A quadratic step (on every item or on the drawn samples' items)."""
        return bool(self.needs & QUADRATIC_NEEDS)


def finite_or_skip(value: float, why: str) -> Value:
    """``value``, or a :class:`Skip` with ``why`` when it is not a finite number (NaN: nothing to average)."""
    return value if math.isfinite(value) else Skip(why)


@dataclass
class Passes:
    """The data and the passes' results, by modality (``image``), modality pair (``image-text``) or direction
    (``image_to_text``), as the value functions read them.

    Linear results (every item): ``stats`` (:data:`SUMS`, :data:`GRAM`), ``true_pairs`` (:data:`PAIRED`: the summed
    true-pair cosines and their number). Quadratic results (every item or the drawn samples' items): ``units`` and
    ``sub`` (:data:`SAMPLE`: unit vectors and sample ids; ``rows`` maps them back to items, None = every item),
    ``within`` (:data:`WITHIN`), ``cross`` (:data:`CROSS`), ``recall`` (:data:`RANKS`: ``{k: R@k}``) and ``top``
    (:data:`TOP_K`: gallery indices into ``units``).
    """

    es: EmbeddingSet
    names: list[str]
    pairs: list[tuple[str, str]]
    image: str
    vecs: dict[str, NDArray[Any]]
    samples: dict[str, NDArray[np.int64]]
    extras: dict[str, Any]
    seed: int
    block_size: int
    device: str
    say: Callable[[str], None]
    rows: dict[str, NDArray[np.intp] | None] = field(default_factory=dict)
    stats: dict[str, LinearStats] = field(default_factory=dict)
    true_pairs: dict[str, tuple[float, int]] = field(default_factory=dict)
    units: dict[str, NDArray[np.float32]] = field(default_factory=dict)
    sub: dict[str, NDArray[np.int64]] = field(default_factory=dict)
    within: dict[str, float] = field(default_factory=dict)
    cross: dict[str, CrossPassResult] = field(default_factory=dict)
    recall: dict[str, dict[int, float]] = field(default_factory=dict)
    top: dict[str, NDArray[np.int64]] = field(default_factory=dict)
    _memo: dict[tuple[str, str], Any] = field(default_factory=dict)

    def pair_names(self) -> list[str]:
        """The pair qualifiers ``a-b``, in dataset order."""
        return [f"{a}-{b}" for a, b in self.pairs]

    def pair(self, qualifier: str) -> tuple[str, str]:
        """``"image-text"`` -> ``("image", "text")`` (looked up: a modality name may hold a ``-``)."""
        return dict(zip(self.pair_names(), self.pairs))[qualifier]

    def direction_names(self) -> list[str]:
        """The direction qualifiers ``q_to_g``: both directions of each pair, in pair order."""
        return [f"{q}_to_{g}" for a, b in self.pairs for q, g in ((a, b), (b, a))]

    def direction(self, qualifier: str) -> tuple[str, str]:
        """``"text_to_image"`` -> ``("text", "image")``: the query modality and the gallery modality."""
        both = [(q, g) for a, b in self.pairs for q, g in ((a, b), (b, a))]
        return dict(zip(self.direction_names(), both))[qualifier]

    def stats_of(self, qualifier: str) -> LinearStats:
        """The linear statistics of a modality, or of the joint set (``"joint"``: every modality stacked)."""
        if qualifier == "joint":
            return self.once(("joint_stats", "joint"), lambda: joint_stats([self.stats[m] for m in self.names]))
        return self.stats[qualifier]

    def once(self, key: tuple[str, str], compute: Callable[[], T]) -> T:
        """``compute()`` the first time ``key`` (what, qualifier) is asked for; its result afterwards."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]  # type: ignore[no-any-return]

    def unit_blocks(self, m: str, block_size: int | None = None) -> Iterator[tuple[int, NDArray[np.float32]]]:
        """``(offset, block)`` of every item's unit vector in modality ``m`` (:data:`ITEMS`), ``block_size`` rows
        (default: the linear pass's) at a time: slices of the unit vectors the linear pass kept, else read and
        normalised again from the raw vectors; the same floats either way (the same blocks of the same pass)."""
        size = block_size or self.block_size
        kept = self.units.get(m) if self.rows.get(m) is None else None
        if kept is None or size != self.block_size:
            yield from iter_unit_blocks(self.vecs[m], m, block_size=size)
            return
        for start in range(0, kept.shape[0], size):
            yield start, kept[start : start + size]

    def raw_blocks(self, m: str) -> Iterator[tuple[int, NDArray[np.float32]]]:
        """``(offset, block)`` of every item's raw vector in modality ``m`` (:data:`RAW`), as stored (not normalised),
        float32 and checked (NaN/inf, zero vectors) like the linear pass's blocks."""
        yield from iter_unit_blocks(self.vecs[m], m, block_size=self.block_size, normalize=False)

    def note(self, text: str) -> None:
        """Add a line to ``extras["notes"]`` (shown with the report)."""
        self.extras.setdefault("notes", []).append(text)
