"""Class labels as written (issue #24 item 5): one label type per dataset, numbers keep their values.

A dataset's labels are class ids (whole numbers 0, 1, 2, ...) or class names (text), never a mix; ``1.0`` is the
class id 1 (pandas writes an integer column with blanks as floats), a boolean is neither, and an id too large
for a class id is refused instead of overflowing.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_helpers import assert_one_line_error, gapdiag
from data_fixtures import digit_image, write_csv, write_digits

from gapdiag.data import load_dataset
from gapdiag.errors import DatasetError


def _jsonl(folder: Path, labels: list[object], name: str = "m.jsonl") -> Path:
    write_digits(folder, list(range(len(labels))))
    path = folder / name
    rows = [{"image": f"digit_{i}.png", "caption": f"digit {i}", "label": y} for i, y in enumerate(labels)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _shard(path: Path, cls: list[str]) -> Path:
    with tarfile.open(path, "w") as tar:
        for i, y in enumerate(cls):
            buf = io.BytesIO()
            digit_image(i).save(buf, format="PNG")
            for name, data in ((f"k{i}.png", buf.getvalue()), (f"k{i}.txt", b"a digit"), (f"k{i}.cls", y.encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def test_integral_floats_are_the_same_class_as_integers(tmp_path: Path) -> None:
    """JSON Lines labels ``1.0`` and ``1`` used to be two classes, named "1" and "1.0"."""
    ds = load_dataset(_jsonl(tmp_path, [1.0, 1, 2, 0.0]))
    assert ds.labels.tolist() == [1, 1, 2, 0] and ds.class_names is None


def test_csv_labels_keep_their_values(tmp_path: Path) -> None:
    write_digits(tmp_path, [0, 1, 2, 3])
    path = write_csv(tmp_path / "m.csv", ["image", "caption", "label"],
                     [[f"digit_{i}.png", "x", y] for i, y in enumerate(["7", "7.0", "3", "12"])])
    ds = load_dataset(path)
    assert ds.labels.tolist() == [7, 7, 3, 12] and ds.class_names is None


@pytest.mark.parametrize("value, fragment", [
    (True, "m.jsonl:2: label true is a boolean"),
    (1.5, "m.jsonl:2: label 1.5 is not a whole number"),
    ({"id": 1}, "m.jsonl:2: label holds an object"),
    (-2, "m.jsonl:2: label -2 is negative"),
])
def test_labels_that_are_no_class_are_refused(tmp_path: Path, value: object, fragment: str) -> None:
    """``true`` used to become the class "True"."""
    with pytest.raises(DatasetError) as exc:
        load_dataset(_jsonl(tmp_path, [0, value, 1]))
    assert str(exc.value).startswith(fragment), str(exc.value)


def test_mixed_ids_and_names_are_refused_naming_both_rows(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as exc:
        load_dataset(_jsonl(tmp_path, [3, 1, "cat"]))
    assert str(exc.value).startswith("m.jsonl:3: label 'cat' is a class name, but m.jsonl:1 has the class id 3")
    assert "one label type per dataset" in str(exc.value)


def test_a_cls_member_that_is_not_a_class_id_is_refused(tmp_path: Path) -> None:
    """A WebDataset ``.cls`` of ``abc`` used to turn every label into a name and renumber 1 -> 0, 2 -> 1."""
    with pytest.raises(DatasetError, match=r"^s.tar:k2: cls member holds 'abc', not a class id"):
        load_dataset(_shard(tmp_path / "s.tar", ["1", "2", "abc"]))
    assert load_dataset(_shard(tmp_path / "t.tar", ["1", "2", "1"])).labels.tolist() == [1, 2, 1]


def test_a_label_too_large_for_a_class_id_is_one_line(capsys, tmp_path: Path) -> None:
    """Issue #23 item 15: ``99999999999999999999999`` raised OverflowError (a traceback)."""
    write_digits(tmp_path, [0, 1])
    path = write_csv(tmp_path / "m.csv", ["image", "caption", "label"],
                     [["digit_0.png", "a zero", 0], ["digit_1.png", "a one", "99999999999999999999999"]])
    code, out, err = gapdiag(capsys, "embed", "-d", path, "-q")
    assert_one_line_error(code, out, err, "m.csv:3: label 99999999999999999999999 is too large for a class id")


def test_parquet_labels_by_type(tmp_path: Path) -> None:
    write_digits(tmp_path, [0, 1, 2])
    path = tmp_path / "m.parquet"
    base = {"image": [f"digit_{i}.png" for i in range(3)], "caption": ["a", "b", "c"]}
    pq.write_table(pa.table({**base, "label": pa.array([1.0, None, 2.0])}), path)  # pandas' ints with a blank
    assert load_dataset(path, skip_bad=True).labels.tolist() == [1, 2]
    pq.write_table(pa.table({**base, "label": pa.array([True, False, True])}), path)
    with pytest.raises(DatasetError, match=r"^m.parquet:1: label true is a boolean"):
        load_dataset(path)


def test_encode_labels_names_sorted_and_ids_kept() -> None:
    from gapdiag.data.labels import encode_labels

    ids, names = encode_labels(["dog", "cat", "dog"], ["a:1", "a:2", "a:3"], "label")
    assert ids.tolist() == [1, 0, 1] and names == ["cat", "dog"]
    ids, names = encode_labels([4, "4", 4.0, "04"], ["a:1", "a:2", "a:3", "a:4"], "label")
    assert ids.tolist() == [4, 4, 4, 4] and names is None
    assert ids.dtype == np.int64


def test_a_huge_id_with_class_names_is_refused_not_expanded(tmp_path: Path) -> None:
    """Ids that never occur are named by their number, one zero-shot prompt each: a label 10**9 beside a
    class_name column used to build a billion names."""
    write_digits(tmp_path, [0, 1])
    path = write_csv(tmp_path / "m.csv", ["image", "caption", "label", "class_name"],
                     [["digit_0.png", "a", 0, "zero"], ["digit_1.png", "b", 10**9, "big"]])
    with pytest.raises(DatasetError, match=r"^m.csv:3: label 1000000000 leaves 999999999 class ids below it without "
                                           r"a name"):
        load_dataset(path)
    path = write_csv(tmp_path / "m.csv", ["image", "caption", "label", "class_name"],
                     [["digit_0.png", "a", 0, "zero"], ["digit_1.png", "b", 3, "three"]])
    assert load_dataset(path).class_names == ["zero", "1", "2", "three"]
