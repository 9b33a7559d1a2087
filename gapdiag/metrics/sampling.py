"""Seeded draws of samples: the one place that says how many samples ``--sample`` may ask for and how they are
drawn, shared by the metric engine, the bootstrap, the api and the figures (the plotted pairs)."""

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


def seeded_samples(n_samples: int, size: int, seed: int) -> NDArray[np.int64]:
    """A seeded uniform subset of ``size`` of ``range(n_samples)``, sorted (all of them when ``size >= n_samples``).

    Sorted so that rows keep their original item order (tie rule) and memory maps are read sequentially.
    """
    if size >= n_samples:
        return np.arange(n_samples, dtype=np.int64)
    chosen = np.random.default_rng(seed).choice(n_samples, size=size, replace=False)
    return np.sort(chosen).astype(np.int64)
