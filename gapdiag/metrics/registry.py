"""The metric registry: one :class:`MetricInfo` per base metric name (what ``check`` rules and docs read).

A full metric name is ``base/qualifier`` (docs/architecture.md): the qualifier kind says what follows the
slash: a modality pair in dataset order (``image-text``), a modality (``text``), a retrieval direction
(``image_to_text``), the joint set (``joint``), or the image modality's name (``image``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Qualifier = Literal["pair", "modality", "direction", "joint", "image"]


@dataclass(frozen=True)
class MetricInfo:
    """Facts about one base metric.

    Attributes:
        name: Base name (the part before ``/``).
        higher_is_better: True / False for metrics with a direction that CI rules can use; None for
            descriptive metrics (e.g. the non-matching cosine).
        bounds: ``(low, high)``; None where unbounded on that side.
        qualifier: What the qualifier after ``/`` names (see the module docstring).
        family: Group for reports and docs ("gap", "uniformity", "rank", "retrieval", ...).
        source: Paper and section the definition follows.
        description: One line for tables and ``--help``.
        quadratic: Needs all pairs of items (sampled by ``compute_all(sample=...)``); False = one pass.
        also_joint: Per-modality metric that is also reported on the joint set (``base/joint``).
        two_models: Compares two embeddings of the same data (``compare -m A -m B``, ``check`` against a
            cached baseline); never produced by ``compute_all``.
    """

    name: str
    higher_is_better: bool | None
    bounds: tuple[float | None, float | None]
    qualifier: Qualifier
    family: str
    source: str
    description: str
    quadratic: bool
    also_joint: bool = False
    two_models: bool = False


_WI = "Wang & Isola, ICML 2020, §4.1"
_GR = "Grassucci et al. 2026, §3"
_SCH = "Schrodi et al., ICLR 2025 (Two effects, one trigger), §4"
_HUB = "Radovanović et al., JMLR 2010; Feldbauer et al. 2018 (Robin Hood index)"
_CB = "CLIP_benchmark zeroshot_retrieval.py; Radford et al., ICML 2021, §3"

REGISTRY: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo(
            "modality_gap",
            False,
            (0.0, 2.0),
            "pair",
            "gap",
            "Liang et al., NeurIPS 2022, §4.1",
            "distance between the two modality centroids of normalised embeddings",
            False,
        ),
        MetricInfo(
            "cos_tp", True, (-1.0, 1.0), "pair", "gap", _GR, "mean cosine similarity of true pairs", False
        ),
        MetricInfo(
            "cos_nonmatching",
            None,
            (-1.0, 1.0),
            "pair",
            "gap",
            _GR,
            "mean cosine similarity of pairs of different samples (baseline for cos_tp)",
            False,
        ),
        MetricInfo(
            "alignment",
            False,
            (0.0, 4.0),
            "pair",
            "gap",
            _WI,
            "mean squared distance of true pairs (= 2 - 2 cos_tp)",
            False,
        ),
        MetricInfo(
            "angular_value",
            False,
            (-1.0, 1.0),
            "modality",
            "cone",
            _GR + ".1; Liang et al. 2022, §3",
            "mean pairwise cosine within a modality (cone effect)",
            False,
        ),
        MetricInfo(
            "uniformity_wang_isola",
            False,
            (-8.0, 0.0),
            "modality",
            "uniformity",
            _WI,
            "log mean exp(-2 |u - v|^2) over unordered pairs; lower is more uniform",
            True,
            True,
        ),
        MetricInfo(
            "uniformity_cross",
            False,
            (-8.0, 0.0),
            "pair",
            "uniformity",
            "Fahim et al. 2024, §4",
            "log mean exp(-2 |x - y|^2) over cross-modal pairs of different samples",
            True,
        ),
        MetricInfo(
            "uniformity_w2",
            True,
            (None, 0.0),
            "joint",
            "uniformity",
            "Fang et al., ICLR 2024, §3",
            "minus the 2-Wasserstein distance of a Gaussian fit to the uniform sphere",
            False,
        ),
        MetricInfo(
            "effective_rank",
            True,
            (1.0, None),
            "modality",
            "rank",
            "Roy & Vetterli, EUSIPCO 2007, §2",
            "exp entropy of normalised singular values (uncentred)",
            False,
            True,
        ),
        MetricInfo(
            "rankme",
            True,
            (1.0, None),
            "modality",
            "rank",
            "Garrido et al., ICML 2023, §3 eq. 1",
            "effective rank with the RankMe epsilon 1e-7 (uncentred)",
            False,
            True,
        ),
        *(
            MetricInfo(
                f"recall_at_{k}",
                True,
                (0.0, 1.0),
                "direction",
                "retrieval",
                _CB,
                f"fraction of queries with a true item among the {k} most similar",
                True,
            )
            for k in (1, 5, 10)
        ),
        MetricInfo(
            "v_measure_class",
            True,
            (0.0, 1.0),
            "joint",
            "clustering",
            _GR + ".2",
            "V-Measure of KMeans (k = classes) on the joint set against class labels",
            True,
        ),
        MetricInfo(
            "v_measure_modality",
            False,
            (0.0, 1.0),
            "joint",
            "clustering",
            _GR + ".2",
            "V-Measure of KMeans (k = number of modalities) against modality labels; 1 = modalities separate",
            True,
        ),
        MetricInfo(
            "modality_separability",
            False,
            (0.0, 1.0),
            "joint",
            "clustering",
            "Liang et al. 2022, §4 (linear probe of the modality); Shi et al. 2023",
            "held-out accuracy of a linear classifier telling the modalities apart",
            True,
        ),
        MetricInfo(
            "zero_shot_accuracy",
            True,
            (0.0, 1.0),
            "image",
            "zeroshot",
            "Radford et al., ICML 2021, §3.1.4",
            "top-1 accuracy of the text-prompt classifier on the image modality",
            False,
        ),
        MetricInfo(
            "arithmetic_accuracy",
            True,
            (0.0, 1.0),
            "image",
            "arithmetic",
            "Fahim et al. 2024, \"It's Not a Modality Gap\" (multimodal arithmetic)",
            "accuracy of attribute swaps by embedding arithmetic",
            True,
        ),
        # Diagnostics beyond the centroid gap (docs/metrics.md, "Gap decomposition" and after).
        MetricInfo("gap_w2_squared", False, (0.0, 6.0), "pair", "decomposition", _SCH,
                   "squared 2-Wasserstein distance of Gaussian fits of the two modalities (centroid + Bures)", False),
        MetricInfo("gap_bures", False, (0.0, 2.0), "pair", "decomposition", _SCH,
                   "Bures (shape) term of the W2 split: tr(Sx + Sy - 2 (Sx^1/2 Sy Sx^1/2)^1/2)", False),
        MetricInfo("gap_centroid_share", None, (0.0, 1.0), "pair", "decomposition", _SCH,
                   "share of W2^2 carried by the centroid term |delta|^2", False),
        *(
            MetricInfo(f"gap_dims_{q}{basis}", None, (1.0, None), "pair", "decomposition", _SCH,
                       f"dimensions ({'PCA basis of the joint set' if basis else 'model basis'}) carrying "
                       f"{q} % of |delta|^2", False)
            for basis in ("", "_pca")
            for q in (50, 90)
        ),
        MetricInfo("mmd_centred", False, (None, 2.0), "pair", "decomposition", "Gretton et al., JMLR 2012, eq. 3",
                   "unbiased MMD^2 (RBF, median heuristic) of the mean-centred modalities, on a seeded sample",
                   True),
        MetricInfo("mmd_pvalue", None, (0.0, 1.0), "pair", "decomposition", "Gretton et al., JMLR 2012, §5",
                   "permutation p-value of mmd_centred (small = shapes differ)", True),
        MetricInfo("hubness_skewness", False, (None, None), "direction", "hubness", _HUB,
                   "skewness of the k-occurrence N_10 of gallery items (0 = even; large = hubs)", True),
        MetricInfo("robin_hood", False, (0.0, 1.0), "direction", "hubness", _HUB,
                   "share of top-10 slots that would move from hubs to give every gallery item the same count",
                   True),
        MetricInfo("antihub_share", False, (0.0, 1.0), "direction", "hubness", _HUB,
                   "fraction of gallery items in no query's top 10", True),
        MetricInfo("twonn_dimension", None, (0.0, None), "modality", "intrinsic",
                   "Facco et al., Sci. Rep. 2017 (TwoNN), MLE form",
                   "intrinsic dimension from 2-NN distance ratios (on at most 5000 points)", True, True),
        MetricInfo("isoscore", True, (0.0, 1.0), "modality", "intrinsic", "Rudman et al., Findings ACL 2022, Alg. 1",
                   "IsoScore: 1 = variance spread evenly over all dimensions, 0 = one direction", False, True),
        MetricInfo("linear_cka", True, (None, 1.0), "modality", "similarity",
                   "Kornblith et al., ICML 2019; Song et al., JMLR 2012 (unbiased HSIC)",
                   "debiased linear CKA between two models' embeddings of the same items", False, True, True),
        MetricInfo("linear_cka_biased", True, (0.0, 1.0), "modality", "similarity",
                   "Kornblith et al., ICML 2019, eq. 5; Gretton et al., ALT 2005 (biased HSIC)",
                   "linear CKA with the biased HSIC, as most papers report it (debiased: linear_cka)", False, True,
                   True),
        MetricInfo("mutual_knn", True, (0.0, 1.0), "modality", "similarity", "Huh et al., ICML 2024, §2",
                   "mean overlap of the 10 nearest neighbours of each item under two models", True, True, True),
    )
}
