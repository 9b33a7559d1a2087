"""Reading data and embedding it through the cache: what :func:`gapdiag.api.embed` and the verbs that embed do.

:func:`load_data` and :func:`bundled_checkpoint` are verbs of the api too (``gapdiag.api.load_data``); they live
here because embedding needs them. The provenance a report keeps of its vectors is written here as well.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gapdiag import device as devices
from gapdiag import encode
from gapdiag.cache import EmbeddingCache
from gapdiag.data import detect_format, load_dataset
from gapdiag.data.base import PairedDataset
from gapdiag.data.ops import skip_unreadable
from gapdiag.data.sample import default_dataset, sample_data_dir
from gapdiag.distributed import context_from_env
from gapdiag.embeddings import EmbeddingSet
from gapdiag.errors import DatasetError, InputError
from gapdiag.models import require_weights, resolve_model, weights_are_random
from gapdiag.notes import count_repeated_items
from gapdiag.options import MODEL_OPTIONS, refuse_beside_vectors
from gapdiag.settings import Settings, use

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
        return load_dataset(data, split=split, skip_bad=skip_bad, **reader_options)


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
        "sample": {"size": sample, "seed": seed},
        "device": device_name(device),
        "dtype": prov.get("dtype"),
    }
    if prov.get("skipped"):
        out["skipped"] = list(prov["skipped"])
    if prov.get("key"):
        out["cache_key"] = prov["key"]
    return out


def device_name(device: str) -> str:
    """``auto``/``cuda``/... resolved to the device this machine uses (``cpu``, ``cuda:0``, ``mps``)."""
    return str(devices.resolve(device))
