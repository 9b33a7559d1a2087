"""WebDataset reader: shard specs, sample grouping, lazy image members, labels and bad samples."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import digit_image, digit_label, photo_image

from gapdiag.data import TarMember, detect_format, load_dataset, load_image
from gapdiag.errors import DatasetError


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _shards(root: Path, n_shards: int = 2, per_shard: int = 3) -> list[tuple[str, list[str], int]]:
    """Digit shards ``shard-000.tar``..; sample ``k`` has a png, a txt caption, a json with two more, a cls."""
    root.mkdir(parents=True, exist_ok=True)
    expected = []
    for s in range(n_shards):
        with tarfile.open(root / f"shard-{s:03d}.tar", "w") as tar:
            for j in range(per_shard):
                i = s * per_shard + j
                key = f"sample{i:05d}"
                caps = [f"digit number {i}", f"caption a{i}", f"caption b{i}"]
                _add(tar, f"{key}.png", _png(digit_image(i)))
                _add(tar, f"{key}.txt", caps[0].encode())
                _add(tar, f"{key}.json", json.dumps({"captions": caps[1:]}).encode())
                _add(tar, f"{key}.cls", str(digit_label(i)).encode())
                expected.append((key, caps, digit_label(i)))
    return expected


@pytest.mark.parametrize("spec", ["brace", "dir", "single"])
def test_shard_specs_and_alignment(tmp_path: Path, spec: str) -> None:
    expected = _shards(tmp_path / "wds")
    arg = {
        "brace": str(tmp_path / "wds" / "shard-{000..001}.tar"),
        "dir": str(tmp_path / "wds"),
        "single": str(tmp_path / "wds" / "shard-001.tar"),
    }[spec]
    if spec == "single":
        expected = expected[3:]
    assert detect_format(arg) == "webdataset"
    ds = load_dataset(arg)
    assert ds.n_samples == len(expected)
    text = ds.modalities["text"]
    assert list(text.items) == [c for _, caps, _ in expected for c in caps]
    np.testing.assert_array_equal(text.sample_index, np.repeat(np.arange(len(expected)), 3))
    np.testing.assert_array_equal(ds.labels, [y for *_, y in expected])
    assert text.location(0) == f"{'shard-001.tar' if spec == 'single' else 'shard-000.tar'}:{expected[0][0]}"


def test_image_members_are_read_lazily_and_decode_to_the_original(tmp_path: Path) -> None:
    _shards(tmp_path, n_shards=1, per_shard=3)
    ds = load_dataset(tmp_path / "shard-000.tar")
    items = ds.modalities["image"].items
    assert all(isinstance(m, TarMember) for m in items)
    for i, member in enumerate(items):
        img = load_image(member, ds.modalities["image"].location(i))
        expected = np.asarray(digit_image(i).convert("RGB"))
        np.testing.assert_array_equal(np.asarray(img), expected)


def test_json_label_and_class_name(tmp_path: Path) -> None:
    with tarfile.open(tmp_path / "s.tar", "w") as tar:
        for k, (name, photo) in enumerate([("temple", 0), ("flower", 1), ("temple", 0)]):
            _add(tar, f"k{k}.jpg", _png(photo_image(photo)))  # PNG bytes under .jpg: PIL reads the content
            _add(tar, f"k{k}.json", json.dumps({"caption": f"a {name}", "label": name}).encode())
    ds = load_dataset(tmp_path / "s.tar")
    assert ds.class_names == ["flower", "temple"]
    np.testing.assert_array_equal(ds.labels, [1, 0, 1])
    assert list(ds.modalities["text"].items) == ["a temple", "a flower", "a temple"]


def test_sample_without_caption_or_image(tmp_path: Path) -> None:
    with tarfile.open(tmp_path / "s.tar", "w") as tar:
        _add(tar, "a.png", _png(digit_image(0)))
        _add(tar, "a.txt", b"a zero")
        _add(tar, "b.png", _png(digit_image(1)))
        _add(tar, "c.txt", b"orphan caption")
    with pytest.raises(DatasetError, match=r"^s.tar:b: sample has no caption .*--skip-bad\)$"):
        load_dataset(tmp_path / "s.tar")
    ds = load_dataset(tmp_path / "s.tar", skip_bad=True)
    assert ds.n_samples == 1 and ds.extra["skipped"] == [
        "s.tar:b: sample has no caption (txt member or json 'caption')",
        "s.tar:c: sample has no image (jpg/jpeg/png/webp member)",
    ]


def test_labels_on_some_samples_only(tmp_path: Path) -> None:
    with tarfile.open(tmp_path / "s.tar", "w") as tar:
        for k in range(2):
            _add(tar, f"k{k}.png", _png(digit_image(k)))
            _add(tar, f"k{k}.txt", b"x")
        _add(tar, "k0.cls", b"3")
    with pytest.raises(DatasetError, match=r"s.tar:k1: sample has no label while others have one"):
        load_dataset(tmp_path / "s.tar")


def test_compressed_or_missing_shard(tmp_path: Path) -> None:
    with tarfile.open(tmp_path / "s.tar", "w:gz") as tar:
        _add(tar, "a.txt", b"x")
    with pytest.raises(DatasetError, match="not an uncompressed tar shard"):
        load_dataset(tmp_path / "s.tar")
    _shards(tmp_path, n_shards=1)
    with pytest.raises(DatasetError, match=r"shard-001.tar: shard not found"):
        load_dataset(str(tmp_path / "shard-{000..001}.tar"))


def test_fingerprint_tracks_shard_content(tmp_path: Path) -> None:
    _shards(tmp_path, n_shards=1)
    base = load_dataset(tmp_path / "shard-000.tar").fingerprint
    assert load_dataset(tmp_path / "shard-000.tar").fingerprint == base
    _shards(tmp_path, n_shards=1, per_shard=2)
    assert load_dataset(tmp_path / "shard-000.tar").fingerprint != base
