"""Hugging Face Parquet shards: image bytes read from the files, splits, fingerprint, bad rows, detection.

The shards are built here with pyarrow from the bundled digit images (sample_data/digits), in the layout that
``datasets`` exports: an ``image`` column of ``{bytes, path}`` structs, caption columns, a ``ClassLabel`` label
whose names sit in the schema metadata.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_helpers import assert_one_line_error, gapdiag
from PIL import Image

from gapdiag.data import detect_format, load_dataset, load_image, sample_data_dir
from gapdiag.errors import DatasetError, InputError

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _digits(n: int, start: int = 0) -> list[dict[str, str]]:
    with open(sample_data_dir() / "digits" / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))[start : start + n]


def _png(row: dict[str, str]) -> bytes:
    return (sample_data_dir() / "digits" / row["image"]).read_bytes()


def _write(path: Path, rows: list[dict[str, str]], *, raw_bytes: bool = False, captions: bool = True,
           images: list[bytes | None] | None = None, row_group_size: int = 3) -> Path:
    """One shard as ``datasets`` writes it (row groups of 3, so reads cross row groups)."""
    data = images if images is not None else [_png(r) for r in rows]
    if raw_bytes:
        image = pa.array(data, pa.binary())
    else:
        image = pa.array([{"bytes": b, "path": Path(r["image"]).name} for b, r in zip(data, rows)],
                         pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    columns = {"image": image, "label": pa.array([int(r["label"]) for r in rows], pa.int64())}
    features = {"image": {"_type": "Image"}, "label": {"names": NAMES, "_type": "ClassLabel"}}
    if captions:
        columns["captions"] = pa.array([[r["caption_1"], r["caption_2"], r["caption_3"]] for r in rows])
        features |= {"captions": {"feature": {"dtype": "string", "_type": "Value"}, "_type": "Sequence"}}
    table = pa.table(columns)
    meta = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.replace_schema_metadata(meta), path, row_group_size=row_group_size)
    return path


def test_single_shard_reads_images_captions_and_labels(tmp_path: Path) -> None:
    rows = _digits(7)
    path = _write(tmp_path / "digits.parquet", rows)
    assert detect_format(path) == "huggingface"
    ds = load_dataset(path)
    assert ds.extra["format"] == "huggingface" and ds.n_samples == 7
    assert ds.modalities["text"].items[:3] == [rows[0]["caption_1"], rows[0]["caption_2"], rows[0]["caption_3"]]
    assert ds.modalities["text"].sample_index.tolist() == np.repeat(np.arange(7), 3).tolist()
    assert ds.labels.tolist() == [int(r["label"]) for r in rows] and ds.class_names == NAMES
    images = ds.modalities["image"]
    for i in (0, 4, 6):  # the first, a middle and the last row group
        want = np.asarray(Image.open(sample_data_dir() / "digits" / rows[i]["image"]).convert("RGB"))
        assert np.array_equal(np.asarray(load_image(images.items[i], images.location(i))), want)
    assert images.location(4) == "digits.parquet:5"


def test_raw_bytes_column_and_class_label_captions(tmp_path: Path) -> None:
    rows = _digits(4)
    ds = load_dataset(_write(tmp_path / "d.parquet", rows, raw_bytes=True, captions=False), templates=["{} by hand"])
    assert ds.modalities["text"].items == [f"{NAMES[int(r['label'])]} by hand" for r in rows]
    assert np.asarray(load_image(ds.modalities["image"].items[3], "x")).shape == (32, 32, 3)


def _hub_layout(root: Path) -> list[dict[str, str]]:
    train = _digits(10)
    _write(root / "data" / "train-00000-of-00002.parquet", train[:6])
    _write(root / "data" / "train-00001-of-00002.parquet", train[6:])
    _write(root / "data" / "test-00000-of-00001.parquet", _digits(3, start=100))
    return train


def test_hub_layout_shards_splits_and_globs(tmp_path: Path) -> None:
    train = _hub_layout(tmp_path)
    assert detect_format(tmp_path) == "huggingface"
    with pytest.raises(DatasetError, match=r"shards of several splits \(test, train\); choose one with --split"):
        load_dataset(tmp_path)
    ds = load_dataset(tmp_path, split="train")
    assert ds.n_samples == 10
    assert ds.modalities["text"].items[::3] == [r["caption_1"] for r in train]
    assert ds.modalities["image"].location(7) == "train-00001-of-00002.parquet:2"
    pattern = str(tmp_path / "data" / "train-*.parquet")
    assert detect_format(pattern) == "huggingface"
    assert load_dataset(pattern).fingerprint == ds.fingerprint
    assert load_dataset(tmp_path, split="test").n_samples == 3
    with pytest.raises(DatasetError, match="no shard of split 'val' \\(splits: test, train\\)"):
        load_dataset(tmp_path, split="val")


def test_split_folders(tmp_path: Path) -> None:
    _write(tmp_path / "train" / "0000.parquet", _digits(4))
    _write(tmp_path / "validation" / "0000.parquet", _digits(2, start=50))
    assert load_dataset(tmp_path, split="validation").n_samples == 2


def test_fingerprint_covers_the_image_bytes(tmp_path: Path) -> None:
    rows = _digits(5)
    path = _write(tmp_path / "d.parquet", rows)
    before = load_dataset(path).fingerprint
    _write(path, rows)
    assert load_dataset(path).fingerprint == before  # same bytes, same fingerprint
    images = [_png(r) for r in rows]
    images[3] = _png(_digits(1, start=40)[0])  # one image replaced; captions, labels and paths unchanged
    _write(path, rows, images=images)
    assert load_dataset(path).fingerprint != before


def test_undecodable_image_names_the_file_and_row(capsys, tmp_path: Path, tiny_checkpoint: Path) -> None:
    rows = _digits(6)
    images = [_png(r) for r in rows]
    images[4] = images[4][:40]  # a cut PNG
    path = _write(tmp_path / "d.parquet", rows, images=images)
    code, out, err = gapdiag(capsys, "measure", "-m", tiny_checkpoint, "-d", path, "--json")
    assert_one_line_error(code, out, err, "d.parquet:5", "cannot decode image", "--skip-bad")
    code, out, err = gapdiag(capsys, "measure", "-m", tiny_checkpoint, "-d", path, "--skip-bad", "--json")
    assert code == 0, err
    assert json.loads(out)["provenance"]["dataset"]["n_samples"] == 5


def test_rows_without_an_image_or_a_label(tmp_path: Path) -> None:
    rows = _digits(4)
    images: list[bytes | None] = [_png(r) for r in rows]
    images[1] = None
    path = _write(tmp_path / "d.parquet", rows, images=images)
    with pytest.raises(DatasetError, match=r"d.parquet:2 column 'image': no image bytes, and image file not found"):
        load_dataset(path)
    ds = load_dataset(path, skip_bad=True)
    assert ds.n_samples == 3 and ds.extra["skipped"][0].startswith("d.parquet:2")
    path = _write(tmp_path / "d.parquet", rows)  # images again, now a row without a label
    table = pq.read_table(path)
    blank = pa.array([1, None, 2, 3], pa.int64())
    pq.write_table(table.set_column(table.schema.get_field_index("label"), "label", blank), path)
    with pytest.raises(DatasetError, match=r"d.parquet:2: blank label in column 'label' \(fix the row or pass"):
        load_dataset(path)
    assert load_dataset(path, skip_bad=True).labels.tolist() == [1, 2, 3]


def test_blank_captions(tmp_path: Path) -> None:
    rows = _digits(3)
    rows[2] = {**rows[2], "caption_2": " "}
    path = _write(tmp_path / "d.parquet", rows)
    with pytest.raises(DatasetError, match=r"^d.parquet:3: empty caption in column 'captions' \(write one, or pass "
                                           r"--skip-bad to drop it\)$"):
        load_dataset(path)
    ds = load_dataset(path, skip_bad=True)  # the blank caption is dropped, the row and its other captions kept
    assert ds.n_samples == 3 and ds.counts()["text"] == 8
    assert ds.extra["skipped"] == ["d.parquet:3: empty caption in column 'captions' (caption dropped)"]


def test_an_empty_caption_list_is_refused_or_skipped_and_counted(tmp_path: Path) -> None:
    """An image whose caption list is ``[]`` used to vanish with no error and no skipped row."""
    rows = _digits(3)
    path = _write(tmp_path / "d.parquet", rows)
    table = pq.read_table(path)
    lists = pa.array([[r["caption_1"]] if i != 1 else [] for i, r in enumerate(rows)], pa.list_(pa.string()))
    pq.write_table(table.set_column(table.schema.get_field_index("captions"), "captions", lists), path)
    with pytest.raises(DatasetError, match=r"^d.parquet:2: empty caption list in column 'captions' \(write"):
        load_dataset(path)
    ds = load_dataset(path, skip_bad=True)
    assert ds.n_samples == 2 and ds.modalities["text"].items == [rows[0]["caption_1"], rows[2]["caption_1"]]
    assert ds.extra["skipped"] == ["d.parquet:2: empty caption list in column 'captions' (row dropped)"]


def test_caption_and_numbered_caption_columns_all_count(tmp_path: Path) -> None:
    """``caption`` beside ``caption_1``..: every column counts, ``caption`` first, then by number."""
    rows = _digits(2)
    path = _write(tmp_path / "d.parquet", rows, captions=False)
    table = pq.read_table(path)
    for name, key in (("caption_10", "caption_3"), ("caption", "caption_1"), ("caption_2", "caption_2")):
        table = table.append_column(name, pa.array([r[key] for r in rows]))
    pq.write_table(table, path)
    ds = load_dataset(path)
    assert ds.modalities["text"].items == [r[k] for r in rows for k in ("caption_1", "caption_2", "caption_3")]


def test_path_only_rows_read_the_file_beside_the_shard(tmp_path: Path) -> None:
    rows = _digits(2)
    (tmp_path / Path(rows[1]["image"]).name).write_bytes(_png(rows[1]))
    path = _write(tmp_path / "d.parquet", rows, images=[_png(rows[0]), None])
    item = load_dataset(path).modalities["image"].items[1]
    assert item == tmp_path / Path(rows[1]["image"]).name


def test_parquet_kinds_are_told_apart_by_column_types(tmp_path: Path) -> None:
    hf = _write(tmp_path / "hf.parquet", _digits(2))
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(_png(_digits(1)[0]))
    manifest = tmp_path / "manifest.parquet"
    pq.write_table(pa.table({"image": ["images/a.png"], "caption": ["a zero"]}), manifest)
    vectors = tmp_path / "vectors.parquet"
    pq.write_table(pa.table({"image": [[0.1, 0.2], [0.3, 0.1]], "text": [[0.2, 0.2], [0.1, 0.3]]}), vectors)
    assert [detect_format(p) for p in (hf, manifest, vectors)] == ["huggingface", "manifest", "precomputed"]
    both = tmp_path / "both.parquet"
    pq.write_table(pa.table({"image": pa.array([b"\x89PNG"]), "text": [[0.1, 0.2]], "caption": ["a zero"]}), both)
    with pytest.raises(DatasetError, match="fits two dataset formats, precomputed .* and huggingface .*"
                                           "--data-format precomputed or --data-format huggingface"):
        detect_format(both)


def test_options_the_format_does_not_use(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.parquet", _digits(2))
    with pytest.raises(InputError, match="option image_root does not apply to the huggingface format"):
        load_dataset(path, image_root=tmp_path)
    ds = load_dataset(path, format="hf", text_columns=["captions"], label_column="label")
    assert ds.modalities["text"].items[3] == _digits(2)[1]["caption_1"]
