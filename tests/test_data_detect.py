"""Format detection and the options load_dataset accepts per format."""

from __future__ import annotations

import io
import itertools
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_helpers import assert_one_line_error, gapdiag
from data_fixtures import digit_image, digits_manifest, write_csv, write_digits

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


# ---------------------------------------------------------------------------------------------------------
# Detection never guesses (issue #16 item 1): every format is asked, two readings are an error.
# ---------------------------------------------------------------------------------------------------------


def test_folder_with_one_table_and_an_image_folder_is_that_manifest(tmp_path: Path) -> None:
    # The case: pairs.csv + img/ was read as an ImageFolder with one class "img".
    write_digits(tmp_path / "img", [0, 1, 2])
    write_csv(tmp_path / "pairs.csv", ["image", "caption"], [[f"img/digit_{i}.png", f"digit {i}"] for i in range(3)])
    assert detect_format(tmp_path) == "manifest"
    from_folder, from_file = load_dataset(tmp_path), load_dataset(tmp_path / "pairs.csv")
    assert from_folder.extra["format"] == "manifest"
    assert list(from_folder.modalities["text"].items) == ["digit 0", "digit 1", "digit 2"]
    assert from_folder.fingerprint == from_file.fingerprint


def _add_manifest(root: Path) -> None:
    write_digits(root / "pics", [0, 1])
    write_csv(root / "pairs.csv", ["image", "caption"], [["pics/digit_0.png", "a zero"], ["pics/digit_1.png", "a one"]])


def _add_imagefolder(root: Path) -> None:
    write_digits(root / "seven", [7])
    write_digits(root / "three", [3])


def _add_webdataset(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    with tarfile.open(root / "shard-000.tar", "w") as tar:
        for name, data in (("s0.png", _png_bytes(0)), ("s0.txt", b"a zero")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _add_precomputed(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    np.save(root / "image.npy", rng.normal(size=(3, 4)).astype(np.float32))
    np.save(root / "text.npy", rng.normal(size=(3, 4)).astype(np.float32))


def _add_coco(root: Path) -> None:
    write_digits(root, [5])  # the image sits beside the JSON, where the COCO reader looks first
    images = [{"id": 5, "file_name": "digit_5.png"}]
    (root / "captions.json").write_text(
        json.dumps({"images": images, "annotations": [{"image_id": 5, "caption": "a five"}]})
    )


def _add_huggingface(root: Path) -> None:
    shard = root / "data" / "train-00000-of-00001.parquet"
    shard.parent.mkdir(parents=True, exist_ok=True)
    image = pa.array([{"bytes": _png_bytes(i), "path": f"{i}.png"} for i in (4, 6)])
    pq.write_table(pa.table({"image": image, "text": ["a four", "a six"]}), shard)


def _png_bytes(i: int) -> bytes:
    buf = io.BytesIO()
    digit_image(i).save(buf, format="PNG")
    return buf.getvalue()


_ADD = {
    "manifest": _add_manifest,
    "imagefolder": _add_imagefolder,
    "webdataset": _add_webdataset,
    "precomputed": _add_precomputed,
    "coco": _add_coco,
    "huggingface": _add_huggingface,
}


@pytest.mark.parametrize("fmt", sorted(_ADD))
def test_each_format_alone_in_a_folder_is_detected(tmp_path: Path, fmt: str) -> None:
    _ADD[fmt](tmp_path)
    assert detect_format(tmp_path) == fmt
    assert load_dataset(tmp_path).extra["format"] == fmt


@pytest.mark.parametrize("first, second", list(itertools.combinations(sorted(_ADD), 2)))
def test_a_folder_that_fits_two_formats_is_an_error_naming_both(tmp_path: Path, first: str, second: str) -> None:
    _ADD[first](tmp_path)
    _ADD[second](tmp_path)
    owner = {"manifest", "coco"} & {first, second}
    if "imagefolder" in (first, second) and len(owner) == 1:
        # A manifest's or COCO file's image sub-folders are its images, not classes: one reading only.
        (expected,) = owner
        assert detect_format(tmp_path) == expected
        return
    with pytest.raises(DatasetError) as exc:
        detect_format(tmp_path)
    msg = str(exc.value)
    assert "fits two dataset formats" in msg and "\n" not in msg
    for fmt in (first, second):
        assert f"{fmt} (" in msg and f"--data-format {fmt}" in msg
    # Naming the format reads the folder that way.
    for fmt in (first, second):
        assert load_dataset(tmp_path, format=fmt).extra["format"] == fmt


def test_two_tables_in_a_folder_are_not_guessed_between(tmp_path: Path) -> None:
    _add_manifest(tmp_path)
    write_csv(tmp_path / "other.csv", ["image", "caption"], [["pics/digit_0.png", "zero"]])
    with pytest.raises(DatasetError, match=r"several manifest tables \(other.csv, pairs.csv\)"):
        detect_format(tmp_path)
    assert load_dataset(tmp_path / "other.csv").n_samples == 1


def test_ambiguous_folder_on_the_command_line(capsys, tmp_path: Path) -> None:
    _add_webdataset(tmp_path)
    _add_precomputed(tmp_path)
    code, out, err = gapdiag(capsys, "measure", "-d", tmp_path, "--json")
    assert_one_line_error(code, out, err, str(tmp_path), "webdataset", "precomputed", "--data-format")
    code, out, err = gapdiag(capsys, "measure", "-d", tmp_path, "--data-format", "precomputed", "--json")
    assert code == 0, err
    assert json.loads(out)["provenance"]["dataset"]["n_samples"] == 3  # the 3 vectors, not the 1-sample shard
