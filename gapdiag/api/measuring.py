"""Measuring an embedding set, behind :func:`gapdiag.api.measure`: the metrics with a progress display, the
memoised report (:mod:`gapdiag.cache.derived`), paths and captions for the listed items, and the item-by-item
similarity of two reports' cached vectors (:func:`gapdiag.api.check`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from gapdiag import metrics as metrics_package
from gapdiag.api.embedding import load_data
from gapdiag.cache import EmbeddingCache, derived
from gapdiag.check.bootstrap import bootstrap_intervals
from gapdiag.errors import InputError
from gapdiag.metrics.search_index import search_device
from gapdiag.metrics.similarity import compare_embeddings
from gapdiag.progress import progress_bar
from gapdiag.report import METRIC_DEFINITIONS_VERSION, Report
from gapdiag.report.notes import repeat_notes
from gapdiag.vectors import EmbeddingSet

#: The code a measured report depends on (package-relative): editing any of it invalidates memoised reports.
MEASURE_CODE = ("metrics", "check/bootstrap.py", "api", "report/record.py", "vectors.py")


def measure_embeddings(es: EmbeddingSet, *, metrics: Sequence[str] | None, sample: int | None, seed: int,
                       bootstrap: int, retrieval_engine: str, block_size: int, progress: bool, device: str,
                       provenance: dict[str, Any], describe: Callable[[dict[str, Any]], None] | None,
                       threads: int | None = None) -> Report:
    """The report of :func:`gapdiag.api.measure` on ``es``, its numbers read back from the memo when nothing
    changed.

    ``device`` is the one asked for (``auto``, ...); ``describe`` names the listed items (hubs, changed items)
    in the extras when the data is at hand. ``threads`` is not part of the memo: the values do not depend on it.
    The memo keeps numbers only: the provenance is always this run's, and the listed items are named from this
    run's data (the memo was maybe filled by a run on a copy of the data, elsewhere).
    """
    memo = measure_memo(es, metrics=metrics, sample=sample, seed=seed, bootstrap=bootstrap,
                        retrieval_engine=retrieval_engine, block_size=block_size, device=str(provenance["device"]))
    reused = derived.load_report(memo)
    if reused is not None:
        report = Report(metrics=reused.metrics, provenance=provenance, intervals=reused.intervals,
                        extras=reused.extras)
    else:
        report = _measure(es, metrics=metrics, sample=sample, seed=seed, bootstrap=bootstrap,
                          retrieval_engine=retrieval_engine, block_size=block_size, progress=progress,
                          device=device, provenance=provenance, threads=threads)
        derived.save_report(memo, report)  # before the items are named: the words stay out of the memo
    if describe is not None:
        describe(report.extras)
    return report


def _measure(es: EmbeddingSet, *, metrics: Sequence[str] | None, sample: int | None, seed: int, bootstrap: int,
             retrieval_engine: str, block_size: int, progress: bool, device: str, provenance: dict[str, Any],
             threads: int | None) -> Report:
    """Compute the report of :func:`measure_embeddings`: the metrics, repeat notes and bootstrap intervals."""
    search_on = search_device(device)
    with progress_bar(progress, unit="tiles") as bar:
        status = status_printer(progress, bar)
        tasks: dict[str, Any] = {}

        def on_tile(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = bar.add_task(step, total=total)
            bar.update(tasks[step], completed=done)

        # Through the package, where a test can stand in a compute_all of its own.
        values, extras = metrics_package.compute_all(es, metrics, sample=sample, seed=seed, block_size=block_size,
                                                     retrieval_engine=retrieval_engine, device=search_on,
                                                     progress=status, on_tile=on_tile, threads=threads)
    extras["repeated_items"], notes = repeat_notes(es, list(values))
    if notes:  # after the metrics' own notes (a below-chance separability)
        extras["notes"] = [*extras.get("notes", []), *notes]
    intervals = {}
    if bootstrap:
        if status is not None:
            status(f"bootstrap: {bootstrap} resamples")
        intervals = bootstrap_intervals(es, metrics, n=bootstrap, seed=seed, sample=sample, block_size=block_size,
                                        retrieval_engine=retrieval_engine, device=search_on, threads=threads)
    return Report(metrics=values, provenance=provenance, intervals=intervals, extras=extras)


def measure_memo(es: EmbeddingSet, **parts: Any) -> Path | None:
    """Where the report of these vectors with these settings is memoised (see :mod:`gapdiag.cache.derived`).

    The vectors are named by their cache key; the settings are everything :func:`measure_embeddings` passes to
    the metrics, the device included (GPU search agrees with the CPU only to ~1e-3), plus a stamp of the code
    that computes them, so a new or edited metric is never answered from an old report.
    """
    metrics = parts.pop("metrics")
    return derived.memo_path(es, "measure", {
        **parts,
        "metrics": list(metrics) if metrics is not None else None,
        "definitions": METRIC_DEFINITIONS_VERSION,
        "code": derived.code_stamp(*MEASURE_CODE),
    }, ".json")


def status_printer(enabled: bool, bar: Any = None) -> Callable[[str], None] | None:
    """Print each step of the metric computation with the time since the first (above a live progress bar)."""
    if not enabled:
        return None
    console = getattr(bar, "console", None) or Console(stderr=True)
    start = time.perf_counter()
    # A long exact pass on a large set then shows where it is rather than looking like a hang.
    return lambda message: console.print(f"[dim]{time.perf_counter() - start:7.1f}s  {message}[/]", highlight=False)


def describe_items(extras: dict[str, Any], data: Any, *, split: str | None = None,
                   cache_dir: str | Path | None = None) -> None:
    """Add the ``path`` (image items) or ``caption`` (text items) to listed items (hubs, most-changed items).

    Best effort: without readable data (precomputed vectors, a cache entry, a changed dataset) the items keep
    their row and sample ids only.
    """
    lists = [(key.split("/", 1)[1], entry) for key, value in extras.items()
             if key.startswith(("changed/", "hubness/")) for entry in
             (value if isinstance(value, list) else value.get("hubs", []))]
    if not lists:
        return
    try:
        dataset = load_data(data, split=split, cache_dir=cache_dir)
    except Exception:  # noqa: BLE001 - descriptions are optional; the numbers stand without them
        return
    for qualifier, entry in lists:
        m = entry.get("modality") or (qualifier.split("_to_")[1] if "_to_" in qualifier else qualifier)
        mod = dataset.modalities.get(m)
        if mod is None or mod.kind == "embedding" or not 0 <= entry["item"] < len(mod.items):
            continue
        entry["path" if mod.kind == "image" else "caption"] = str(mod.items[entry["item"]])


def similarity_to_baseline(
    baseline: Report, current: Report, *, cache_dir: str | Path | None = None, k: int = 10
) -> tuple[dict[str, float], str | None]:
    """CKA and mutual k-NN of the current vectors against the baseline's, when both are in the cache.

    Reports keep the cache key of their vectors (``provenance.cache_key``). Returns ``(values, None)``, or
    ``({}, reason)`` saying plainly why the item-by-item comparison is not possible.
    """
    keys = {}
    for label, rep in (("baseline", baseline), ("current", current)):
        key = (rep.provenance or {}).get("cache_key")
        if not key:
            return {}, (f"the {label} report keeps no cache key of its vectors (precomputed embeddings or an old "
                        "report): re-measure it with `gapdiag measure --out` to compare item by item")
        keys[label] = key
    cache = EmbeddingCache(cache_dir)
    sets = {}
    for label, key in keys.items():
        es = cache.get(key)
        if es is None:
            return {}, (f"the {label} vectors (cache key {key}) are not in the cache {cache.path(key).parent}; "
                        "run check where they were embedded, or re-embed them")
        sets[label] = es
    try:
        values, _ = compare_embeddings(sets["baseline"], sets["current"], k=k)
    except InputError as e:
        return {}, f"the baseline and current vectors hold different items ({e.message}); use the same data"
    return values, None
