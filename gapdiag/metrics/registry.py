"""The metric registry: one :class:`MetricInfo` per base metric name, and the engine's plan.

Each entry holds the facts ``check`` rules, reports and docs read (direction, bounds, family, source) and what
:func:`~gapdiag.metrics.engine.compute_all` needs to compute it: the passes it reads (``needs``, see
:mod:`gapdiag.metrics.passes`) and the function from their results to its value for one qualifier (``value``).
The engine plans the passes from the needs of the metrics asked for and calls ``value`` per qualifier; it names no
metric. A new metric from an existing pass is a value function in its family's module and one entry here.

A full metric name is ``base/qualifier`` (docs/architecture.md): the qualifier kind says what follows the
slash: a modality pair in dataset order (``image-text``), a modality (``text``), a retrieval direction
(``image_to_text``), the joint set (``joint``), or the image modality's name (``image``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Literal

from gapdiag.metrics.arithmetic import arithmetic_accuracy_value
from gapdiag.metrics.clustering import (
    modality_separability_value,
    raw_separability_value,
    v_measure_class_value,
    v_measure_modality_value,
)
from gapdiag.metrics.cone import angular_value_value, conformity_estimate_r_value, conformity_w1_value
from gapdiag.metrics.decomposition import MMD_PERMUTATIONS, MMD_SAMPLE, decomposition_value, mmd_value
from gapdiag.metrics.gap import alignment_value, cos_nonmatching_value, cos_tp_value, modality_gap_value
from gapdiag.metrics.hubness import HUBNESS_K, hubness_value
from gapdiag.metrics.intrinsic import TWONN_SAMPLE, isoscore_value, twonn_value
from gapdiag.metrics.passes import (
    ATTRIBUTES,
    CLASS_EMBEDDINGS,
    CROSS,
    GRAM,
    ITEMS,
    LABELS,
    PAIRED,
    QUADRATIC_NEEDS,
    RANKS,
    RAW,
    SAMPLE,
    SUMS,
    TOP_K,
    WITHIN,
    ValueFunction,
)
from gapdiag.metrics.rank import effective_rank_value, rankme_value
from gapdiag.metrics.raw import raw_norm_value
from gapdiag.metrics.retrieval import recall_value
from gapdiag.metrics.uniformity import (
    uniformity_cross_value,
    uniformity_w2_value,
    uniformity_wang_isola_value,
)
from gapdiag.metrics.zeroshot import zero_shot_accuracy_value

Qualifier = Literal["pair", "modality", "direction", "joint", "image"]


@dataclass(frozen=True)
class MetricInfo:
    """Facts about one base metric, and how :func:`~gapdiag.metrics.engine.compute_all` computes it.

    Attributes:
        name: Base name (the part before ``/``).
        higher_is_better: True / False for metrics with a direction that CI rules can use; None for
            descriptive metrics (e.g. the non-matching cosine).
        bounds: ``(low, high)``; None where unbounded on that side.
        qualifier: What the qualifier after ``/`` names (see the module docstring).
        family: Group for reports and docs ("gap", "uniformity", "rank", "retrieval", ...).
        source: Paper and section the definition follows.
        description: One line for tables and ``--help``.
        needs: The passes and data it reads (:mod:`gapdiag.metrics.passes`): the engine runs the union of the
            needs of the metrics asked for.
        value: ``value(passes, qualifier)``: its value for one qualifier, or a ``Skip`` saying why there is none;
            None for a metric ``compute_all`` does not produce (``two_models``).
        k: The K of a ``RANKS`` need (R@K) or the depth of a ``TOP_K`` need.
        also_joint: Per-modality metric that is also reported on the joint set (``base/joint``).
        two_models: Compares two embeddings of the same data (``compare -m A -m B``, ``check`` against a
            cached baseline); never produced by ``compute_all``.
        variant: ``(key, definition)`` copied into ``extras["variants"]`` when it is computed, so that two reports
            are only compared like for like (several bases may share a key).
    """

    name: str
    higher_is_better: bool | None
    bounds: tuple[float | None, float | None]
    qualifier: Qualifier
    family: str
    source: str
    description: str
    needs: frozenset[str] = frozenset()
    value: ValueFunction | None = None
    k: int = 0
    also_joint: bool = False
    two_models: bool = False
    variant: tuple[str, str] | None = None

    @property
    def quadratic(self) -> bool:
        """Needs pairs of items (a quadratic pass, on every item or on ``compute_all(sample=...)``'s draw)."""
        return bool(self.needs & QUADRATIC_NEEDS)


def _needs(*needs: str) -> frozenset[str]:
    return frozenset(needs)


_WI = "Wang & Isola, ICML 2020, §4.1"
_GR = "Grassucci et al. 2026, §3"
_SCH = "Schrodi et al., ICLR 2025 (Two effects, one trigger), §4"
_LG = "Levi & Gilboa, ICML 2025 (The Double-Ellipsoid Geometry of CLIP)"
_HUB = "Radovanović et al., JMLR 2010; Feldbauer et al. 2018 (Robin Hood index)"
_CB = "CLIP_benchmark zeroshot_retrieval.py; Radford et al., ICML 2021, §3"
_DECOMPOSITION = {"gap_w2_squared": "w2_squared", "gap_bures": "bures", "gap_centroid_share": "centroid_share",
                  **{f"gap_dims_{q}{basis}": f"dims_{q}{basis}" for basis in ("", "_pca") for q in (50, 90)}}

#: The definitions a report names in ``extras["variants"]`` (key -> definition), for the metrics that follow them.
_DEFINITIONS = {
    "modality_gap": "norm of mean(x̂) - mean(ŷ), centroids not renormalised (Liang et al. 2022)",
    "uniformity_wang_isola": "log mean exp(-2|u-v|^2) over unordered pairs, t=2 (Wang & Isola 2020)",
    "uniformity_cross": "log mean exp(-2|x-y|^2) over cross-modal pairs of different samples (Fahim et al. 2024)",
    "uniformity_w2": "-W2 of a Gaussian fit to the joint set vs N(0, I/d), eigh clipped at 0 (Fang et al. 2024)",
    "effective_rank": "Roy & Vetterli 2007 on uncentred singular values (not squared)",
    "rankme": "Garrido et al. 2023 on uncentred singular values, p + 1e-7",
    "recall_at_k": "CLIP_benchmark: hit if any true item in top k, ties toward lower gallery index",
    "mmd": f"unbiased MMD^2, RBF at the median heuristic, mean-centred modalities, <= {MMD_SAMPLE} items each, "
           f"{MMD_PERMUTATIONS} permutations",
    "twonn_dimension": "TwoNN unbiased MLE (N-1)/sum log(r2/r1) on the distinct points, exact FAISS 2-NN (float64 "
                       f"below float32 rounding), <= {TWONN_SAMPLE} points",
}


def _variant(key: str) -> tuple[str, str]:
    return key, _DEFINITIONS[key]


REGISTRY: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo("modality_gap", False, (0.0, 2.0), "pair", "gap", "Liang et al., NeurIPS 2022, §4.1",
                   "distance between the two modality centroids of normalised embeddings",
                   _needs(SUMS), modality_gap_value,
                   variant=_variant("modality_gap")),
        MetricInfo("cos_tp", True, (-1.0, 1.0), "pair", "gap", _GR, "mean cosine similarity of true pairs",
                   _needs(PAIRED), cos_tp_value),
        MetricInfo("cos_nonmatching", None, (-1.0, 1.0), "pair", "gap", _GR,
                   "mean cosine similarity of pairs of different samples (baseline for cos_tp)",
                   _needs(SUMS, PAIRED), cos_nonmatching_value),
        MetricInfo("alignment", False, (0.0, 4.0), "pair", "gap", _WI,
                   "mean squared distance of true pairs (= 2 - 2 cos_tp)", _needs(PAIRED), alignment_value),
        MetricInfo("angular_value", False, (-1.0, 1.0), "modality", "cone", _GR + ".1; Liang et al. 2022, §3",
                   "mean pairwise cosine within a modality (cone effect)", _needs(SUMS), angular_value_value),
        MetricInfo("conformity_w1", False, (0.0, 2.0), "pair", "cone", _LG,
                   "W1 distance between the modalities' conformity distributions (item's mean cosine to its modality)",
                   _needs(SUMS, ITEMS), conformity_w1_value),
        MetricInfo("conformity_estimate_r", None, (-1.0, 1.0), "modality", "cone", _LG,
                   "Pearson r of each item's exact conformity with its estimate, the cosine to the raw modality mean",
                   _needs(SUMS, ITEMS, RAW), conformity_estimate_r_value),
        # The raw vectors before normalisation (docs/metrics.md, "The raw geometry").
        MetricInfo("raw_norm_mean", None, (0.0, None), "modality", "raw", _LG,
                   "mean L2 norm of the raw (not normalised) vectors", _needs(RAW),
                   partial(raw_norm_value, key="mean")),
        MetricInfo("raw_norm_std", None, (0.0, None), "modality", "raw", _LG,
                   "standard deviation (population) of the raw vectors' L2 norms", _needs(RAW),
                   partial(raw_norm_value, key="std")),
        MetricInfo("thin_shell_ratio", None, (0.0, None), "modality", "raw", _LG,
                   "std / mean of the raw norms: 0 = one sphere, small = a thin shell", _needs(RAW),
                   partial(raw_norm_value, key="thin_shell_ratio")),
        MetricInfo("raw_separability", False, (0.0, 1.0), "joint", "raw",
                   _LG + "; Liang et al. 2022, §4 (linear probe of the modality)",
                   "held-out accuracy of a linear classifier telling the raw (not normalised) modalities apart",
                   _needs(SAMPLE, RAW), raw_separability_value),
        MetricInfo("uniformity_wang_isola", False, (-8.0, 0.0), "modality", "uniformity", _WI,
                   "log mean exp(-2 |u - v|^2) over unordered pairs; lower is more uniform",
                   _needs(SAMPLE, WITHIN, CROSS), uniformity_wang_isola_value, also_joint=True,
                   variant=_variant("uniformity_wang_isola")),
        MetricInfo("uniformity_cross", False, (-8.0, 0.0), "pair", "uniformity", "Fahim et al. 2024, §4",
                   "log mean exp(-2 |x - y|^2) over cross-modal pairs of different samples",
                   _needs(SAMPLE, CROSS), uniformity_cross_value,
                   variant=_variant("uniformity_cross")),
        MetricInfo("uniformity_w2", True, (None, 0.0), "joint", "uniformity", "Fang et al., ICLR 2024, §3",
                   "minus the 2-Wasserstein distance of a Gaussian fit to the uniform sphere",
                   _needs(GRAM), uniformity_w2_value,
                   variant=_variant("uniformity_w2")),
        MetricInfo("effective_rank", True, (1.0, None), "modality", "rank", "Roy & Vetterli, EUSIPCO 2007, §2",
                   "exp entropy of normalised singular values (uncentred)", _needs(GRAM), effective_rank_value,
                   also_joint=True,
                   variant=_variant("effective_rank")),
        MetricInfo("rankme", True, (1.0, None), "modality", "rank", "Garrido et al., ICML 2023, §3 eq. 1",
                   "effective rank with the RankMe epsilon 1e-7 (uncentred)", _needs(GRAM), rankme_value,
                   also_joint=True,
                   variant=_variant("rankme")),
        *(
            MetricInfo(f"recall_at_{k}", True, (0.0, 1.0), "direction", "retrieval", _CB,
                       f"fraction of queries with a true item among the {k} most similar",
                       _needs(SAMPLE, RANKS), partial(recall_value, k=k), k=k,
                       variant=_variant("recall_at_k"))
            for k in (1, 5, 10)
        ),
        MetricInfo("v_measure_class", True, (0.0, 1.0), "joint", "clustering", _GR + ".2",
                   "V-Measure of KMeans (k = classes) on the joint set against class labels",
                   _needs(SAMPLE, LABELS), v_measure_class_value),
        MetricInfo("v_measure_modality", False, (0.0, 1.0), "joint", "clustering", _GR + ".2",
                   "V-Measure of KMeans (k = number of modalities) against modality labels; 1 = modalities separate",
                   _needs(SAMPLE), v_measure_modality_value),
        MetricInfo("modality_separability", False, (0.0, 1.0), "joint", "clustering",
                   "Liang et al. 2022, §4 (linear probe of the modality); Shi et al. 2023",
                   "held-out accuracy of a linear classifier telling the modalities apart",
                   _needs(SAMPLE), modality_separability_value),
        MetricInfo("zero_shot_accuracy", True, (0.0, 1.0), "image", "zeroshot", "Radford et al., ICML 2021, §3.1.4",
                   "top-1 accuracy of the text-prompt classifier on the image modality",
                   _needs(ITEMS, CLASS_EMBEDDINGS, LABELS), zero_shot_accuracy_value),
        MetricInfo("arithmetic_accuracy", True, (0.0, 1.0), "image", "arithmetic",
                   "Fahim et al. 2024, \"It's Not a Modality Gap\" (multimodal arithmetic)",
                   "accuracy of attribute swaps by embedding arithmetic",
                   _needs(SAMPLE, ATTRIBUTES), arithmetic_accuracy_value),
        # Diagnostics beyond the centroid gap (docs/metrics.md, "Gap decomposition" and after).
        MetricInfo("gap_w2_squared", False, (0.0, 6.0), "pair", "decomposition", _SCH,
                   "squared 2-Wasserstein distance of Gaussian fits of the two modalities (centroid + Bures)",
                   _needs(GRAM), partial(decomposition_value, key=_DECOMPOSITION["gap_w2_squared"])),
        MetricInfo("gap_bures", False, (0.0, 2.0), "pair", "decomposition", _SCH,
                   "Bures (shape) term of the W2 split: tr(Sx + Sy - 2 (Sx^1/2 Sy Sx^1/2)^1/2)",
                   _needs(GRAM), partial(decomposition_value, key=_DECOMPOSITION["gap_bures"])),
        MetricInfo("gap_centroid_share", None, (0.0, 1.0), "pair", "decomposition", _SCH,
                   "share of W2^2 carried by the centroid term |delta|^2",
                   _needs(GRAM), partial(decomposition_value, key=_DECOMPOSITION["gap_centroid_share"])),
        *(
            MetricInfo(f"gap_dims_{q}{basis}", None, (1.0, None), "pair", "decomposition", _SCH,
                       f"dimensions ({'PCA basis of the joint set' if basis else 'model basis'}) carrying "
                       f"{q} % of |delta|^2",
                       _needs(GRAM), partial(decomposition_value, key=_DECOMPOSITION[f"gap_dims_{q}{basis}"]))
            for basis in ("", "_pca")
            for q in (50, 90)
        ),
        MetricInfo("mmd_centred", False, (None, 2.0), "pair", "decomposition", "Gretton et al., JMLR 2012, eq. 3",
                   "unbiased MMD^2 (RBF, median heuristic) of the mean-centred modalities, on a seeded sample",
                   _needs(SAMPLE), partial(mmd_value, part=0), variant=_variant("mmd")),
        MetricInfo("mmd_pvalue", None, (0.0, 1.0), "pair", "decomposition", "Gretton et al., JMLR 2012, §5",
                   "permutation p-value of mmd_centred (small = shapes differ)",
                   _needs(SAMPLE), partial(mmd_value, part=1), variant=_variant("mmd")),
        MetricInfo("hubness_skewness", False, (None, None), "direction", "hubness", _HUB,
                   "skewness of the k-occurrence N_10 of gallery items (0 = even; large = hubs)",
                   _needs(SAMPLE, TOP_K), partial(hubness_value, key="skewness"), k=HUBNESS_K),
        MetricInfo("robin_hood", False, (0.0, 1.0), "direction", "hubness", _HUB,
                   "share of top-10 slots that would move from hubs to give every gallery item the same count",
                   _needs(SAMPLE, TOP_K), partial(hubness_value, key="robin_hood"), k=HUBNESS_K),
        MetricInfo("antihub_share", False, (0.0, 1.0), "direction", "hubness", _HUB,
                   "fraction of gallery items in no query's top 10",
                   _needs(SAMPLE, TOP_K), partial(hubness_value, key="antihub_share"), k=HUBNESS_K),
        MetricInfo("twonn_dimension", None, (0.0, None), "modality", "intrinsic",
                   "Facco et al., Sci. Rep. 2017 (TwoNN), MLE form",
                   "intrinsic dimension from 2-NN distance ratios (on at most 5000 points)",
                   _needs(SAMPLE), twonn_value, also_joint=True,
                   variant=_variant("twonn_dimension")),
        MetricInfo("isoscore", True, (0.0, 1.0), "modality", "intrinsic", "Rudman et al., Findings ACL 2022, Alg. 1",
                   "IsoScore: 1 = variance spread evenly over all dimensions, 0 = one direction",
                   _needs(GRAM), isoscore_value, also_joint=True),
        # Two models of the same data: computed by gapdiag.metrics.similarity.compare_embeddings, not compute_all.
        MetricInfo("linear_cka", True, (None, 1.0), "modality", "similarity",
                   "Kornblith et al., ICML 2019; Song et al., JMLR 2012 (unbiased HSIC)",
                   "debiased linear CKA between two models' embeddings of the same items",
                   also_joint=True, two_models=True),
        MetricInfo("linear_cka_biased", True, (0.0, 1.0), "modality", "similarity",
                   "Kornblith et al., ICML 2019, eq. 5; Gretton et al., ALT 2005 (biased HSIC)",
                   "linear CKA with the biased HSIC, as most papers report it (debiased: linear_cka)",
                   also_joint=True, two_models=True),
        MetricInfo("mutual_knn", True, (0.0, 1.0), "modality", "similarity", "Huh et al., ICML 2024, §2",
                   "mean overlap of the 10 nearest neighbours of each item under two models",
                   _needs(TOP_K), k=10, also_joint=True, two_models=True),  # k: similarity.KNN_K
    )
}
