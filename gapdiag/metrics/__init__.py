"""Metrics of an embedding space: pure functions of arrays, the registry, and :func:`compute_all`.

Every metric function takes raw embeddings (L2-normalised inside, block by block); definitions and sources
are in docs/metrics.md and in each function's docstring. Names of results are ``base/qualifier`` with the
base a key of :data:`REGISTRY`, whose entries also say which passes each metric needs and how their results
become its value: :func:`compute_all` plans the passes from them (docs/metrics.md, "How the engine plans passes").
"""

from __future__ import annotations

from gapdiag.metrics.arithmetic import arithmetic_accuracy
from gapdiag.metrics.clustering import modality_separability, v_measure_class, v_measure_modality
from gapdiag.metrics.cone import angular_value
from gapdiag.metrics.engine import compute_all
from gapdiag.metrics.gap import alignment, cos_nonmatching, cos_tp, gap_vector, modality_gap
from gapdiag.metrics.rank import effective_rank, rankme, singular_values
from gapdiag.metrics.registry import REGISTRY, MetricInfo
from gapdiag.metrics.retrieval import recall_at_k
from gapdiag.metrics.uniformity import uniformity_cross, uniformity_w2, uniformity_wang_isola
from gapdiag.metrics.zeroshot import zero_shot_accuracy

__all__ = [
    "REGISTRY",
    "MetricInfo",
    "alignment",
    "angular_value",
    "arithmetic_accuracy",
    "compute_all",
    "cos_nonmatching",
    "cos_tp",
    "effective_rank",
    "gap_vector",
    "modality_gap",
    "modality_separability",
    "rankme",
    "recall_at_k",
    "singular_values",
    "uniformity_cross",
    "uniformity_w2",
    "uniformity_wang_isola",
    "v_measure_class",
    "v_measure_modality",
    "zero_shot_accuracy",
]
