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
        "s.tar:b: sample has no caption (txt member or json 'caption') (sample dropped)",
        "s.tar:c: sample has no image (jpg/jpeg/png/webp member) (sample dropped)",
    ]


def test_labels_on_some_samples_only(tmp_path: Path) -> None:
    with tarfile.open(tmp_path / "s.tar", "w") as tar:
        for k in range(2):
            _add(tar, f"k{k}.png", _png(digit_image(k)))
            _add(tar, f"k{k}.txt", b"x")
            if k == 0:  # a sample's members sit together
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


# ------------------------------------------------- issue #24: a shard is read whole, or the reader says it is not


def _small_samples(path: Path, n: int) -> None:
    """``n`` samples of a PNG and a TXT member, each under 512 bytes: a sample is exactly 2 KiB of the shard."""
    with tarfile.open(path, "w") as tar:
        for i in range(n):
            png = _png(digit_image(i % 10))
            assert len(png) <= 512
            _add(tar, f"s{i:05d}.png", png)
            _add(tar, f"s{i:05d}.txt", f"digit {i}".encode())


def test_a_shard_cut_at_a_member_boundary_is_refused_or_counted(tmp_path: Path) -> None:
    """The first 350 KiB of a 500-sample shard (an interrupted download) used to load 175 samples, exit 0."""
    shard = tmp_path / "shard-000.tar"
    _small_samples(shard, 500)
    assert len(load_dataset(shard).modalities["image"]) == 500
    shard.write_bytes(shard.read_bytes()[: 350 * 1024])  # ends exactly after s00174.txt: no end-of-archive blocks
    with pytest.raises(DatasetError, match=r"shard-000.tar: truncated or corrupt tar shard after member "
                                           r"'s00174.txt': no end-of-archive block \(download or pack"):
        load_dataset(shard)
    ds = load_dataset(shard, skip_bad=True)  # the last sample may have lost members: it goes with the rest
    assert ds.n_samples == 174
    assert ds.extra["skipped"] == [
        f"{shard}: truncated or corrupt tar shard after member 's00174.txt': no end-of-archive block "
        "(sample 's00174' and the rest of the shard dropped)"
    ]


def test_a_shard_cut_inside_a_member_is_counted_under_skip_bad(tmp_path: Path) -> None:
    shard = tmp_path / "s.tar"
    _small_samples(shard, 4)
    shard.write_bytes(shard.read_bytes()[: 2048 * 2 + 512 + 100])  # inside the data of s00002.png
    ds = load_dataset(shard, skip_bad=True)  # s00001 is whole: the next sample had begun
    assert ds.n_samples == 2 and len(ds.extra["skipped"]) == 1
    assert ds.extra["skipped"][0].startswith(f"{shard}: truncated or corrupt tar shard after member 's00001.txt'")
    assert ds.extra["skipped"][0].endswith("(sample 's00002' and the rest of the shard dropped)")


@pytest.mark.parametrize("order", ["repeated", "interleaved"])
def test_a_repeated_key_in_a_shard_is_refused(tmp_path: Path, order: str) -> None:
    """A key repeated inside a shard used to replace the earlier sample (or merge two runs of members)."""
    members = {"repeated": ["a.png", "a.txt", "b.png", "b.txt", "a.png", "a.txt"],
               "interleaved": ["a.png", "b.png", "a.txt", "b.txt"]}[order]
    with tarfile.open(tmp_path / "s.tar", "w") as tar:
        for k, name in enumerate(members):
            _add(tar, name, _png(digit_image(k)) if name.endswith(".png") else f"caption {k}".encode())
    message = {"repeated": "s.tar: member 'a.png' repeats sample 'a'",
               "interleaved": "s.tar: member 'a.txt' repeats sample 'a'"}[order]
    with pytest.raises(DatasetError, match=f"^{message}.*pack the shard again"):
        load_dataset(tmp_path / "s.tar")
    with pytest.raises(DatasetError, match=f"^{message}"):
        load_dataset(tmp_path / "s.tar", skip_bad=True)


def test_json_captions_are_kept_as_written(tmp_path: Path) -> None:
    with tarfile.open(tmp_path / "s.tar", "w") as tar:
        _add(tar, "a.png", _png(digit_image(0)))
        _add(tar, "a.json", json.dumps({"caption": ["a zero", "nought, round"]}).encode())
        # img2dataset writes the caption twice, as .txt and as json 'caption': one caption, not two
        _add(tar, "b.png", _png(digit_image(1)))
        _add(tar, "b.txt", b"a one")
        _add(tar, "b.json", json.dumps({"caption": "a one", "url": "http://x"}).encode())
    ds = load_dataset(tmp_path / "s.tar")
    assert list(ds.modalities["text"].items) == ["a zero", "nought, round", "a one"]
    np.testing.assert_array_equal(ds.modalities["text"].sample_index, [0, 0, 1])


@pytest.mark.parametrize("meta, fragment", [
    ({"caption": {"en": "a"}}, "s.tar:a: json field 'caption' holds an object, not text"),
    ({"caption": 5}, "s.tar:a: json field 'caption' holds a number (5), not text"),
    ({"caption": "a", "text": "b"}, "s.tar:a.json: fields 'caption' and 'text' both hold captions"),
])
def test_json_captions_that_are_not_text_are_refused(tmp_path: Path, meta: dict, fragment: str) -> None:
    """``{"caption": {"en": "a"}}`` used to become the caption "{'en': 'a'}"."""
    with tarfile.open(tmp_path / "s.tar", "w") as tar:
        _add(tar, "a.png", _png(digit_image(0)))
        _add(tar, "a.json", json.dumps(meta).encode())
    with pytest.raises(DatasetError) as exc:
        load_dataset(tmp_path / "s.tar")
    assert str(exc.value).startswith(fragment), str(exc.value)
