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

from gapdiag.data.base import PairedDataset
from gapdiag.embeddings import EmbeddingSet
from gapdiag.errors import InputError
from gapdiag.report import Report

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
              **reader_options: Any) -> PairedDataset:
    """Read a dataset (any supported format; see docs/datasets.md). ``None`` -> the bundled digits, test split."""
    from gapdiag.data import load_dataset
    from gapdiag.data.sample import default_dataset

    if isinstance(data, PairedDataset):
        return data
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

    Returns:
        The raw vectors with their alignment, labels and provenance (memory-mapped from the cache).
    """
    from gapdiag.cache import EmbeddingCache
    from gapdiag.data.ops import skip_unreadable
    from gapdiag.distributed import context_from_env
    from gapdiag.encode import DEFAULT_CHUNK_SIZE, embed_dataset, embedding_set_from_precomputed
    from gapdiag.models import resolve_model

    cached = _cache_entry(data)
    if cached is not None:
        return cached
    dataset = load_data(data, split=split, skip_bad=skip_bad, **reader_options)
    if all(m.kind == "embedding" for m in dataset.modalities.values()):
        return embedding_set_from_precomputed(dataset)
    # Rows the reader dropped (missing file, blank caption) and images that do not decode are both reported.
    skipped: list[str] = list(dataset.extra.get("skipped") or [])
    if skip_bad:
        dataset, unreadable = skip_unreadable(dataset)
        skipped += unreadable
    spec = resolve_model(model if model is not None else bundled_checkpoint(), pretrained)
    cache = EmbeddingCache(cache_dir)
    es = embed_dataset(dataset, spec, cache=cache, device=device, precision=precision,
                       batch_size=batch_size, workers=workers, dtype=dtype, progress=progress,
                       extra_meta={"skipped": skipped}, chunk_size=chunk_size or DEFAULT_CHUNK_SIZE,
                       dist=context_from_env(device))
    es.provenance["path"] = str(cache.path(es.provenance["key"]))
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
    from gapdiag.metrics import compute_all

    if sample is not None and sample < 1:
        raise InputError(f"--sample must be a positive number of samples (got {sample})")
    from gapdiag.metrics.retrieval import search_device
    from gapdiag.progress import progress_bar

    es = data if isinstance(data, EmbeddingSet) else embed(data, model, progress=progress, **embed_options)
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
    intervals = {}
    if bootstrap:
        from gapdiag.bootstrap import bootstrap_intervals

        if status is not None:
            status(f"bootstrap: {bootstrap} resamples")
        intervals = bootstrap_intervals(es, metrics, n=bootstrap, seed=seed, sample=sample, block_size=block_size,
                                        retrieval_engine=retrieval_engine,
                                        device=search_on)
    return Report(metrics=values, provenance=_provenance(es, sample=sample, seed=seed, **embed_options),
                  intervals=intervals, extras=extras)


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
    from gapdiag.models import resolve_device

    return str(resolve_device(device))


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
