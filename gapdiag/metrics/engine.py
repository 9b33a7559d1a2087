"""``compute_all``: every registered metric of an :class:`~gapdiag.vectors.EmbeddingSet`, planned from the registry.

The engine knows passes, not metrics. Each registry entry (:class:`~gapdiag.metrics.registry.MetricInfo`) names
the passes it needs and the function from their results to its value; :class:`~gapdiag.metrics.passes.Plan` is
the union of the needs of the metrics asked for, and each planned pass runs once (each vector is read once per
pass, no ``N × N`` matrix is ever held):

1. Linear passes over every item: per modality the count, sum and (``gram``) Gram matrix of the unit vectors
   (:func:`~gapdiag.metrics.blocked.linear_stats`), per modality pair the sum of the true-pair cosines. Then the
   value of every linear metric asked for. When the quadratic step takes every item too, the linear pass keeps
   the unit vectors it makes (the paired pass and step 2 use them: the raw vectors are read once).
2. Quadratic passes on all items, or on the items of ``sample`` drawn samples (:mod:`~gapdiag.metrics.quadratic`):
   per modality one within-set pass, per modality pair one fused cross pass (uniformity terms, exact retrieval
   ranks and top-K lists in both directions) or an exact search. Then the value of every quadratic metric.

Values come out per metric in registry order, per qualifier in dataset order; a value a metric cannot give on
this data is a ``Skip`` with its reason (``extras["skipped"]``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gapdiag.errors import InputError
from gapdiag.metrics.blocked import (
    DEFAULT_BLOCK_SIZE,
    LinearStats,
    linear_stats,
    paired_dot_sum,
    unit_rows,
)
from gapdiag.metrics.bounds import keep_in_bounds
from gapdiag.metrics.passes import GRAM, PAIRED, RANKS, SUMS, TOP_K, Passes, Plan, Skip
from gapdiag.metrics.quadratic import QuadraticPasses
from gapdiag.metrics.registry import REGISTRY, MetricInfo
from gapdiag.metrics.sampling import check_sample_size, seeded_samples
from gapdiag.metrics.search_index import gpu_search_available
from gapdiag.metrics.tile_workers import resolve_threads
from gapdiag.metrics.validation import check_matrix, check_same_dim, check_sample_index, true_pair_items
from gapdiag.vectors import EmbeddingSet

RETRIEVAL_ENGINES = ("auto", "faiss", "blocked", "hnsw", "ivf")


# Over 80 lines only by its docstring (the public entry point documents every argument); ~45 lines of code.
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
    strict: bool = True,
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
        strict: A metric asked for by name that gives no value on this data is an error; False: it is only in
            ``extras["skipped"]`` with its reason (a training loop's monitor goes on).

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
    extras: dict[str, Any] = {"variants": {}, "skipped": {}}
    passes = Passes(es, names, list(itertools.combinations(names, 2)), "image" if "image" in names else names[0],
                    vecs, samples, extras, seed, block_size, device, say)
    infos = [info for b, info in REGISTRY.items() if b in bases]  # registry order
    plan = plan_passes(infos)
    passes.rows = _draw(es.n_samples, samples, sample, seed) if plan.quadratic else {}
    values: dict[str, float] = {}

    # 1. Linear metrics on every item.
    _linear_passes(passes, plan)
    evaluate(passes, [info for info in infos if not info.quadratic], values)

    # 2. Quadratic metrics on all items or on the items of the drawn samples.
    if plan.quadratic:
        extras["variants"]["sample"] = {"size": sample, "seed": seed}
        rows = passes.rows
        if not passes.units:
            say("quadratic subset: normalising")
            passes.units = {m: unit_rows(vecs[m], m, rows=rows[m], block_size=block_size) for m in names}
        passes.sub = {m: samples[m] if rows[m] is None else samples[m][rows[m]] for m in names}
        QuadraticPasses(passes, plan, engine=_resolve_engine(retrieval_engine, device), on_tile=on_tile,
                        threads=resolve_threads(threads)).run()
        evaluate(passes, [info for info in infos if info.quadratic], values)

    _record_variants(infos, extras)
    # Rounding past a bound a metric cannot cross (identical vectors: uniformity +4e-7) is set to the bound.
    keep_in_bounds(values, extras["skipped"], vecs[names[0]].shape[1])
    if metrics is not None and strict:
        _require_requested(bare, wanted_full, values, extras["skipped"], names)
        values = {k: v for k, v in values.items() if k in wanted_full or k.split("/")[0] in bare}
    return values, extras


#: The needs that statistics accumulated batch by batch serve (no item is read again): a streamed monitor computes
#: exactly the metrics whose needs are among them (:func:`compute_from_stats`).
STREAMED_NEEDS = frozenset({SUMS, GRAM, PAIRED})


def streamed_metrics() -> list[str]:
    """The base names, in registry order, that :func:`compute_from_stats` computes: one model's metrics whose
    needs are all among :data:`STREAMED_NEEDS`."""
    return [b for b, info in REGISTRY.items() if info.needs and info.needs <= STREAMED_NEEDS and not info.two_models]


def compute_from_stats(
    stats: dict[str, LinearStats],
    true_pairs: dict[str, tuple[float, int]],
    metrics: Sequence[str],
) -> tuple[dict[str, float], dict[str, Any]]:
    """The metrics of :func:`streamed_metrics` from statistics accumulated elsewhere (a training loop's batches).

    The same value functions as :func:`compute_all`, fed the statistics its linear pass would make: counts, sums and
    Gram matrices of the unit vectors per modality (dataset order) and, per modality pair ``a-b``, the summed
    true-pair cosines and their number. So the values equal ``compute_all`` on the same vectors to float rounding.

    Args:
        stats: Modality name -> its :class:`~gapdiag.metrics.blocked.LinearStats` (with Gram matrices when a metric
            asked for needs them).
        true_pairs: Pair qualifier ``a-b`` -> ``(Σ cos of true pairs, number of true pairs)``.
        metrics: Base names, each in :func:`streamed_metrics`.

    Returns:
        ``(values, extras)`` as :func:`compute_all` gives them (values by full name; ``skipped``, ``variants``).

    Raises:
        InputError: A metric that statistics cannot give, or fewer than two modalities.
    """
    names = list(stats)
    unfit = [m for m in metrics if m not in streamed_metrics()]
    if unfit or len(names) < 2:
        raise InputError(f"cannot compute {', '.join(unfit) or 'anything'} from streamed statistics of "
                         f"{len(names)} modalities; these can be: {', '.join(streamed_metrics())}")
    d = next(iter(stats.values())).total.shape[0]
    # The value functions of linear metrics read the statistics only; an empty set stands for the vectors.
    es = EmbeddingSet({m: np.empty((0, d), np.float32) for m in names},
                      {m: np.empty(0, np.int64) for m in names}, 0)
    extras: dict[str, Any] = {"variants": {}, "skipped": {}}
    passes = Passes(es, names, list(itertools.combinations(names, 2)), "image" if "image" in names else names[0],
                    es.vectors, es.sample_index, extras, 0, DEFAULT_BLOCK_SIZE, "cpu", lambda _msg: None,
                    stats=dict(stats), true_pairs=dict(true_pairs))
    infos = [info for b, info in REGISTRY.items() if b in set(metrics)]
    values: dict[str, float] = {}
    evaluate(passes, infos, values)
    _record_variants(infos, extras)
    keep_in_bounds(values, extras["skipped"], d)
    return values, extras


def plan_passes(infos: Iterable[MetricInfo]) -> Plan:
    """The passes these metrics need: the union of their registry ``needs``, the K of every R@K and the deepest
    top-K list."""
    infos = list(infos)
    return Plan(
        needs=frozenset().union(*(info.needs for info in infos)),
        ks=tuple(sorted({info.k for info in infos if RANKS in info.needs})),
        top_k=max((info.k for info in infos if TOP_K in info.needs), default=0),
    )


def evaluate(passes: Passes, infos: Iterable[MetricInfo], values: dict[str, float]) -> None:
    """Every qualifier's value of these metrics from the passes' results, into ``values``; a :class:`Skip` goes to
    ``extras["skipped"]`` with its reason."""
    for info in infos:
        if info.value is None:
            raise InputError(f"{info.name} is not computed by compute_all (no value function in its registry entry)")
        for q in qualifiers(passes, info):
            value = info.value(passes, q)
            if isinstance(value, Skip):
                passes.extras["skipped"][f"{info.name}/{q}"] = value.reason
            else:
                values[f"{info.name}/{q}"] = value


def qualifiers(passes: Passes, info: MetricInfo) -> list[str]:
    """What follows the ``/`` of each of a metric's values on this data, from its registry qualifier kind."""
    kinds = {
        "pair": passes.pair_names(),
        "modality": passes.names + (["joint"] if info.also_joint else []),
        "direction": passes.direction_names(),
        "joint": ["joint"],
        "image": [passes.image],
    }
    return kinds[info.qualifier]


def _record_variants(infos: Iterable[MetricInfo], extras: dict[str, Any]) -> None:
    """The definitions the computed metrics follow, into ``extras["variants"]``."""
    for info in infos:
        if info.variant is not None:
            extras["variants"][info.variant[0]] = info.variant[1]


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


def _linear_passes(passes: Passes, plan: Plan) -> None:
    """Per modality the linear statistics, per pair the true-pair sums: whichever the plan needs."""
    names, vecs, say = passes.names, passes.vecs, passes.say
    # When the quadratic step takes every item, the linear pass keeps the unit vectors it makes for it (and for the
    # paired pass): one pass over the raw vectors instead of three.
    if plan.stats and plan.quadratic and all(r is None for r in passes.rows.values()):
        passes.units = {m: np.empty(vecs[m].shape, dtype=np.float32) for m in names}
    if plan.stats:
        for m in names:
            say(f"linear pass: {m}")
            passes.stats[m] = linear_stats(vecs[m], m, gram=plan.gram, block_size=passes.block_size,
                                           units_out=passes.units.get(m))
    if not plan.paired:
        return
    units = passes.units
    for (a, b), q in zip(passes.pairs, passes.pair_names()):
        say(f"paired pass: {q}")
        ia, ib = true_pair_items(passes.samples[a], passes.samples[b], a, b)
        if units:
            true_sum = paired_dot_sum(units[a], units[b], ia, ib, block_size=passes.block_size, checked_units=True)
        else:
            true_sum = paired_dot_sum(vecs[a], vecs[b], ia, ib, (a, b), block_size=passes.block_size)
        passes.true_pairs[q] = (true_sum, ia.size)


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
