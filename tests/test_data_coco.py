"""COCO-captions reader: image root search, 1:N captions, and bad annotations."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import photo_image, write_digits

from gapdiag.data import detect_format, load_dataset
from gapdiag.errors import DatasetError

CAPTIONS = {
    1: ["a street in china", "a temple roof"],
    2: ["a red flower"],
    7: ["a zero", "the digit 0", "nought"],
}


def _coco(root: Path, annotations: list[dict] | None = None, images: list[dict] | None = None) -> Path:
    """The COCO layout: root/annotations/captions_val2017.json and root/val2017/<file_name>."""
    (root / "val2017").mkdir(parents=True, exist_ok=True)
    photo_image(0).save(root / "val2017" / "china.jpg")
    photo_image(1).save(root / "val2017" / "flower.jpg")
    write_digits(root / "val2017", [0])
    images = images or [
        {"id": 1, "file_name": "china.jpg"},
        {"id": 2, "file_name": "flower.jpg"},
        {"id": 7, "file_name": "digit_0.png"},
    ]
    if annotations is None:
        # Interleaved on purpose: readers must group by image id, not by order.
        annotations = [
            {"id": 10 + k, "image_id": i, "caption": c}
            for k, (i, c) in enumerate(
                (i, c) for j in range(3) for i, cs in CAPTIONS.items() for c in cs[j : j + 1]
            )
        ]
    path = root / "annotations" / "captions_val2017.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": annotations}))
    return path


def test_one_image_item_per_image_and_all_its_captions(tmp_path: Path) -> None:
    path = _coco(tmp_path)
    assert detect_format(path) == "coco"
    ds = load_dataset(path)
    assert ds.n_samples == 3
    assert [p.name for p in ds.modalities["image"].items] == ["china.jpg", "flower.jpg", "digit_0.png"]
    assert ds.modalities["image"].items[0].parent == tmp_path / "val2017"
    text = ds.modalities["text"]
    ids = [1, 2, 7]
    for sample, image_id in enumerate(ids):
        got = [c for c, s in zip(text.items, text.sample_index) if s == sample]
        assert got == CAPTIONS[image_id]
    assert len(text) == sum(len(c) for c in CAPTIONS.values())


def test_explicit_image_root(tmp_path: Path) -> None:
    path = _coco(tmp_path)
    (tmp_path / "val2017").rename(tmp_path / "pictures")
    with pytest.raises(DatasetError, match=r"cannot find image 'china.jpg' in .*\(pass --image-root DIR"):
        load_dataset(path)
    ds = load_dataset(path, image_root=tmp_path / "pictures")
    assert ds.modalities["image"].items[1] == tmp_path / "pictures" / "flower.jpg"


def test_image_without_caption(tmp_path: Path) -> None:
    path = _coco(tmp_path, annotations=[{"image_id": 1, "caption": "a"}, {"image_id": 7, "caption": "b"}])
    with pytest.raises(DatasetError, match=r"captions_val2017.json: images\[1\] \(id 2\) has no caption"):
        load_dataset(path)
    ds = load_dataset(path, skip_bad=True)
    assert ds.n_samples == 2 and list(ds.modalities["text"].items) == ["a", "b"]
    np.testing.assert_array_equal(ds.modalities["text"].sample_index, [0, 1])
    assert len(ds.extra["skipped"]) == 1


def test_caption_for_unknown_image_id(tmp_path: Path) -> None:
    annotations = [{"image_id": i, "caption": "x"} for i in (1, 2, 7)] + [{"image_id": 99, "caption": "y"}]
    path = _coco(tmp_path, annotations=annotations)
    with pytest.raises(DatasetError, match=r"annotations\[3\] refers to unknown image id 99"):
        load_dataset(path)
    assert load_dataset(path, skip_bad=True).counts() == {"image": 3, "text": 3}


def test_empty_caption_and_missing_image(tmp_path: Path) -> None:
    path = _coco(
        tmp_path, annotations=[{"image_id": i, "caption": "x" if i != 2 else " "} for i in (1, 2, 7)]
    )
    with pytest.raises(DatasetError, match=r"annotations\[1\]: empty caption for image id 2"):
        load_dataset(path)
    path = _coco(tmp_path)
    (tmp_path / "val2017" / "flower.jpg").unlink()
    with pytest.raises(DatasetError, match=r"images\[1\] \(id 2\): image file not found: .*flower.jpg"):
        load_dataset(path)


def test_fingerprint_tracks_captions(tmp_path: Path) -> None:
    path = _coco(tmp_path)
    base = load_dataset(path).fingerprint
    assert load_dataset(path).fingerprint == base
    data = json.loads(path.read_text())
    data["annotations"][0]["caption"] = "something else"
    path.write_text(json.dumps(data))
    assert load_dataset(path).fingerprint != base


def test_a_caption_list_is_several_captions_as_written(tmp_path: Path) -> None:
    """COCO ``"caption": ["a", "b"]`` used to become the one caption "['a', 'b']"."""
    annotations = [{"image_id": 1, "caption": ["a temple", "a roof, red"]}, {"image_id": 2, "caption": "a flower"},
                   {"image_id": 7, "caption": '["kept", "as text"]'}]
    ds = load_dataset(_coco(tmp_path, annotations=annotations))
    assert list(ds.modalities["text"].items) == ["a temple", "a roof, red", "a flower", '["kept", "as text"]']
    np.testing.assert_array_equal(ds.modalities["text"].sample_index, [0, 0, 1, 2])


@pytest.mark.parametrize("value, fragment", [({"en": "a"}, "holds an object"), (5, "holds a number (5)"),
                                             (["a", 7], "holds a list with a number (7)")])
def test_a_caption_that_is_not_text_is_refused(tmp_path: Path, value: object, fragment: str) -> None:
    annotations = [{"image_id": i, "caption": "x"} for i in (1, 2)] + [{"image_id": 7, "caption": value}]
    with pytest.raises(DatasetError, match=r"^captions_val2017.json: annotations\[2\] field 'caption' " + re.escape(fragment)):
        load_dataset(_coco(tmp_path, annotations=annotations))


def test_an_empty_caption_list_is_refused_or_skipped_and_counted(tmp_path: Path) -> None:
    annotations = [{"image_id": i, "caption": "x"} for i in (1, 2)] + [{"image_id": 7, "caption": []}]
    path = _coco(tmp_path, annotations=annotations)
    with pytest.raises(DatasetError, match=r"annotations\[2\]: empty caption list for image id 7 \(write one"):
        load_dataset(path)
    ds = load_dataset(path, skip_bad=True)
    assert ds.n_samples == 2
    assert ds.extra["skipped"] == [
        "captions_val2017.json: annotations[2]: empty caption list for image id 7 (annotation dropped)",
        "captions_val2017.json: images[2] (id 7) has no caption (image dropped)",
    ]


def test_a_repeated_key_is_refused(tmp_path: Path) -> None:
    path = _coco(tmp_path)
    path.write_text(path.read_text().replace('"caption": "a red flower"', '"caption": "a red flower", "caption": "x"'))
    with pytest.raises(DatasetError, match=r"captions_val2017.json: key 'caption' appears twice in one object"):
        load_dataset(path)
