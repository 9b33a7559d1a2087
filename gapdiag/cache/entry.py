"""Reading one cache entry: its ``meta.json`` checked (cache format, its own checksum, its key), its arrays loaded
against it and, on request, every file's bytes against the checksums it recorded.

Shared by :class:`gapdiag.cache.store.EmbeddingCache` (``get``, ``ls``, ``verify``) and
:class:`gapdiag.cache.writer.EntryWriter` (an entry finished by another process, the entry it has just sealed),
so that neither imports the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from numpy.typing import NDArray

from gapdiag.cache import integrity
from gapdiag.cache.files import META_CHECKSUM, corrupt, load_checked, load_npz, meta_checksum, one_line
from gapdiag.cache.keys import CACHE_FORMAT_VERSION
from gapdiag.errors import CacheError
from gapdiag.fsutil import loads_json
from gapdiag.vectors import EmbeddingSet


def read_entry(entry: Path, key: str, *, mmap: bool = True, verify: bool = True,
               progress: bool = False) -> EmbeddingSet | None:
    """Load the complete entry ``key`` in the folder ``entry``; ``None`` if it is missing or still being built.

    Arrays are memory-mapped (``mmap=True``); their headers are checked against ``meta.json`` and, with
    ``verify``, every file's bytes against the checksum ``meta.json`` recorded when it was written, in one
    streaming pass (roughly 1-5 s per GB, see docs/cache.md). A file whose size, mtime, ctime and inode are
    unchanged since this process last verified it is not read again. ``progress`` shows the pass on stderr
    for large entries.

    Raises:
        CacheError: The entry is complete but damaged (unreadable or missing file, wrong shape or dtype,
            checksum mismatch): one line naming the entry's file.
    """
    meta_path = entry / "meta.json"
    if not meta_path.is_file():
        return None
    meta = read_meta(key, meta_path)

    def load(name: str, shape: tuple[int, ...] | None, dtype: str | None) -> NDArray[Any]:
        return load_checked(entry / name, key, shape=shape, dtype=dtype, mmap=mmap)

    try:
        modalities: list[str] = list(meta["modalities"])
        counts = {m: int(meta["dataset"]["counts"][m]) for m in modalities}
        dims = {m: int(meta["dims"][m]) for m in modalities}
        n_samples = int(meta["dataset"]["n_samples"])
        dtype = str(meta["dtype"])
        arrays = list(meta.get("arrays", []))
    except KeyError as exc:
        raise corrupt(meta_path, key, f"field {one_line(exc)} missing") from exc
    except (TypeError, ValueError) as exc:  # e.g. modalities: 5 ("'int' object is not iterable")
        raise corrupt(meta_path, key, f"a field of wrong type ({one_line(exc)}): modalities must be a list, "
                                      "dims and dataset.counts tables of integers, dataset.n_samples an integer") from exc

    vectors = {m: load(f"{m}.npy", (counts[m], dims[m]), dtype) for m in modalities}
    sample_index = {m: load(f"{m}.sample_index.npy", (counts[m],), "int64") for m in modalities}
    labels = load("labels.npy", (n_samples,), "int64") if "labels" in arrays else None
    class_embeddings = load("class_embeddings.npy", None, "float32") if "class_embeddings" in arrays else None
    attributes = load_npz(entry / "attributes.npz", key) if "attributes" in arrays else None
    attribute_embeddings = (load_npz(entry / "attribute_embeddings.npz", key)
                            if "attribute_embeddings" in arrays else None)
    if verify:
        problems = integrity.verify_entry_files(entry, meta, progress=progress)
        if problems:
            name, reason = problems[0]
            raise corrupt(entry / name, key, reason)
    return EmbeddingSet(
        vectors=vectors, sample_index=sample_index, n_samples=n_samples, labels=labels,
        class_names=meta.get("class_names"), class_embeddings=class_embeddings, attributes=attributes,
        attribute_embeddings=attribute_embeddings, provenance=meta,
    )


def read_meta(key: str, meta_path: Path) -> dict[str, Any]:
    """``meta.json`` of entry ``key``, checked: a JSON object of this cache format, sealed by its own checksum
    (:func:`gapdiag.cache.files.meta_checksum`) and naming ``key``.

    Raises:
        CacheError: It cannot be read or parsed, comes from another cache format, was edited after it was
            written, or belongs to another entry (a moved or swapped folder); one line naming the file.
    """
    try:
        meta = loads_json(meta_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise corrupt(meta_path, key, one_line(exc)) from exc
    if not isinstance(meta, dict):
        raise corrupt(meta_path, key, "not a JSON object")
    check_meta(meta, key, meta_path)
    return meta


def check_meta(meta: Mapping[str, Any], key: str, meta_path: Path) -> None:
    """Refuse a parsed ``meta.json`` that is not what gapdiag wrote for entry ``key``.

    Raises:
        CacheError: Another cache format (named, with what to run), no or a wrong :data:`META_CHECKSUM` (the
            file was edited), or another entry's key (the folder was moved, renamed or swapped).
    """
    version = meta.get("cache_format_version")
    if version != CACHE_FORMAT_VERSION:
        if isinstance(version, int) and not isinstance(version, bool):
            age = "an older" if version < CACHE_FORMAT_VERSION else "a newer"
            raise CacheError(f"cache entry {key} was written by {age} gapdiag (cache format {version}; this "
                             f"gapdiag reads format {CACHE_FORMAT_VERSION})",
                             hint=f"remove it with `gapdiag cache rm {key}`: it is never used again, the next run "
                                  "embeds under a new key")
        raise corrupt(meta_path, key, "field 'cache_format_version' missing or malformed")
    recorded = meta.get(META_CHECKSUM)
    if not isinstance(recorded, str):
        raise corrupt(meta_path, key, f"no {META_CHECKSUM} recorded")
    found = meta_checksum(meta)
    if found != recorded:
        raise corrupt(meta_path, key, f"checksum mismatch: edited after it was written ({META_CHECKSUM} is "
                                      f"{recorded[:19]}…, its content gives {found[:19]}…)")
    if meta.get("key") != key:
        raise corrupt(meta_path, key, f"it belongs to entry {meta.get('key')}, not {key} (the entry folder was "
                                      "moved, renamed or swapped)")
