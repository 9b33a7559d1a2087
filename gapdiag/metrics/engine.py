"""``compute_all``: every registered metric of an :class:`~gapdiag.embeddings.EmbeddingSet` in few passes.

Plan of the computation (each vector is read once per pass, no ``N × N`` matrix is ever held):

1. One linear pass per modality (:func:`~gapdiag.metrics.blocked.linear_stats`): sums and Gram matrices give
   the gap, angular value, effective rank, RankMe and −W₂; one paired pass gives Cos_TP, alignment and the
   non-matching cosine. These always use every item. When the quadratic step takes every item too, the linear
   pass keeps the unit vectors it makes (the paired pass and step 2 use them: the raw vectors are read once).
2. The quadratic metrics run on all items, or on the items of ``sample`` drawn samples: per modality one
   within-set pass over upper-triangle tiles (uniformity), per modality pair one fused cross pass
   (cross-modal and joint uniformity plus exact retrieval ranks in both directions), then clustering,
   separability and multimodal arithmetic on the same subset.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gapdiag.errors import InputError
from gapdiag.metrics._validation import check_matrix, check_same_dim, check_sample_index, true_pair_items
from gapdiag.metrics.blocked import (
    DEFAULT_BLOCK_SIZE,
    LinearStats,
    iter_unit_blocks,
    linear_stats,
    paired_dot_sum,
    unit_rows,
)
from gapdiag.metrics.bounds import keep_in_bounds
from gapdiag.metrics.cone import angular_value_from_stats
from gapdiag.metrics.diagnostics import (
    linear_diagnostics,
    needs_gram,
)
from gapdiag.metrics.gap import (
    alignment_from_cos_tp,
    cos_nonmatching_from_sums,
    cos_tp_from_sum,
    gap_vector_from_stats,
    modality_gap_from_vector,
)
from gapdiag.metrics.quadratic import RECALL_KS, QuadraticStep
from gapdiag.metrics.rank import (
    effective_rank_from_singular_values,
    rankme_from_singular_values,
    singular_values_from_stats,
)
from gapdiag.metrics.registry import REGISTRY
from gapdiag.metrics.sampling import check_sample_size, seeded_samples
from gapdiag.metrics.search_index import gpu_search_available
from gapdiag.metrics.tile_workers import resolve_threads
from gapdiag.metrics.uniformity import w2_from_stats
from gapdiag.metrics.zeroshot import zero_shot_accuracy
from gapdiag.vectors import EmbeddingSet

RETRIEVAL_ENGINES = ("auto", "faiss", "blocked", "hnsw", "ivf")

# Names of the definitions used, copied into reports so that two reports are only compared like for like.
VARIANTS: dict[str, str] = {
    "modality_gap": "norm of mean(x̂) - mean(ŷ), centroids not renormalised (Liang et al. 2022)",
    "uniformity_wang_isola": "log mean exp(-2|u-v|^2) over unordered pairs, t=2 (Wang & Isola 2020)",
    "uniformity_cross": "log mean exp(-2|x-y|^2) over cross-modal pairs of different samples (Fahim et al. 2024)",
    "uniformity_w2": "-W2 of a Gaussian fit to the joint set vs N(0, I/d), eigh clipped at 0 (Fang et al. 2024)",
    "effective_rank": "Roy & Vetterli 2007 on uncentred singular values (not squared)",
    "rankme": "Garrido et al. 2023 on uncentred singular values, p + 1e-7",
    "recall_at_k": "CLIP_benchmark: hit if any true item in top k, ties toward lower gallery index",
}


# Over 80 lines only by its docstring (the public entry point documents every argument); ~60 lines of code.
def compute_all(
    es: EmbeddingSet,
    metrics: Sequence[str] | None = None,
    *,
    sample: int | None = None,
    seed: int = 0,
    block_size: int = DEFAULT_BLOCK_SIZE,
    retrieval_engine: str = "auto",
    device: str = "auto",
    progress: Callable[[str], None] | None = None,
    on_tile: Callable[[str, int, int], None] | None = None,
    threads: int | None = None,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Compute the selected metrics of an embedding set (all registered ones by default).

    Pair metrics run on every unordered modality pair (named ``a-b`` in dataset order), retrieval in both
    directions, per-modality metrics per modality and, where defined, on the joint set. Class metrics need
    ``es.labels`` (skipped otherwise), zero-shot accuracy ``es.class_embeddings``, arithmetic accuracy
    ``es.attributes`` and ``es.attribute_embeddings``. The image modality is the one named ``image``, else
    the first one.

    Args:
        es: Raw embeddings (float32/float16, possibly memory-mapped) with their sample alignment.
        metrics: Base names (``"cos_tp"``) and/or full names (``"cos_tp/image-text"``); None = all.
        sample: Draw this many samples (seeded, without replacement; every item of a drawn sample is kept)
            for the quadratic metrics (uniformity, retrieval, clustering, separability, arithmetic). The
            linear metrics always use every item. None = exact on all items.
        seed: Seed of the sample draw and of clustering / separability / arithmetic.
        block_size: Rows per block and tile side (memory O(N·d + threads·block²)).
        retrieval_engine: "blocked" (fused exact pass), "faiss" (exact ``IndexFlatIP``) or "auto" (FAISS
            when a GPU is usable, the fused pass on CPU). Both rank by exact scores with the same tie rule.
        device: "auto", "cpu", "cuda" or "cuda:N" (FAISS and zero-shot search).
        progress: Called with a short message before each step.
        on_tile: Called as ``on_tile(step, done, total)`` after each tile of the quadratic passes (the long
            part on large sets), so that callers can show a progress bar with a rate and an ETA.
        threads: CPU threads of the quadratic passes (None = every core this process may use). The values do
            not depend on it (:mod:`gapdiag.metrics.tile_workers`).

    Returns:
        ``(values, extras)``: values by full metric name; extras with ``gap_vector/<pair>`` and
        ``spectrum/<modality|joint>`` lists, ``variants`` (definitions used, sample size and seed, engine)
        and ``skipped`` (metric -> reason).

    Raises:
        InputError: Fewer than two modalities, unknown metric names, inconsistent arrays, bad options.
    """
    say = progress or (lambda _msg: None)
    bases, bare, wanted_full = _select(metrics)
    names = es.modality_names
    if len(names) < 2:
        raise InputError(f"compute_all needs at least 2 modalities, got {len(names)} ({names})")
    if retrieval_engine not in RETRIEVAL_ENGINES:
        raise InputError(f"retrieval_engine must be one of {RETRIEVAL_ENGINES}, got {retrieval_engine!r}")
    vecs = {m: check_matrix(es.vectors[m], m) for m in names}
    for m in names[1:]:
        check_same_dim(vecs[names[0]], vecs[m], names[0], m)
    samples = {m: _checked_samples(es, m, vecs[m].shape[0]) for m in names}
    pairs = list(itertools.combinations(names, 2))
    image = "image" if "image" in names else names[0]
    values: dict[str, float] = {}
    extras: dict[str, Any] = {"variants": {}, "skipped": {}}

    # 1. Linear metrics on every item.
    need_gram = bool(bases & {"effective_rank", "rankme", "uniformity_w2"}) or needs_gram(bases)
    need_stats = need_gram or bool(bases & {"modality_gap", "angular_value", "cos_nonmatching"})
    quadratic = {b for b in bases if REGISTRY[b].quadratic}
    rows = _draw(es.n_samples, samples, sample, seed) if quadratic else {}
    # When the quadratic step takes every item, the linear pass keeps the unit vectors it makes for it (and for the
    # paired pass): one pass over the raw vectors instead of three.
    units: dict[str, NDArray[np.float32]] = {}
    if need_stats and quadratic and all(r is None for r in rows.values()):
        units = {m: np.empty(vecs[m].shape, dtype=np.float32) for m in names}
    stats: dict[str, LinearStats] = {}
    if need_stats:
        for m in names:
            say(f"linear pass: {m}")
            stats[m] = linear_stats(vecs[m], m, gram=need_gram, block_size=block_size, units_out=units.get(m))
    _linear_metrics(bases, names, pairs, vecs, units, samples, stats, values, extras, block_size, say)
    if need_gram:
        linear_diagnostics(bases, names, pairs, stats, values, extras)
    if "zero_shot_accuracy" in bases:
        _zero_shot(es, image, vecs[image], samples[image], values, extras, block_size, device, say)

    # 2. Quadratic metrics on all items or on the items of the drawn samples.
    if quadratic:
        extras["variants"]["sample"] = {"size": sample, "seed": seed}
        if not units:
            say("quadratic subset: normalising")
            units = {m: unit_rows(vecs[m], m, rows=rows[m], block_size=block_size) for m in names}
        sub = {m: samples[m] if rows[m] is None else samples[m][rows[m]] for m in names}
        QuadraticStep(quadratic, es, names, pairs, image, units, sub, rows, values, extras,
                      block_size=block_size, seed=seed, engine=_resolve_engine(retrieval_engine, device),
                      device=device, say=say, on_tile=on_tile, threads=resolve_threads(threads)).run()

    for b, definition in VARIANTS.items():
        if b in bases or (b == "recall_at_k" and bases & set(RECALL_KS)):
            extras["variants"][b] = definition
    # Rounding past a bound a metric cannot cross (identical vectors: uniformity +4e-7) is set to the bound.
    keep_in_bounds(values, extras["skipped"], vecs[names[0]].shape[1])
    if metrics is not None:
        _require_requested(bare, wanted_full, values, extras["skipped"], names)
        values = {k: v for k, v in values.items() if k in wanted_full or k.split("/")[0] in bare}
    return values, extras


def _require_requested(
    bare: set[str], wanted_full: set[str], values: dict[str, float], skipped: dict[str, str], names: list[str]
) -> None:
    """A metric asked for by name must appear: one that produced no value at all is an error saying why.

    A base name that produced some of its values (``recall_at_10`` in one direction only) is not an error;
    the rest stays in ``skipped`` with its reason, which the CLI prints.
    """
    produced_bases = {k.split("/")[0] for k in values}
    reasons = []
    for name in sorted(wanted_full - set(values)):
        if name in skipped:
            reasons.append(f"{name}: {skipped[name]}")
        else:
            raise InputError(
                f"metric(s) {name} not produced for modalities {names}; "
                f"available: {', '.join(sorted(values))}"
            )
    for base in sorted(bare - produced_bases):
        why = sorted({reason for full, reason in skipped.items() if full.split("/")[0] == base})
        reasons.append(f"{base}: {'; '.join(why) or 'does not apply to this data'}")
    if reasons:
        raise InputError(
            f"cannot compute the metric(s) asked for by name: {'; '.join(reasons)}",
            hint="use data that has what they need, or leave them out of --metrics",
        )


def _select(metrics: Sequence[str] | None) -> tuple[set[str], set[str], set[str]]:
    """Bases to compute, bases asked for whole, and full names asked for (``base/qualifier``)."""
    own = {b: None for b, info in REGISTRY.items() if not info.two_models}  # dict: registry order
    if metrics is None:
        return set(own), set(own), set()
    if isinstance(metrics, str):
        metrics = [metrics]
    unknown = [m for m in metrics if m.split("/")[0] not in REGISTRY]
    if unknown:
        raise InputError(f"unknown metric(s) {', '.join(unknown)}; valid names: {', '.join(own)}")
    two = [m for m in metrics if m.split("/")[0] not in own]
    if two:
        raise InputError(f"{', '.join(two)} compare two models: use `gapdiag compare -m A -m B` "
                         "(or check against a baseline whose vectors are cached)")
    full = {m for m in metrics if "/" in m}
    bare = {m for m in metrics if "/" not in m}
    return bare | {m.split("/")[0] for m in full}, bare, full


def _checked_samples(es: EmbeddingSet, m: str, n_items: int) -> NDArray[np.int64]:
    if m not in es.sample_index:
        raise InputError(f"modality {m!r} has vectors but no sample_index; give one sample id per item")
    s = check_sample_index(es.sample_index[m], n_items, m)
    if s.size and s.max() >= es.n_samples:
        raise InputError(f"{m}: sample_index refers to sample {int(s.max())} but n_samples is {es.n_samples}")
    return s


def _linear_metrics(
    bases: set[str],
    names: list[str],
    pairs: list[tuple[str, str]],
    vecs: dict[str, NDArray[Any]],
    units: dict[str, NDArray[np.float32]],
    samples: dict[str, NDArray[np.int64]],
    stats: dict[str, LinearStats],
    values: dict[str, float],
    extras: dict[str, Any],
    block_size: int,
    say: Callable[[str], None],
) -> None:
    for a, b in pairs:
        q = f"{a}-{b}"
        if "modality_gap" in bases:
            gv = gap_vector_from_stats(stats[a], stats[b])
            values[f"modality_gap/{q}"] = modality_gap_from_vector(gv)
            extras[f"gap_vector/{q}"] = gv.tolist()
        if bases & {"cos_tp", "alignment", "cos_nonmatching"}:
            say(f"paired pass: {q}")
            ia, ib = true_pair_items(samples[a], samples[b], a, b)
            if units:
                true_sum = paired_dot_sum(units[a], units[b], ia, ib, block_size=block_size, checked_units=True)
            else:
                true_sum = paired_dot_sum(vecs[a], vecs[b], ia, ib, (a, b), block_size=block_size)
            ctp = cos_tp_from_sum(true_sum, ia.size)
            if "cos_tp" in bases:
                values[f"cos_tp/{q}"] = ctp
            if "alignment" in bases:
                values[f"alignment/{q}"] = alignment_from_cos_tp(ctp)
            if "cos_nonmatching" in bases:
                values[f"cos_nonmatching/{q}"] = cos_nonmatching_from_sums(
                    stats[a], stats[b], true_sum, ia.size
                )
    if "angular_value" in bases:
        for m in names:
            values[f"angular_value/{m}"] = angular_value_from_stats(stats[m])
    if bases & {"effective_rank", "rankme"}:
        joint = sum((stats[m] for m in names[1:]), stats[names[0]])
        for q, st in [*((m, stats[m]) for m in names), ("joint", joint)]:
            s = singular_values_from_stats(st)
            extras[f"spectrum/{q}"] = s.tolist()
            if "effective_rank" in bases:
                values[f"effective_rank/{q}"] = effective_rank_from_singular_values(s)
            if "rankme" in bases:
                values[f"rankme/{q}"] = rankme_from_singular_values(s)
    if "uniformity_w2" in bases:
        values["uniformity_w2/joint"] = w2_from_stats(sum((stats[m] for m in names[1:]), stats[names[0]]))


def _zero_shot(
    es: EmbeddingSet,
    image: str,
    x: NDArray[Any],
    sample: NDArray[np.int64],
    values: dict[str, float],
    extras: dict[str, Any],
    block_size: int,
    device: str,
    say: Callable[[str], None],
) -> None:
    if es.class_embeddings is None or es.labels is None:
        extras["skipped"][f"zero_shot_accuracy/{image}"] = "needs class_embeddings and labels"
        return
    if len(es.class_embeddings) < 2:  # one class: every image is "right", 1.0 says nothing
        extras["skipped"][f"zero_shot_accuracy/{image}"] = (
            f"needs at least 2 classes (the data has {len(es.class_embeddings)})"
        )
        return

    say(f"zero-shot accuracy: {image}")
    classes = unit_rows(es.class_embeddings, "class_embeddings")
    labels = np.asarray(es.labels)[sample]
    correct = 0.0
    # Accuracy is a mean over images, so blocks weighted by their size give it exactly, in bounded memory.
    for start, block in iter_unit_blocks(x, image, block_size=8 * block_size):
        stop = start + block.shape[0]
        acc = zero_shot_accuracy(block, classes, labels[start:stop], normalize=False, device=device)
        correct += acc * block.shape[0]
    values[f"zero_shot_accuracy/{image}"] = correct / x.shape[0]


def _draw(
    n_samples: int, samples: dict[str, NDArray[np.int64]], sample: int | None, seed: int
) -> dict[str, NDArray[np.intp] | None]:
    """Rows of each modality whose sample is among ``sample`` seeded draws (None = all rows)."""
    check_sample_size(sample)
    if sample is None or sample >= n_samples:
        return {m: None for m in samples}
    drawn = np.zeros(n_samples, dtype=bool)
    drawn[seeded_samples(n_samples, sample, seed)] = True
    # Sorted row indices keep the original item order (tie rule) and read memory maps sequentially.
    return {m: np.flatnonzero(drawn[s]) for m, s in samples.items()}


def _resolve_engine(engine: str, device: str) -> str:
    if engine != "auto":
        return engine

    # On a GPU, exact search runs there (FAISS GPU index or torch); on the CPU the fused blocked pass is cheaper.
    return "faiss" if gpu_search_available(device) else "blocked"
