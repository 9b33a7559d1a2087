"""The library API that the CLI and notebooks call.

>>> import gapdiag
>>> report = gapdiag.measure()                       # bundled tiny CLIP on bundled digits, offline
>>> report["modality_gap/image-text"]                # doctest: +SKIP
0.71
>>> es = gapdiag.embed("captions.csv", "ViT-B-32", pretrained="laion2b_s34b_b79k")  # doctest: +SKIP

Every function takes paths or in-memory objects and returns plain objects (:class:`~gapdiag.report.Report`,
:class:`~gapdiag.embeddings.EmbeddingSet`); nothing here prints except the optional progress display on stderr.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gapdiag import derived, presentation  # noqa: F401 - presentation: how the CLI shows numbers
from gapdiag.cache import KEY_LENGTH as CACHE_KEY_LENGTH  # noqa: F401 - for the CLI: commands import only the api
from gapdiag.check.compare import Comparison, comparison_to_json as comparison_json  # noqa: F401 - for the CLI
from gapdiag.check.evaluate import CheckResult  # noqa: F401 - for the CLI
from gapdiag.check.render import to_json as check_json  # noqa: F401 - for the CLI
from gapdiag.check.run import CheckRun, CompareRun, run_check, run_compare
from gapdiag.data.base import PairedDataset
from gapdiag.distributed import is_main_process  # noqa: F401 - for the CLI
from gapdiag.embeddings import EmbeddingSet
from gapdiag.errors import InputError
from gapdiag.metrics.sampling import check_sample_size
from gapdiag.references import references_for  # noqa: F401 - for the CLI
from gapdiag.report import Report, write_json  # noqa: F401 - write_json for the CLI
from gapdiag.report import _to_jsonable as to_jsonable  # noqa: F401 - the JSON encoding of --json output

#: The bundled checkpoints (trained by scripts/train_bundled.py on sample_data/digits).
BUNDLED_CHECKPOINTS = ("infonce", "gap_closing")
DEFAULT_CHECKPOINT = "infonce"


def bundled_checkpoint(name: str = DEFAULT_CHECKPOINT) -> Path:
    """Path of a bundled tiny checkpoint (``infonce`` or ``gap_closing``)."""
    from gapdiag.data.sample import sample_data_dir

    if name not in BUNDLED_CHECKPOINTS:
        raise InputError(f"unknown bundled checkpoint {name!r}", hint=f"use one of {', '.join(BUNDLED_CHECKPOINTS)}")
    path = sample_data_dir() / "checkpoints" / f"{name}.safetensors"
    if not path.is_file():
        raise InputError(f"bundled checkpoint missing: {path}",
                         hint="rebuild it with `python scripts/train_bundled.py` or pass --model")
    return path


def load_data(data: str | Path | PairedDataset | None = None, *, split: str | None = None, skip_bad: bool = False,
              cache_dir: str | Path | None = None, **reader_options: Any) -> PairedDataset:
    """Read a dataset (any supported format; see docs/datasets.md). ``None`` -> the bundled digits, test split.

    ``cache_dir``: where the dataset fingerprint is memoised; ``None`` keeps the root of the call in progress
    (:func:`gapdiag.settings.current`), so ``--cache-dir`` holds every memo whichever command reads the data.
    """
    import contextlib

    from gapdiag.data import load_dataset
    from gapdiag.data.sample import default_dataset
    from gapdiag.settings import Settings, use

    if isinstance(data, PairedDataset):
        return data
    with use(Settings.build(cache_dir)) if cache_dir is not None else contextlib.nullcontext():
        if data is None:
            return default_dataset(split=split or "test")
        return load_dataset(data, split=split, skip_bad=skip_bad, **reader_options)


def embed(
    data: str | Path | PairedDataset | None = None,
    model: str | Path | None = None,
    *,
    pretrained: str | None = None,
    split: str | None = None,
    device: str = "auto",
    precision: str = "fp32",
    batch_size: int = 64,
    workers: int = 0,
    cache_dir: str | Path | None = None,
    dtype: str = "float32",
    skip_bad: bool = False,
    progress: bool = True,
    chunk_size: int | None = None,
    preprocess: str = "auto",
    **reader_options: Any,
) -> EmbeddingSet:
    """Embed every modality of a dataset with a model, through the on-disk cache.

    Under ``torchrun`` every rank embeds its own share of the chunks (see docs/scaling.md).

    Args:
        data: Dataset path or object; ``None`` = the bundled sample data (digits, test split).
        model: Architecture name, checkpoint file, ``hf-hub:`` id or config JSON; ``None`` = the bundled tiny
            InfoNCE checkpoint. Ignored for precomputed embeddings.
        pretrained: open_clip tag or checkpoint file for an architecture name.
        skip_bad: Drop samples whose image cannot be decoded (reported in the provenance) instead of failing.
        progress: Show a progress display (items/s, ETA) on stderr.
        chunk_size: Items per committed chunk (what a killed run can lose at most; the unit of work of a rank);
            default :data:`gapdiag.encode.DEFAULT_CHUNK_SIZE`.
        preprocess: ``pil``, ``device`` (decode and transform images on the model's device) or ``auto``
            (device on CUDA when the tensor path reproduces the model's transform, else pil); see
            :mod:`gapdiag.device_preprocess`. Part of the cache key.

    Returns:
        The raw vectors with their alignment, labels and provenance (memory-mapped from the cache).
    """
    from gapdiag.settings import Settings, use

    cached = _cache_entry(data)
    if cached is not None:
        return cached
    settings = Settings.build(cache_dir, device=device, precision=precision, quiet=not progress)
    with use(settings):
        return _embed(data, model, settings, pretrained=pretrained, split=split, batch_size=batch_size,
                      workers=workers, dtype=dtype, skip_bad=skip_bad, chunk_size=chunk_size, preprocess=preprocess,
                      **reader_options)


def _embed(data: str | Path | PairedDataset | None, model: str | Path | None, settings: Any, *,
           pretrained: str | None, split: str | None, batch_size: int, workers: int, dtype: str, skip_bad: bool,
           chunk_size: int | None, preprocess: str = "auto", **reader_options: Any) -> EmbeddingSet:
    """:func:`embed` under ``settings`` (whose cache root every memo uses)."""
    from gapdiag.cache import EmbeddingCache
    from gapdiag.data.ops import skip_unreadable
    from gapdiag.distributed import context_from_env
    from gapdiag.encode import DEFAULT_CHUNK_SIZE, embed_dataset, embedding_set_from_precomputed
    from gapdiag.models import resolve_model
    from gapdiag.notes import count_repeated_items

    dataset = load_data(data, split=split, skip_bad=skip_bad, **reader_options)
    if all(m.kind == "embedding" for m in dataset.modalities.values()):
        return embedding_set_from_precomputed(dataset)
    # Rows the reader dropped (missing file, blank caption) and images that do not decode are both reported.
    skipped: list[str] = list(dataset.extra.get("skipped") or [])
    if skip_bad:
        dataset, unreadable = skip_unreadable(dataset)
        skipped += unreadable
    spec = resolve_model(model if model is not None else bundled_checkpoint(), pretrained,
                         cache_root=settings.cache_root)
    cache = EmbeddingCache(settings.cache_root)
    es = embed_dataset(dataset, spec, cache=cache, device=settings.device, precision=settings.precision,
                       batch_size=batch_size, workers=workers, dtype=dtype, progress=not settings.quiet,
                       extra_meta={"skipped": skipped}, chunk_size=chunk_size or DEFAULT_CHUNK_SIZE,
                       dist=context_from_env(settings.device), preprocess=preprocess)
    es.provenance["path"] = str(cache.path(es.provenance["key"]))
    # Exact, from the texts themselves: how many captions repeat another (the class-level caption note).
    es.provenance["repeated_items"] = {name: count_repeated_items(m.items)
                                       for name, m in dataset.modalities.items()}
    return es


def _cache_entry(data: Any) -> EmbeddingSet | None:
    """``data`` may name a cache entry directory directly (``gapdiag cache ls`` prints them)."""
    from gapdiag.cache import EmbeddingCache

    if isinstance(data, (str, Path)) and (Path(data) / "meta.json").is_file():
        entry = Path(data)
        es = EmbeddingCache(entry.parent).get(entry.name)
        if es is None:
            raise InputError(f"{entry}: incomplete cache entry", hint="re-run `gapdiag embed` to finish it")
        es.provenance["path"] = str(entry)
        return es
    return None


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
    progress: bool = True,
    **embed_options: Any,
) -> Report:
    """Measure the geometry of the embedding space: gap, Cos_TP, angular value, uniformity, rank, R@K, V-Measure.

    Args:
        data: Dataset path/object, or an :class:`EmbeddingSet` (e.g. from :func:`embed`); ``None`` = bundled data.
        model: See :func:`embed`; ``None`` = the bundled tiny InfoNCE checkpoint.
        metrics: Metric base names (``modality_gap``) or full names to compute; ``None`` = all that apply.
        sample: Draw this many samples (seeded) for the quadratic metrics; ``None`` = exact on everything.
        seed: Seed for sampling, k-means and bootstrap.
        bootstrap: Number of bootstrap resamples for confidence intervals (0 = none).
        **embed_options: Passed to :func:`embed` (pretrained, split, device, batch_size, cache_dir, ...).

    Returns:
        A :class:`~gapdiag.report.Report` with values, provenance and extras (gap vectors, spectra).
    """
    check_sample_size(sample)  # before embedding: a bad --sample must not cost an embedding run
    es = data if isinstance(data, EmbeddingSet) else embed(data, model, progress=progress, **embed_options)
    # Hubs and changed items are named by path/caption only when measure read the data itself.
    describe = not isinstance(data, EmbeddingSet) and _cache_entry_path(data) is None
    memo = _measure_memo(es, metrics=metrics, sample=sample, seed=seed, bootstrap=bootstrap,
                         retrieval_engine=retrieval_engine, block_size=block_size, described=describe,
                         device=_device_name(embed_options.get("device", "auto")))
    reused = derived.load_report(memo)
    if reused is not None:
        return reused
    # Imported only now: the metrics pull in FAISS (and scikit-learn when they cluster).
    from gapdiag.metrics import compute_all
    from gapdiag.metrics.retrieval import search_device
    from gapdiag.progress import progress_bar

    search_on = search_device(embed_options.get("device", "auto"))
    with progress_bar(progress, unit="tiles") as bar:
        status = _status_printer(progress, bar)
        tasks: dict[str, Any] = {}

        def on_tile(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = bar.add_task(step, total=total)
            bar.update(tasks[step], completed=done)

        values, extras = compute_all(es, metrics, sample=sample, seed=seed, block_size=block_size,
                                     retrieval_engine=retrieval_engine, device=search_on,
                                     progress=status, on_tile=on_tile)
    from gapdiag.notes import repeat_notes

    extras["repeated_items"], notes = repeat_notes(es, list(values))
    if notes:
        extras["notes"] = notes
    intervals = {}
    if bootstrap:
        from gapdiag.bootstrap import bootstrap_intervals

        if status is not None:
            status(f"bootstrap: {bootstrap} resamples")
        intervals = bootstrap_intervals(es, metrics, n=bootstrap, seed=seed, sample=sample, block_size=block_size,
                                        retrieval_engine=retrieval_engine,
                                        device=search_on)
    if describe:
        describe_items(extras, data, split=embed_options.get("split"), cache_dir=embed_options.get("cache_dir"))
    report = Report(metrics=values, provenance=_provenance(es, sample=sample, seed=seed, **embed_options),
                    intervals=intervals, extras=extras)
    derived.save_report(memo, report)
    return report


def _measure_memo(es: EmbeddingSet, **parts: Any) -> Path | None:
    """Where the report of these vectors with these settings is memoised (see :mod:`gapdiag.derived`).

    The vectors are named by their cache key; the settings are everything :func:`measure` passes to the
    metrics, the device included (GPU search agrees with the CPU only to ~1e-3), plus a stamp of the code that
    computes them, so a new or edited metric is never answered from an old report.
    """
    from gapdiag.report import METRIC_DEFINITIONS_VERSION

    metrics = parts.pop("metrics")
    return derived.memo_path(es, "measure", {
        **parts,
        "metrics": list(metrics) if metrics is not None else None,
        "definitions": METRIC_DEFINITIONS_VERSION,
        "code": derived.code_stamp("metrics", "bootstrap.py", "api.py", "report.py", "embeddings.py"),
    }, ".json")


def export(
    data: str | Path | PairedDataset | EmbeddingSet | None = None,
    model: str | Path | None = None,
    *,
    out: str | Path = "gapdiag-export.parquet",
    method: str = "pca",
    seed: int = 0,
    vectors: bool = True,
    progress: bool = True,
    **embed_options: Any,
) -> Path:
    """Write the embeddings, their 2-D map and item metadata as Parquet, one row per item (see
    :mod:`gapdiag.exporter` for the columns), for pandas, polars, DuckDB or embedding viewers.

    Args:
        data, model: As for :func:`embed` (the vectors come from the cache when they are there).
        out: The Parquet file to write.
        method: ``"pca"`` or ``"umap"``: the projection of the ``x``/``y`` columns, as in the map figure.
        seed: Seeds UMAP.
        vectors: Include the raw vectors (``vector`` column).
        **embed_options: Passed to :func:`embed` (pretrained, split, device, cache_dir, reader options, ...).

    Returns:
        The path written.
    """
    from gapdiag import exporter

    exporter.check_method(method)  # before any embedding work
    es, dataset = _embeddings_with_items(data, model, progress=progress, **embed_options)
    table = exporter.export_table(es, dataset, method=method, seed=seed, vectors=vectors,
                                  status=_status_printer(progress))
    return exporter.write_parquet(table, out)


def _embeddings_with_items(data: Any, model: Any, *, progress: bool,
                           **embed_options: Any) -> tuple[EmbeddingSet, PairedDataset | None]:
    """The embeddings of ``data`` and the dataset they came from, item for item (``None`` if not at hand)."""
    import inspect

    from gapdiag.data.ops import skip_unreadable

    if isinstance(data, EmbeddingSet):
        return data, None
    cached = _cache_entry(data)
    if cached is not None:
        return cached, None
    own = set(inspect.signature(embed).parameters) - {"reader_options"}
    reader = {k: v for k, v in embed_options.items() if k not in own}
    rest = {k: v for k, v in embed_options.items() if k in own and k not in ("split", "skip_bad")}
    dataset = load_data(data, split=embed_options.get("split"), skip_bad=bool(embed_options.get("skip_bad")),
                        **reader)
    if embed_options.get("skip_bad"):
        # Dropped here, once, so that the rows of the dataset and of the embeddings stay aligned.
        dataset, _ = skip_unreadable(dataset)
    return embed(dataset, model, progress=progress, **rest), dataset


def _provenance(es: EmbeddingSet, *, sample: int | None, seed: int, device: str = "auto", **_: Any) -> dict[str, Any]:
    prov = es.provenance or {}
    model = dict(prov.get("model") or {})
    if "precision" in prov:
        model["precision"] = prov["precision"]
    out = {
        "model": model,
        "dataset": dict(prov.get("dataset") or {}),
        "sample": {"size": sample, "seed": seed},
        "device": _device_name(device),
        "dtype": prov.get("dtype"),
    }
    if prov.get("skipped"):
        out["skipped"] = list(prov["skipped"])
    if prov.get("key"):
        out["cache_key"] = prov["key"]
    return out


def _device_name(device: str) -> str:
    from gapdiag import device as devices

    return str(devices.resolve(device))


def _status_printer(enabled: bool, bar: Any = None) -> Any:
    """Print each step of the metric computation with the time since the first (above a live progress bar)."""
    if not enabled:
        return None
    import time

    from rich.console import Console

    console = getattr(bar, "console", None) or Console(stderr=True)
    start = time.perf_counter()
    # A long exact pass on a large set then shows where it is rather than looking like a hang.
    return lambda message: console.print(f"[dim]{time.perf_counter() - start:7.1f}s  {message}[/]", highlight=False)


def shift(
    data: str | Path | PairedDataset | EmbeddingSet | None = None,
    model: str | Path | None = None,
    *,
    lambdas: Sequence[float] | None = None,
    temperatures: Sequence[float] | None = None,
    progress: bool = True,
    **embed_options: Any,
) -> dict[str, Any]:
    """Liang et al.'s embedding-shift experiment on a dataset's image and text embeddings.

    Returns the JSON-serialisable dict of :func:`gapdiag.shift.shift_experiment` (per λ: gap, loss per
    temperature, R@1 both ways, zero-shot accuracy when the data has classes), plus the provenance.
    """
    from gapdiag import shift as shift_module
    from gapdiag.metrics.retrieval import search_device

    es = data if isinstance(data, EmbeddingSet) else embed(data, model, progress=progress, **embed_options)
    image, text = _image_and_text(es)
    kwargs: dict[str, Any] = {}
    if lambdas is not None:
        kwargs["lambdas"] = list(lambdas)
    if temperatures is not None:
        kwargs["temperatures"] = list(temperatures)
    result = shift_module.shift_experiment(
        es.vectors[image], es.vectors[text], x_sample=es.sample_index[image], y_sample=es.sample_index[text],
        class_embeddings=es.class_embeddings, labels=es.labels,
        device=search_device(embed_options.get("device", "auto")), **kwargs)
    result["provenance"] = _provenance(es, sample=None, seed=0, **embed_options)
    return result


def _image_and_text(es: EmbeddingSet) -> tuple[str, str]:
    """The two modalities the shift experiment moves: ``image``/``text`` if present, else the first two."""
    names = es.modality_names
    if "image" in names and "text" in names:
        return "image", "text"
    if len(names) < 2:
        raise InputError("the shift experiment needs two modalities", hint="use paired data")
    return names[0], names[1]


def _embedding_set(source: Any, data: Any, progress: bool, embed_options: dict[str, Any]) -> EmbeddingSet:
    """An embedding set from an EmbeddingSet, a cache entry directory, or a model embedded on ``data``."""
    if isinstance(source, EmbeddingSet):
        return source
    cached = _cache_entry(source)
    if cached is not None:
        return cached
    return embed(data, source, progress=progress, **embed_options)


def compare_models(
    a: str | Path | EmbeddingSet,
    b: str | Path | EmbeddingSet,
    data: str | Path | PairedDataset | None = None,
    *,
    k: int = 10,
    top: int = 10,
    progress: bool = True,
    **embed_options: Any,
) -> dict[str, Any]:
    """What changed between two checkpoints on the same data, item by item (``gapdiag compare -m A -m B``).

    Args:
        a, b: Models (as for :func:`embed`), cache entry directories (``gapdiag cache ls``) or embedding sets.
        data: Dataset both models embed (ignored for cache entries); ``None`` = the bundled digits.
        k: Neighbours compared by mutual k-NN / overlap@k.
        top: Most-changed items listed per modality.
        **embed_options: Passed to :func:`embed`.

    Returns:
        ``{"metrics": {"linear_cka/<m>": ..., "mutual_knn/<m>": ...}, "extras": {"changed/<m>": [...], ...},
        "provenance": {"a": ..., "b": ...}}``; changed items carry ``path``/``caption`` when the data is at hand.
    """
    from gapdiag.metrics.retrieval import search_device
    from gapdiag.metrics.similarity import compare_embeddings

    esa = _embedding_set(a, data, progress, embed_options)
    esb = _embedding_set(b, data, progress, embed_options)
    values, extras = compare_embeddings(esa, esb, k=k, top=top,
                                        device=search_device(embed_options.get("device", "auto")))
    if not any(isinstance(s, EmbeddingSet) or _cache_entry_path(s) is not None for s in (a, b)):
        describe_items(extras, data, split=embed_options.get("split"), cache_dir=embed_options.get("cache_dir"))
    return {"metrics": values, "extras": extras,
            "provenance": {"a": _provenance(esa, sample=None, seed=0), "b": _provenance(esb, sample=None, seed=0)}}


def _cache_entry_path(source: Any) -> Path | None:
    return Path(source) if isinstance(source, (str, Path)) and (Path(source) / "meta.json").is_file() else None


def similarity_to_baseline(
    baseline: Report, current: Report, *, cache_dir: str | Path | None = None, k: int = 10
) -> tuple[dict[str, float], str | None]:
    """CKA and mutual k-NN of the current vectors against the baseline's, when both are in the cache.

    Reports keep the cache key of their vectors (``provenance.cache_key``). Returns ``(values, None)``, or
    ``({}, reason)`` saying plainly why the item-by-item comparison is not possible.
    """
    from gapdiag.cache import EmbeddingCache
    from gapdiag.metrics.similarity import compare_embeddings

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
def cache_verify(key: str = "all", *, cache_dir: str | Path | None = None,
                 progress: bool = False) -> list[dict[str, Any]]:
    """Check every byte of cache entries against the checksums recorded when they were written.

    Args:
        key: An entry key, a unique key prefix, or ``"all"``.
        cache_dir: The cache root (default: ``GAPDIAG_CACHE_DIR`` or the user cache dir).
        progress: Show a progress display on stderr for large entries.

    Returns:
        One dict per entry: ``key``, ``complete``, ``ok``, ``files`` and ``problems``
        (``[{"file", "reason"}]``); see :meth:`gapdiag.cache.EmbeddingCache.verify`.

    Raises:
        InputError: ``key`` matches no entry or several.
        CacheError: The cache dir cannot be used.
    """
    from gapdiag.cache import EmbeddingCache

    return EmbeddingCache(cache_dir).verify(key, progress=progress)


def cache_ls(*, cache_dir: str | Path | None = None) -> tuple[Path, list[dict[str, Any]]]:
    """The cache root and one dict per entry (key, model, dataset, counts, dtype, size, created, complete).

    Raises:
        CacheError: The cache dir cannot be used.
    """
    from gapdiag.cache import EmbeddingCache

    cache = EmbeddingCache(cache_dir)
    return cache.root, cache.ls()


def cache_rm(key: str, *, cache_dir: str | Path | None = None) -> list[str]:
    """Remove cache entries by key, unique key prefix, or ``"all"``; returns the removed keys.

    Raises:
        InputError: ``key`` matches no entry or several.
    """
    from gapdiag.cache import EmbeddingCache

    return EmbeddingCache(cache_dir).rm(key)


def cache_dir(cache_dir: str | Path | None = None) -> Path:
    """The cache directory in use (``cache_dir``, else ``GAPDIAG_CACHE_DIR``, else the user cache dir)."""
    from gapdiag.cache import EmbeddingCache

    return EmbeddingCache(cache_dir).root


def train(data: PairedDataset, model: str | Path = "gapdiag-tiny-vit", **options: Any) -> Any:
    """Train or fine-tune an open_clip model; see :func:`gapdiag.train.train` for the options.

    Returns:
        The :class:`gapdiag.train.TrainResult` (run dir, model path, per-epoch metrics, resumed epoch).
    """
    # Imported here: gapdiag.train pulls in torch and open_clip, which a cache hit must not pay for.
    from gapdiag.train import train as run_training

    return run_training(data, model, **options)


def parse_metric_list(text: str | None) -> list[str] | None:
    """``"modality_gap, cos_tp"`` -> ``["modality_gap", "cos_tp"]``; ``None``/empty -> ``None`` (every metric)."""
    names = [m.strip() for m in (text or "").split(",") if m.strip()]
    return names or None


def plot(kinds: Sequence[str] | None = None, *, out: str | Path = "gapdiag-plots", **options: Any) -> Any:
    """Draw figures of the embedding space into ``out`` (what ``gapdiag plot`` does).

    Args:
        kinds: map, hist, spectrum, gap, shift, compare or all (comma lists allowed); ``None`` = the default set.
        out: Output directory (created if missing).
        **options: ``reports``/``labels`` (compare), ``shift`` (a shift result JSON), ``method``, ``color_by``,
            ``format``, ``dpi``, ``max_pairs``, ``seed``, ``status`` (a callback for progress messages), and the
            options of :func:`embed` for the figures drawn from embeddings.

    Returns:
        A :class:`gapdiag.draw.PlotResult`: the paths written, in order, and remarks for the user.
    """
    # gapdiag.draw imports matplotlib: only when a figure is drawn, never on a cache hit of measure.
    from gapdiag import draw

    return draw.plot_figures(embed, kinds, out=Path(out), **options)


def report(out: str | Path = "report.html", **options: Any) -> Any:
    """Write one self-contained HTML report (what ``gapdiag report`` does).

    Args:
        out: The HTML file.
        **options: ``from_report`` (reuse a measurement), ``metrics``, ``sample``, ``kinds``, ``method``,
            ``color_by``, ``max_pairs``, ``shift``, ``format`` (png or svg), ``dpi``, ``title``, ``interactive``,
            ``seed``, ``status``, and the options of :func:`embed`.

    Returns:
        A :class:`gapdiag.draw.ReportPage`: path, figures, number of metrics, whether the interactive map is in.
    """
    from gapdiag import draw  # matplotlib, as in plot()

    return draw.write_report_page(embed, measure, load_data, Path(out), **options)


def check(baseline: str | Path, report: str | Path | None = None, **options: Any) -> CheckRun:
    """Gate a report (or a model measured now with the :func:`embed` options) against a baseline report.

    Args:
        baseline: The reference report JSON.
        report: The candidate report JSON; ``None`` = measure now.
        **options: ``config``, ``bootstrap``, ``force``, ``sample``, ``seed``, ``out`` (save the current report),
            ``markdown``/``junit`` (CI files), and the options of :func:`embed`.

    Returns:
        A :class:`gapdiag.check.run.CheckRun`; ``result.raise_for_regression()`` raises on a broken rule.
    """
    return run_check(measure, similarity_to_baseline, baseline, report, **options)


def compare(reports: Sequence[str | Path] = (), models: Sequence[str] = (), **options: Any) -> CompareRun:
    """Two or more reports, cache entries or models measured now, side by side (what ``gapdiag compare`` does).

    Args:
        reports: Report JSON files or cache entry directories; the first is the reference for deltas.
        models: Models measured now on the data of the :func:`embed` options, appended after the reports.
        **options: ``labels``, ``force``, ``sample``, ``seed``, ``markdown``, ``plot`` (a directory), and the
            options of :func:`embed`.

    Returns:
        A :class:`gapdiag.check.run.CompareRun`: the comparison, the reports, the item-by-item view of two
        models (``similarity``) and the figure path.
    """
    return run_compare(measure, compare_models, lambda p: _cache_entry_path(p) is not None, reports, models,
                       **options)
