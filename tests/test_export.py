"""`gapdiag export` / gapdiag.api.export: one Parquet row per item, read back with pyarrow (and pandas)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from cli_helpers import assert_one_line_error, gapdiag

from gapdiag import api

COLUMNS = ["modality", "sample_id", "content", "label", "class_name", "x", "y", "vector"]


def _pca_reference(z: np.ndarray) -> np.ndarray:
    """First two principal components of the unit-normalised rows, by plain SVD (signs are arbitrary)."""
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    centred = z - z.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


def test_export_has_one_row_per_item_with_metadata_map_and_vector(tiny_checkpoint, manifest, tmp_path):
    path = api.export(manifest, tiny_checkpoint, out=tmp_path / "new" / "e.parquet", progress=False)
    table = pq.read_table(path)
    es = api.embed(manifest, tiny_checkpoint, progress=False)
    dataset = api.load_data(manifest)
    assert table.column_names == COLUMNS
    assert table.num_rows == 8 + 16 == sum(es.counts().values())

    rows = table.to_pylist()
    images, texts = rows[:8], rows[8:]
    assert {r["modality"] for r in images} == {"image"} and {r["modality"] for r in texts} == {"text"}
    assert [r["content"] for r in images] == [str(p) for p in dataset.modalities["image"].items]
    assert [r["content"] for r in texts] == list(dataset.modalities["text"].items)
    assert [r["sample_id"] for r in texts] == dataset.modalities["text"].sample_index.tolist()
    for r in rows:
        assert r["label"] == int(dataset.labels[r["sample_id"]])
        assert r["class_name"] == dataset.class_names[r["label"]]

    stacked = np.vstack([es.vectors["image"], es.vectors["text"]]).astype(np.float64)
    assert np.array(table.column("vector").to_pylist(), dtype=np.float64) == pytest.approx(stacked, abs=1e-6)
    xy = np.column_stack([table.column("x").to_numpy(), table.column("y").to_numpy()])
    reference = _pca_reference(stacked)
    signs = np.sign(np.sum(xy * reference, axis=0))  # a principal axis is defined up to its sign
    assert xy == pytest.approx(reference * signs, abs=1e-4)

    meta = json.loads(table.schema.metadata[b"gapdiag"])
    assert meta["map"] == {"method": "pca", "seed": 0}
    assert meta["provenance"]["dataset"]["fingerprint"] == dataset.fingerprint


def test_export_reads_in_pandas(tiny_checkpoint, manifest, tmp_path):
    import pandas  # in the test extra: this test runs, never skips
    path = api.export(manifest, tiny_checkpoint, out=tmp_path / "e.parquet", vectors=False, progress=False)
    frame = pandas.read_parquet(path)
    assert list(frame.columns) == COLUMNS[:-1] and len(frame) == 24
    assert frame.groupby("modality").size().to_dict() == {"image": 8, "text": 16}


def test_export_of_an_embedding_set_has_no_content(tiny_checkpoint, manifest, tmp_path):
    es = api.embed(manifest, tiny_checkpoint, progress=False)
    table = pq.read_table(api.export(es, out=tmp_path / "e.parquet", progress=False))
    assert table.num_rows == 24 and table.column("content").null_count == 24


def test_cli_export_json_and_errors(capsys, tiny_checkpoint, manifest, tmp_path):
    out = tmp_path / "x.parquet"
    code, stdout, _ = gapdiag(capsys, "export", "-m", tiny_checkpoint, "-d", manifest, "-o", out,
                              "--no-vectors", "--json")
    assert code == 0
    summary = json.loads(stdout)
    assert summary == {"path": str(out), "rows": 24, "columns": COLUMNS[:-1]}
    assert pq.read_table(out).num_rows == 24

    assert_one_line_error(*gapdiag(capsys, "export", "-m", tiny_checkpoint, "-d", manifest, "--map", "tsne"),
                          "--map", "tsne", "pca")
    (tmp_path / "file").write_text("x")
    assert_one_line_error(*gapdiag(capsys, "export", "-m", tiny_checkpoint, "-d", manifest, "-o",
                                   Path(tmp_path / "file" / "e.parquet")), "cannot write", "--out")
