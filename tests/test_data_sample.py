"""The bundled sample data: real digits, stratified split, attributes, and a rebuild matching the commit."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from gapdiag import api
from gapdiag.data import default_dataset, load_dataset, sample_data_dir
from gapdiag.errors import DatasetError
from gapdiag.settings import SAMPLE_DATA_ENV, Settings

REPO = Path(__file__).resolve().parent.parent
#: The folders scripts/build_sample_data.py writes (sample_data/ may hold other generated files too).
BUILT = ("digits", "shapes")
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _content_hash(path: Path) -> str:
    """Bytes for text files; decoded pixels (mode, size, data) for PNGs.

    PNG bytes depend on the zlib build Pillow links against, while the pixels are what the data is: an edit
    of any pixel, caption, label or split still changes the hash.
    """
    if path.suffix == ".png":
        with Image.open(path) as img:
            payload = f"{img.mode}{img.size}".encode() + img.tobytes()
    else:
        payload = path.read_bytes()
    return hashlib.sha256(payload).hexdigest()


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): _content_hash(p) for p in sorted(root.rglob("*")) if p.is_file()}


def test_rebuild_matches_committed_files(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "build_sample_data", REPO / "scripts" / "build_sample_data.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.build(tmp_path)
    for name in BUILT:
        committed, rebuilt = _tree(REPO / "sample_data" / name), _tree(tmp_path / name)
        assert sorted(committed) == sorted(rebuilt)
        differing = [f for f in committed if committed[f] != rebuilt[f]]
        assert differing == []


def test_default_dataset_is_the_digits_test_split() -> None:
    digits = load_digits()
    ds = default_dataset()
    indices = [int(p.stem.split("_")[1]) for p in ds.modalities["image"].items]
    np.testing.assert_array_equal(ds.labels, digits.target[indices])
    assert ds.class_names == WORDS
    # Stratified 20 % per class, independent of how the script draws it.
    for c in range(10):
        assert np.sum(ds.labels == c) == round(0.2 * np.sum(digits.target == c))
    text = ds.modalities["text"]
    assert len(text) == 3 * ds.n_samples
    for caption, sample in zip(text.items, text.sample_index):
        y = ds.labels[sample]
        assert WORDS[y] in caption or str(y) in caption
    train = default_dataset("train")
    assert set(indices).isdisjoint(int(p.stem.split("_")[1]) for p in train.modalities["image"].items)
    assert train.n_samples + ds.n_samples == len(digits.target)


def test_images_are_the_scikit_learn_digits() -> None:
    digits = load_digits()
    ds = default_dataset()
    for path in ds.modalities["image"].items[:20]:
        i = int(path.stem.split("_")[1])
        with Image.open(path) as img:
            small = np.asarray(img.convert("L").resize((8, 8), Image.BOX), dtype=float)
        ink = 1 - small / 255  # dark ink on white
        corr = np.corrcoef(ink.ravel(), digits.images[i].ravel())[0, 1]
        assert corr > 0.9, (path, corr)


def test_shapes_attributes_agree_with_captions() -> None:
    ds = load_dataset(sample_data_dir() / "shapes")
    assert ds.n_samples == 480 and set(ds.attributes) == {"color", "shape", "size", "position"}
    text = ds.modalities["text"]
    for caption, sample in zip(text.items, text.sample_index):
        assert ds.attributes["color"][sample] in caption and ds.attributes["shape"][sample] in caption
    assert len(set(zip(ds.attributes["color"], ds.attributes["shape"]))) == 24


def test_total_size_is_small() -> None:
    total = sum(
        p.stat().st_size for name in BUILT for p in (REPO / "sample_data" / name).rglob("*") if p.is_file()
    )
    assert total < 3 * 2**20


def test_sample_data_dir_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$GAPDIAG_SAMPLE_DATA is read once, by the settings at the edge, and handed to the data as a value."""
    monkeypatch.setenv(SAMPLE_DATA_ENV, str(tmp_path))
    assert Settings.build().sample_data == tmp_path
    assert sample_data_dir(Settings.build().sample_data) == tmp_path
    assert sample_data_dir() != tmp_path  # the data room reads no environment of its own
    monkeypatch.setenv(SAMPLE_DATA_ENV, str(tmp_path / "missing"))
    with pytest.raises(DatasetError, match=r"missing: sample data not found .*build_sample_data.py"):
        sample_data_dir(Settings.build().sample_data)
    with pytest.raises(DatasetError, match=r"missing: sample data not found"):
        api.load_data()  # the api's edge reads it
