"""The library API that the CLI and notebooks call.

>>> import gapdiag
>>> report = gapdiag.measure()                       # bundled tiny CLIP on bundled digits, offline
>>> report["modality_gap/image-text"]                # doctest: +SKIP
0.71
>>> es = gapdiag.embed("captions.csv", "ViT-B-32", pretrained="laion2b_s34b_b79k")  # doctest: +SKIP

Every function takes paths or in-memory objects and returns plain objects (:class:`~gapdiag.report.Report`,
:class:`~gapdiag.vectors.EmbeddingSet`); nothing here prints except the optional progress display on stderr.

The verbs are defined here; what they do at length lives beside them: :mod:`gapdiag.api.embedding` (reading
data, embedding through the cache, the provenance of a report; :func:`load_data` and :func:`bundled_checkpoint`
are defined there) and :mod:`gapdiag.api.measuring` (metrics with progress, memoised reports, item names, the
similarity to a baseline's vectors). Names marked "for the CLI" are what the commands, which import only this
door, show besides the verbs' results.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from gapdiag.api import embedding, measuring
from gapdiag.api.embedding import BUNDLED_CHECKPOINTS, DEFAULT_CHECKPOINT, bundled_checkpoint, load_data  # noqa: F401
from gapdiag.api.measuring import describe_items, similarity_to_baseline
from gapdiag.cache import KEY_LENGTH as CACHE_KEY_LENGTH  # noqa: F401 - for the CLI
from gapdiag.cache import EmbeddingCache
from gapdiag.check.compare import Comparison  # noqa: F401 - for the CLI
from gapdiag.check.compare import comparison_to_json as comparison_json  # noqa: F401 - for the CLI
from gapdiag.check.evaluate import CheckResult  # noqa: F401 - for the CLI
from gapdiag.check.render import to_json as check_json  # noqa: F401 - for the CLI
from gapdiag.check.run import CheckRun, CompareRun, run_check, run_compare
from gapdiag.data.base import PairedDataset
from gapdiag.embedding.distributed import is_main_process  # noqa: F401 - for the CLI
from gapdiag.errors import InputError
from gapdiag.metrics.sampling import check_sample_size
from gapdiag.metrics.search_index import search_device
from gapdiag.metrics.similarity import compare_embeddings
from gapdiag.options import (
    EMBED_DEFAULTS,
    MODEL_OPTIONS,
    READER_OPTIONS,
    check_seed,
    refuse_beside_vectors,
    refuse_options,
    set_options,
)
from gapdiag.outputs import check_outputs, output_folder
from gapdiag.progress import LogConsole  # noqa: F401 - for the CLI: whole lines off a terminal
from gapdiag.report import (
    Report,
    presentation,  # noqa: F401 - for the CLI (how numbers are shown)
    write_json,
)
from gapdiag.report import export as exporter
from gapdiag.report.record import _to_jsonable as to_jsonable  # noqa: F401 - the JSON encoding of --json output
from gapdiag.report.references import references_for  # noqa: F401 - for the CLI
from gapdiag.settings import Settings, use
from gapdiag.training.train import RUN_FILES
from gapdiag.training.train import train as run_training
from gapdiag.vectors import EmbeddingSet


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
    random_init: bool = False,
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
            default :data:`gapdiag.embedding.encode.DEFAULT_CHUNK_SIZE`.
        preprocess: ``pil``, ``device`` (decode and transform images on the model's device) or ``auto``
            (device on CUDA when the tensor path reproduces the model's transform, else pil); see
            :mod:`gapdiag.embedding.preprocess`. Part of the cache key.
        random_init: Embed with an architecture's random initial weights on purpose (an architecture name or
            config JSON without ``pretrained``); without it such a model is refused, listing its pretrained tags.
            Recorded as ``random_init`` in the provenance.

    Returns:
        The raw vectors with their alignment, labels and provenance (memory-mapped from the cache).
    """
    options = {"model": model, "pretrained": pretrained, "random_init": random_init, "precision": precision,
               "preprocess": preprocess, "batch_size": batch_size, "workers": workers, "dtype": dtype,
               "chunk_size": chunk_size, "skip_bad": skip_bad, "split": split, **reader_options}
    cached = embedding.cache_entry(data)
    if cached is not None:
        refuse_beside_vectors(options, f"the cache entry {data}")
        return cached
    if pretrained and model is None:
        raise InputError(f"--pretrained {pretrained!r} needs --model: it is a tag or checkpoint of an architecture",
                         hint="pass --model ARCH with it (e.g. -m ViT-B-32 -p openai), or --model FILE alone")
    settings = Settings.build(cache_dir, device=device, precision=precision, quiet=not progress)
    with use(settings):
        return embedding.embed_under(data, model, settings, pretrained=pretrained, split=split,
                                     batch_size=batch_size, workers=workers, dtype=dtype, skip_bad=skip_bad,
                                     chunk_size=chunk_size, preprocess=preprocess, random_init=random_init,
                                     given=options, **reader_options)


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
    threads: int | None = None,
    out: str | Path | None = None,
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
        threads: CPU threads of the pair passes (None = every core); the values do not depend on it.
        out: Also save the report JSON here (checked before any work: never one of the inputs).
        **embed_options: Passed to :func:`embed` (pretrained, split, device, batch_size, cache_dir, ...).

    Returns:
        A :class:`~gapdiag.report.Report` with values, provenance and extras (gap vectors, spectra).
    """
    check_sample_size(sample)  # before embedding: a bad --sample or --seed must not cost an embedding run
    check_seed(seed)
    check_outputs({"--out": out}, _inputs(data, model, embed_options))

    def name_items(extras: dict[str, Any]) -> None:
        describe_items(extras, data, split=embed_options.get("split"), cache_dir=embed_options.get("cache_dir"))

    with _edge(embed_options):
        es = _vectors_or_embed(data, model, progress, embed_options)
        # Hubs and changed items are named by path/caption only when measure read the data itself.
        read_here = not isinstance(data, EmbeddingSet) and embedding.cache_entry_path(data) is None
        report = measuring.measure_embeddings(
            es, metrics=metrics, sample=sample, seed=seed, bootstrap=bootstrap, retrieval_engine=retrieval_engine,
            block_size=block_size, progress=progress, device=embed_options.get("device", "auto"), threads=threads,
            provenance=embedding.report_provenance(es, sample=sample, seed=seed, **embed_options),
            describe=name_items if read_here else None)
    if out is not None:
        report.save(out)
    return report


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
    :mod:`gapdiag.report.export` for the columns), for pandas, polars, DuckDB or embedding viewers.

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
    exporter.check_method(method)  # before any embedding work
    check_seed(seed)
    if method != "umap":
        refuse_options(set_options({"seed": seed}, ("seed",), {"seed": 0}), f"--map {method}",
                       "it is deterministic; only UMAP is seeded")
    check_outputs({"--out": out}, _inputs(data, model, embed_options))
    with _edge(embed_options):
        es, dataset = embedding.embeddings_with_items(embed, data, model, progress=progress, **embed_options)
        table = exporter.export_table(es, dataset, method=method, seed=seed, vectors=vectors,
                                      status=measuring.status_printer(progress))
    return exporter.write_parquet(table, out)


def shift(
    data: str | Path | PairedDataset | EmbeddingSet | None = None,
    model: str | Path | None = None,
    *,
    lambdas: Sequence[float] | None = None,
    temperatures: Sequence[float] | None = None,
    progress: bool = True,
    out: str | Path | None = None,
    **embed_options: Any,
) -> dict[str, Any]:
    """Liang et al.'s embedding-shift experiment on a dataset's image and text embeddings.

    Returns the JSON-serialisable dict of :func:`gapdiag.training.shift.shift_experiment` (per λ: gap, loss per
    temperature, R@1 both ways, zero-shot accuracy when the data has classes), plus the provenance; also
    written to ``out`` when given (checked before any work: never one of the inputs).
    """
    # gapdiag.training.shift imports SciPy: only when the experiment runs, never on a cache hit of measure.
    from gapdiag.training import shift as shift_module

    check_outputs({"--out": out}, _inputs(data, model, embed_options))
    with _edge(embed_options):
        result = _shift(shift_module, data, model, lambdas, temperatures, progress, embed_options)
    if out is not None:
        write_json(result, out, what="shift result")
    return result


def _shift(shift_module: Any, data: Any, model: Any, lambdas: Sequence[float] | None,
           temperatures: Sequence[float] | None, progress: bool, embed_options: dict[str, Any]) -> dict[str, Any]:
    """The body of :func:`shift`: embed, move along the gap, measure."""
    es = _vectors_or_embed(data, model, progress, embed_options)
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
    result["provenance"] = embedding.report_provenance(es, sample=None, seed=0, **embed_options)
    return result


def _vectors_or_embed(data: Any, model: Any, progress: bool, embed_options: dict[str, Any]) -> EmbeddingSet:
    """``data`` itself when it is an :class:`EmbeddingSet` (model and reader options are refused then), else
    :func:`embed` of it."""
    vectors = embedding.given_vectors(data, model, embed_options)
    return vectors if vectors is not None else embed(data, model, progress=progress, **embed_options)


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
    cached = embedding.cache_entry(source)
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
    with _edge(embed_options):
        esa = _embedding_set(a, data, progress, embed_options)
        esb = _embedding_set(b, data, progress, embed_options)
        values, extras = compare_embeddings(esa, esb, k=k, top=top,
                                            device=search_device(embed_options.get("device", "auto")))
    if not any(isinstance(s, EmbeddingSet) or embedding.cache_entry_path(s) is not None for s in (a, b)):
        describe_items(extras, data, split=embed_options.get("split"), cache_dir=embed_options.get("cache_dir"))
    return {"metrics": values, "extras": extras,
            "provenance": {"a": embedding.report_provenance(esa, sample=None, seed=0),
                           "b": embedding.report_provenance(esb, sample=None, seed=0)}}


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
    return EmbeddingCache(cache_dir).verify(key, progress=progress)


def cache_ls(*, cache_dir: str | Path | None = None) -> tuple[Path, list[dict[str, Any]]]:
    """The cache root and one dict per entry (key, model, dataset, counts, dtype, size, created, complete).

    Raises:
        CacheError: The cache dir cannot be used.
    """
    cache = EmbeddingCache(cache_dir)
    return cache.root, cache.ls()


def cache_rm(key: str, *, cache_dir: str | Path | None = None) -> list[str]:
    """Remove cache entries by key, unique key prefix, or ``"all"``; returns the removed keys.

    Raises:
        InputError: ``key`` matches no entry or several.
    """
    return EmbeddingCache(cache_dir).rm(key)


def cache_dir(cache_dir: str | Path | None = None) -> Path:
    """The cache directory in use (``cache_dir``, else ``GAPDIAG_CACHE_DIR``, else the user cache dir)."""
    return EmbeddingCache(cache_dir).root


def train(data: str | Path | PairedDataset | None = None, model: str | Path = "gapdiag-tiny-vit", *,
          split: str | None = None, eval_split: str | None = None, **options: Any) -> Any:
    """Train or fine-tune an open_clip model; see :func:`gapdiag.training.train.train` for the options.

    Args:
        data: Training pairs: a dataset, or a path read with :func:`load_data` (``None`` = the bundled digits).
        split: With a path: the rows trained on.
        eval_split: With a path: the rows measured after each epoch (``eval_data``; default: the training rows).

    Returns:
        The :class:`gapdiag.training.train.TrainResult` (run dir, model path, per-epoch metrics, resumed epoch).
    """
    check_seed(options.get("seed"))  # before the data is read: a bad --seed costs nothing
    out_dir = options.get("out_dir")
    eval_source = getattr(options.get("eval_data"), "source", None)
    train_source = getattr(data, "source", data)
    check_outputs({}, {"--model": model, "--pretrained": options.get("pretrained"),
                       "--data": [train_source, *([eval_source] if eval_source else [])]},
                  folders={"--out": (out_dir, RUN_FILES)})
    with _edge({}):
        if not isinstance(data, PairedDataset):
            if eval_split:
                options["eval_data"] = load_data(data, split=eval_split)
            data = load_data(data, split=split)
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

    check_seed(options.get("seed"))
    output_folder(out, "--out")
    with _edge(options):
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

    check_seed(options.get("seed"))
    check_outputs({"--out": out}, {"--report": options.get("from_report"), "--shift": options.get("shift"),
                                   **_inputs(options.get("data"), options.get("model"), options)})
    with _edge(options):
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

    Raises:
        InputError: With ``report``, an option that would measure now (data, model, reader, sampling options).
    """
    check_seed(options.get("seed"))
    if report is not None:
        measuring = ("data", *MODEL_OPTIONS, *READER_OPTIONS, "device", "sample", "seed", "bootstrap")
        refuse_options(set_options(options, measuring, EMBED_DEFAULTS), f"a saved report (--report {report})",
                       "they measure the candidate now, --report reads it (measure with them first: "
                       "`gapdiag measure ... --out report.json`)")
    check_outputs({option: options.get(option[2:]) for option in ("--out", "--markdown", "--junit")},
                  {"--baseline": baseline, "--report": report, "--config": options.get("config"),
                   **_inputs(options.get("data"), options.get("model"), options)})
    with _edge(options):
        return run_check(measure, similarity_to_baseline, baseline, report, **options)


def compare(reports: Sequence[str | Path] = (), models: Sequence[str] = (), **options: Any) -> CompareRun:
    """Two or more reports, cache entries or models measured now, side by side (what ``gapdiag compare`` does).

    Args:
        reports: Report JSON files, cache entry directories or precomputed embedding files (``.npz``, a folder
            of ``.npy``, ``.parquet``); the first is the reference for deltas. Two sets of vectors (and nothing
            else) are also compared item by item, as :func:`compare_models` does.
        models: Models measured now on the data of the :func:`embed` options, appended after the reports.
        **options: ``labels``, ``force``, ``sample``, ``seed``, ``markdown``, ``plot`` (a directory), and the
            options of :func:`embed`.

    Returns:
        A :class:`gapdiag.check.run.CompareRun`: the comparison, the reports, the item-by-item view of two
        models (``similarity``) and the figure path.
    """
    check_seed(options.get("seed"))
    check_outputs({"--markdown": options.get("markdown")},
                  {"REPORTS": list(reports), **_inputs(options.get("data"), list(models), options)},
                  folders={"--plot": (options.get("plot"), ["compare.png"])})
    with _edge(options):
        return run_compare(measure, compare_models, embedding.compared_vectors, reports, models, **options)


def _inputs(data: Any, model: Any, options: dict[str, Any]) -> dict[str, Any]:
    """The files a verb reads, by the option that names them (for :func:`gapdiag.outputs.check_outputs`)."""
    return {"--data": data, "--model": model, "--pretrained": options.get("pretrained")}


@contextlib.contextmanager
def _edge(options: dict[str, Any]) -> Iterator[None]:
    """Resolve the settings of a verb once, at the door (its cache root, from ``cache_dir=`` or the defaults),
    for everything the verb computes: the dataset fingerprint memo and numba's compile cache follow that root
    (:func:`gapdiag.settings.use`)."""
    with use(Settings.build(options.get("cache_dir"))):
        yield
