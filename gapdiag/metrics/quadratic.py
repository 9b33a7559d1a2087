"""Step 2 of :func:`~gapdiag.metrics.engine.compute_all`: the passes over pairs of items that the plan asks for.

On the normalised vectors of every item or of a drawn sample (``Passes.units``): one within-set pass per modality
(half the Gram matrix; ``WITHIN``) and, per modality pair, one fused cross pass (:mod:`gapdiag.metrics.cross`)
that serves the cross and joint uniformity terms (``CROSS``), exact retrieval ranks (``RANKS``) and the top-K
lists (``TOP_K``) at once; with a search engine (FAISS, torch) the ranks and lists come from an exact or
approximate search instead. On CUDA the uniformity passes run in torch (:mod:`gapdiag.metrics.torch_passes`).
The results go into :class:`~gapdiag.metrics.passes.Passes`; the metrics' values are computed from them
afterwards, by the registry's value functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gapdiag.metrics.blocked import DEFAULT_T, hits_at_k, within_pass
from gapdiag.metrics.cross import CrossPassResult, cross_pass
from gapdiag.metrics.passes import CROSS, WITHIN, Passes, Plan
from gapdiag.metrics.retrieval import approximate_recall_agreement, recall_and_topk
from gapdiag.metrics.search_index import search_backend
from gapdiag.metrics.torch_passes import cross_uniformity_torch, pass_device, within_pass_torch

#: Queries sampled to report how far an approximate engine's top-10 is from exact search.
AGREEMENT_SAMPLE = 1000


@dataclass
class QuadraticPasses:
    """Runs the quadratic passes of a plan on ``passes.units`` and stores what they measured in ``passes``.

    ``engine``: "blocked" (ranks and top-K lists fused into the cross pass) or a search engine ("faiss", "hnsw",
    "ivf"); ``threads``: CPU workers of the tiled passes (the values do not depend on it).
    """

    passes: Passes
    plan: Plan
    engine: str
    on_tile: Callable[[str, int, int], None] | None = None
    threads: int = 1
    gpu: str | None = field(init=False)

    def __post_init__(self) -> None:
        # On CUDA the uniformity passes run there in torch; ranks and top-k stay with the numpy fused pass.
        self.gpu = pass_device(self.passes.device)

    def run(self) -> None:
        p, plan = self.passes, self.plan
        if WITHIN in plan.needs:
            for m in p.names:
                p.within[m] = self.within(m)
        for (a, b), q in zip(p.pairs, p.pair_names()):
            result = self.cross(a, b)
            if result is not None:
                p.cross[q] = result
            if plan.ks or plan.top_k:
                self.retrieval(a, b, result)
        p.extras["variants"]["retrieval_engine"] = self.engine if plan.ks else None
        if plan.ks and self.engine in ("faiss", "hnsw", "ivf"):
            p.extras["variants"]["search_backend"] = search_backend(
                p.device, "flat" if self.engine == "faiss" else self.engine)

    def _ticker(self, step: str) -> Callable[[int, int], None] | None:
        on_tile = self.on_tile
        return None if on_tile is None else (lambda done, total: on_tile(step, done, total))

    def within(self, m: str) -> float:
        """``log Σ_{i<j} exp(−t‖ẑ_i − ẑ_j‖²)`` over the unit vectors of modality ``m``."""
        p = self.passes
        p.say(f"uniformity pass: {m}")
        z, tick = p.units[m], self._ticker(f"uniformity {m}")
        if self.gpu is not None:
            return within_pass_torch(z, device=self.gpu, t=DEFAULT_T, block_size=p.block_size, on_tile=tick)
        return within_pass(z, t=DEFAULT_T, block_size=p.block_size, on_tile=tick, threads=self.threads)

    def cross(self, a: str, b: str) -> CrossPassResult | None:
        """The cross pass of one modality pair, if the plan needs its uniformity terms or (fused) ranks or lists."""
        p, plan = self.passes, self.plan
        need_u = CROSS in plan.needs
        fused_ranks = bool(plan.ks) and self.engine == "blocked"
        fused_top = bool(plan.top_k) and self.engine == "blocked"
        ua, ub, tick = p.units[a], p.units[b], self._ticker(f"cross pass {a}-{b}")
        if self.gpu is not None and need_u and not fused_ranks and not fused_top:
            p.say(f"cross pass: {a}-{b} ({self.gpu})")
            return cross_uniformity_torch(ua, ub, p.sub[a], p.sub[b], device=self.gpu, t=DEFAULT_T,
                                          block_size=p.block_size, on_tile=tick)
        if need_u or fused_ranks or fused_top:
            p.say(f"cross pass: {a}-{b}")
            return cross_pass(ua, ub, p.sub[a], p.sub[b], t=DEFAULT_T, uniformity=need_u, retrieval=fused_ranks,
                              block_size=p.block_size, on_tile=tick, topk=plan.top_k if fused_top else 0,
                              threads=self.threads)
        return None

    def retrieval(self, a: str, b: str, fused: CrossPassResult | None) -> None:
        """R@K and the top-K lists in both directions, from the fused pass or from a search (FAISS/torch)."""
        p, plan = self.passes, self.plan
        for q, g, ranks, top in (
            (a, b, None if fused is None else fused.rank_ab, None if fused is None else fused.top_ab),
            (b, a, None if fused is None else fused.rank_ba, None if fused is None else fused.top_ba),
        ):
            direction = f"{q}_to_{g}"
            usable = [k for k in plan.ks if k <= p.units[g].shape[0]]  # a larger K is skipped by its metric
            recalls: dict[int, float] = {}
            if ranks is not None:
                recalls = hits_at_k(ranks, usable)
            elif usable or (plan.top_k and top is None):
                recalls, top = self.search(q, g, direction, usable)
            p.recall[direction] = recalls
            if plan.top_k and top is not None:
                p.top[direction] = top

    def search(self, q: str, g: str, direction: str, usable: list[int]) -> tuple[dict[int, float], Any]:
        """R@K and top lists of one direction with a search engine (not the fused pass)."""
        p = self.passes
        p.say(f"retrieval ({self.engine}): {direction}")
        # The top lists reuse this search, searched plan.top_k deep when R@K alone would stop earlier.
        recalls, top = recall_and_topk(
            p.units[q], p.units[g], p.sub[q], p.sub[g], usable or [1], depth=self.plan.top_k, normalize=False,
            device=p.device, engine="faiss" if self.engine == "blocked" else self.engine)
        if self.engine in ("hnsw", "ivf"):
            # How much of the exact top-10 the approximate index finds, on a seeded sample of queries.
            p.extras.setdefault("retrieval_agreement", {})[direction] = approximate_recall_agreement(
                p.units[q], p.units[g], k=min(10, p.units[g].shape[0]), index=self.engine,
                sample=AGREEMENT_SAMPLE, seed=p.seed, normalize=False, device=p.device)
        return (recalls if usable else {}), top
