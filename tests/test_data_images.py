"""load_image: RGB output, and one-line errors for missing, corrupt and truncated files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from data_fixtures import digit_image, photo_image

from gapdiag.data import load_image
from gapdiag.errors import DatasetError


def test_grayscale_file_opens_as_rgb_with_same_pixels(tmp_path: Path) -> None:
    path = tmp_path / "d.png"
    digit_image(4).save(path)
    img = load_image(path, "m.csv:2")
    assert img.mode == "RGB" and img.size == (16, 16)
    gray = np.asarray(digit_image(4))
    np.testing.assert_array_equal(np.asarray(img), np.repeat(gray[:, :, None], 3, axis=2))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as exc:
        load_image(tmp_path / "gone.jpg", "m.csv:9")
    assert (
        str(exc.value)
        == f"m.csv:9: image file not found: {tmp_path / 'gone.jpg'} (fix the path or pass --skip-bad)"
    )


def test_corrupt_and_truncated_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"this is not a jpeg")
    with pytest.raises(DatasetError, match=r"^m.csv:3: cannot decode image .*bad.jpg"):
        load_image(bad, "m.csv:3")
    whole = tmp_path / "whole.png"
    photo_image(0).save(whole)
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # header intact, pixel data cut short
    with pytest.raises(DatasetError, match=r"^m.csv:4: cannot decode image .*cut.png.*--skip-bad\)$") as exc:
        load_image(cut, "m.csv:4")
    assert "\n" not in str(exc.value)
