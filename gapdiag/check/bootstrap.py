"""Bootstrap confidence intervals for gapdiag's metrics (resampling *samples*, not items).

A sample is the unit of resampling: one COCO image with its five captions is drawn (or not) as a whole, so
the caption-to-image structure of every replicate matches the original data. Each replicate is a fresh
:class:`~gapdiag.vectors.EmbeddingSet` on which every metric is recomputed, and the interval of a metric is
the percentile interval of its replicate values (Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993,
ch. 13): for confidence ``c`` and replicate values ``θ*_1..θ*_B``,
``[quantile(θ*, (1 - c) / 2), quantile(θ*, (1 + c) / 2)]``.

Caveats (also in docs/check.md):

* **Duplicates.** Drawing with replacement repeats samples. A repeated sample becomes a distinct sample with
  identical vectors, so retrieval sees exact score ties (broken toward the lower index: a caption can "miss"
  its image because the twin copy ranks first), and pairwise metrics see pairs at distance 0 (uniformity and
  angular value move toward "collapsed"). Intervals of R@K, uniformity and angular value are therefore biased
  toward worse values; their *width* is still a usable noise scale, which is what ``gapdiag check``'s
  noise-aware rules use.
* **Cost.** ``n`` replicates cost ``n`` metric computations on the full (or ``sample``-sized) set; embedding is
  not repeated. Use ``sample`` to bound the cost on large datasets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gapdiag.errors import InputError
from gapdiag.metrics import compute_all
from gapdiag.metrics.sampling import check_sample_size
from gapdiag.vectors import EmbeddingSet

#: ``compute_all``'s shape: ``(es, metrics, *, sample, seed) -> (values, extras)``.
ComputeFn = Callable[..., tuple[dict[str, float], dict[str, Any]]]


def resample_embedding_set(es: EmbeddingSet, sample_ids: ArrayLike) -> EmbeddingSet:
    """Build the embedding set of the samples ``sample_ids`` (repeats allowed), keeping all items of each.

    New sample ``j`` is a copy of old sample ``sample_ids[j]``: every item of that sample in every modality is
    kept, in its original order, with ``sample_index`` set to ``j``. A sample drawn twice therefore becomes two
    distinct samples with identical vectors. Per-sample arrays (``labels``, ``attributes``) are gathered the
    same way; per-class and per-attribute-word arrays are shared unchanged.

    Args:
        es: The original embedding set.
        sample_ids: ``(m,)`` integer ids in ``[0, es.n_samples)``.

    Returns:
        A new :class:`EmbeddingSet` with ``n_samples == m``. Vectors are copied (a memory map is read).

    Raises:
        InputError: If an id is out of range or ``sample_ids`` is not one-dimensional.
    """
    ids = np.asarray(sample_ids, dtype=np.int64)
    if ids.ndim != 1:
        raise InputError(f"sample_ids must be one-dimensional, got shape {ids.shape}")
    if ids.size and (ids.min() < 0 or ids.max() >= es.n_samples):
        raise InputError(f"sample_ids must lie in [0, {es.n_samples}), got range [{ids.min()}, {ids.max()}]")

    vectors: dict[str, NDArray[Any]] = {}
    sample_index: dict[str, NDArray[np.int64]] = {}
    for name, vecs in es.vectors.items():
        items, new_index = _items_of_samples(
            np.asarray(es.sample_index[name], dtype=np.int64), es.n_samples, ids
        )
        vectors[name] = np.asarray(vecs[items])
        sample_index[name] = new_index

    return EmbeddingSet(
        vectors=vectors,
        sample_index=sample_index,
        n_samples=int(ids.size),
        labels=None if es.labels is None else np.asarray(es.labels)[ids],
        class_names=es.class_names,
        class_embeddings=es.class_embeddings,
        attributes=None
        if es.attributes is None
        else {k: np.asarray(v)[ids] for k, v in es.attributes.items()},
        attribute_embeddings=es.attribute_embeddings,
        provenance=dict(es.provenance),
    )


def _items_of_samples(
    sample_index: NDArray[np.int64], n_samples: int, ids: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Item positions of samples ``ids`` (concatenated, each in original order) and their new sample ids."""
    # Group items by sample once (stable sort keeps item order within a sample), then gather whole groups:
    # O(items + drawn items) instead of a search per drawn sample.
    order = np.argsort(sample_index, kind="stable")
    counts = np.bincount(sample_index, minlength=n_samples)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    lengths = counts[ids]
    total = int(lengths.sum())
    new_index = np.repeat(np.arange(ids.size, dtype=np.int64), lengths)
    # Position k of the output is item (starts[id] + offset within its group) of the sorted order.
    group_offsets = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    items = order[np.repeat(starts[ids], lengths) + group_offsets]
    return items, new_index


def bootstrap_intervals(
    es: EmbeddingSet,
    metrics: Sequence[str] | None,
    *,
    n: int,
    seed: int = 0,
    confidence: float = 0.95,
    sample: int | None = None,
    compute: ComputeFn | None = None,
    **compute_options: Any,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of every metric, resampling samples with replacement.

    Each of the ``n`` replicates draws ``m`` sample ids uniformly with replacement from all ``es.n_samples``
    samples (``m = min(sample, n_samples)`` when ``sample`` is given, else ``n_samples``), builds the
    replicate with :func:`resample_embedding_set` and recomputes the metrics with ``compute`` (default
    :func:`gapdiag.metrics.compute_all`). The interval of metric ``k`` is
    ``(quantile_q(θ*_k), quantile_{1-q}(θ*_k))`` with ``q = (1 - confidence) / 2`` over its finite replicate
    values (Efron & Tibshirani 1993, ch. 13). With ``sample = m``, the point estimate is one m-sample subset, so
    drawing m samples per replicate gives the spread of an m-sample estimate.

    Args:
        es: Embeddings to resample.
        metrics: Metric names or bases passed to ``compute`` (``None``: all).
        n: Number of replicates (>= 2); ``0`` returns ``{}`` (bootstrap off).
        seed: Seed of the resampling; also passed to ``compute`` so k-means seeds stay fixed across replicates.
        confidence: Coverage of the interval, in (0, 1).
        sample: Optional replicate size (see above).
        compute: ``compute_all``-like function ``(es, metrics, *, sample, seed) -> (values, extras)``.
        **compute_options: Passed on to ``compute`` (e.g. ``block_size``, ``retrieval_engine``, ``device``).

    Returns:
        Metric name -> ``(lo, hi)``. A metric with no finite replicate value is left out.

    Raises:
        InputError: If ``n`` is 1 or negative, ``confidence`` is outside (0, 1), ``sample`` < 1, or the set is empty.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> es = EmbeddingSet({"a": rng.normal(size=(50, 2))}, {"a": np.arange(50)}, 50)
        >>> mean0 = lambda e, m, **kw: ({"mean": float(e.vectors["a"][:, 0].mean())}, {})
        >>> lo, hi = bootstrap_intervals(es, None, n=200, compute=mean0)["mean"]
        >>> bool(lo < es.vectors["a"][:, 0].mean() < hi)
        True
    """
    if n == 0:
        return {}
    if n < 2:
        raise InputError(
            f"bootstrap needs at least 2 replicates, got {n}",
            hint="pass --bootstrap 0 (off) or >= 2, e.g. 200",
        )
    if not 0.0 < confidence < 1.0:
        raise InputError(f"bootstrap confidence must lie in (0, 1), got {confidence}", hint="e.g. 0.95")
    check_sample_size(sample)
    if es.n_samples < 1:
        raise InputError("cannot bootstrap an embedding set with no samples")
    if compute is None:
        compute = compute_all
    m = es.n_samples if sample is None else min(sample, es.n_samples)
    rng = np.random.default_rng(seed)
    draws: list[dict[str, float]] = []
    for _ in range(n):
        replicate = resample_embedding_set(es, rng.integers(0, es.n_samples, size=m))
        values, _extras = compute(replicate, metrics, sample=None, seed=seed, **compute_options)
        draws.append(values)
    return percentile_intervals(draws, confidence)


def percentile_intervals(
    draws: Sequence[dict[str, float]], confidence: float
) -> dict[str, tuple[float, float]]:
    """Percentile interval of each metric over replicate dicts, ignoring NaN/inf and missing values."""
    q = (1.0 - confidence) / 2.0
    names = dict.fromkeys(k for d in draws for k in d)  # ordered union
    out: dict[str, tuple[float, float]] = {}
    for name in names:
        vals = np.array([d.get(name, np.nan) for d in draws], dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        if vals.size:
            lo, hi = np.quantile(vals, [q, 1.0 - q])
            out[name] = (float(lo), float(hi))
    return out
