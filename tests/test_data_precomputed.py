"""Precomputed embeddings: .npz, memory-mapped .npy folders, Parquet; 2 and 3 modalities; bad arrays."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gapdiag.data import detect_format, load_dataset
from gapdiag.errors import DatasetError

RNG = np.random.default_rng(0)
N, D = 7, 5


def _vectors(n: int = N, d: int = D, dtype: type = np.float32) -> np.ndarray:
    return RNG.standard_normal((n, d)).astype(dtype)


def test_npz_two_modalities_with_labels_and_classifier(tmp_path: Path) -> None:
    img, txt = _vectors(), _vectors()
    labels = np.array([0, 1, 2, 0, 1, 2, 0])
    classifier = _vectors(3)
    path = tmp_path / "emb.npz"
    np.savez(
        path,
        text=txt,
        image=img,
        labels=labels,
        class_names=np.array(["a", "b", "c"]),
        class_embeddings=classifier,
    )
    assert detect_format(path) == "precomputed"
    ds = load_dataset(path)
    assert ds.modality_names == ["image", "text"]  # image first whatever the file order
    assert all(m.kind == "embedding" for m in ds.modalities.values())
    np.testing.assert_array_equal(ds.modalities["image"].items, img)
    np.testing.assert_array_equal(ds.modalities["text"].items, txt)
    np.testing.assert_array_equal(ds.modalities["text"].sample_index, np.arange(N))
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.class_names == ["a", "b", "c"] and ds.n_samples == N
    np.testing.assert_array_equal(ds.extra["class_embeddings"], classifier)


def test_npz_one_to_many_with_sample_index(tmp_path: Path) -> None:
    img, txt = _vectors(3), _vectors(6)
    index = np.array([0, 0, 1, 2, 2, 2])
    np.savez(tmp_path / "e.npz", image=img, text=txt, sample_index_text=index)
    ds = load_dataset(tmp_path / "e.npz")
    assert ds.n_samples == 3 and ds.counts() == {"image": 3, "text": 6}
    np.testing.assert_array_equal(ds.modalities["text"].sample_index, index)


def test_npy_folder_three_modalities_is_memory_mapped(tmp_path: Path) -> None:
    arrays = {
        "audio": _vectors(dtype=np.float16),
        "image": _vectors(dtype=np.float16),
        "text": _vectors(dtype=np.float16),
    }
    for name, a in arrays.items():
        np.save(tmp_path / f"{name}.npy", a)
    np.save(tmp_path / "labels.npy", np.arange(N) % 2)
    (tmp_path / "class_names.txt").write_text("even\nodd\n")
    assert detect_format(tmp_path) == "precomputed"
    for target in (tmp_path, tmp_path / "audio.npy"):  # naming one .npy reads its folder
        ds = load_dataset(target)
        assert ds.modality_names == ["image", "text", "audio"]
        for name, a in arrays.items():
            items = ds.modalities[name].items
            assert isinstance(items, np.memmap) and items.dtype == np.float16
            np.testing.assert_array_equal(items, a)
        assert ds.class_names == ["even", "odd"]


@pytest.mark.parametrize("fixed", [True, False])
def test_parquet_vector_columns(tmp_path: Path, fixed: bool) -> None:
    img, txt, aud = _vectors(), _vectors(), _vectors()
    kind = pa.list_(pa.float32(), D) if fixed else pa.list_(pa.float32())
    table = pa.table(
        {name: pa.array(list(a), type=kind) for name, a in {"text": txt, "image": img, "depth": aud}.items()}
        | {"label": pa.array(np.arange(N) % 3)}
    )
    path = tmp_path / "e.parquet"
    pq.write_table(table, path)
    assert detect_format(path) == "precomputed"
    ds = load_dataset(path)
    assert ds.modality_names == ["image", "text", "depth"]
    np.testing.assert_array_equal(ds.modalities["depth"].items, aud)
    np.testing.assert_array_equal(ds.modalities["image"].items, img)
    np.testing.assert_array_equal(ds.labels, np.arange(N) % 3)


def test_parquet_vectors_of_different_lengths(tmp_path: Path) -> None:
    table = pa.table({"image": pa.array([[1.0, 2.0], [3.0, 4.0]]), "text": pa.array([[1.0, 2.0], [3.0]])})
    pq.write_table(table, tmp_path / "e.parquet")
    with pytest.raises(DatasetError, match=r"e.parquet:2: vector in column 'text' has 1 values, row 1 has 2"):
        load_dataset(tmp_path / "e.parquet")


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (
            {"image": _vectors(d=4), "text": _vectors(d=6)},
            r"dimension mismatch across modalities \(image: 4, text: 6\)",
        ),
        (
            {"image": _vectors(), "text": _vectors(N - 1)},
            r"modality count mismatch \(image: 7 rows, text: 6 rows\)",
        ),
        (
            {"image": _vectors(), "text": np.zeros((N, D, 2))},
            r"modality 'text' has shape \(7, 5, 2\); expected a 2-D",
        ),
        (
            {"image": _vectors()},
            r"found 1 modality array\(s\) \(image\); a paired dataset needs at least two",
        ),
        ({"image": _vectors(), "text": np.arange(N * D).reshape(N, D)}, r"modality 'text' has dtype int64"),
        (
            {"image": _vectors(), "text": _vectors(), "sample_index_txt": np.arange(N)},
            r"sample_index_txt names no modality array",
        ),
        (
            {"image": _vectors(), "text": _vectors(), "labels": np.arange(N - 2)},
            r"labels has 5 entries for 7 rows of 'image'",
        ),
        (
            {"image": _vectors(3), "text": _vectors(3), "sample_index_text": np.array([0, 0, 1])},
            r"sample 2 has no text item",
        ),
    ],
)
def test_bad_arrays(tmp_path: Path, arrays: dict, message: str) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DatasetError, match=r"^bad.npz: " + message) as exc:
        load_dataset(tmp_path / "bad.npz")
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_vectors(tmp_path: Path, value: float) -> None:
    txt = _vectors()
    txt[4, 2] = value
    np.save(tmp_path / "image.npy", _vectors())
    np.save(tmp_path / "text.npy", txt)
    with pytest.raises(DatasetError, match=r"modality 'text' row 4: NaN or inf"):
        load_dataset(tmp_path)


@pytest.mark.parametrize(("value", "refused"), [(1e300, True), (-4e38, True), (3e38, False)])
def test_float64_values_float32_cannot_hold_are_named_not_called_nan(tmp_path: Path, value: float,
                                                                    refused: bool) -> None:
    """1e300 is finite: the metrics, in float32, would see inf; the reader names the value instead."""
    txt = _vectors().astype(np.float64)
    txt[4, 1] = value
    np.save(tmp_path / "image.npy", _vectors())
    np.save(tmp_path / "text.npy", txt)
    if refused:
        with pytest.raises(DatasetError, match=r"modality 'text' row 4: the value .* beyond float32's range"):
            load_dataset(tmp_path)
    else:
        assert load_dataset(tmp_path).modalities["text"].items[4, 1] == value


def test_fingerprint_is_stable_and_follows_the_file(tmp_path: Path) -> None:
    path = tmp_path / "e.npz"
    np.savez(path, image=_vectors(), text=_vectors())
    base = load_dataset(path).fingerprint
    assert load_dataset(path).fingerprint == base
    np.savez(path, image=_vectors(), text=_vectors())
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert load_dataset(path).fingerprint != base


def test_a_classifier_with_fewer_rows_than_classes_names_the_file(capsys, tmp_path: Path) -> None:
    """Issue #24 item 8: the error came from the zero-shot metric, without the file ("labels must be integers in
    [0, 3)")."""
    from cli_helpers import assert_one_line_error, gapdiag

    path = tmp_path / "emb.npz"
    np.savez(path, image=_vectors(6), text=_vectors(6), labels=np.array([0, 1, 2, 3, 4, 0]),
             class_embeddings=_vectors(3))
    code, out, err = gapdiag(capsys, "measure", "-d", path, "--json")
    assert_one_line_error(code, out, err, "emb.npz: class_embeddings has 3 rows for label 4",
                          "one row per class id")
