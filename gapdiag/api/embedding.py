"""The verbs that read data and embed it: :func:`load_data`, :func:`embed`, :func:`load_model` and
:func:`bundled_checkpoint`, and what the other verbs use of them (the vectors of whatever a verb is given, the
provenance a report keeps of them).

Each verb resolves its settings once, here at the door: the cache root (:meth:`gapdiag.settings.Settings.build`)
and the device (:func:`gapdiag.device.resolve`); the rooms below receive them as values.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gapdiag import device as devices
from gapdiag import fsutil, settings
from gapdiag.api.options import MODEL_OPTIONS, EmbedOptions, refuse_beside_vectors
from gapdiag.cache import EmbeddingCache
from gapdiag.data import detect_format, load_dataset
from gapdiag.data.base import Modality, PairedDataset
from gapdiag.data.ops import skip_unreadable
from gapdiag.data.sample import default_dataset, sample_data_dir
from gapdiag.device import Device
from gapdiag.embedding import encode
from gapdiag.embedding.distributed import context_from_env
from gapdiag.errors import DatasetError, InputError
from gapdiag.fsutil import hash_json
from gapdiag.models.loading import LoadedModel, build_model
from gapdiag.models.resolving import require_weights, resolve_model, weights_are_random
from gapdiag.report.notes import count_repeated_items
from gapdiag.settings import Settings
from gapdiag.vectors import EmbeddingSet

#: The bundled checkpoints (trained by scripts/train_bundled.py on sample_data/digits).
BUNDLED_CHECKPOINTS = ("infonce", "gap_closing")
DEFAULT_CHECKPOINT = "infonce"
#: The ``--model`` prefix naming a bundled checkpoint: ``bundled:gap_closing``, from a checkout or a wheel alike.
BUNDLED_PREFIX = "bundled:"


def bundled_checkpoint(name: str = DEFAULT_CHECKPOINT) -> Path:
    """Path of a bundled tiny checkpoint (``infonce`` or ``gap_closing``), in the sample-data folder
    (``$GAPDIAG_SAMPLE_DATA``, else the installed copy)."""
    return checkpoint_in(Settings.build().sample_data, name)


def checkpoint_in(sample_data: Path | None, name: str = DEFAULT_CHECKPOINT) -> Path:
    """:func:`bundled_checkpoint` in the sample-data folder ``sample_data`` (``None``: the installed one)."""
    if name not in BUNDLED_CHECKPOINTS:
        raise InputError(f"unknown bundled checkpoint {name!r}",
                         hint=f"use one of {', '.join(BUNDLED_PREFIX + n for n in BUNDLED_CHECKPOINTS)}")
    path = sample_data_dir(sample_data) / "checkpoints" / f"{name}.safetensors"
    if not path.is_file():
        raise InputError(f"bundled checkpoint missing: {path}",
                         hint="rebuild it with `python scripts/train_bundled.py` or pass --model")
    return path


def model_source(model: str | Path | None, sample_data: Path | None) -> str | Path:
    """``--model`` as :func:`gapdiag.models.resolving.resolve_model` takes it: ``None`` is the default bundled
    checkpoint and ``bundled:NAME`` the file of that one, in the sample-data folder ``sample_data``; anything else
    is returned as it is.

    Raises:
        InputError: ``bundled:NAME`` with a name that is not one of :data:`BUNDLED_CHECKPOINTS`.
    """
    if model is None:
        return checkpoint_in(sample_data)
    if isinstance(model, str) and model.startswith(BUNDLED_PREFIX):
        return checkpoint_in(sample_data, model.removeprefix(BUNDLED_PREFIX))
    return model


def load_data(
    data: str | Path | PairedDataset | None = None,
    *,
    split: str | None = None,
    skip_bad: bool = False,
    cache_dir: str | Path | None = None,
    format: str | None = None,
    image_column: str | None = None,
    text_columns: Sequence[str] | None = None,
    label_column: str | None = None,
    class_name_column: str | None = None,
    attribute_columns: Sequence[str] | None = None,
    templates: Sequence[str] | None = None,
    image_root: str | Path | None = None,
) -> PairedDataset:
    """Read a dataset (any supported format; see docs/datasets.md). ``None`` -> the bundled digits, test split.

    Args:
        cache_dir: The cache root under which the dataset fingerprint is memoised (``fingerprints/``);
            ``None``: ``$GAPDIAG_CACHE_DIR`` or the user cache dir.
        format, image_column, text_columns, label_column, class_name_column, attribute_columns, templates,
            image_root: The reader options of :func:`gapdiag.data.load_dataset`.
    """
    options = EmbedOptions(split=split, skip_bad=skip_bad, cache_dir=cache_dir, format=format,
                           image_column=image_column, text_columns=text_columns, label_column=label_column,
                           class_name_column=class_name_column, attribute_columns=attribute_columns,
                           templates=templates, image_root=image_root)
    return read_dataset(data, options, Settings.build(cache_dir))


def read_dataset(data: str | Path | PairedDataset | None, options: EmbedOptions, at: Settings) -> PairedDataset:
    """:func:`load_data` with the settings ``at`` resolved: the fingerprint memo under their cache root, the
    bundled data from their sample-data folder."""
    if isinstance(data, PairedDataset):
        return data
    if data is None:
        return default_dataset(split=options.split or "test", sample_data=at.sample_data, memo_dir=at.fingerprint_memo)
    dataset = load_dataset(data, split=options.split, skip_bad=options.skip_bad, memo_dir=at.fingerprint_memo,
                           **options.reader())
    if not dataset.name:
        # Readers name data after its folder or file; a path such as `manifest.csv` or `.` in the current
        # folder has an empty one (`Path("manifest.csv").parent.name == ""`): name it after the folder it is in.
        dataset.name = folder_name(dataset.source)
    return dataset


def folder_name(source: str | Path) -> str:
    """The name of the folder ``source`` (a file, a shard pattern or a folder) lives in, resolved: ``digits`` for
    ``manifest.csv`` or ``.`` read inside ``.../digits``."""
    path = Path(source).expanduser().resolve()
    return (path if path.is_dir() else path.parent).name or str(path)


def embed(
    data: str | Path | PairedDataset | EmbeddingSet | None = None,
    model: str | Path | None = None,
    *,
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
) -> EmbeddingSet:
    """Embed every modality of a dataset with a model, through the on-disk cache.

    A cache entry directory or an :class:`EmbeddingSet` given as ``data`` is returned as it is (the model and
    reader options are refused beside it). Under ``torchrun`` every rank embeds its own share of the chunks (see docs/scaling.md).

    Args:
        data: Dataset path or object, or a cache entry directory (``gapdiag cache ls``); ``None`` = the bundled
            sample data (digits, test split).
        model: Architecture name, checkpoint file, ``hf-hub:`` id, ``hf:`` transformers model (hub id or folder),
            ``bundled:NAME`` or config JSON; ``None`` = the bundled tiny InfoNCE checkpoint. Ignored for precomputed embeddings.
        pretrained: open_clip tag or checkpoint file for an architecture name.
        random_init: Embed an architecture's random initial weights on purpose (an architecture name or config
            JSON without ``pretrained``); without it such a model is refused, listing its pretrained tags.
            Recorded as ``random_init`` in the provenance.
        split: Keep one split of the data (a manifest's ``split`` column, an image folder's sub-folder, ...).
        format: Read ``data`` as this format (a reader name of docs/datasets.md) instead of detecting it.
        image_column, text_columns, label_column, class_name_column, attribute_columns, templates, image_root:
            Reader options (see :func:`gapdiag.data.load_dataset`); ``None`` keeps each reader's default.
        skip_bad: Drop samples whose image cannot be decoded (reported in the provenance) instead of failing.
        device: ``auto`` (cuda > mps > cpu), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        precision: ``fp32``, ``amp`` (autocast on CUDA) or ``bf16``.
        preprocess: ``pil``, ``device`` (decode and transform images on the model's device) or ``auto``
            (device on CUDA when the tensor path reproduces the model's transform, else pil); see
            :mod:`gapdiag.embedding.preprocess`. Part of the cache key.
        batch_size: Items per forward pass.
        workers: Data-loading worker processes (0 = in the main process).
        dtype: Stored vector dtype, ``float32`` or ``float16``.
        chunk_size: Items per committed chunk (what a killed run can lose at most; the unit of work of a rank);
            default :data:`gapdiag.embedding.encode.DEFAULT_CHUNK_SIZE`.
        cache_dir: The cache root; ``None``: ``$GAPDIAG_CACHE_DIR``, else the user cache dir.
        progress: Show a progress display (items/s, ETA) on stderr.

    Returns:
        The raw vectors with their alignment, labels and provenance (memory-mapped from the cache).
    """
    options = EmbedOptions(
        pretrained=pretrained, random_init=random_init, split=split, format=format, image_column=image_column,
        text_columns=text_columns, label_column=label_column, class_name_column=class_name_column,
        attribute_columns=attribute_columns, templates=templates, image_root=image_root, skip_bad=skip_bad,
        device=device, precision=precision, preprocess=preprocess, batch_size=batch_size, workers=workers,
        dtype=dtype, chunk_size=chunk_size, cache_dir=cache_dir, progress=progress)
    return vectors_of(data, model, options, settings.resolve(cache_dir), devices.resolve(device))


def embed_vectors(data: str | Path | PairedDataset | None, model: str | Path | None, options: EmbedOptions,
                  at: Settings, device: Device) -> EmbeddingSet:
    """:func:`embed` with its settings ``at`` and its ``device`` resolved: read the data, then embed it through
    the cache under ``at.cache_root`` (precomputed vectors are taken as they are)."""
    dataset = read_dataset(data, options, at)
    if all(m.kind == "embedding" for m in dataset.modalities.values()):
        # The reader has refused the reader options it does not use; what a model would do is refused here.
        refuse_beside_vectors({k: v for k, v in {"model": model, **options.given()}.items() if k in MODEL_OPTIONS},
                              f"the precomputed embeddings {dataset.source}")
        return encode.embedding_set_from_precomputed(dataset)
    if not dataset.fingerprint:  # built in memory: the key must still follow what it holds
        dataset = dataclasses.replace(dataset, fingerprint=content_fingerprint(dataset))
    # Rows the reader dropped (missing file, blank caption) and images that do not decode are both reported.
    skipped: list[str] = list(dataset.extra.get("skipped") or [])
    if options.skip_bad:
        dataset, unreadable = skip_unreadable(dataset)
        skipped += unreadable
    spec = resolve_model(model_source(model, at.sample_data), options.pretrained, cache_root=at.cache_root)
    require_weights(spec, random_init=options.random_init)
    cache = EmbeddingCache(at.cache_root)
    es = encode.embed_dataset(dataset, spec, cache=cache, device=device, precision=options.precision,
                              batch_size=options.batch_size, workers=options.workers, dtype=options.dtype,
                              progress=options.progress, extra_meta={"skipped": skipped},
                              chunk_size=options.chunk_size or encode.DEFAULT_CHUNK_SIZE,
                              dist=context_from_env(device), preprocess=options.preprocess)
    # The entry may have been filled by another run (a copy of the data, the checkpoint by another path): its
    # numbers are ours, its words are not. The provenance says how *this* run named the data and the model.
    es.provenance["model"] = {**(es.provenance.get("model") or {}), **spec.describe(cache_dir=at.cache_root)}
    es.provenance["dataset"] = {**(es.provenance.get("dataset") or {}), "name": dataset.name,
                                "source": dataset.source}
    es.provenance["skipped"] = skipped
    es.provenance["path"] = str(cache.path(es.provenance["key"]))
    # Exact, from the texts themselves: how many captions repeat another (the class-level caption note).
    es.provenance["repeated_items"] = {name: count_repeated_items(m.items)
                                       for name, m in dataset.modalities.items()}
    return es


def vectors_of(data: Any, model: str | Path | None, options: EmbedOptions, at: Settings,
               device: Device) -> EmbeddingSet:
    """The vectors a verb is given (what :func:`embed` returns): ``data`` itself when it is an
    :class:`EmbeddingSet` or the vectors of a cache entry (the model and reader options are refused then), else
    ``data`` embedded by ``model`` with the settings ``at`` and the ``device`` resolved."""
    given = given_vectors(data, model, options)
    if given is not None:
        return given
    cached = cache_entry(data)
    if cached is not None:
        refuse_beside_vectors({"model": model, **options.given()}, f"the cache entry {data}")
        return cached
    if options.pretrained and model is None:
        raise InputError(f"--pretrained {options.pretrained!r} needs --model: it is a tag or checkpoint of an "
                         "architecture", hint="pass --model ARCH with it (e.g. -m ViT-B-32 -p openai), or --model "
                                              "FILE alone")
    return embed_vectors(data, model, options, at, device)


def vectors_with_items(data: Any, model: str | Path | None, options: EmbedOptions, at: Settings,
                       device: Device) -> tuple[EmbeddingSet, PairedDataset | None]:
    """:func:`vectors_of` and the dataset the vectors came from, item for item (``None`` if not at hand: vectors
    given in memory or a cache entry)."""
    if isinstance(data, EmbeddingSet) or cache_entry_path(data) is not None:
        return vectors_of(data, model, options, at, device), None
    dataset = read_dataset(data, options, at)
    if options.skip_bad:
        # Dropped here, once, so that the rows of the dataset and of the embeddings stay aligned.
        dataset, _ = skip_unreadable(dataset)
    return vectors_of(dataset, model, dataclasses.replace(options, skip_bad=False), at, device), dataset


def given_vectors(data: Any, model: str | Path | None, options: EmbedOptions) -> EmbeddingSet | None:
    """``data`` when it is an :class:`EmbeddingSet` (whose vectors no model or reader option can change: those
    are refused), else None."""
    if not isinstance(data, EmbeddingSet):
        return None
    refuse_beside_vectors({"model": model, **options.given()}, "embeddings given in memory (an EmbeddingSet)")
    return data


def cache_entry_path(source: Any) -> Path | None:
    """``source`` as a cache entry directory (``gapdiag cache ls`` prints them), or None if it names none."""
    return Path(source) if isinstance(source, (str, Path)) and (Path(source) / "meta.json").is_file() else None


def cache_entry(data: Any) -> EmbeddingSet | None:
    """The embedding set of the cache entry directory ``data`` names, or None if it names none."""
    entry = cache_entry_path(data)
    if entry is None:
        return None
    es = EmbeddingCache(entry.parent).get(entry.name)
    if es is None:
        raise InputError(f"{entry}: incomplete cache entry", hint="re-run `gapdiag embed` to finish it")
    es.provenance["path"] = str(entry)
    return es


def compared_vectors(source: str | Path, at: Settings) -> EmbeddingSet | None:
    """The vectors a path given to ``compare`` holds (a cache entry or precomputed embeddings); None for a report
    (a ``.json`` file, or a path no dataset reader recognises: reading it as a report names what is wrong).

    Raises:
        InputError: The path is a dataset that a model would have to embed (compare models on it with ``-d``).
    """
    cached = cache_entry(source)
    if cached is not None:
        return cached
    path = Path(source)
    if path.suffix.lower() == ".json":
        return None
    try:
        reader = detect_format(path)
    except DatasetError:
        return None
    if reader != "precomputed":
        raise InputError(f"{path} is a dataset ({reader}), not a report, cache entry or precomputed embeddings",
                         hint=f"compare models on it with `gapdiag compare -m MODEL_A -m MODEL_B -d {path}`")
    return encode.embedding_set_from_precomputed(read_dataset(path, EmbedOptions(), at))


def load_model(model: str | Path, pretrained: str | None = None, *, device: str = "auto", precision: str = "fp32",
               cache_dir: str | Path | None = None) -> LoadedModel:
    """Resolve and build a model in one call (what notebooks use): ``load_model("ViT-B-32", "laion2b_s34b_b79k")``.

    Args:
        device: ``auto`` (cuda > mps > cpu), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        cache_dir: The cache root that keeps the configs a checkpoint carries; ``None``: the default root.
    """
    at = Settings.build(cache_dir)
    spec = resolve_model(model_source(model, at.sample_data), pretrained, cache_root=at.cache_root)
    return build_model(spec, device=devices.resolve(device), precision=precision)


def report_provenance(es: EmbeddingSet, *, sample: int | None, seed: int, device: Device) -> dict[str, Any]:
    """The provenance a report keeps: model (with precision), dataset, sampling, the resolved device, dtype,
    cache key."""
    prov = es.provenance or {}
    model = dict(prov.get("model") or {})
    if "architecture" in model and "random_init" not in model:  # an entry cached before random_init was recorded
        model["random_init"] = weights_are_random(model["architecture"], model.get("pretrained"),
                                                  model.get("checkpoint"))
    if "precision" in prov:
        model["precision"] = prov["precision"]
    out = {
        "model": model,
        "dataset": dict(prov.get("dataset") or {}),
        "sample": sample_used(sample, seed, es.n_samples),
        "device": str(device),
        "dtype": prov.get("dtype"),
    }
    if prov.get("skipped"):
        out["skipped"] = list(prov["skipped"])
    if prov.get("key"):
        out["cache_key"] = prov["key"]
    return out


def sample_used(sample: int | None, seed: int, n_samples: int) -> dict[str, Any]:
    """The ``sample`` record of a report: the size actually used (``None``: every sample, exact), and the size
    asked for when it was not used (``--sample 100000`` on 359 samples measures all of them)."""
    if sample is None or sample < n_samples:
        return {"size": sample, "seed": seed}
    return {"size": None, "requested": sample, "seed": seed}


#: Bumped whenever :func:`content_fingerprint` hashes something else, so old cache keys stop matching.
CONTENT_FINGERPRINT_VERSION = 1


def content_fingerprint(dataset: PairedDataset) -> str:
    """The fingerprint of a dataset built in memory without one (``fingerprint=""``), from what it holds.

    SHA-256 (:func:`gapdiag.fsutil.hash_json`) over: per modality, in order, its name, kind, ``sample_index``
    and the SHA-256 of each item's content (an image file's bytes, memoised per file state like a reader's
    fingerprint; a tar or Parquet image's bytes; a caption's UTF-8 text; a vector's bytes); then the labels,
    class names, templates and attributes. Names, paths and the source are left out: the same content elsewhere
    keeps its fingerprint, any change of an image, caption, label or pairing gives another, so two datasets
    never share a cache key.

    Raises:
        InputError: An item whose content cannot be read or has no byte form (e.g. a PIL image object):
            one line naming the item, with the fix.
    """
    modalities = [{"name": name, "kind": m.kind, "sample_index": _array_digest(m.sample_index),
                   "items": [_item_digest(m, i) for i in range(len(m))]} for name, m in dataset.modalities.items()]
    return hash_json({
        "version": CONTENT_FINGERPRINT_VERSION,
        "modalities": modalities,
        "n_samples": dataset.n_samples,
        "labels": None if dataset.labels is None else _array_digest(dataset.labels),
        "class_names": dataset.class_names,
        "templates": list(dataset.templates),
        "attributes": {k: [str(v) for v in values] for k, values in (dataset.attributes or {}).items()},
    })


def _array_digest(values: Any) -> str:
    array = np.ascontiguousarray(values)
    return hashlib.sha256(f"{array.dtype.str}{array.shape}".encode() + array.tobytes()).hexdigest()


def _item_digest(modality: Modality, i: int) -> str:
    """SHA-256 of item ``i``'s content (see :func:`content_fingerprint`)."""
    item = modality.items[i]
    fix = "give image file paths and caption strings, or set the dataset's fingerprint"
    if modality.kind == "embedding":
        return _array_digest(item)
    if modality.kind == "text":
        if not isinstance(item, str):
            raise InputError(f"{modality.location(i)}: a caption of type {type(item).__name__} cannot be "
                             "fingerprinted", hint=fix)
        return hashlib.sha256(item.encode("utf-8", "surrogatepass")).hexdigest()
    if hasattr(item, "read_bytes") and not isinstance(item, Path):  # a tar member or a Parquet image
        return hashlib.sha256(item.read_bytes()).hexdigest()
    if not isinstance(item, (str, Path)):
        raise InputError(f"{modality.location(i)}: an image item of type {type(item).__name__} cannot be "
                         "fingerprinted", hint=fix)
    try:
        return fsutil.file_digest(item)
    except OSError as exc:
        raise InputError(f"{modality.location(i)}: cannot read image {item} to fingerprint the dataset "
                         f"({exc.strerror or exc})", hint="check the path") from None
