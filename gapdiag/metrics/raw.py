"""The raw geometry of each modality before normalisation: the distribution of the raw vectors' norms (Levi & Gilboa,
"The Double-Ellipsoid Geometry of CLIP", ICML 2025).

Every other metric reads unit vectors. These read the vectors as the cache stores them: the model's output, never
normalised (docs/cache.md). Levi & Gilboa find CLIP's raw image and text embeddings on two separate, off-centre
ellipsoid shells: each modality's norms concentrate around their mean (a thin shell), and the two shells differ.

A modality given already normalised (a precomputed set saved after L2 normalisation) has every norm 1: its norm
statistics would read 1, 0 and 0, which say nothing about the model. Those values are skipped with that reason
(:func:`already_unit_reason`) rather than shown as a finding.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gapdiag.errors import InputError
from gapdiag.metrics.blocked import DEFAULT_BLOCK_SIZE, iter_unit_blocks
from gapdiag.metrics.passes import Passes, Skip, Value
from gapdiag.metrics.validation import check_matrix

#: A modality whose every raw norm is within this of 1 was given already L2-normalised. A unit vector stored as
#: float16 keeps each coordinate to a relative 2⁻¹¹ ≈ 4.9e-4, so its norm is within 4.9e-4 of 1; doubled. No
#: model's raw output has every norm within 0.1 % of 1 by chance.
UNIT_NORM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class RawNorms:
    """One pass over a modality's raw vectors: every item's norm ``‖z_i‖`` and the raw sum ``Σ_i z_i`` (float64)."""

    norms: NDArray[np.float64]
    total: NDArray[np.float64]

    @property
    def unit(self) -> bool:
        """Every norm is 1 within :data:`UNIT_NORM_TOLERANCE`: the vectors were given already normalised."""
        return bool(np.all(np.abs(self.norms - 1.0) <= UNIT_NORM_TOLERANCE))

    @property
    def equal(self) -> bool:
        """Every norm is the same within :data:`UNIT_NORM_TOLERANCE` of the largest (unit vectors, or one sphere)."""
        return bool(self.norms.max() - self.norms.min() <= UNIT_NORM_TOLERANCE * self.norms.max())


def raw_norms_from_blocks(blocks: Iterable[NDArray[np.floating]]) -> RawNorms:
    """:class:`RawNorms` from consecutive ``(n_b, d)`` blocks of raw vectors (norms and sum in float64)."""
    norms, total = [], None
    for block in blocks:
        b = np.asarray(block, dtype=np.float64)
        norms.append(np.sqrt(np.einsum("ij,ij->i", b, b)))
        total = b.sum(0) if total is None else total + b.sum(0)
    if total is None:
        raise InputError("the raw norms need at least one vector, got none")
    return RawNorms(np.concatenate(norms), total)


def raw_norms(x: ArrayLike, *, block_size: int = DEFAULT_BLOCK_SIZE) -> RawNorms:
    """The norms and the sum of the raw vectors ``x`` (``(N, d)``, any float dtype), read block by block."""
    x = check_matrix(x, "x")
    return raw_norms_from_blocks(b for _, b in iter_unit_blocks(x, "x", block_size=block_size, normalize=False))


def norm_distribution(norms: ArrayLike) -> dict[str, float]:
    """Mean, spread and thin-shell ratio of a modality's raw norms (Levi & Gilboa, ICML 2025).

    ``mean = (1/N) Σ_i ‖z_i‖``; ``std = sqrt((1/N) Σ_i (‖z_i‖ − mean)²)`` (the population standard deviation,
    numpy's default); the **thin-shell ratio** ``std / mean``, the coefficient of variation of the norms: 0 = every
    vector on one sphere, small = a thin shell (Levi & Gilboa's finding for CLIP), near or above 1 = no shell. The
    ratio is scale-free, so two models (or modalities) of different output scales compare. Also the quartiles
    (``q25``, ``median``, ``q75``, a robust spread: IQR = ``q75 − q25``), ``min`` and ``max``, numpy's linear
    percentiles.

    Example:
        >>> norm_distribution([1.0, 3.0, 1.0, 3.0])["thin_shell_ratio"]
        0.5
    """
    v = np.asarray(norms, dtype=np.float64)
    if v.size == 0:
        raise InputError("the norm distribution needs at least one vector, got none")
    mean, std = float(v.mean()), float(v.std())
    q = np.percentile(v, [0, 25, 50, 75, 100])
    return {"mean": mean, "std": std, "thin_shell_ratio": std / mean, "min": float(q[0]), "q25": float(q[1]),
            "median": float(q[2]), "q75": float(q[3]), "max": float(q[4])}


def already_unit_reason(m: str) -> str:
    """Why a raw-geometry value of modality ``m`` is skipped when its vectors were given already normalised."""
    return (f"the {m} vectors are already L2-normalised (every norm is 1 within {UNIT_NORM_TOLERANCE:g}): the raw "
            "geometry of unit vectors is trivial and says nothing about the model; give the raw embeddings")


def raw_norms_of(p: Passes, m: str) -> RawNorms:
    """Modality ``m``'s raw norms, once; their distribution goes to ``extras["raw_norms/<m>"]`` (with ``unit``)."""

    def of_modality() -> RawNorms:
        p.say(f"raw norms: {m}")
        r = raw_norms_from_blocks(block for _, block in p.raw_blocks(m))
        p.extras[f"raw_norms/{m}"] = {**norm_distribution(r.norms), "unit": r.unit}
        return r

    return p.once(("raw_norms", m), of_modality)


def raw_norm_value(p: Passes, m: str, *, key: str) -> Value:
    """One statistic (``key``: ``mean``, ``std``, ``thin_shell_ratio``) of modality ``m``'s raw norm distribution
    (compute_all's value function); skipped, with the reason, when the vectors were given already normalised."""
    r = raw_norms_of(p, m)
    if r.unit:
        return Skip(already_unit_reason(m))
    return p.extras[f"raw_norms/{m}"][key]  # type: ignore[no-any-return]
