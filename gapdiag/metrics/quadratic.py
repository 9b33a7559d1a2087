"""Step 2 of :func:`~gapdiag.metrics.engine.compute_all`: the metrics that look at pairs of items.

Uniformity (within each modality, across modalities, joint), retrieval R@K and hubness, clustering and the
sampled diagnostics, on the normalised vectors of every item or of a drawn sample. The pair passes are the
expensive part: one within-set pass per modality (half the Gram matrix) and one fused cross pass per modality
pair (:mod:`gapdiag.metrics.cross`) that serves cross/joint uniformity, exact ranks and the hubness top-K at
once. On CUDA the uniformity passes run in torch (:mod:`gapdiag.metrics.torch_passes`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gapdiag.metrics.arithmetic import arithmetic_accuracy
from gapdiag.metrics.blocked import DEFAULT_T, hits_at_k, log_mean_exp, within_pass
from gapdiag.metrics.clustering import (
    modality_separability,
    separability_from_accuracy,
    v_measure_class,
    v_measure_modality,
)
from gapdiag.metrics.cross import CrossPassResult, cross_pass
from gapdiag.metrics.diagnostics import HUBNESS, MMD, hubness_diagnostics, sampled_diagnostics
from gapdiag.metrics.hubness import HUBNESS_K
from gapdiag.metrics.retrieval import approximate_recall_agreement, recall_and_topk
from gapdiag.metrics.search_index import search_backend
from gapdiag.metrics.torch_passes import cross_uniformity_torch, pass_device, within_pass_torch
from gapdiag.metrics.uniformity import joint_uniformity
from gapdiag.vectors import EmbeddingSet

#: Queries sampled to report how far an approximate engine's top-10 is from exact search.
AGREEMENT_SAMPLE = 1000
RECALL_KS = {"recall_at_1": 1, "recall_at_5": 5, "recall_at_10": 10}


@dataclass
class QuadraticStep:
    """The inputs shared by every quadratic metric, and where their results go.

    ``units``/``sub``: per modality the unit vectors and sample ids of the items in play (all, or those of the
    drawn samples); ``rows``: per modality the drawn item rows (None = all), so that hubs name real items.
    """

    bases: set[str]
    es: EmbeddingSet
    names: list[str]
    pairs: list[tuple[str, str]]
    image: str
    units: dict[str, NDArray[np.float32]]
    sub: dict[str, NDArray[np.int64]]
    rows: dict[str, NDArray[np.intp] | None]
    values: dict[str, float]
    extras: dict[str, Any]
    block_size: int
    seed: int
    engine: str
    device: str
    say: Callable[[str], None]
    on_tile: Callable[[str, int, int], None] | None = None
    threads: int = 1
    ks: list[int] = field(init=False)
    gpu: str | None = field(init=False)
    hub_bases: set[str] = field(init=False)

    def __post_init__(self) -> None:
        self.ks = sorted(RECALL_KS[b] for b in self.bases if b in RECALL_KS)
        # On CUDA the uniformity passes run there in torch; ranks and top-k stay with the numpy fused pass.
        self.gpu = pass_device(self.device)
        self.hub_bases = self.bases & set(HUBNESS)

    def run(self) -> None:
        within = self.within_uniformity() if "uniformity_wang_isola" in self.bases else {}
        cross = {(a, b): self.cross(a, b) for a, b in self.pairs}
        if within:
            self.values["uniformity_wang_isola/joint"] = joint_uniformity(
                [within[m] for m in self.names],
                [self.units[m].shape[0] for m in self.names],
                [r.lse_all for r in cross.values() if r is not None],
            )
        self.extras["variants"]["retrieval_engine"] = self.engine if self.ks else None
        if self.ks and self.engine in ("faiss", "hnsw", "ivf"):
            self.extras["variants"]["search_backend"] = search_backend(
                self.device, "flat" if self.engine == "faiss" else self.engine)
        self.clustering()
        if self.bases & (MMD | {"twonn_dimension"}):
            self.say("diagnostics: MMD test, TwoNN")
        sampled_diagnostics(self.bases, self.names, self.pairs, self.units, self.values, self.extras, self.seed)

    def _ticker(self, step: str) -> Callable[[int, int], None] | None:
        on_tile = self.on_tile
        return None if on_tile is None else (lambda done, total: on_tile(step, done, total))

    def within_uniformity(self) -> dict[str, float]:
        """Per modality ``log Σ_{i<j} exp(−t‖ẑ_i − ẑ_j‖²)``, and its Wang & Isola uniformity."""
        within = {}
        for m in self.names:
            self.say(f"uniformity pass: {m}")
            z, tick = self.units[m], self._ticker(f"uniformity {m}")
            if self.gpu is not None:
                within[m] = within_pass_torch(z, device=self.gpu, t=DEFAULT_T, block_size=self.block_size,
                                              on_tile=tick)
            else:
                within[m] = within_pass(z, t=DEFAULT_T, block_size=self.block_size, on_tile=tick,
                                        threads=self.threads)
            n = z.shape[0]
            self.put(f"uniformity_wang_isola/{m}", log_mean_exp(within[m], n * (n - 1) // 2))
        return within

    def cross(self, a: str, b: str) -> CrossPassResult | None:
        """The cross pass of one modality pair (if a metric needs it), then its uniformity, R@K and hubness."""
        need_u = bool(self.bases & {"uniformity_wang_isola", "uniformity_cross"})
        fused_ranks = bool(self.ks) and self.engine == "blocked"
        fused_top = bool(self.hub_bases) and self.engine == "blocked"
        res = None
        ua, ub, tick = self.units[a], self.units[b], self._ticker(f"cross pass {a}-{b}")
        if self.gpu is not None and need_u and not fused_ranks and not fused_top:
            self.say(f"cross pass: {a}-{b} ({self.gpu})")
            res = cross_uniformity_torch(ua, ub, self.sub[a], self.sub[b], device=self.gpu, t=DEFAULT_T,
                                         block_size=self.block_size, on_tile=tick)
        elif need_u or fused_ranks or fused_top:
            self.say(f"cross pass: {a}-{b}")
            res = cross_pass(ua, ub, self.sub[a], self.sub[b], t=DEFAULT_T, uniformity=need_u,
                             retrieval=fused_ranks, block_size=self.block_size, on_tile=tick,
                             topk=HUBNESS_K if fused_top else 0, threads=self.threads)
        if "uniformity_cross" in self.bases and res is not None:
            self.put(f"uniformity_cross/{a}-{b}", log_mean_exp(res.lse_nonmatching, res.n_nonmatching))
        if self.ks or self.hub_bases:
            self.retrieval(a, b, res)
        return res

    def retrieval(self, a: str, b: str, fused: CrossPassResult | None) -> None:
        """R@K and hubness in both directions, from the fused pass or from a search (FAISS/torch)."""
        for q, g, ranks, top in (
            (a, b, None if fused is None else fused.rank_ab, None if fused is None else fused.top_ab),
            (b, a, None if fused is None else fused.rank_ba, None if fused is None else fused.top_ba),
        ):
            direction = f"{q}_to_{g}"
            n_gallery = self.units[g].shape[0]
            usable = [k for k in self.ks if k <= n_gallery]
            for k in sorted(set(self.ks) - set(usable)):
                self.extras["skipped"][f"recall_at_{k}/{direction}"] = f"K={k} exceeds the gallery ({n_gallery} items)"
            recalls: dict[int, float] = {}
            if ranks is not None:
                recalls = hits_at_k(ranks, usable)
            elif usable or (self.hub_bases and top is None):
                recalls, top = self.search(q, g, direction, usable)
            for k, r in recalls.items():
                self.values[f"recall_at_{k}/{direction}"] = r
            if self.hub_bases and top is not None:
                hubness_diagnostics(self.hub_bases, direction, top, n_gallery, self.rows.get(g), self.values,
                                    self.extras)

    def search(self, q: str, g: str, direction: str, usable: list[int]) -> tuple[dict[int, float], Any]:
        """R@K and top lists of one direction with a search engine (not the fused pass)."""
        self.say(f"retrieval ({self.engine}): {direction}")
        # Hubness reuses this search's top lists, searched HUBNESS_K deep when R@K alone would stop earlier.
        recalls, top = recall_and_topk(
            self.units[q], self.units[g], self.sub[q], self.sub[g], usable or [1],
            depth=HUBNESS_K if self.hub_bases else 0, normalize=False, device=self.device,
            engine="faiss" if self.engine == "blocked" else self.engine)
        if self.engine in ("hnsw", "ivf"):
            # How much of the exact top-10 the approximate index finds, on a seeded sample of queries.
            self.extras.setdefault("retrieval_agreement", {})[direction] = approximate_recall_agreement(
                self.units[q], self.units[g], k=min(10, self.units[g].shape[0]), index=self.engine,
                sample=AGREEMENT_SAMPLE, seed=self.seed, normalize=False, device=self.device)
        return (recalls if usable else {}), top

    def clustering(self) -> None:
        """Class and modality V-Measure, modality separability and multimodal arithmetic."""
        bases, es, names, units, sub = self.bases, self.es, self.names, self.units, self.sub
        mats = [units[m] for m in names]
        if "v_measure_class" in bases:
            in_subset = np.concatenate(list(sub.values()))
            n_classes = 0 if es.labels is None else len(np.unique(np.asarray(es.labels)[in_subset]))
            if es.labels is None:
                self.extras["skipped"]["v_measure_class/joint"] = "needs class labels"
            elif n_classes < 2:
                # one class: V-Measure is 1.0 by definition and says nothing about the embedding space
                self.extras["skipped"]["v_measure_class/joint"] = f"needs at least 2 classes (the data has {n_classes})"
            else:
                self.say("clustering: class V-Measure")
                labels = np.asarray(es.labels)
                self.values["v_measure_class/joint"] = v_measure_class(mats, [labels[sub[m]] for m in names],
                                                                       seed=self.seed, normalized=True)
        if "v_measure_modality" in bases:
            self.say("clustering: modality V-Measure")
            self.values["v_measure_modality/joint"] = v_measure_modality(mats, seed=self.seed, normalized=True)
        if "modality_separability" in bases:
            self.say("modality separability")
            accuracy = modality_separability(mats, seed=self.seed, normalized=True, at_least_chance=False)
            chance = 1.0 / len(mats)
            self.values["modality_separability/joint"] = separability_from_accuracy(accuracy, len(mats))
            if accuracy < chance:
                self.extras.setdefault("notes", []).append(
                    f"modality_separability/joint: the held-out accuracy {accuracy:.4g} is below chance "
                    f"({chance:.4g}), shown as chance: a linear classifier finds no modality signal (with a closed "
                    "gap each test item's near-twin was learnt with the other label)")
        if "arithmetic_accuracy" in bases:
            image = self.image
            if not es.attributes or not es.attribute_embeddings:
                self.extras["skipped"][f"arithmetic_accuracy/{image}"] = "needs attributes and attribute_embeddings"
            else:
                self.say("multimodal arithmetic")
                attrs = {k: np.asarray(v)[sub[image]] for k, v in es.attributes.items()}
                self.values[f"arithmetic_accuracy/{image}"] = arithmetic_accuracy(
                    units[image], attrs, es.attribute_embeddings, seed=self.seed)

    def put(self, name: str, value: float) -> None:
        """Store a value, or record it as skipped when there were no pairs to average (a NaN is never reported)."""
        if np.isnan(value):
            self.extras["skipped"][name] = "no pairs to average over (too few items)"
        else:
            self.values[name] = value
