"""The verbs that measure: :func:`measure` (the metrics, with progress, memoised), :func:`shift` (Liang et al.'s
experiment) and :func:`compare_models` (two checkpoints item by item), and what the gate and the report page
use of them (:func:`measure_source`, :func:`similarity_to_baseline`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypedDict

from rich.console import Console

from gapdiag import device as devices
from gapdiag import metrics as metrics_package
from gapdiag import settings
from gapdiag.api.embedding import cache_entry_path, read_dataset, report_provenance, vectors_of
from gapdiag.api.options import EmbedOptions, check_seed
from gapdiag.cache import EmbeddingCache, derived
from gapdiag.check.bootstrap import bootstrap_intervals
from gapdiag.data.base import PairedDataset
from gapdiag.device import Device
from gapdiag.errors import GapdiagError, InputError
from gapdiag.metrics.sampling import check_sample_size
from gapdiag.metrics.similarity import compare_embeddings
from gapdiag.outputs import check_outputs
from gapdiag.progress import progress_bar
from gapdiag.report import METRIC_DEFINITIONS_VERSION, Report, write_json
from gapdiag.report.notes import repeat_notes
from gapdiag.settings import Settings
from gapdiag.vectors import EmbeddingSet

#: The code a measured report depends on (package-relative): editing any of it invalidates memoised reports.
MEASURE_CODE = ("metrics", "check/bootstrap.py", "api", "report/record.py", "vectors.py")


def measure(
    data: str | Path | PairedDataset | EmbeddingSet | None = None,
    model: str | Path | None = None,
    *,
    metrics: Sequence[str] | None = None,
    sample: int | None = None,
    seed: int = 0,
    bootstrap: int = 0,
    retrieval_engine: str = "auto",
    block_size: int = 2048,
    threads: int | None = None,
    out: str | Path | None = None,
    pretrained: str | None = None,
    random_init: bool = False,
    split: str | None = None,
    format: str | None = None,
    image_column: str | None = None,
    text_columns: Sequence[str] | None = None,
    label_column: str | None = None,
    class_name_column: str | None = None,
    attribute_columns: Sequence[str] | None = None,
    templates: Sequence[str] | None = None,
    image_root: str | Path | None = None,
    skip_bad: bool = False,
    device: str = "auto",
    precision: str = "fp32",
    preprocess: str = "auto",
    batch_size: int = 64,
    workers: int = 0,
    dtype: str = "float32",
    chunk_size: int | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> Report:
    """Measure the geometry of the embedding space: gap, Cos_TP, angular value, uniformity, rank, R@K, V-Measure.

    Args:
        data: Dataset path/object, an :class:`EmbeddingSet` (e.g. from :func:`gapdiag.api.embed`) or a cache
            entry directory; ``None`` = the bundled data.
        model: See :func:`gapdiag.api.embed`; ``None`` = the bundled tiny InfoNCE checkpoint.
        metrics: Metric base names (``modality_gap``) or full names to compute; ``None`` = all that apply.
        sample: Draw this many samples (seeded) for the quadratic metrics; ``None`` = exact on everything.
        seed: Seed for sampling, k-means and bootstrap.
        bootstrap: Number of bootstrap resamples for confidence intervals (0 = none).
        retrieval_engine: ``auto``, ``faiss``, ``blocked``, ``hnsw`` or ``ivf`` (see docs/metrics.md).
        block_size: Rows per block of the pair passes.
        threads: CPU threads of the pair passes (None = every core); the values do not depend on it.
        out: Also save the report JSON here (checked before any work: never one of the inputs).
        pretrained, random_init, split, format, image_column, text_columns, label_column, class_name_column,
            attribute_columns, templates, image_root, skip_bad, device, precision, preprocess, batch_size,
            workers, dtype, chunk_size, cache_dir, progress: As for :func:`gapdiag.api.embed`.

    Returns:
        A :class:`~gapdiag.report.Report` with values, provenance and extras (gap vectors, spectra).
    """
    options = EmbedOptions(
        pretrained=pretrained, random_init=random_init, split=split, format=format, image_column=image_column,
        text_columns=text_columns, label_column=label_column, class_name_column=class_name_column,
        attribute_columns=attribute_columns, templates=templates, image_root=image_root, skip_bad=skip_bad,
        device=device, precision=precision, preprocess=preprocess, batch_size=batch_size, workers=workers,
        dtype=dtype, chunk_size=chunk_size, cache_dir=cache_dir, progress=progress)
    check_sample_size(sample)  # before embedding: a bad --sample or --seed must not cost an embedding run
    check_seed(seed)
    check_outputs({"--out": out}, inputs_of(data, model, options))
    report = measure_source(data, model, options, settings.resolve(cache_dir), devices.resolve(device),
                            metrics=metrics, sample=sample, seed=seed, bootstrap=bootstrap,
                            retrieval_engine=retrieval_engine, block_size=block_size, threads=threads)
    if out is not None:
        report.save(out)
    return report


def inputs_of(data: Any, model: Any, options: EmbedOptions) -> dict[str, Any]:
    """The files a verb reads, by the option that names them (for :func:`gapdiag.outputs.check_outputs`)."""
    return {"--data": data, "--model": model, "--pretrained": options.pretrained}


def measure_source(data: Any, model: str | Path | None, options: EmbedOptions, at: Settings, device: Device, *,
                   metrics: Sequence[str] | None = None, sample: int | None = None, seed: int = 0,
                   bootstrap: int = 0, retrieval_engine: str = "auto", block_size: int = 2048,
                   threads: int | None = None) -> Report:
    """:func:`measure` with its settings ``at`` and its ``device`` resolved: the vectors of ``data`` (given,
    cached or embedded by ``model``), measured. What the gate and the report page measure with."""
    es = vectors_of(data, model, options, at, device)
    # Hubs and changed items are named by path/caption only when measure read the data itself.
    read_here = not isinstance(data, EmbeddingSet) and cache_entry_path(data) is None

    def name_items(extras: dict[str, Any]) -> None:
        describe_items(extras, data, options, at)

    return measure_embeddings(
        es, metrics=metrics, sample=sample, seed=seed, bootstrap=bootstrap, retrieval_engine=retrieval_engine,
        block_size=block_size, progress=options.progress, device=device, threads=threads,
        provenance=report_provenance(es, sample=sample, seed=seed, device=device),
        describe=name_items if read_here else None)


def measure_embeddings(es: EmbeddingSet, *, metrics: Sequence[str] | None, sample: int | None, seed: int,
                       bootstrap: int, retrieval_engine: str, block_size: int, progress: bool, device: Device,
                       provenance: dict[str, Any], describe: Callable[[dict[str, Any]], None] | None,
                       threads: int | None = None) -> Report:
    """The report of :func:`measure` on ``es``, its numbers read back from the memo when nothing changed.

    ``device`` is the resolved one (search runs on :func:`gapdiag.device.search_device` of it); ``describe``
    names the listed items (hubs, changed items) in the extras when the data is at hand. ``threads`` is not part
    of the memo: the values do not depend on it. The memo keeps numbers only: the provenance is always this
    run's, and the listed items are named from this run's data (the memo was maybe filled by a run on a copy of
    the data, elsewhere).
    """
    memo = measure_memo(es, metrics=metrics, sample=sample, seed=seed, bootstrap=bootstrap,
                        retrieval_engine=retrieval_engine, block_size=block_size, device=str(device))
    reused = _memoised_report(memo)
    if reused is not None:
        report = Report(metrics=reused.metrics, provenance=provenance, intervals=reused.intervals,
                        extras=reused.extras)
    else:
        report = _measure(es, metrics=metrics, sample=sample, seed=seed, bootstrap=bootstrap,
                          retrieval_engine=retrieval_engine, block_size=block_size, progress=progress,
                          device=device, provenance=provenance, threads=threads)
        derived.save_json(memo, report.to_dict())  # before the items are named: the words stay out of the memo
    if describe is not None:
        describe(report.extras)
    return report


def _memoised_report(memo: Path | None) -> Report | None:
    """The report memoised at ``memo``, or None: missing, failing its checksum, or not a report this version reads
    (its checksum right, its content another version's): computed again."""
    data = derived.load_json(memo)
    if data is None:
        return None
    try:
        return Report.from_dict(data, source=str(memo))
    except GapdiagError:
        return None


def _measure(es: EmbeddingSet, *, metrics: Sequence[str] | None, sample: int | None, seed: int, bootstrap: int,
             retrieval_engine: str, block_size: int, progress: bool, device: Device, provenance: dict[str, Any],
             threads: int | None) -> Report:
    """Compute the report of :func:`measure_embeddings`: the metrics, repeat notes and bootstrap intervals."""
    search_on = str(devices.search_device(device))
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


def describe_items(extras: dict[str, Any], data: Any, options: EmbedOptions, at: Settings) -> None:
    """Add the ``path`` (image items) or ``caption`` (text items) to listed items (hubs, most-changed items, the
    most and least conforming items).

    Best effort: without readable data (precomputed vectors, a cache entry, a changed dataset) the items keep
    their row and sample ids only.
    """
    lists = [(key.split("/", 1)[1], entry) for key, value in extras.items()
             if key.startswith(("changed/", "hubness/", "conformity_items/")) for entry in
             (value if isinstance(value, list) else [*value.get("hubs", []), *value.get("most", []),
                                                     *value.get("least", [])])]
    if not lists:
        return
    try:
        dataset = read_dataset(data, EmbedOptions(split=options.split), at)
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
    """CKA and mutual k-NN of the current vectors against the baseline's, when both are in the cache
    (``cache_dir``; ``None``: ``$GAPDIAG_CACHE_DIR`` or the user cache dir).

    Reports keep the cache key of their vectors (``provenance.cache_key``). Returns ``(values, None)``, or
    ``({}, reason)`` saying plainly why the item-by-item comparison is not possible.
    """
    return similarity_in(EmbeddingCache(Settings.build(cache_dir).cache_root), baseline, current, k=k)


def similarity_in(cache: EmbeddingCache, baseline: Report, current: Report, *,
                  k: int = 10) -> tuple[dict[str, float], str | None]:
    """:func:`similarity_to_baseline` with the vectors read from ``cache``."""
    keys = {}
    for label, rep in (("baseline", baseline), ("current", current)):
        key = (rep.provenance or {}).get("cache_key")
        if not key:
            return {}, (f"the {label} report keeps no cache key of its vectors (precomputed embeddings or an old "
                        "report): re-measure it with `gapdiag measure --out` to compare item by item")
        keys[label] = key
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


class ShiftResult(TypedDict):
    """What :func:`shift` returns (and writes to ``out``): per λ, the gap and the loss, R@1 and zero-shot accuracy
    after moving both modalities along the gap vector (see :func:`gapdiag.training.shift.shift_experiment`)."""

    lambdas: list[float]
    temperatures: list[float]
    gap: list[float]
    gap_signed: list[float]
    #: ``repr(τ)`` -> one loss per λ.
    loss: dict[str, list[float]]
    #: ``image_to_text`` / ``text_to_image`` -> one R@1 per λ.
    recall_at_1: dict[str, list[float]]
    #: One accuracy per λ, or None without classes.
    zero_shot_accuracy: list[float] | None
    gap_vector_norm: float
    definition: str
    provenance: dict[str, Any]


def shift(
    data: str | Path | PairedDataset | EmbeddingSet | None = None,
    model: str | Path | None = None,
    *,
    lambdas: Sequence[float] | None = None,
    temperatures: Sequence[float] | None = None,
    out: str | Path | None = None,
    pretrained: str | None = None,
    random_init: bool = False,
    split: str | None = None,
    format: str | None = None,
    image_column: str | None = None,
    text_columns: Sequence[str] | None = None,
    label_column: str | None = None,
    class_name_column: str | None = None,
    attribute_columns: Sequence[str] | None = None,
    templates: Sequence[str] | None = None,
    image_root: str | Path | None = None,
    skip_bad: bool = False,
    device: str = "auto",
    precision: str = "fp32",
    preprocess: str = "auto",
    batch_size: int = 64,
    workers: int = 0,
    dtype: str = "float32",
    chunk_size: int | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> ShiftResult:
    """Liang et al.'s embedding-shift experiment on a dataset's image and text embeddings.

    Args:
        lambdas: Shifts λ; ``None``: -1 to 1 by 0.25.
        temperatures: Temperatures τ of the contrastive loss; ``None``: 0.01, 0.02, 0.1, 1.
        out: Also write the result JSON here (checked before any work: never one of the inputs).
        data, model, pretrained, ..., progress: As for :func:`gapdiag.api.measure`.

    Returns:
        The :class:`ShiftResult` (per λ: gap, loss per temperature, R@1 both ways, zero-shot accuracy when the
        data has classes), plus the provenance.
    """
    # gapdiag.training.shift imports SciPy: only when the experiment runs, never on a cache hit of measure.
    from gapdiag.training.shift import shift_experiment

    options = EmbedOptions(
        pretrained=pretrained, random_init=random_init, split=split, format=format, image_column=image_column,
        text_columns=text_columns, label_column=label_column, class_name_column=class_name_column,
        attribute_columns=attribute_columns, templates=templates, image_root=image_root, skip_bad=skip_bad,
        device=device, precision=precision, preprocess=preprocess, batch_size=batch_size, workers=workers,
        dtype=dtype, chunk_size=chunk_size, cache_dir=cache_dir, progress=progress)
    check_outputs({"--out": out}, inputs_of(data, model, options))
    resolved = devices.resolve(device)
    es = vectors_of(data, model, options, settings.resolve(cache_dir), resolved)
    image, text = image_and_text(es)
    shape = {"lambdas": list(lambdas)} if lambdas is not None else {}
    if temperatures is not None:
        shape["temperatures"] = list(temperatures)
    curves = shift_experiment(
        es.vectors[image], es.vectors[text], x_sample=es.sample_index[image], y_sample=es.sample_index[text],
        class_embeddings=es.class_embeddings, labels=es.labels, device=str(devices.search_device(resolved)),
        **shape)
    result: ShiftResult = {**curves, "provenance": report_provenance(es, sample=None, seed=0, device=resolved)}
    if out is not None:
        write_json(result, out, what="shift result")
    return result


def image_and_text(es: EmbeddingSet) -> tuple[str, str]:
    """The two modalities the shift experiment moves: ``image``/``text`` if present, else the first two."""
    names = es.modality_names
    if "image" in names and "text" in names:
        return "image", "text"
    if len(names) < 2:
        raise InputError("the shift experiment needs two modalities", hint="use paired data")
    return names[0], names[1]


class ModelComparison(TypedDict):
    """What :func:`compare_models` returns: ``metrics`` (``linear_cka/<m>``, ``mutual_knn/<m>``), ``extras``
    (``changed/<m>``: the items whose neighbours changed most, with ``path``/``caption`` when the data is at hand)
    and the ``provenance`` of each side (``a``, ``b``)."""

    metrics: dict[str, float]
    extras: dict[str, Any]
    provenance: dict[str, dict[str, Any]]


def compare_models(
    a: str | Path | EmbeddingSet,
    b: str | Path | EmbeddingSet,
    data: str | Path | PairedDataset | None = None,
    *,
    k: int = 10,
    top: int = 10,
    pretrained: str | None = None,
    random_init: bool = False,
    split: str | None = None,
    format: str | None = None,
    image_column: str | None = None,
    text_columns: Sequence[str] | None = None,
    label_column: str | None = None,
    class_name_column: str | None = None,
    attribute_columns: Sequence[str] | None = None,
    templates: Sequence[str] | None = None,
    image_root: str | Path | None = None,
    skip_bad: bool = False,
    device: str = "auto",
    precision: str = "fp32",
    preprocess: str = "auto",
    batch_size: int = 64,
    workers: int = 0,
    dtype: str = "float32",
    chunk_size: int | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> ModelComparison:
    """What changed between two checkpoints on the same data, item by item (``gapdiag compare -m A -m B``).

    Args:
        a, b: Models (as for :func:`gapdiag.api.embed`), cache entry directories (``gapdiag cache ls``) or
            embedding sets.
        data: Dataset both models embed (ignored for cache entries); ``None`` = the bundled digits.
        k: Neighbours compared by mutual k-NN / overlap@k.
        top: Most-changed items listed per modality.
        pretrained, ..., progress: As for :func:`gapdiag.api.embed`.
    """
    options = EmbedOptions(
        pretrained=pretrained, random_init=random_init, split=split, format=format, image_column=image_column,
        text_columns=text_columns, label_column=label_column, class_name_column=class_name_column,
        attribute_columns=attribute_columns, templates=templates, image_root=image_root, skip_bad=skip_bad,
        device=device, precision=precision, preprocess=preprocess, batch_size=batch_size, workers=workers,
        dtype=dtype, chunk_size=chunk_size, cache_dir=cache_dir, progress=progress)
    return compare_sources(a, b, data, options, settings.resolve(cache_dir), devices.resolve(device), k=k, top=top)


def compare_sources(a: Any, b: Any, data: Any, options: EmbedOptions, at: Settings, device: Device, *,
                    k: int = 10, top: int = 10) -> ModelComparison:
    """:func:`compare_models` with its settings ``at`` and its ``device`` resolved."""
    sets = []
    for source in (a, b):
        if isinstance(source, EmbeddingSet) or cache_entry_path(source) is not None:
            sets.append(vectors_of(source, None, EmbedOptions(), at, device))
        else:
            sets.append(vectors_of(data, source, options, at, device))
    esa, esb = sets
    values, extras = compare_embeddings(esa, esb, k=k, top=top, device=str(devices.search_device(device)))
    if not any(isinstance(s, EmbeddingSet) or cache_entry_path(s) is not None for s in (a, b)):
        describe_items(extras, data, options, at)
    return {"metrics": values, "extras": extras,
            "provenance": {"a": report_provenance(esa, sample=None, seed=0, device=device),
                           "b": report_provenance(esb, sample=None, seed=0, device=device)}}
