"""Format detection and the options load_dataset accepts per format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from data_fixtures import digits_manifest, write_digits

from gapdiag.data import detect_format, load_dataset
from gapdiag.errors import DatasetError, InputError


def test_manifest_folder_wins_over_class_folders(tmp_path: Path) -> None:
    digits_manifest(tmp_path, n=2)  # tmp/images/*.png would also look like one class folder
    assert detect_format(tmp_path) == "manifest"
    assert load_dataset(tmp_path).source == str(tmp_path / "manifest.csv")


def test_parquet_without_vectors_is_a_manifest(tmp_path: Path) -> None:
    write_digits(tmp_path, [0])
    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"image": ["digit_0.png"], "captions": [["a zero", "nought"]]}), path)
    assert detect_format(path) == "manifest"
    assert list(load_dataset(path).modalities["text"].items) == ["a zero", "nought"]


def test_unknown_format_names_path_and_accepted_formats(tmp_path: Path) -> None:
    other = tmp_path / "data.json"
    other.write_text('{"rows": []}')
    with pytest.raises(DatasetError) as exc:
        load_dataset(other)
    msg = str(exc.value)
    assert msg.startswith(f"{other}: unknown dataset format (expected a manifest") and "COCO" in msg
    assert "\n" not in msg
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    with pytest.raises(DatasetError, match="notes.txt: unknown dataset format"):
        detect_format(notes)


def test_option_that_does_not_apply(tmp_path: Path) -> None:
    np.savez(tmp_path / "e.npz", image=np.ones((2, 3)), text=np.ones((2, 3)))
    with pytest.raises(InputError, match="option split does not apply to the precomputed format"):
        load_dataset(tmp_path / "e.npz", split="test")
    with pytest.raises(InputError, match="unknown dataset format 'xml'"):
        load_dataset(tmp_path / "e.npz", format="xml")


def test_template_without_placeholder(tmp_path: Path) -> None:
    write_digits(tmp_path / "zero", [0])
    with pytest.raises(InputError, match=r"template 'a photo' has no \{\}"):
        load_dataset(tmp_path, templates=["a photo"])
