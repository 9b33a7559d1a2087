"""Float32 rounding of the scores of unit vectors: the one tolerance every decision on exact scores uses.

A float32 dot product of two unit vectors in ``d`` dimensions is within ``d·2⁻²⁴`` of the exact one (the
summation error bound of ``d`` products and sums, each within one unit roundoff ``2⁻²⁴``); gapdiag doubles it
for safety: :func:`score_tolerance`. Every other tolerance is a multiple of it, stated where it is used:

* the cross pass's near-tie band around a query's best true score (``gapdiag/metrics/cross.py``): 1×;
* the exact search's widening window (``gapdiag/metrics/retrieval.py``): 2×, scaled by the vectors' norms, since
  both the K-th score and an unseen item's may be off;
* TwoNN's near-duplicate distance (``gapdiag/metrics/intrinsic.py``): ``‖x − y‖² = ‖x‖² + ‖y‖² − 2x·y`` adds
  three score-sized errors (``4·d·2⁻²⁴``), doubled: 4×;
* the slack of the registry bounds (:func:`rounding_slack`, ``gapdiag/metrics/bounds.py``): the uniformities
  multiply a score error by ``2t = 4``, the angular value by at most 2: 4×.

:data:`NO_VARIANCE` is the other rounding rule: below it a spread streamed from sums is rounding.
"""

from __future__ import annotations

#: Unit roundoff of float32.
FLOAT32_ROUNDOFF = 2.0**-24

#: A spread streamed from sums (``Σx̂x̂ᵀ/N − μμᵀ``) at most this share of the second moment ``tr(Σx̂x̂ᵀ)/N`` is no
#: variance: one vector repeated leaves ~5e-15 of float64 rounding there, on which IsoScore read 0.0057 and CKA
#: ~1e-19; 1e-12 is a spread of ~1e-6 along a direction, far below any real embedding's.
NO_VARIANCE = 1e-12


def score_tolerance(d: int) -> float:
    """Bound on ``|float32 score − exact score|`` of two unit vectors in ``d`` dimensions, doubled: ``2·d·2⁻²⁴``."""
    return 2.0 * d * FLOAT32_ROUNDOFF


def rounding_slack(d: int) -> float:
    """How far float32 rounding can carry a metric of unit vectors in ``d`` dimensions past a bound: ``8·d·2⁻²⁴``.

    A float32 score is within :func:`score_tolerance` of the exact one; the uniformities multiply a score error by
    ``2t = 4`` (``log mean exp(2t(s − 1))``), the angular value by at most 2 (``(‖Σx̂‖² − N)/(N(N − 1))``):
    four score tolerances cover both.
    """
    return 4.0 * score_tolerance(d)
