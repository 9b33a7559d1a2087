"""Seeded draws of samples: the one place that says how many samples ``--sample`` may ask for and how they are
drawn, shared by the metric engine, the bootstrap, the api and the figures (the plotted pairs).

Every "sorted choice without replacement" of the metrics goes through :func:`sorted_choice` (a generator the
caller owns, for callers that draw several times from one generator) or :func:`seeded_samples` (a fresh
generator from a seed): the MMD test's items, TwoNN's points, the k-means fit sample, the separability split,
the arithmetic queries, the approximate-search agreement queries and ``--sample`` itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from gapdiag.errors import InputError

#: The fewest samples a sampled measurement may use: the pairwise metrics (uniformity, non-matching cosine,
#: retrieval) need two samples to compare.
MIN_SAMPLE = 2


def check_sample_size(sample: Any) -> None:
    """Raise a one-line :class:`InputError` unless ``sample`` is ``None`` (exact) or an integer >= ``MIN_SAMPLE``.

    The only check of ``--sample`` / ``sample=``: the CLI, :func:`gapdiag.api.measure`, the engine and the
    bootstrap all call it, so they accept and refuse the same values with the same message.
    """
    if sample is None:
        return
    if isinstance(sample, bool) or not isinstance(sample, (int, np.integer)) or sample < MIN_SAMPLE:
        raise InputError(f"sample must be an integer >= {MIN_SAMPLE} (number of samples drawn), got {sample!r}",
                         hint=f"pass --sample {MIN_SAMPLE} or more, or leave it out to measure every sample")


def sorted_choice(rng: np.random.Generator, n: int, size: int) -> NDArray[np.int64]:
    """``min(size, n)`` distinct values of ``range(n)`` drawn uniformly by ``rng``, sorted.

    ``np.sort(rng.choice(n, min(size, n), replace=False))``. It draws even when it keeps every value, so a
    generator shared by several draws (the MMD test's two samples and its permutations, arithmetic's queries and
    their edits) advances the same way whatever the sizes: the streams, and so the values, stay those of before.
    Sorted so that rows keep their original item order (tie rule) and memory maps are read sequentially.
    """
    return np.sort(rng.choice(n, size=min(size, n), replace=False)).astype(np.int64, copy=False)


def seeded_samples(n_samples: int, size: int, seed: int) -> NDArray[np.int64]:
    """A seeded uniform subset of ``size`` of ``range(n_samples)``, sorted (all of them when ``size >= n_samples``).

    :func:`sorted_choice` with a fresh generator of ``seed``; nothing is drawn when every value is kept.
    """
    if size >= n_samples:
        return np.arange(n_samples, dtype=np.int64)
    return sorted_choice(np.random.default_rng(seed), n_samples, size)


def priority_keys(ids: NDArray[np.integer[Any]], seed: int) -> NDArray[np.uint64]:
    """One seeded uniform 64-bit key per sample id, a pure function of ``(seed, id)``.

    The streamed draw of :class:`gapdiag.training.monitor.Monitor` keeps the samples with the ``k`` lowest keys
    (bottom-k sampling, Cohen & Kaplan, PODC 2007): a uniform subset of size ``k`` without replacement whatever the
    order, the batches or the number of processes the samples arrive in, and two such subsets merge by keeping the
    ``k`` lowest keys of their union. The key is SplitMix64 (Steele et al., OOPSLA 2014) of the id offset by a
    salt from ``seed``'s :class:`numpy.random.SeedSequence`.
    """
    salt = np.random.SeedSequence(seed).generate_state(1, dtype=np.uint64)[0]
    z = np.asarray(ids).astype(np.uint64) + salt  # uint64 arithmetic wraps around, as SplitMix64 wants
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))
