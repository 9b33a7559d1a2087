"""Turn a :class:`~gapdiag.data.base.PairedDataset` into cached vectors; no metrics here.

Work is committed to the cache in chunks (atomic writes), so a run killed at any point resumes from the last
committed chunk and ends with the same vectors as an uninterrupted run. Image decoding and preprocessing run in
DataLoader workers (``workers``) so that they overlap with the forward passes. Identical captions (e.g. the
prompts of an ImageFolder dataset) are encoded once per run.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from gapdiag import __version__
from gapdiag.cache import DTYPES, EmbeddingCache, EntryWriter, cache_key
from gapdiag.data.base import Modality, PairedDataset
from gapdiag.data.images import IMAGE_DECODE_VERSION, load_image
from gapdiag.device import Device
from gapdiag.embedding.distributed import DistributedContext, broadcast_object
from gapdiag.embedding.loader import encode_images_on_device
from gapdiag.embedding.preprocess import PREPROCESS_BACKENDS, resolve_preprocess
from gapdiag.errors import CacheError, DatasetError, InputError
from gapdiag.metrics.zeroshot import build_classifier
from gapdiag.models.loading import LoadedModel, build_model
from gapdiag.models.resolving import ModelSpec
from gapdiag.progress import progress_bar
from gapdiag.vectors import EmbeddingSet

#: Bump when the way vectors are computed changes, so that old cache entries are never reused.
EMBED_VERSION = 1
DEFAULT_CHUNK_SIZE = 2048


#: Bump when the tensor preprocess (gapdiag.embedding.preprocess) changes the pixels it produces.
DEVICE_PREPROCESS_VERSION = 1


def embedding_key(dataset: PairedDataset, spec: ModelSpec, *, precision: str, dtype: str,
                  cache: EmbeddingCache | None = None, preprocess: str = "pil") -> str:
    """Cache key: everything that changes the stored vectors, and nothing that does not (batch size, device).

    ``preprocess`` is the resolved backend (``pil`` or ``device``): the two give slightly different pixels, so
    their vectors never share an entry. ``pil`` adds nothing, so keys written before the option stay valid;
    the device transform itself follows from the model (already in the key) and the version below. A dataset
    with images also carries :data:`gapdiag.data.images.IMAGE_DECODE_VERSION`: vectors of images decoded under
    an older rule (16-bit PNGs clipped, EXIF orientation ignored) are never reused.
    """
    extra = {} if preprocess == "pil" else {"preprocess": f"{preprocess}/v{DEVICE_PREPROCESS_VERSION}"}
    if any(m.kind == "image" for m in dataset.modalities.values()):
        extra["image_decode"] = IMAGE_DECODE_VERSION  # how load_image turns bytes into pixels (both backends)
    return cache_key({
        **extra,
        "embed_version": EMBED_VERSION,
        "model": spec.fingerprint(precision=precision, cache_dir=cache.root if cache else None),
        "dataset": dataset.fingerprint,
        "modalities": {name: m.kind for name, m in dataset.modalities.items()},
        "templates": list(dataset.templates) if dataset.class_names else None,
        "class_names": dataset.class_names,
        "attribute_values": _attribute_values(dataset),
        "dtype": dtype,
    })


def embed_dataset(
    dataset: PairedDataset,
    spec: ModelSpec,
    *,
    cache: EmbeddingCache,
    device: Device,
    precision: str = "fp32",
    batch_size: int = 64,
    workers: int = 0,
    dtype: str = "float32",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: bool = True,
    extra_meta: dict[str, Any] | None = None,
    dist: DistributedContext | None = None,
    preprocess: str = "pil",
) -> EmbeddingSet:
    """Embed every modality of ``dataset`` with the model of ``spec`` through ``cache``, on the resolved ``device``
    (:func:`gapdiag.device.resolve`, at the api's door; under torchrun each rank takes its own GPU of it).

    A complete cache entry is returned without building the model (its files are checked against their
    checksums first). Otherwise the model is built, then the entry is created or resumed: chunks already
    committed by an earlier (interrupted) run are skipped if their checksum holds and re-embedded if not, and
    the entry is finalised. Under
    ``torchrun`` (``dist`` from :func:`gapdiag.embedding.distributed.context_from_env`) each rank embeds its own share of
    the chunks and rank 0 finalises the one entry (see :mod:`gapdiag.embedding.distributed`).

    ``preprocess``: ``pil`` (the model's own PIL transform in workers), ``device`` (decode and transform on the
    model's device, :mod:`gapdiag.embedding.preprocess`) or ``auto`` (device on CUDA when the model's transform is
    one the tensor path reproduces, else pil). Its resolved value is part of the cache key.
    """
    _check_options(dataset, dtype=dtype, batch_size=batch_size, preprocess=preprocess)
    dist = dist or DistributedContext()
    device = dist.device(device)
    found = _look_up(dataset, spec, cache, dist, device=device, precision=precision, dtype=dtype,
                     preprocess=preprocess, progress=progress)
    # Every rank must take the same branch (the barriers below must match): rank 0 decides.
    if broadcast_object(dist, found.hit is not None):
        return found.hit if found.hit is not None else cache.get(found.key)  # type: ignore[return-value]
    meta = _entry_meta(dataset, spec, cache, precision=precision, dtype=dtype, preprocess=found.preprocess,
                       extra_meta=extra_meta)
    # The model is loaded before the entry is created: a model that cannot be loaded (no network for a
    # download, a bad checkpoint) must not leave an empty partial entry behind.
    loaded = found.loaded or build_model(spec, device=device, precision=precision)
    resolve_preprocess(found.preprocess, loaded.preprocess, loaded.device)  # device for a transform it cannot copy
    job = _EncodeJob(loaded, dataset, dist, batch_size=batch_size, workers=workers, preprocess=found.preprocess)
    if not dist.is_main:
        return _embed_share(cache, found.key, meta, job, chunk_size=chunk_size)
    return _build_entry(cache, found.key, meta, job, chunk_size=chunk_size, progress=progress)


def _check_options(dataset: PairedDataset, *, dtype: str, batch_size: int, preprocess: str) -> None:
    """Refuse options :func:`embed_dataset` cannot follow, in one line each.

    Raises:
        InputError: An unknown dtype or preprocess backend, a batch size below 1, or a modality that is not
            images or text.
    """
    if dtype not in DTYPES:
        raise InputError(f"unknown --dtype {dtype!r}", hint="use float32 or float16")
    if batch_size < 1:
        raise InputError(f"--batch-size must be >= 1 (got {batch_size})")
    unsupported = [m.name for m in dataset.modalities.values() if m.kind not in ("image", "text")]
    if unsupported:
        raise InputError(f"modalities {unsupported} cannot be encoded by an open_clip model",
                         hint="measure precomputed embeddings without --model")
    if preprocess not in PREPROCESS_BACKENDS:
        raise InputError(f"unknown --preprocess {preprocess!r}", hint="use pil, device or auto")


class _LookUp(NamedTuple):
    """Where :func:`embed_dataset` stands after asking the cache."""

    key: str
    hit: EmbeddingSet | None
    #: The resolved backend, ``pil`` or ``device``.
    preprocess: str
    #: The model, when resolving ``auto`` already had to build it.
    loaded: LoadedModel | None


def _look_up(dataset: PairedDataset, spec: ModelSpec, cache: EmbeddingCache, dist: DistributedContext, *,
             device: Device, precision: str, dtype: str, preprocess: str, progress: bool) -> _LookUp:
    """The entry's key under the resolved preprocess backend, and the entry if the cache holds it (read and
    verified once)."""
    backend = preprocess if preprocess != "auto" else ("device" if device.is_cuda else "pil")
    key = embedding_key(dataset, spec, precision=precision, dtype=dtype, cache=cache, preprocess=backend)
    hit = _get_or_rebuild(cache, key, progress=progress and dist.is_main)
    loaded: LoadedModel | None = None
    if hit is None and preprocess == "auto" and backend == "device":
        # Only the built model tells whether its transform is one the tensor path reproduces.
        loaded = build_model(spec, device=device, precision=precision)
        backend = resolve_preprocess("auto", loaded.preprocess, loaded.device)
        if backend != "device":
            key = embedding_key(dataset, spec, precision=precision, dtype=dtype, cache=cache, preprocess=backend)
            hit = _get_or_rebuild(cache, key, progress=progress and dist.is_main)
    return _LookUp(key, hit, backend, loaded)


def _get_or_rebuild(cache: EmbeddingCache, key: str, *, progress: bool) -> EmbeddingSet | None:
    """The verified entry ``key``, or ``None`` when it is missing or damaged.

    We are asked to embed this data with this model, so a damaged entry is a miss: the writer, under the
    entry's lock, says what was damaged (one warning) and builds it again (docs/cache.md). Only an entry given
    as data (``-d <entry folder>``), which nothing could rebuild, stops with the damage.
    """
    try:
        return cache.get(key, progress=progress)
    except CacheError:
        return None


def _entry_meta(dataset: PairedDataset, spec: ModelSpec, cache: EmbeddingCache, *, precision: str, dtype: str,
                preprocess: str, extra_meta: dict[str, Any] | None) -> dict[str, Any]:
    """What the entry's ``meta.json`` records about how its vectors were made."""
    return {
        "model": spec.describe(cache_dir=cache.root),
        "precision": precision,
        "dataset": {"name": dataset.name, "source": dataset.source, "fingerprint": dataset.fingerprint,
                    "n_samples": dataset.n_samples, "counts": dataset.counts()},
        "modalities": dataset.modality_names,
        "class_names": dataset.class_names,
        "templates": list(dataset.templates),
        "dtype": dtype,
        "preprocess": preprocess,
        "gapdiag_version": __version__,
        **(extra_meta or {}),
    }


@dataclass(frozen=True)
class _EncodeJob:
    """What a rank needs to encode its chunks of an entry."""

    loaded: LoadedModel
    dataset: PairedDataset
    dist: DistributedContext
    batch_size: int
    workers: int
    #: The resolved backend, ``pil`` or ``device``.
    preprocess: str


def _embed_share(cache: EmbeddingCache, key: str, meta: dict[str, Any], job: _EncodeJob, *,
                 chunk_size: int) -> EmbeddingSet:
    """A rank other than 0: embed this rank's chunks into the entry rank 0 prepared, then read what it finalised."""
    job.dist.barrier()  # 1: rank 0 holds the lock and has prepared (resumed or discarded) the entry
    with cache.writer(key, meta, chunk_size=chunk_size, shared=True) as writer:
        _embed_chunks(writer, job, memo={}, progress=False)
    job.dist.barrier()  # 2: every rank's chunks are committed
    job.dist.barrier()  # 3: rank 0 has finalised the entry
    return cache.get(key)  # type: ignore[return-value]


def _build_entry(cache: EmbeddingCache, key: str, meta: dict[str, Any], job: _EncodeJob, *, chunk_size: int,
                 progress: bool) -> EmbeddingSet:
    """Rank 0 (or the only process): create or resume the entry under its lock, embed its chunks, finalise it.

    The numbered barriers match those of :func:`_embed_share` on the other ranks.
    """
    with cache.writer(key, meta, chunk_size=chunk_size, progress=progress) as writer:
        job.dist.barrier()  # 1
        if writer.existing is not None:  # another process finished it while we waited for the lock
            job.dist.barrier()  # 2
            job.dist.barrier()  # 3
            return writer.existing
        text_memo: dict[str, np.ndarray] = {}
        _embed_chunks(writer, job, memo=text_memo, progress=progress)
        job.dist.barrier()  # 2
        dataset = job.dataset
        es = writer.finalize(
            sample_index={name: m.sample_index for name, m in dataset.modalities.items()},
            labels=dataset.labels,
            class_embeddings=_class_embeddings(job.loaded, dataset, text_memo),
            attributes=dataset.attributes,
            attribute_embeddings=_attribute_embeddings(job.loaded, dataset, text_memo),
        )
        job.dist.barrier()  # 3
        return es


def _embed_chunks(writer: EntryWriter, job: _EncodeJob, *, memo: dict[str, np.ndarray], progress: bool) -> None:
    """Encode and commit every chunk this rank owns that no earlier run committed."""
    with progress_bar(progress, unit="items") as bar:
        number = 0  # chunks are numbered across modalities so that ranks stay balanced
        for modality in job.dataset.modalities.values():
            ranges = writer.chunk_ranges(modality.name, len(modality))
            mine = [r for k, r in enumerate(ranges, start=number) if job.dist.owns(k)]
            number += len(ranges)
            todo = [r for r in mine if not writer.is_done(modality.name, *r)]
            task = bar.add_task(f"embed {modality.name}", total=sum(e - s for s, e in mine),
                                completed=sum(e - s for s, e in mine) - sum(e - s for s, e in todo))
            encode = _encode_images if modality.kind == "image" else _encode_texts
            for start, vectors in encode(job.loaded, modality, todo, batch_size=job.batch_size, workers=job.workers,
                                         memo=memo, on_batch=lambda n, t=task: bar.advance(t, n),
                                         preprocess=job.preprocess):
                writer.write_chunk(modality.name, start, vectors)


def embed_in_memory(dataset: PairedDataset, loaded: LoadedModel, *, batch_size: int = 256,
                    workers: int = 0) -> EmbeddingSet:
    """Embed a (small) dataset without the cache, e.g. to evaluate a model while it trains."""
    memo: dict[str, np.ndarray] = {}
    vectors = {}
    for modality in dataset.modalities.values():
        encode = _encode_images if modality.kind == "image" else _encode_texts
        chunks = encode(loaded, modality, [(0, len(modality))], batch_size=batch_size, workers=workers, memo=memo,
                        on_batch=lambda n: None)
        vectors[modality.name] = next(iter(chunks))[1]
    return EmbeddingSet(
        vectors=vectors,
        sample_index={name: m.sample_index for name, m in dataset.modalities.items()},
        n_samples=dataset.n_samples,
        labels=dataset.labels,
        class_names=dataset.class_names,
        class_embeddings=_class_embeddings(loaded, dataset, memo),
        attributes=dataset.attributes,
        attribute_embeddings=_attribute_embeddings(loaded, dataset, memo),
        provenance={"model": loaded.spec.describe(), "dataset": {"name": dataset.name, "n_samples": dataset.n_samples}},
    )


def embedding_set_from_precomputed(dataset: PairedDataset) -> EmbeddingSet:
    """A dataset of precomputed vectors needs no model: wrap its arrays (memory maps stay memory maps)."""
    return EmbeddingSet(
        vectors={name: m.items for name, m in dataset.modalities.items()},  # type: ignore[misc]
        sample_index={name: m.sample_index for name, m in dataset.modalities.items()},
        n_samples=dataset.n_samples,
        labels=dataset.labels,
        class_names=dataset.class_names,
        class_embeddings=dataset.extra.get("class_embeddings"),
        attributes=dataset.attributes,
        attribute_embeddings=dataset.extra.get("attribute_embeddings"),
        provenance={"model": {"name": dataset.extra.get("model_name", "precomputed")},
                    "dataset": {"name": dataset.name, "source": dataset.source, "fingerprint": dataset.fingerprint,
                                "n_samples": dataset.n_samples, "counts": dataset.counts()}},
    )


# ------------------------------------------------------------------------------------------------------------
# Encoding loops. Each yields (chunk start, vectors of the whole chunk) once a chunk is complete.
# ------------------------------------------------------------------------------------------------------------

def _batches(todo: Sequence[tuple[int, int]], batch_size: int) -> list[list[int]]:
    """Index batches that never straddle a chunk, so that each chunk completes on a batch boundary."""
    return [list(range(b, min(b + batch_size, end))) for start, end in todo for b in range(start, end, batch_size)]


def _to_numpy(features: Any) -> np.ndarray:
    return features.float().cpu().numpy().astype(np.float32, copy=False)


class _ChunkAssembler:
    """Collects batch outputs and releases whole chunks in order."""

    def __init__(self, todo: Sequence[tuple[int, int]]) -> None:
        self._todo = list(todo)
        self._parts: list[np.ndarray] = []
        self._filled = 0

    def add(self, vectors: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        self._parts.append(vectors)
        self._filled += len(vectors)
        start, end = self._todo[0]
        if self._filled == end - start:
            chunk = np.concatenate(self._parts, axis=0)
            self._todo.pop(0)
            self._parts, self._filled = [], 0
            yield start, chunk


@dataclass
class _ImageItems:
    """Map-style dataset for DataLoader workers: decode + preprocess; errors come back as values."""

    modality: Modality
    preprocess: Any

    def __len__(self) -> int:
        return len(self.modality)

    def __getitem__(self, i: int) -> Any:
        try:
            return self.preprocess(load_image(self.modality.items[i], self.modality.location(i)))
        except DatasetError as e:
            # Raised errors are re-wrapped by DataLoader into multi-line messages; carry the line instead.
            return _ItemError(e.one_line())


@dataclass
class _ItemError:
    message: str


def _collate(batch: list[Any]) -> Any:
    import torch

    for item in batch:
        if isinstance(item, _ItemError):
            return item
    if isinstance(batch[0], dict):  # an image processor that also returns masks or shapes (transformers' SigLIP 2)
        return {key: torch.stack([item[key] for item in batch]) for key in batch[0]}
    return torch.stack(batch)


def _on_device(batch: Any, device: Any) -> Any:
    """A collated batch (a tensor, or a dict of tensors) on ``device``."""
    if isinstance(batch, dict):
        return {key: value.to(device, non_blocking=True) for key, value in batch.items()}
    return batch.to(device, non_blocking=True)


def _encode_images(loaded: LoadedModel, modality: Modality, todo: Sequence[tuple[int, int]], *, batch_size: int,
                   workers: int, memo: dict[str, np.ndarray], on_batch: Any,
                   preprocess: str = "pil") -> Iterator[tuple[int, np.ndarray]]:
    import torch
    from torch.utils.data import DataLoader

    if not todo:
        return
    if preprocess == "device":
        yield from encode_images_on_device(loaded, modality, _batches(todo, batch_size), workers=workers,
                                           on_batch=on_batch, assembler=_ChunkAssembler(todo), to_numpy=_to_numpy)
        return
    loader = DataLoader(_ImageItems(modality, loaded.preprocess), batch_sampler=_batches(todo, batch_size),
                        num_workers=workers, collate_fn=_collate, pin_memory=loaded.device.type == "cuda",
                        persistent_workers=False, prefetch_factor=4 if workers > 0 else None)
    assembler = _ChunkAssembler(todo)
    for batch in loader:
        if isinstance(batch, _ItemError):
            raise DatasetError(batch.message)
        with torch.inference_mode(), loaded.autocast():
            features = loaded.model.encode_image(_on_device(batch, loaded.device))
        vectors = _to_numpy(features)
        on_batch(len(vectors))
        yield from assembler.add(vectors)


def encode_texts(loaded: LoadedModel, texts: Sequence[str], *, batch_size: int = 256,
                 memo: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Encode strings with the model's tokenizer and text tower; identical strings are encoded once."""
    import torch

    memo = {} if memo is None else memo
    missing = list(dict.fromkeys(t for t in texts if t not in memo))
    for b in range(0, len(missing), batch_size):
        batch = missing[b:b + batch_size]
        tokens = loaded.tokenizer(batch).to(loaded.device)
        with torch.inference_mode(), loaded.autocast():
            vectors = _to_numpy(loaded.model.encode_text(tokens))
        memo.update(zip(batch, vectors))
    dim = next(iter(memo.values())).shape[0] if memo else 0
    return np.stack([memo[t] for t in texts]) if texts else np.zeros((0, dim), np.float32)


def _encode_texts(loaded: LoadedModel, modality: Modality, todo: Sequence[tuple[int, int]], *, batch_size: int,
                  workers: int, memo: dict[str, np.ndarray], on_batch: Any,
                  preprocess: str = "pil") -> Iterator[tuple[int, np.ndarray]]:
    assembler = _ChunkAssembler(todo)
    for batch in _batches(todo, batch_size):
        texts = [modality.items[i] for i in batch]
        for i, t in zip(batch, texts):
            if not isinstance(t, str) or not t.strip():
                raise DatasetError(f"{modality.location(i)}: empty caption", hint="fill it in or drop the row")
        vectors = encode_texts(loaded, texts, batch_size=batch_size, memo=memo)
        on_batch(len(vectors))
        yield from assembler.add(vectors)


def _class_embeddings(loaded: LoadedModel, dataset: PairedDataset, memo: dict[str, np.ndarray]) -> np.ndarray | None:
    """CLIP's zero-shot classifier: class-major prompts, averaged per class (see metrics.zeroshot)."""
    if not dataset.class_names:
        return None
    prompts = [t.format(c) for c in dataset.class_names for t in dataset.templates]
    vectors = encode_texts(loaded, prompts, memo=memo)
    return build_classifier(vectors, len(dataset.class_names), len(dataset.templates)).astype(np.float32)


def _attribute_values(dataset: PairedDataset) -> list[str] | None:
    if not dataset.attributes:
        return None
    return sorted({str(v) for values in dataset.attributes.values() for v in values})


def _attribute_embeddings(loaded: LoadedModel, dataset: PairedDataset,
                          memo: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """Text embeddings of each attribute value word ("red", "circle") for multimodal arithmetic."""
    values = _attribute_values(dataset)
    if not values:
        return None
    return dict(zip(values, encode_texts(loaded, values, memo=memo)))
