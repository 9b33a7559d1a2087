"""Precomputed-embedding reader: vectors made elsewhere, one 2-D array per modality, any number of modalities.

Accepted files:

- ``.npz``: one ``(n_items, d)`` array per modality name, plus optional ``labels`` (per sample),
  ``sample_index_<modality>`` (item -> sample; default: row ``i`` is sample ``i``), ``class_names`` and
  ``class_embeddings`` (a ``(n_classes, d)`` zero-shot classifier);
- a folder of ``<modality>.npy`` files with the same optional ``labels.npy``, ``sample_index_<modality>.npy``,
  ``class_embeddings.npy`` and ``class_names.npy`` / ``class_names.txt`` (one name per line). Arrays are opened
  with ``mmap_mode="r"``, so 1M x 512 float16 vectors stay on disk. Naming one of the ``.npy`` files reads its
  folder;
- ``.parquet`` with one list (or fixed-size list) of floats column per modality, plus an optional integer
  ``label`` column.

Every modality is of kind ``"embedding"``; its items are the array itself. The fingerprint is the files' path,
size and mtime (the vectors are not hashed, so a 1 GB file costs one ``stat``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gapdiag.data.base import (
    DATA_FINGERPRINT_VERSION,
    Modality,
    PairedDataset,
    fingerprint_files,
    not_utf8,
)
from gapdiag.data.parquet import VECTORS, arrow, parquet_kinds, read_table
from gapdiag.data.registry import register_reader
from gapdiag.errors import DatasetError, first_line
from gapdiag.fsutil import NUMPY_READ_ERRORS

_SAMPLE_INDEX_PREFIX = "sample_index_"
_RESERVED = frozenset({"labels", "label", "class_names", "class_embeddings"})
#: Rows checked for NaN/inf at a time: bounds memory for memory-mapped arrays.
_FINITE_CHUNK_ROWS = 65536


def _modality_order(names: list[str]) -> list[str]:
    # "image" then "text" first: metric names use the dataset's modality order ("image-text").
    rank = {"image": 0, "text": 1}
    return sorted(names, key=lambda n: (rank.get(n, 2), names.index(n)))


#: The largest magnitude the metrics can hold: they compute in float32.
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _check_finite(array: NDArray[Any], where: str) -> None:
    """Refuse a vector with NaN or inf, or (float64 input) with a value float32, which the metrics compute in,
    cannot hold: 1e300 would turn into inf there and be reported as a NaN that the file does not contain."""
    wide = array.dtype.itemsize > 4
    for start in range(0, array.shape[0], _FINITE_CHUNK_ROWS):
        block = np.asarray(array[start : start + _FINITE_CHUNK_ROWS])
        bad = ~np.isfinite(block).all(axis=1)
        if bad.any():
            row = start + int(np.argmax(bad))
            raise DatasetError(f"{where} row {row}: NaN or inf in the vector (re-embed or drop that row)")
        if wide:
            huge = (np.abs(block) > _FLOAT32_MAX).any(axis=1)
            if huge.any():
                row = start + int(np.argmax(huge))
                value = block[row - start][np.argmax(np.abs(block[row - start]))]
                raise DatasetError(f"{where} row {row}: the value {value:.3g} is beyond float32's range (±3.4e38), "
                                   "which the metrics compute in; rescale the vectors (e.g. L2-normalise them)")


def build_precomputed(
    arrays: dict[str, NDArray[Any]],
    *,
    source: Path,
    files: list[Path],
    labels: NDArray[Any] | None = None,
    sample_indices: dict[str, NDArray[Any]] | None = None,
    class_names: list[str] | None = None,
    class_embeddings: NDArray[Any] | None = None,
    memo_dir: Path | None = None,
) -> PairedDataset:
    """Check precomputed arrays against each other and wrap them as a :class:`PairedDataset`.

    Args:
        arrays: Modality name -> ``(n_items, d)`` floating array (may be memory-mapped).
        source: The file or folder read, for messages.
        files: Files whose path, size and mtime make the fingerprint.
        labels: Optional class id per sample.
        sample_indices: Optional modality name -> item-to-sample index (default ``arange(n_items)``).
        class_names: Optional class names.
        class_embeddings: Optional ``(n_classes, d)`` classifier, kept in ``extra["class_embeddings"]``.
        memo_dir: Folder of the fingerprint memo (:func:`gapdiag.data.base.fingerprint_files`); ``None``: none.

    Raises:
        DatasetError: Fewer than two modalities, a non-2-D or non-float array, a dimension or row-count
            mismatch, NaN/inf, a bad sample index or labels that do not match the samples.
    """
    where = source.name
    sample_indices = dict(sample_indices or {})
    dim = _check_arrays(arrays, sample_indices, where)
    labels, n_samples = _labels_and_sample_count(labels, arrays, sample_indices, where)
    modalities = {name: _modality(name, arrays[name], sample_indices.get(name), n_samples, where)
                  for name in _modality_order(list(arrays))}
    if n_samples == 0:
        raise DatasetError(f"{where}: the dataset is empty (0 rows)")
    _check_classes(labels, class_names, class_embeddings, dim, where)
    return PairedDataset(
        name=source.stem,
        source=str(source),
        modalities=modalities,
        n_samples=n_samples,
        labels=None if labels is None else labels.astype(np.int64),
        class_names=class_names,
        fingerprint=fingerprint_files(files, {"version": DATA_FINGERPRINT_VERSION, "format": "precomputed"},
                                      memo_dir=memo_dir),
        extra={"format": "precomputed", "class_embeddings": class_embeddings, "skipped": []},
    )


def _check_arrays(arrays: dict[str, NDArray[Any]], sample_indices: dict[str, NDArray[Any]], where: str) -> int:
    """At least two 2-D float arrays of one dimension, and no sample index without its array; returns the
    dimension.

    Raises:
        DatasetError: Naming the array and what is wrong with it.
    """
    unknown = set(sample_indices) - set(arrays)
    if unknown:
        raise DatasetError(
            f"{where}: sample_index_{min(unknown)} names no modality array (modalities: {', '.join(arrays)})"
        )
    if len(arrays) < 2:
        raise DatasetError(
            f"{where}: found {len(arrays)} modality array(s) ({', '.join(arrays) or 'none'}); "
            f"a paired dataset needs at least two, e.g. image and text"
        )
    dims: dict[str, int] = {}
    for name, a in arrays.items():
        if a.ndim != 2:
            raise DatasetError(
                f"{where}: modality {name!r} has shape {a.shape}; expected a 2-D array (items x dim)"
            )
        if not np.issubdtype(a.dtype, np.floating):
            raise DatasetError(
                f"{where}: modality {name!r} has dtype {a.dtype}; expected float16/32/64 vectors"
            )
        dims[name] = a.shape[1]
    if len(set(dims.values())) > 1:
        raise DatasetError(
            f"{where}: dimension mismatch across modalities ({', '.join(f'{k}: {v}' for k, v in dims.items())}); "
            f"embed every modality into one shared space"
        )
    return next(iter(dims.values()))


def _labels_and_sample_count(labels: NDArray[Any] | None, arrays: dict[str, NDArray[Any]],
                             sample_indices: dict[str, NDArray[Any]],
                             where: str) -> tuple[NDArray[Any] | None, int]:
    """The checked labels and the number of samples: one per label, else one per row of a modality without a
    sample index (they must agree), else one past the largest sample index.

    Raises:
        DatasetError: Labels that are not 1-D non-negative integers, or row counts that disagree.
    """
    rows = {name: a.shape[0] for name, a in arrays.items()}
    missing_index = [n for n in arrays if n not in sample_indices]
    if len({rows[n] for n in missing_index}) > 1:
        raise DatasetError(
            f"{where}: modality count mismatch ({', '.join(f'{n}: {rows[n]} rows' for n in missing_index)}); "
            f"give equal row counts or sample_index_<modality> arrays"
        )
    if labels is None:
        if missing_index:
            return None, rows[missing_index[0]]
        return None, max(int(np.max(s)) + 1 if len(s) else 0 for s in sample_indices.values())
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or (labels.size and labels.min() < 0):
        raise DatasetError(
            f"{where}: labels must be a 1-D array of non-negative integers "
            f"(got shape {labels.shape}, dtype {labels.dtype})"
        )
    n_samples = int(labels.shape[0])
    if missing_index and rows[missing_index[0]] != n_samples:
        raise DatasetError(
            f"{where}: labels has {n_samples} entries for {rows[missing_index[0]]} rows of "
            f"{missing_index[0]!r} (give one label per sample)"
        )
    return labels, n_samples


def _modality(name: str, array: NDArray[Any], sample_index: NDArray[Any] | None, n_samples: int,
              where: str) -> Modality:
    """One modality of precomputed vectors, its sample index checked (default: row i is sample i).

    Raises:
        DatasetError: A sample index of the wrong length or type, out of range, or leaving a sample without an
            item; NaN or inf in a vector.
    """
    n_rows = array.shape[0]
    index = np.asarray(np.arange(n_rows) if sample_index is None else sample_index)
    if index.shape != (n_rows,) or not np.issubdtype(index.dtype, np.integer):
        raise DatasetError(
            f"{where}: sample_index_{name} must be {n_rows} integers, one per {name} row "
            f"(got shape {index.shape}, dtype {index.dtype})"
        )
    if index.size and (index.min() < 0 or index.max() >= n_samples):
        raise DatasetError(
            f"{where}: sample_index_{name} has values outside 0..{n_samples - 1} ({n_samples} samples)"
        )
    covered = np.bincount(index, minlength=n_samples) > 0
    if not covered.all():
        raise DatasetError(
            f"{where}: sample {int(np.argmin(covered))} has no {name} item (every sample needs "
            f"at least one item per modality; check the row counts or sample_index_{name})"
        )
    _check_finite(array, f"{where} modality {name!r}")
    return Modality(name, "embedding", array, index.astype(np.int64))


def _check_classes(labels: NDArray[Any] | None, class_names: list[str] | None,
                   class_embeddings: NDArray[Any] | None, dim: int, where: str) -> None:
    """Class names cover every label; class embeddings are finite, ``(n_classes, dim)``, one per class name.

    Raises:
        DatasetError: Naming what does not match.
    """
    if class_names is not None and labels is not None and labels.size and len(class_names) <= int(labels.max()):
        raise DatasetError(
            f"{where}: {len(class_names)} class names for label {int(labels.max())} "
            f"(give one name per class id)"
        )
    if class_embeddings is not None:
        ce = np.asarray(class_embeddings)
        if ce.ndim != 2 or ce.shape[1] != dim:
            raise DatasetError(f"{where}: class_embeddings has shape {ce.shape}; expected (n_classes, {dim})")
        if labels is not None and labels.size and ce.shape[0] <= int(labels.max()):
            raise DatasetError(f"{where}: class_embeddings has {ce.shape[0]} rows for label {int(labels.max())} "
                               f"(give one row per class id 0..{int(labels.max())})")
        if class_names is not None and ce.shape[0] != len(class_names):
            raise DatasetError(
                f"{where}: class_embeddings has {ce.shape[0]} rows for {len(class_names)} class names"
            )
        _check_finite(ce, f"{where} class_embeddings")


def _split_named_arrays(named: dict[str, NDArray[Any]], source: Path, files: list[Path],
                        memo_dir: Path | None) -> PairedDataset:
    """Sort named arrays (from an ``.npz`` or a folder) into modalities and the optional extras."""
    arrays = {k: v for k, v in named.items() if k not in _RESERVED and not k.startswith(_SAMPLE_INDEX_PREFIX)}
    indices = {
        k[len(_SAMPLE_INDEX_PREFIX) :]: v for k, v in named.items() if k.startswith(_SAMPLE_INDEX_PREFIX)
    }
    labels = named.get("labels", named.get("label"))
    names = named.get("class_names")
    return build_precomputed(
        arrays,
        source=source,
        files=files,
        labels=labels,
        sample_indices=indices,
        class_names=None if names is None else [str(n) for n in np.asarray(names).tolist()],
        class_embeddings=named.get("class_embeddings"),
        memo_dir=memo_dir,
    )


def _unreadable(path: Path, exc: BaseException) -> DatasetError:
    detail = first_line(exc)
    with open(path, "rb") as f:
        head = f.read(6)
    if not head:
        detail = "the file is empty"
    elif not head.startswith((b"\x93NUMPY", b"PK")):  # neither .npy nor a zip (.npz)
        detail = "not a NumPy file"  # numpy would blame pickling: it tries that on unknown bytes
    how = "np.savez" if path.suffix.lower() == ".npz" else "np.save"
    return DatasetError(f"{path}: cannot read {path.suffix.lower()} ({detail}); write it again with {how}")


def read_npz(path: Path, *, memo_dir: Path | None = None) -> PairedDataset:
    """Read an ``.npz`` of per-modality arrays (see the module docstring)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            named = {k: data[k] for k in data.files}
    except NUMPY_READ_ERRORS as exc:
        raise _unreadable(path, exc) from None
    except AttributeError:  # np.load returned an array, not an archive: a .npy named .npz
        raise DatasetError(f"{path}: a single .npy array, not an .npz archive (rename it to .npy)") from None
    return _split_named_arrays(named, path, [path], memo_dir)


def read_npy_dir(folder: Path, *, memo_dir: Path | None = None) -> PairedDataset:
    """Read a folder of ``<modality>.npy`` files, memory-mapped (see the module docstring)."""
    files = sorted(folder.glob("*.npy"))
    named: dict[str, NDArray[Any]] = {}
    for f in files:
        try:
            # Vectors stay on disk; small arrays (labels, names) are read whole.
            named[f.stem] = np.load(f, mmap_mode=None if f.stem in _RESERVED else "r", allow_pickle=False)
        except NUMPY_READ_ERRORS as exc:
            raise _unreadable(f, exc) from None
    names_txt = folder / "class_names.txt"
    if "class_names" not in named and names_txt.is_file():
        try:
            lines = names_txt.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise not_utf8(names_txt.read_bytes(), str(names_txt)) from None
        named["class_names"] = np.array([s for s in lines if s.strip()])
        files.append(names_txt)
    return _split_named_arrays(named, folder, files, memo_dir)


def read_parquet_vectors(path: Path, *, memo_dir: Path | None = None) -> PairedDataset:
    """Read a Parquet file with one list-of-floats column per modality and an optional ``label`` column."""
    pa, pc = arrow("pyarrow", path), arrow("pyarrow.compute", path)
    table = read_table(path)
    named: dict[str, NDArray[Any]] = {}
    for field in table.schema:
        col = table.column(field.name).combine_chunks()
        t = field.type
        if (
            pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)
        ) and pa.types.is_floating(t.value_type):
            if col.null_count or col.flatten().null_count:
                raise DatasetError(
                    f"{path.name}: column {field.name!r} has empty (null) vectors; fill or drop them"
                )
            lengths = np.asarray(pc.list_value_length(col))
            if len(lengths) and (lengths != lengths[0]).any():
                row = int(np.argmax(lengths != lengths[0]))
                raise DatasetError(
                    f"{path.name}:{row + 1}: vector in column {field.name!r} has {lengths[row]} "
                    f"values, row 1 has {lengths[0]} (all vectors need one length)"
                )
            dim = int(lengths[0]) if len(lengths) else 0
            named[field.name] = col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), dim)
        elif field.name in ("label", "labels") or field.name.startswith(_SAMPLE_INDEX_PREFIX):
            if col.null_count:
                raise DatasetError(f"{path.name}: column {field.name!r} has blanks (fill every row)")
            named[field.name] = np.asarray(col.to_numpy(zero_copy_only=False))
    return _split_named_arrays(named, path, [path], memo_dir)


def _detect(spec: str) -> str | None:
    p = Path(spec)
    if p.is_dir():
        arrays = sorted(f.name for f in p.glob("*.npy"))
        return None if not arrays else f"arrays {', '.join(arrays[:3])}" + (", ..." if len(arrays) > 3 else "")
    suffix = p.suffix.lower()
    if not p.is_file():
        return None
    if suffix in (".npz", ".npy") or (suffix == ".parquet" and VECTORS in parquet_kinds(p)):
        return f"vectors {p.name}"
    return None


@register_reader(
    "precomputed",
    detect=_detect,
    accepted="precomputed .npz/.npy/.parquet embeddings",
    help="Vectors made elsewhere, one (n_items, d) array per modality; no model is run.",
    aliases=("embeddings", "npz"),
    order=50,
)
def load_precomputed(spec: str, *, skip_bad: bool = False, memo_dir: Path | None = None) -> PairedDataset:
    """Read an ``.npz``, a folder of ``.npy`` (or one of its files) or a vector Parquet file."""
    path = Path(spec)
    if path.is_dir():
        return read_npy_dir(path, memo_dir=memo_dir)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return read_npy_dir(path.parent, memo_dir=memo_dir)
    if suffix == ".parquet":
        return read_parquet_vectors(path, memo_dir=memo_dir)
    return read_npz(path, memo_dir=memo_dir)
