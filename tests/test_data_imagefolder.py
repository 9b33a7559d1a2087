"""Image-folder reader: classes from folders, template captions, labels, splits and bad input."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import photo_image, write_digits

from gapdiag.data import detect_format, load_dataset
from gapdiag.errors import DatasetError


def _folder(root: Path) -> dict[str, list[str]]:
    write_digits(root / "hand_written", [0, 1, 2])
    (root / "photo").mkdir(parents=True)
    photo_image(0).save(root / "photo" / "china.jpg")
    photo_image(1).save(root / "photo" / "flower.jpg")
    (root / "photo" / "notes.txt").write_text("not an image")
    (root / "empty_class").mkdir()
    return {
        "hand written": ["digit_0.png", "digit_1.png", "digit_2.png"],
        "photo": ["china.jpg", "flower.jpg"],
    }


def test_classes_labels_and_template_captions(tmp_path: Path) -> None:
    expected = _folder(tmp_path)
    templates = ["a photo of a {}.", "an image of {}"]
    ds = load_dataset(tmp_path, templates=templates)
    assert detect_format(tmp_path) == "imagefolder"
    assert ds.class_names == sorted(expected)  # folders without images are not classes
    names = [p.name for p in ds.modalities["image"].items]
    assert names == [f for c in sorted(expected) for f in expected[c]]
    np.testing.assert_array_equal(
        ds.labels, [ds.class_names.index(c) for c in sorted(expected) for _ in expected[c]]
    )
    text = ds.modalities["text"]
    assert len(text) == ds.n_samples * len(templates)
    for j, caption in enumerate(text.items):
        sample = text.sample_index[j]
        assert caption == templates[j % 2].format(ds.class_names[ds.labels[sample]])
    assert ds.templates == tuple(templates)


def test_split_subfolder(tmp_path: Path) -> None:
    write_digits(tmp_path / "train" / "digit", [0, 1])
    write_digits(tmp_path / "test" / "digit", [5])
    ds = load_dataset(tmp_path / "test")
    assert ds.n_samples == 1
    ds = load_dataset(tmp_path, format="imagefolder", split="train")
    assert [p.name for p in ds.modalities["image"].items] == ["digit_0.png", "digit_1.png"]


def test_no_images_in_folder(tmp_path: Path) -> None:
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "readme.txt").write_text("x")
    with pytest.raises(DatasetError, match="no images in this folder"):
        load_dataset(tmp_path)
    with pytest.raises(DatasetError, match=r"no images in class sub-folders \(expected .*/<class>/<image>"):
        load_dataset(tmp_path, format="imagefolder")


def test_fingerprint_tracks_templates_and_files(tmp_path: Path) -> None:
    _folder(tmp_path)
    base = load_dataset(tmp_path).fingerprint
    assert load_dataset(tmp_path).fingerprint == base
    assert load_dataset(tmp_path, templates=["a sketch of a {}."]).fingerprint != base
    write_digits(tmp_path / "photo", [9])
    assert load_dataset(tmp_path).fingerprint != base


@pytest.mark.parametrize("kind", ["broken link", "fifo", "folder"])
def test_an_image_entry_that_is_no_file_is_named_not_skipped_in_silence(tmp_path: Path, kind: str) -> None:
    """A broken link or a FIFO named like an image used to be passed over: the dataset measured was not the one
    on disk. It is refused, naming it; --skip-bad leaves it out and lists it."""
    expected = _folder(tmp_path)
    bad = tmp_path / "photo" / "zebra.jpg"
    if kind == "broken link":
        bad.symlink_to(tmp_path / "nowhere.jpg")
        said = "broken symbolic link"
    elif kind == "fifo":
        os.mkfifo(bad)
        said = "not a regular file"
    else:
        bad.mkdir()
        said = "is a folder"
    with pytest.raises(DatasetError, match=f"zebra.jpg.*{said}.*--skip-bad") as exc:
        load_dataset(tmp_path)
    assert "\n" not in str(exc.value)
    ds = load_dataset(tmp_path, skip_bad=True)
    assert [p.name for p in ds.modalities["image"].items] == [f for c in sorted(expected) for f in expected[c]]
    assert len(ds.extra["skipped"]) == 1 and "zebra.jpg" in ds.extra["skipped"][0]


def test_a_class_folder_of_only_broken_entries_is_named_not_dropped_in_silence(tmp_path: Path) -> None:
    """A class whose every image is a broken link used to vanish from the class list (it held no readable image),
    so the classes measured were not the ones on disk. It is refused naming the link; --skip-bad drops the link and
    the class, and lists both."""
    expected = _folder(tmp_path)
    (tmp_path / "zebra").mkdir()
    (tmp_path / "zebra" / "z.jpg").symlink_to(tmp_path / "nowhere.jpg")
    with pytest.raises(DatasetError, match="z.jpg.*broken symbolic link.*--skip-bad"):
        load_dataset(tmp_path)
    ds = load_dataset(tmp_path, skip_bad=True)
    assert ds.class_names == sorted(expected)
    assert len(ds.labels) == sum(len(v) for v in expected.values())
    skipped = ds.extra["skipped"]
    assert len(skipped) == 2 and "z.jpg" in skipped[0]
    assert "zebra" in skipped[1] and "class dropped" in skipped[1]


def test_a_folder_of_only_hidden_images_is_no_class(tmp_path: Path) -> None:
    expected = _folder(tmp_path)
    (tmp_path / "thumbs").mkdir()
    photo_image(0).save(tmp_path / "thumbs" / ".cache.jpg")
    assert load_dataset(tmp_path).class_names == sorted(expected)


def test_a_folder_whose_every_image_is_broken_is_one_line_even_with_skip_bad(tmp_path: Path) -> None:
    (tmp_path / "zebra").mkdir()
    (tmp_path / "zebra" / "z.jpg").symlink_to(tmp_path / "nowhere.jpg")
    with pytest.raises(DatasetError, match="no image left: all 2 dropped, first .*z.jpg") as exc:
        load_dataset(tmp_path, skip_bad=True)
    assert "\n" not in str(exc.value)
