"""Manifest reader: columns, 1:N captions, labels, splits, attributes, fingerprints and bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from data_fixtures import DIGIT_WORDS, digit_image, digit_label, digits_manifest, write_csv, write_digits

from gapdiag.data import load_dataset
from gapdiag.errors import DatasetError


def test_csv_gives_one_image_and_n_captions_per_row(tmp_path: Path) -> None:
    path, rows = digits_manifest(tmp_path, n=6)
    ds = load_dataset(path)
    assert ds.n_samples == 6
    assert ds.counts() == {"image": 6, "text": 12}
    image, text = ds.modalities["image"], ds.modalities["text"]
    assert image.kind == "image" and text.kind == "text"
    assert [p.name for p in image.items] == [Path(r[0]).name for r in rows]
    # Row-major: each row's captions in column order, all pointing at that row's sample.
    assert list(text.items) == [c for r in rows for c in (r[1], r[2])]
    np.testing.assert_array_equal(text.sample_index, np.repeat(np.arange(6), 2))
    np.testing.assert_array_equal(image.sample_index, np.arange(6))
    np.testing.assert_array_equal(ds.labels, [digit_label(i) for i in range(6)])
    assert ds.class_names[digit_label(3)] == DIGIT_WORDS[digit_label(3)]
    assert text.location(3) == "manifest.csv:3 column 'caption_2'"


@pytest.mark.parametrize("fmt", ["tsv", "jsonl", "parquet"])
def test_other_table_formats_match_csv(tmp_path: Path, fmt: str) -> None:
    csv_path, rows = digits_manifest(tmp_path, n=5)
    header = ["image", "caption_1", "caption_2", "label", "class_name", "split"]
    out = tmp_path / f"manifest.{fmt}"
    if fmt == "tsv":
        write_csv(out, header, rows, delimiter="\t")
    elif fmt == "jsonl":
        out.write_text("".join(json.dumps(dict(zip(header, r))) + "\n" for r in rows))
    else:
        pq.write_table(pa.Table.from_pylist([dict(zip(header, r)) for r in rows]), out)
    a, b = load_dataset(csv_path), load_dataset(out)
    assert list(a.modalities["text"].items) == list(b.modalities["text"].items)
    assert list(a.modalities["image"].items) == list(b.modalities["image"].items)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.class_names == b.class_names


def test_json_list_cell_gives_several_captions(tmp_path: Path) -> None:
    write_digits(tmp_path, [0, 1])
    path = write_csv(
        tmp_path / "m.csv",
        ["path", "captions"],
        [
            ["digit_0.png", json.dumps(["a zero", "the digit 0", "nought"])],
            ["digit_1.png", "a one"],
        ],
    )
    ds = load_dataset(path)
    assert list(ds.modalities["text"].items) == ["a zero", "the digit 0", "nought", "a one"]
    np.testing.assert_array_equal(ds.modalities["text"].sample_index, [0, 0, 0, 1])


def test_string_labels_map_to_sorted_ids(tmp_path: Path) -> None:
    names = ["dog", "cat", "emu", "cat", "dog"]
    write_digits(tmp_path, list(range(5)))
    path = write_csv(
        tmp_path / "m.csv",
        ["image", "text", "label"],
        [[f"digit_{i}.png", f"caption {i}", n] for i, n in enumerate(names)],
    )
    ds = load_dataset(path)
    expected_names = sorted(set(names))
    assert ds.class_names == expected_names
    np.testing.assert_array_equal(ds.labels, [expected_names.index(n) for n in names])


def test_split_keeps_class_ids_of_the_whole_manifest(tmp_path: Path) -> None:
    names = ["b", "c", "a", "c"]
    write_digits(tmp_path, list(range(4)))
    path = write_csv(
        tmp_path / "m.csv",
        ["image", "caption", "label", "split"],
        [[f"digit_{i}.png", f"c{i}", n, "test" if i < 2 else "train"] for i, n in enumerate(names)],
    )
    test = load_dataset(path, split="test")
    assert test.n_samples == 2 and test.class_names == ["a", "b", "c"]
    np.testing.assert_array_equal(test.labels, [1, 2])
    assert [p.name for p in test.modalities["image"].items] == ["digit_0.png", "digit_1.png"]
    with pytest.raises(DatasetError, match=r"m.csv: no row has split 'val' \(splits: test, train\)"):
        load_dataset(path, split="val")


def test_attribute_columns_auto_and_explicit(tmp_path: Path) -> None:
    write_digits(tmp_path, [0, 1, 2])
    path = write_csv(
        tmp_path / "m.csv",
        ["image", "caption", "color", "shape", "stroke"],
        [
            ["digit_0.png", "x", "red", "circle", "thin"],
            ["digit_1.png", "y", "blue", "square", "bold"],
            ["digit_2.png", "z", "red", "square", "thin"],
        ],
    )
    auto = load_dataset(path)
    assert set(auto.attributes) == {"color", "shape"}
    assert auto.attributes["color"].tolist() == ["red", "blue", "red"]
    explicit = load_dataset(path, attribute_columns=("stroke",))
    assert explicit.attributes["stroke"].tolist() == ["thin", "bold", "thin"]
    assert set(explicit.attributes) == {"stroke"}


def test_labels_without_captions_use_templates(tmp_path: Path) -> None:
    write_digits(tmp_path, [0, 1])
    path = write_csv(
        tmp_path / "m.csv",
        ["image", "label", "class_name"],
        [["digit_0.png", 0, "zero"], ["digit_1.png", 1, "one"]],
    )
    ds = load_dataset(path, templates=["a photo of a {}.", "a drawing of a {}."])
    assert list(ds.modalities["text"].items) == [
        "a photo of a zero.",
        "a drawing of a zero.",
        "a photo of a one.",
        "a drawing of a one.",
    ]
    np.testing.assert_array_equal(ds.modalities["text"].sample_index, [0, 0, 1, 1])


def test_fingerprint_is_stable_and_tracks_captions_images_labels_templates(tmp_path: Path) -> None:
    path, rows = digits_manifest(tmp_path, n=4)
    base = load_dataset(path).fingerprint
    assert base == load_dataset(path).fingerprint
    assert load_dataset(path, templates=["a sketch of a {}."]).fingerprint != base

    header = ["image", "caption_1", "caption_2", "label", "class_name", "split"]
    edited = [list(r) for r in rows]
    edited[2][1] = "a different caption"
    write_csv(path, header, edited)
    assert load_dataset(path).fingerprint != base

    relabelled = [list(r) for r in rows]
    relabelled[0][3] = 9
    write_csv(path, header, relabelled)
    assert load_dataset(path).fingerprint != base

    write_csv(path, header, rows)
    assert load_dataset(path).fingerprint == base
    image = tmp_path / "images" / "digit_1.png"
    digit_image(7).save(image)
    st = image.stat()
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a replaced file gets a new mtime
    assert load_dataset(path).fingerprint != base


# ------------------------------------------------------------------------- bad input: one line, row and fix


def _one_line(exc: pytest.ExceptionInfo[DatasetError]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_missing_image_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "m.csv", ["picture", "caption"], [["a.png", "x"]])
    with pytest.raises(DatasetError) as exc:
        load_dataset(path)
    assert "m.csv: no image column" in _one_line(exc) and "--image-column" in str(exc.value)


def test_named_column_that_does_not_exist(tmp_path: Path) -> None:
    path, _ = digits_manifest(tmp_path, n=2)
    with pytest.raises(DatasetError, match=r"no label column 'klass' .*fix --label-column"):
        load_dataset(path, label_column="klass")


def test_empty_caption_names_row_and_column(tmp_path: Path) -> None:
    path, rows = digits_manifest(tmp_path, n=4)
    rows[2][2] = "  "
    write_csv(path, ["image", "caption_1", "caption_2", "label", "class_name", "split"], rows)
    with pytest.raises(DatasetError) as exc:
        load_dataset(path)
    assert _one_line(exc).startswith("manifest.csv:4: empty caption in column 'caption_2'")
    ds = load_dataset(path, skip_bad=True)  # drops only that caption
    assert ds.counts() == {"image": 4, "text": 7}
    assert ds.extra["skipped"] == ["manifest.csv:4: empty caption in column 'caption_2' (caption dropped)"]


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(tmp_path / "nope.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="manifest not found"):
        load_dataset(tmp_path / "empty", format="manifest")


def test_missing_image_file_and_skip_bad(tmp_path: Path) -> None:
    path, _ = digits_manifest(tmp_path, n=4)
    (tmp_path / "images" / "digit_2.png").unlink()
    with pytest.raises(DatasetError) as exc:
        load_dataset(path)
    msg = _one_line(exc)
    assert msg.startswith("manifest.csv:4 column 'image': image file not found:") and "--skip-bad" in msg
    ds = load_dataset(path, skip_bad=True)
    assert ds.n_samples == 3 and ds.counts()["text"] == 6
    assert [p.name for p in ds.modalities["image"].items] == ["digit_0.png", "digit_1.png", "digit_3.png"]
    np.testing.assert_array_equal(ds.labels, [digit_label(i) for i in (0, 1, 3)])
    assert len(ds.extra["skipped"]) == 1


def test_label_column_with_blanks(tmp_path: Path) -> None:
    path, rows = digits_manifest(tmp_path, n=3)
    rows[1][3] = ""
    write_csv(path, ["image", "caption_1", "caption_2", "label", "class_name", "split"], rows)
    with pytest.raises(DatasetError) as exc:
        load_dataset(path)
    assert _one_line(exc).startswith("manifest.csv:3: blank label in column 'label'")
    assert load_dataset(path, skip_bad=True).n_samples == 2


def test_conflicting_class_names(tmp_path: Path) -> None:
    write_digits(tmp_path, [0, 1])
    path = write_csv(
        tmp_path / "m.csv",
        ["image", "caption", "label", "class_name"],
        [["digit_0.png", "a", 0, "zero"], ["digit_1.png", "b", 0, "nought"]],
    )
    with pytest.raises(DatasetError, match=r"m.csv:3: column 'class_name' 'nought' for label 0 differs"):
        load_dataset(path)


def test_empty_dataset(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "m.csv", ["image", "caption"], [])
    with pytest.raises(DatasetError, match="no data rows"):
        load_dataset(path)
    path = write_csv(tmp_path / "m.csv", ["image", "caption"], [["gone.png", "x"]])
    with pytest.raises(DatasetError, match=r"m.csv: the dataset is empty .*1 skipped"):
        load_dataset(path, skip_bad=True)


def test_no_caption_column(tmp_path: Path) -> None:
    write_digits(tmp_path, [0])
    path = write_csv(tmp_path / "m.csv", ["image", "note"], [["digit_0.png", "x"]])
    with pytest.raises(DatasetError, match="m.csv: no caption column.*--text-column"):
        load_dataset(path)


# ------------------------------------------------- issue #24: every caption kept exactly as written, in order


def test_caption_and_numbered_caption_columns_all_count(tmp_path: Path) -> None:
    """``caption,caption_1`` (what the test-data generators write) gives two captions per image, not one."""
    write_digits(tmp_path, list(range(5)))
    rows = [[f"digit_{i}.png", f"plain {i}", f"first {i}"] for i in range(5)]
    ds = load_dataset(write_csv(tmp_path / "m.csv", ["image", "caption", "caption_1"], rows))
    assert ds.counts() == {"image": 5, "text": 10}
    assert list(ds.modalities["text"].items) == [c for r in rows for c in r[1:]]
    assert ds.modalities["text"].location(1) == "m.csv:2 column 'caption_1'"


def test_caption_columns_are_ordered_caption_then_by_number(tmp_path: Path) -> None:
    """``caption`` first, then ``caption_N`` by number: ``caption_10`` after ``caption_2`` (not as text sorts)."""
    write_digits(tmp_path, [0, 1])
    header = ["image", "caption_10", "caption_2", "caption", "caption_1", "label"]
    rows = [["digit_0.png", "ten", "two", "plain", "one", 0], ["digit_1.png", "x10", "x2", "x", "x1", 1]]
    ds = load_dataset(write_csv(tmp_path / "m.csv", header, rows))
    assert list(ds.modalities["text"].items) == ["plain", "one", "two", "ten", "x", "x1", "x2", "x10"]
    np.testing.assert_array_equal(ds.modalities["text"].sample_index, [0, 0, 0, 0, 1, 1, 1, 1])


@pytest.mark.parametrize("other", ["text", "captions"])
def test_two_kinds_of_caption_column_are_not_guessed_between(tmp_path: Path, other: str) -> None:
    write_digits(tmp_path, [0])
    path = write_csv(tmp_path / "m.csv", ["image", "caption_1", other], [["digit_0.png", "a zero", "nought"]])
    with pytest.raises(DatasetError) as exc:
        load_dataset(path)
    assert _one_line(exc).startswith(f"m.csv: columns 'caption_1' and '{other}' both hold captions")
    assert "--text-column" in str(exc.value)
    both = load_dataset(path, text_columns=["caption_1", other])  # named: both count, in the order given
    assert list(both.modalities["text"].items) == ["a zero", "nought"]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_an_empty_caption_list_is_refused_or_skipped_and_counted(tmp_path: Path, fmt: str) -> None:
    """``[]`` used to drop the image with no error and no skipped row."""
    write_digits(tmp_path, [0, 1, 2])
    rows = [{"image": f"digit_{i}.png", "captions": [f"digit {i}"] if i != 1 else []} for i in range(3)]
    path = tmp_path / f"m.{fmt}"
    if fmt == "csv":
        write_csv(path, ["image", "captions"], [[r["image"], json.dumps(r["captions"])] for r in rows])
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    row = "3" if fmt == "csv" else "2"  # CSV: the line (header = line 1); JSON Lines: the line; Parquet: the row
    with pytest.raises(DatasetError) as exc:
        load_dataset(path)
    assert _one_line(exc).startswith(f"m.{fmt}:{row}: empty caption list in column 'captions'")
    ds = load_dataset(path, skip_bad=True)
    assert ds.n_samples == 2 and list(ds.modalities["text"].items) == ["digit 0", "digit 2"]
    assert ds.extra["skipped"] == [f"m.{fmt}:{row}: empty caption list in column 'captions' (row dropped)"]


@pytest.mark.parametrize("delimiter", [",", "\t"])
def test_a_row_with_more_fields_than_the_header_is_refused(tmp_path: Path, delimiter: str) -> None:
    """``img/a.png,a cat, on a mat`` (an unquoted comma; or an extra tab in a TSV) used to give "a cat"."""
    write_digits(tmp_path, [0, 1])
    suffix = "csv" if delimiter == "," else "tsv"
    path = tmp_path / f"m.{suffix}"
    lines = ["image,caption", "digit_0.png,a zero", "digit_1.png,a one, on a mat"]
    path.write_text("\n".join(line.replace(",", delimiter) for line in lines) + "\n")
    with pytest.raises(DatasetError) as exc:
        load_dataset(path)
    message = _one_line(exc)
    assert message.startswith(f"m.{suffix}:3: 3 fields but the header has 2 columns")
    assert "quote" in message
    ds = load_dataset(path, skip_bad=True)
    assert list(ds.modalities["text"].items) == ["a zero"]
    assert ds.extra["skipped"] == [f"m.{suffix}:3: 3 fields but the header has 2 columns (row dropped)"]


def test_a_duplicated_column_name_is_refused(tmp_path: Path) -> None:
    """``caption,caption`` used to keep the last of the two."""
    write_digits(tmp_path, [0])
    path = tmp_path / "m.csv"
    path.write_text("image,caption,caption\ndigit_0.png,a zero,nought\n")
    with pytest.raises(DatasetError) as exc:
        load_dataset(path)
    assert _one_line(exc).startswith("m.csv:1: column 'caption' appears twice in the header (columns 2 and 3)")
    path = tmp_path / "m.jsonl"
    path.write_text('{"image": "digit_0.png", "caption": "a zero", "caption": "nought"}\n')
    with pytest.raises(DatasetError) as exc:
        load_dataset(path)
    assert _one_line(exc).startswith("m.jsonl:1: key 'caption' appears twice in the object")
    path = tmp_path / "m.parquet"
    table = pa.table([pa.array(["digit_0.png"]), pa.array(["a zero"]), pa.array(["nought"])],
                     names=["image", "caption", "caption"])
    pq.write_table(table, path)
    with pytest.raises(DatasetError) as exc:
        load_dataset(path)
    assert _one_line(exc).startswith("m.parquet: column 'caption' appears twice (columns 2 and 3)")


@pytest.mark.parametrize(
    "value, fragment",
    [({"en": "a"}, "column 'caption' holds an object"), (5, "column 'caption' holds a number (5)"),
     (True, "column 'caption' holds a boolean (true)"), (["a", {"en": "b"}], "column 'caption' holds a list with an object")],
)
def test_a_caption_that_is_not_text_is_refused(tmp_path: Path, value: object, fragment: str) -> None:
    """JSONL ``{"en": "a"}`` used to become the caption "{'en': 'a'}"."""
    write_digits(tmp_path, [0, 1])
    path = tmp_path / "m.jsonl"
    rows = [{"image": "digit_0.png", "caption": "a zero"}, {"image": "digit_1.png", "caption": value}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DatasetError) as exc:
        load_dataset(path)
    assert _one_line(exc).startswith(f"m.jsonl:2: {fragment}")


def test_a_list_of_captions_in_json_lines_is_several_captions(tmp_path: Path) -> None:
    write_digits(tmp_path, [0])
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"image": "digit_0.png", "caption": ["a", "b, with a comma", "[c]"]}) + "\n")
    assert list(load_dataset(path).modalities["text"].items) == ["a", "b, with a comma", "[c]"]


def test_skip_bad_lists_each_dropped_caption_and_row_once(tmp_path: Path) -> None:
    """What ``--skip-bad`` drops, one line each, saying what went: a caption, or a row (never both for one row).

    Rows of another split are not listed: they are not part of the dataset read.
    """
    write_digits(tmp_path, list(range(6)))
    header = ["image", "caption_1", "caption_2", "label", "split"]
    rows = [
        ["digit_0.png", "a zero", "nought", 0, "test"],
        ["digit_1.png", "a one", " ", 1, "test"],           # one blank caption: the caption goes
        ["digit_2.png", "", "", 2, "test"],                 # no caption left: the row goes, one line
        ["gone.png", "", "", 3, "test"],                    # missing image: the row goes, one line
        ["digit_4.png", "a four", "4", "", "test"],         # blank label: the row goes
        ["digit_5.png", "a five", "5", "", "train"],        # blank label in another split: not listed
    ]
    path = write_csv(tmp_path / "m.csv", header, rows)
    ds = load_dataset(path, split="test", skip_bad=True)
    assert [p.name for p in ds.modalities["image"].items] == ["digit_0.png", "digit_1.png"]
    assert list(ds.modalities["text"].items) == ["a zero", "nought", "a one"]
    assert ds.extra["skipped"] == [
        "m.csv:6: blank label in column 'label' (row dropped)",
        "m.csv:3: empty caption in column 'caption_2' (caption dropped)",
        "m.csv:4: empty caption in column 'caption_1'; empty caption in column 'caption_2' (row dropped)",
        f"m.csv:5 column 'image': image file not found: {tmp_path / 'gone.png'} (row dropped)",
    ]
