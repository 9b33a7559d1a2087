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


# ------------------------- issue #24 item 7: decode as PIL + the model's transform would, after correct scaling


def _png_16bit_rgb(path: Path, array: np.ndarray) -> Path:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one), big-endian samples, filter 0 on every row."""
    import struct
    import zlib

    h, w, _ = array.shape
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))
    return path


def _gray_as_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2)


def test_a_16_bit_grayscale_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    """A 16-bit PNG used to be clipped to black and white (every value above 255 became 255)."""
    from PIL import Image

    deep = (np.linspace(0, 65535, 16 * 16).reshape(16, 16)).round().astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(deep).save(path)
    img = load_image(path, "m.csv:2")
    assert img.mode == "RGB"
    want = np.round(deep / 257).astype(np.uint8)  # 0..65535 onto 0..255
    np.testing.assert_array_equal(np.asarray(img), _gray_as_rgb(want))
    assert len(np.unique(np.asarray(img))) > 200  # a ramp, not two levels


def test_a_16_bit_colour_png_keeps_its_colours(tmp_path: Path) -> None:
    """Pillow reads 16-bit colour as its high byte: within one level of 255 of exact scaling."""
    deep = np.random.default_rng(0).integers(0, 65536, size=(6, 5, 3)).astype(np.uint16)
    img = load_image(_png_16bit_rgb(tmp_path / "rgb16.png", deep), "m.csv:2")
    assert np.abs(np.asarray(img).astype(int) - np.round(deep / 257)).max() <= 1


def test_a_16_bit_pgm_is_scaled(tmp_path: Path) -> None:
    path = tmp_path / "deep.pgm"
    path.write_bytes(b"P5\n3 1\n65535\n" + np.array([0, 32896, 65535], ">u2").tobytes())
    np.testing.assert_array_equal(np.asarray(load_image(path, "x"))[0, :, 0], [0, 128, 255])


def test_a_float_tiff_is_read_by_its_range(tmp_path: Path) -> None:
    """A float TIFF in [0, 1] used to become all black (each value clipped to 0 or 1 of 255)."""
    from PIL import Image

    values = np.linspace(0, 1, 12 * 10, dtype=np.float32).reshape(12, 10)
    path = tmp_path / "f.tif"
    Image.fromarray(values).save(path)
    img = load_image(path, "m.csv:5")
    np.testing.assert_array_equal(np.asarray(img), _gray_as_rgb(np.round(values * 255).astype(np.uint8)))


@pytest.mark.parametrize("values, fragment", [
    (np.array([[0.0, 2.5]], np.float32), "float image with values in [0, 2.5]"),
    (np.array([[0.0, np.nan]], np.float32), "float image with NaN or infinite values"),
    (np.array([[0, 70000]], np.int32), "32-bit integer image"),
])
def test_pixel_values_without_a_known_range_are_refused(tmp_path: Path, values: np.ndarray, fragment: str) -> None:
    from PIL import Image

    path = tmp_path / "odd.tif"
    Image.fromarray(values).save(path)
    with pytest.raises(DatasetError) as exc:
        load_image(path, "m.csv:6")
    message = str(exc.value)
    assert message.startswith(f"m.csv:6: cannot decode image {path}: {fragment}"), message
    assert message.endswith("--skip-bad)") and "\n" not in message


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientation_is_applied(tmp_path: Path, fmt: str) -> None:
    """A phone photo stored sideways with an EXIF orientation used to be embedded sideways."""
    from PIL import Image, ImageOps

    upright = photo_image(0)  # 24 x 16, landscape
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what the camera wrote: 16 x 24
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    path = tmp_path / f"phone.{fmt.lower()}"
    stored.save(path, fmt, exif=exif.tobytes(), **({"quality": 100} if fmt == "JPEG" else {}))
    img = load_image(path, "m.csv:7")
    assert img.size == upright.size == (24, 16)
    reference = ImageOps.exif_transpose(Image.open(path)).convert("RGB")  # the rule: PIL's exif_transpose
    np.testing.assert_array_equal(np.asarray(img), np.asarray(reference))


def test_a_large_image_decodes_without_a_python_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue #23 item 18: Pillow's DecompressionBombWarning (an image above MAX_IMAGE_PIXELS, up to twice that)
    leaked to stderr as Python warning text. Such an image decodes quietly; above twice the limit it is a one-line
    error (test_data_errors.py::test_image_claiming_billions_of_pixels_is_a_decode_error)."""
    import warnings

    from PIL import Image

    path = tmp_path / "large.png"
    photo_image(1).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)  # the 24 x 16 photo (384 px) is "large"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        img = load_image(path, "m.csv:8")
    assert img.size == (24, 16)
    assert [str(w.category.__name__) for w in caught] == []
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # now more than twice the limit
    with pytest.raises(DatasetError, match=r"^m.csv:8: cannot decode image .*large.png: Image size \(384 pixels\)"):
        load_image(path, "m.csv:8")


def test_decoding_threads_print_no_warning_and_restore_the_filters(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``--skip-bad`` pre-pass decodes in a thread pool: no Pillow warning either, and the warning filters are
    the user's again afterwards (a catch_warnings per thread would restore them out of order)."""
    import warnings

    from data_fixtures import write_csv
    from PIL import Image

    from gapdiag.data import load_dataset
    from gapdiag.data.ops import skip_unreadable

    rows = []
    for i in range(24):
        photo_image(i % 2).save(tmp_path / f"p{i}.png")
        rows.append([f"p{i}.png", f"photo {i}"])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)  # every 24 x 16 photo (384 px) is "large"
    (tmp_path / "bad.png").write_bytes(b"not an image")
    dataset = load_dataset(write_csv(tmp_path / "m.csv", ["image", "caption"], [*rows, ["bad.png", "broken"]]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        filters = list(warnings.filters)
        kept, reasons = skip_unreadable(dataset)
        assert warnings.filters == filters
    assert caught == [] and kept.n_samples == 24
    assert reasons == [f"m.csv:26: cannot decode image {tmp_path / 'bad.png'}: cannot identify image file "
                       f"{str(tmp_path / 'bad.png')!r} (sample dropped)"]  # says what went, as the readers' lines
