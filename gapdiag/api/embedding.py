"""Reading data and embedding it through the cache: what :func:`gapdiag.api.embed` and the verbs that embed do.

:func:`load_data` and :func:`bundled_checkpoint` are verbs of the api too (``gapdiag.api.load_data``); they live
here because embedding needs them. The provenance a report keeps of its vectors is written here as well.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from gapdiag import device as devices
from gapdiag import fsutil
from gapdiag.cache import EmbeddingCache
from gapdiag.data import detect_format, load_dataset
from gapdiag.data.base import Modality, PairedDataset, hash_json
from gapdiag.data.ops import skip_unreadable
from gapdiag.data.sample import default_dataset, sample_data_dir
from gapdiag.embedding import encode
from gapdiag.embedding.distributed import context_from_env
from gapdiag.errors import DatasetError, InputError
from gapdiag.models.loading import require_weights, resolve_model, weights_are_random
from gapdiag.options import MODEL_OPTIONS, refuse_beside_vectors
from gapdiag.report.notes import count_repeated_items
from gapdiag.settings import Settings, use
from gapdiag.vectors import EmbeddingSet

#: The bundled checkpoints (trained by scripts/train_bundled.py on sample_data/digits).
BUNDLED_CHECKPOINTS = ("infonce", "gap_closing")
DEFAULT_CHECKPOINT = "infonce"


def bundled_checkpoint(name: str = DEFAULT_CHECKPOINT) -> Path:
    """Path of a bundled tiny checkpoint (``infonce`` or ``gap_closing``)."""
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
    if isinstance(data, PairedDataset):
        return data
    with use(Settings.build(cache_dir)) if cache_dir is not None else contextlib.nullcontext():
        if data is None:
            return default_dataset(split=split or "test")
        dataset = load_dataset(data, split=split, skip_bad=skip_bad, **reader_options)
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


def embed_under(data: str | Path | PairedDataset | None, model: str | Path | None, settings: Settings, *,
                pretrained: str | None, split: str | None, batch_size: int, workers: int, dtype: str, skip_bad: bool,
                chunk_size: int | None, preprocess: str = "auto", random_init: bool = False,
                given: dict[str, Any] | None = None, **reader_options: Any) -> EmbeddingSet:
    """:func:`gapdiag.api.embed` under ``settings`` (whose cache root every memo uses); ``given`` holds the
    options as passed, so that those a precomputed set has no use for are refused."""
    dataset = load_data(data, split=split, skip_bad=skip_bad, **reader_options)
    if all(m.kind == "embedding" for m in dataset.modalities.values()):
        # The reader has refused the reader options it does not use; what a model would do is refused here.
        refuse_beside_vectors({k: v for k, v in (given or {}).items() if k in MODEL_OPTIONS},
                              f"the precomputed embeddings {dataset.source}")
        return encode.embedding_set_from_precomputed(dataset)
    if not dataset.fingerprint:  # built in memory: the key must still follow what it holds
        dataset = dataclasses.replace(dataset, fingerprint=content_fingerprint(dataset))
    # Rows the reader dropped (missing file, blank caption) and images that do not decode are both reported.
    skipped: list[str] = list(dataset.extra.get("skipped") or [])
    if skip_bad:
        dataset, unreadable = skip_unreadable(dataset)
        skipped += unreadable
    spec = resolve_model(model if model is not None else bundled_checkpoint(), pretrained,
                         cache_root=settings.cache_root)
    require_weights(spec, random_init=random_init)
    cache = EmbeddingCache(settings.cache_root)
    es = encode.embed_dataset(dataset, spec, cache=cache, device=settings.device, precision=settings.precision,
                              batch_size=batch_size, workers=workers, dtype=dtype, progress=not settings.quiet,
                              extra_meta={"skipped": skipped}, chunk_size=chunk_size or encode.DEFAULT_CHUNK_SIZE,
                              dist=context_from_env(settings.device), preprocess=preprocess)
    # The entry may have been filled by another run (a copy of the data, the checkpoint by another path): its
    # numbers are ours, its words are not. The provenance says how *this* run named the data and the model.
    es.provenance["model"] = {**(es.provenance.get("model") or {}), **spec.describe(cache_dir=settings.cache_root)}
    es.provenance["dataset"] = {**(es.provenance.get("dataset") or {}), "name": dataset.name,
                                "source": dataset.source}
    es.provenance["skipped"] = skipped
    es.provenance["path"] = str(cache.path(es.provenance["key"]))
    # Exact, from the texts themselves: how many captions repeat another (the class-level caption note).
    es.provenance["repeated_items"] = {name: count_repeated_items(m.items)
                                       for name, m in dataset.modalities.items()}
    return es


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


def compared_vectors(source: str | Path) -> EmbeddingSet | None:
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
    return encode.embedding_set_from_precomputed(load_data(path))


def given_vectors(data: Any, model: Any, embed_options: dict[str, Any]) -> EmbeddingSet | None:
    """``data`` when it is an :class:`EmbeddingSet` (whose vectors no model or reader option can change: those
    are refused), else None."""
    if not isinstance(data, EmbeddingSet):
        return None
    refuse_beside_vectors({"model": model, **embed_options}, "embeddings given in memory (an EmbeddingSet)")
    return data


def embeddings_with_items(embed: Callable[..., EmbeddingSet], data: Any, model: Any, *, progress: bool,
                          **embed_options: Any) -> tuple[EmbeddingSet, PairedDataset | None]:
    """The embeddings of ``data`` (by ``embed``, :func:`gapdiag.api.embed`) and the dataset they came from, item
    for item (``None`` if not at hand)."""
    vectors = given_vectors(data, model, embed_options)
    if vectors is not None:
        return vectors, None
    if cache_entry_path(data) is not None:
        return embed(data, model, progress=progress, **embed_options), None
    own = set(inspect.signature(embed).parameters) - {"reader_options"}
    reader = {k: v for k, v in embed_options.items() if k not in own}
    rest = {k: v for k, v in embed_options.items() if k in own and k not in ("split", "skip_bad")}
    dataset = load_data(data, split=embed_options.get("split"), skip_bad=bool(embed_options.get("skip_bad")),
                        **reader)
    if embed_options.get("skip_bad"):
        # Dropped here, once, so that the rows of the dataset and of the embeddings stay aligned.
        dataset, _ = skip_unreadable(dataset)
    return embed(dataset, model, progress=progress, **rest), dataset


def report_provenance(es: EmbeddingSet, *, sample: int | None, seed: int, device: str = "auto",
                      **_: Any) -> dict[str, Any]:
    """The provenance a report keeps: model (with precision), dataset, sampling, device, dtype, cache key."""
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
        "device": device_name(device),
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

    SHA-256 (:func:`gapdiag.data.base.hash_json`) over: per modality, in order, its name, kind, ``sample_index``
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


def device_name(device: str) -> str:
    """``auto``/``cuda``/... resolved to the device this machine uses (``cpu``, ``cuda:0``, ``mps``)."""
    return str(devices.resolve(device))
