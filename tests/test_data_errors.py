"""Bad dataset files on the command line: one ``error:`` line naming the file (and row/member) and the fix, exit 2.

Each case used to end in a traceback, in "unknown dataset format", or in a false "aborted" (exit 130).
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
from data_fixtures import digit_image, write_digits

from gapdiag.data import load_dataset
from gapdiag.errors import DatasetError, InputError


def _vectors(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    np.save(folder / "image.npy", rng.normal(size=(4, 3)).astype(np.float32))
    np.save(folder / "text.npy", rng.normal(size=(4, 3)).astype(np.float32))


# ------------------------------------------------------------------------------------------------ templates


@pytest.mark.parametrize(
    "template, fragment",
    [("a {} and a {}", "has 2 fields"), ("a {name}", "has 1 fields ({name})"), ("a photo {", "Single '{'")],
)
def test_template_without_exactly_one_placeholder(capsys, manifest: Path, tiny_checkpoint: Path, template: str,
                                                  fragment: str) -> None:
    code, out, err = gapdiag(
        capsys, "measure", "-m", tiny_checkpoint, "-d", manifest, "--template", "a photo of a {}.",
        "--template", template, "--json",
    )
    assert_one_line_error(code, out, err, f"template {template!r}", fragment, "a photo of a {}.")


def test_templates_are_checked_before_any_data_is_read(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"template '\{\} \{\}' has 2 fields"):
        load_dataset(tmp_path, templates=["{} {}"])  # an empty folder: detection would fail first


# ------------------------------------------------------------------------------------------------ webdataset


def _shard(path: Path, n: int = 3) -> None:
    with tarfile.open(path, "w") as tar:
        for i in range(n):
            buf = io.BytesIO()
            digit_image(i).save(buf, format="PNG")
            for name, data in ((f"s{i}.png", buf.getvalue()), (f"s{i}.txt", f"digit {i}".encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("cut", ["header", "member"])
def test_truncated_shard_names_the_shard_the_member_and_the_fix(capsys, tmp_path: Path, tiny_checkpoint: Path,
                                                                cut: str) -> None:
    shard = tmp_path / "shard-000.tar"
    _shard(shard)
    data = shard.read_bytes()
    with tarfile.open(shard) as tar:
        members = tar.getmembers()
    # Cut inside the third member's header, or inside the last member's data (a download cut short).
    end = members[2].offset + 100 if cut == "header" else members[-1].offset_data + 10
    shard.write_bytes(data[:end])
    code, out, err = gapdiag(capsys, "measure", "-m", tiny_checkpoint, "-d", shard, "--json")
    line = assert_one_line_error(code, out, err, str(shard), "truncated or corrupt tar shard", "pack the shard again")
    assert "after member 's0." in line or "member 's2.txt'" in line


def test_caption_member_that_is_not_utf8(tmp_path: Path) -> None:
    shard = tmp_path / "s.tar"
    with tarfile.open(shard, "w") as tar:
        for name, data in (("k.png", b"\x89PNG"), ("k.txt", b"caf\xe9")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(DatasetError, match=r"s.tar:k.txt:1: not UTF-8 text \(byte 0xe9\); write captions as UTF-8"):
        load_dataset(shard)


# ------------------------------------------------------------------------------------------------ precomputed


@pytest.mark.parametrize(
    "content, fragment",
    [
        (b"", "the file is empty"),
        (b"this is not numpy", "not a NumPy file"),
        (None, "cannot read .npy"),
        ("object", "Python objects"),
    ],
)
def test_bad_npy_in_a_vector_folder(capsys, tmp_path: Path, content: bytes | None, fragment: str) -> None:
    _vectors(tmp_path / "emb")
    bad = tmp_path / "emb" / "text.npy"
    # None: a valid header whose data was cut short.
    if content == "object":  # numpy's own refusal to unpickle is kept: it says what is wrong
        np.save(bad, np.array([{"a": 1}] * 4, dtype=object), allow_pickle=True)
    else:
        bad.write_bytes(bad.read_bytes()[:140] if content is None else content)
    code, out, err = gapdiag(capsys, "measure", "-d", tmp_path / "emb", "--json")
    assert_one_line_error(code, out, err, str(bad), fragment, "np.save")


def test_zero_byte_npy_raises_a_dataset_error_with_debug(tmp_path: Path) -> None:
    # It was a false "aborted" (exit 130) even with --debug: np.load raises EOFError on a 0-byte file, and click
    # turns an EOFError escaping a command into Abort. --debug now shows the reader's own error.
    _vectors(tmp_path)
    (tmp_path / "text.npy").write_bytes(b"")
    from gapdiag.cli import run

    with pytest.raises(DatasetError, match="text.npy: cannot read .npy \\(the file is empty\\)"):
        run(["measure", "-d", str(tmp_path), "--json", "--debug"])


@pytest.mark.parametrize("cut", [0, 30, -20])
def test_truncated_npz(capsys, tmp_path: Path, cut: int) -> None:
    path = tmp_path / "emb.npz"
    np.savez(path, image=np.ones((4, 3), np.float32), text=np.ones((4, 3), np.float32))
    path.write_bytes(path.read_bytes()[:cut])
    code, out, err = gapdiag(capsys, "measure", "-d", path, "--json")
    assert_one_line_error(code, out, err, str(path), "cannot read .npz", "np.savez")


@pytest.mark.parametrize("kind", ["vectors", "manifest"])
def test_truncated_parquet(capsys, tmp_path: Path, kind: str) -> None:
    path = tmp_path / "data.parquet"
    if kind == "vectors":
        pq.write_table(pa.table({"image": [[0.1, 0.2]] * 3, "text": [[0.3, 0.1]] * 3}), path)
    else:
        write_digits(tmp_path, [0])
        pq.write_table(pa.table({"image": ["digit_0.png"], "caption": ["a zero"]}), path)
    path.write_bytes(path.read_bytes()[:-30])
    code, out, err = gapdiag(capsys, "measure", "-d", path, "--json")
    assert_one_line_error(code, out, err, str(path), "cannot read Parquet file", "write it again")


def test_class_names_txt_that_is_not_utf8(tmp_path: Path) -> None:
    _vectors(tmp_path)
    np.save(tmp_path / "labels.npy", np.array([0, 1, 0, 1]))
    (tmp_path / "class_names.txt").write_bytes(b"caf\xe9\nthe\n")
    with pytest.raises(DatasetError, match=r"class_names.txt:1: not UTF-8 text"):
        load_dataset(tmp_path)


# ------------------------------------------------------------------------------------------------ COCO


@pytest.mark.parametrize("folder", [False, True])
def test_malformed_coco_json_gives_line_and_column(capsys, tmp_path: Path, tiny_checkpoint: Path,
                                                   folder: bool) -> None:
    path = tmp_path / "captions.json"
    write_digits(tmp_path, [0])
    good = json.dumps({"images": [{"id": 1, "file_name": "digit_0.png"}],
                       "annotations": [{"image_id": 1, "caption": "a zero"}]}, indent=1)
    bad = good.replace('"a zero"', '"a zero",')  # a trailing comma: the error is on the next line, at the }
    path.write_text(bad)
    lines = bad.splitlines()
    line = next(i for i, text in enumerate(lines, 1) if text.endswith('"a zero",')) + 1
    column = lines[line - 1].index("}") + 1
    code, out, err = gapdiag(capsys, "measure", "-m", tiny_checkpoint, "-d", tmp_path if folder else path, "--json")
    assert_one_line_error(code, out, err, str(path), f"invalid JSON at line {line}, column {column}", "fix the file")


def test_coco_json_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "captions.json"
    path.write_bytes(b'{"images": [], "annotations": [{"caption": "caf\xe9"}]}')
    with pytest.raises(DatasetError, match=r"captions.json:1: not UTF-8 text \(byte 0xe9\)"):
        load_dataset(path)


# ------------------------------------------------------------------------------------------------ manifests


def test_manifest_that_is_not_utf8_names_the_line(capsys, tmp_path: Path, tiny_checkpoint: Path) -> None:
    write_digits(tmp_path, [0, 1])
    path = tmp_path / "m.csv"
    path.write_bytes(b"image,caption\ndigit_0.png,a zero\ndigit_1.png,caf\xe9\n")
    code, out, err = gapdiag(capsys, "measure", "-m", tiny_checkpoint, "-d", path, "--json")
    assert_one_line_error(code, out, err, "m.csv:3", "not UTF-8 text (byte 0xe9)", "re-save the file as UTF-8")


def test_non_utf8_line_number_past_the_read_buffer(tmp_path: Path) -> None:
    # The decoder's offset counts from its 8 KiB buffer; the line must still be the file's line.
    path = tmp_path / "m.csv"
    lines = [b"image,caption"] + [b"a.png,caption number %d with some padding text" % i for i in range(1, 600)]
    lines[450] = b"a.png,caf\xe9"
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(DatasetError, match=r"^m.csv:451: not UTF-8 text \(byte 0xe9\)"):
        load_dataset(path)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_empty_manifest(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"m{suffix}"
    path.write_bytes(b"")
    with pytest.raises(DatasetError, match="the manifest has no data rows"):
        load_dataset(path)



# ------------------------------------------------------------------------------------------------ images, ids


def test_image_claiming_billions_of_pixels_is_a_decode_error(tmp_path: Path) -> None:
    import struct
    import zlib

    from PIL import Image

    from gapdiag.data import load_image

    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG")
    png = bytearray(buf.getvalue())
    png[16:24] = struct.pack(">II", 30000, 30000)  # IHDR width and height, then its CRC
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    path = tmp_path / "bomb.png"
    path.write_bytes(bytes(png))
    with pytest.raises(DatasetError, match=r"^m.csv:2: cannot decode image .*bomb.png: Image size \(900000000 pixels"):
        load_image(path, "m.csv:2")


@pytest.mark.parametrize("where", ["images", "annotations"])
def test_coco_ids_that_are_not_numbers_or_strings(tmp_path: Path, where: str) -> None:
    write_digits(tmp_path, [0])
    images = [{"id": [1] if where == "images" else 1, "file_name": "digit_0.png"}]
    annotations = [{"image_id": {"id": 1} if where == "annotations" else 1, "caption": "a zero"}]
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations}))
    with pytest.raises(DatasetError, match=rf"c.json: {where}\[0\] .*(an integer or a string|integers or strings)"):
        load_dataset(path)


def _valid_files(root: Path) -> dict[str, bytes]:
    """One small valid file per file format, images beside them."""
    write_digits(root, [0])
    png = (root / "digit_0.png").read_bytes()
    files = {
        "m.csv": b"image,caption\ndigit_0.png,a zero\n",
        "m.jsonl": b'{"image": "digit_0.png", "caption": "a zero"}\n',
        "c.json": json.dumps({"images": [{"id": 1, "file_name": "digit_0.png"}],
                              "annotations": [{"image_id": 1, "caption": "a zero"}]}).encode(),
    }
    buf = io.BytesIO()
    np.savez(buf, image=np.ones((2, 3), np.float32), text=np.ones((2, 3), np.float32))
    files["e.npz"] = buf.getvalue()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("k.png", png), ("k.txt", b"a zero"), ("k.json", b'{"label": 1}')):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    files["s.tar"] = buf.getvalue()
    for name, image in (("m.parquet", pa.array(["digit_0.png"])),
                        ("h.parquet", pa.array([{"bytes": png, "path": "digit_0.png"}]))):
        buf = io.BytesIO()
        pq.write_table(pa.table({"image": image, "caption": ["a zero"]}), buf)
        files[name] = buf.getvalue()
    return files


def test_damaged_files_of_every_format_fail_with_one_line(tmp_path: Path) -> None:
    """Seeded damage (cuts, flipped and inserted bytes): any failure is a one-line GapdiagError, never a traceback."""
    from gapdiag.errors import GapdiagError

    rng = np.random.default_rng(16)
    for name, data in _valid_files(tmp_path).items():
        for trial in range(12):
            damaged = bytearray(data)
            kind = trial % 3
            if kind == 0:
                damaged = damaged[: int(rng.integers(len(damaged)))]
            elif kind == 1:
                for pos in rng.integers(len(damaged), size=3):
                    damaged[pos] = int(rng.integers(256))
            else:
                pos = int(rng.integers(len(damaged)))
                damaged[pos:pos] = rng.integers(256, size=5).astype(np.uint8).tobytes()
            (tmp_path / name).write_bytes(bytes(damaged))
            try:
                load_dataset(tmp_path / name)
            except GapdiagError as exc:
                assert "\n" not in str(exc), (name, trial, str(exc))
