"""load_image: RGB output, and one-line errors for missing, corrupt and truncated files."""

from __future__ import annotations

import re
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


# ------------------------------------- issue #24 item 8: say what a path is when it is not an image file


@pytest.mark.parametrize("kind, fragment", [
    ("folder", "is a folder, not an image file"),
    ("loop", "is a symbolic link loop"),
    ("dangling", "is a broken symbolic link (to"),
    ("missing", "image file not found"),
])
def test_a_path_that_is_not_an_image_file_says_what_it_is(capsys, tmp_path: Path, kind: str, fragment: str) -> None:
    """A folder named ``x.png`` and a symlink loop used to be reported as "image file not found"."""
    from cli_helpers import assert_one_line_error, gapdiag
    from data_fixtures import write_csv, write_digits

    from gapdiag.data import load_dataset

    write_digits(tmp_path, [0])
    odd = tmp_path / "x.png"
    if kind == "folder":
        odd.mkdir()
    elif kind == "loop":
        odd.symlink_to(odd)
    elif kind == "dangling":
        odd.symlink_to(tmp_path / "elsewhere.png")
    manifest = write_csv(tmp_path / "m.csv", ["image", "caption"], [["digit_0.png", "a zero"], ["x.png", "an x"]])
    with pytest.raises(DatasetError) as exc:
        load_dataset(manifest)
    assert str(exc.value).startswith(f"m.csv:3 column 'image': {odd} {fragment}" if kind != "missing"
                                     else f"m.csv:3 column 'image': image file not found: {odd}"), str(exc.value)
    assert str(exc.value).endswith("(fix the path or pass --skip-bad)")
    skipped = load_dataset(manifest, skip_bad=True).extra["skipped"]
    assert len(skipped) == 1 and fragment in skipped[0] and skipped[0].endswith("(row dropped)")
    code, out, err = gapdiag(capsys, "embed", "-d", manifest, "-q")
    assert_one_line_error(code, out, err, "m.csv:3", fragment)
    if kind != "missing":  # the image read itself (a path that changed after the dataset was read)
        with pytest.raises(DatasetError, match=f"^m.csv:3: {re.escape(str(odd))} {re.escape(fragment)}"):
            load_image(odd, "m.csv:3")
