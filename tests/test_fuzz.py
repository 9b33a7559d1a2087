"""Property (fuzz) tests of everything gapdiag reads from disk: readers, configs, reports and cache entries.

Each reader gets a valid file and random damage to it (truncations, byte flips, inserted bytes, deleted
ranges, a BOM, NULs, other encodings, empty and huge fields) or a structurally odd but well-formed file
(wrong types, missing keys, odd arrays). The property is always the same: the reader returns a dataset that
holds together, or raises a :class:`~gapdiag.errors.GapdiagError` whose message is one line (what the CLI
prints after ``error:``); never another exception. A few cases go through the CLI (exit 2, one ``error:``
line, no traceback). Cache entries are damaged after they were written; the damage must be detected, never used.

The profile is bounded and deterministic (``derandomize=True``): the same cases every run. Set
``GAPDIAG_FUZZ_EXAMPLES`` (default 25 per property) for a long run; docs/reliability.md records one.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, gapdiag
from data_fixtures import digit_image, digits_manifest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from gapdiag.errors import GapdiagError, InputError

EXAMPLES = int(os.environ.get("GAPDIAG_FUZZ_EXAMPLES", "25"))
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    # Shrinking a failure to its smallest form costs minutes on a busy machine; derandomized cases reproduce
    # exactly anyway. GAPDIAG_FUZZ_SHRINK=1 turns it on when you debug one.
    phases=[Phase.explicit, Phase.generate] + [Phase.shrink] * bool(os.environ.get("GAPDIAG_FUZZ_SHRINK")),
    report_multiple_bugs=False,
    suppress_health_check=[
        HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large
    ],
)
CASES: dict[str, int] = {}  # property -> cases tried in this run (printed after the module, for the docs)


# ------------------------------------------------------------------------------------------------ helpers


def outcome(call: Callable[[], Any], what: str) -> Any:
    """Run a reader: its result, or the :class:`GapdiagError` it raised (checked to be one line)."""
    CASES[what] = CASES.get(what, 0) + 1
    try:
        return call()
    except GapdiagError as e:
        line = e.one_line()
        assert line.strip(), "empty error message"
        assert "\n" not in line and "\r" not in line, line
        assert "Traceback" not in line, line
        return e


SPECIAL = [b"\x00", b'"', b"\r", b"\n", b",", b"\t", b"\xef\xbb\xbf", b"{", b"}", b"[", b"\xff\xfe", b"\\"]


@st.composite
def damaged(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with one to three random edits (the shrinker reduces a failure to the fewest, smallest)."""
    for _ in range(draw(st.integers(1, 3))):
        n = len(data)
        kind = draw(st.sampled_from(["truncate", "flip", "insert", "delete", "bom", "empty", "huge", "nul"]))
        pos = draw(st.integers(0, n))
        if kind == "truncate":
            data = data[:pos]
        elif kind == "flip" and n:
            pos = min(pos, n - 1)
            data = data[:pos] + bytes([data[pos] ^ (1 << draw(st.integers(0, 7)))]) + data[pos + 1 :]
        elif kind == "insert":
            data = data[:pos] + draw(st.one_of(st.sampled_from(SPECIAL), st.binary(max_size=8))) + data[pos:]
        elif kind == "delete":
            data = data[:pos] + data[pos + draw(st.integers(1, 16)) :]
        elif kind == "bom":
            data = b"\xef\xbb\xbf" + data
        elif kind == "empty":
            data = b""
        elif kind == "huge":  # one field far beyond any sensible size (csv's default field limit is 128 KiB)
            data = data[:pos] + b"x" * 200_000 + data[pos:]
        elif kind == "nul":
            data = data[:pos] + b"\x00" * draw(st.integers(1, 4)) + data[pos:]
    return data


def reencoded(text: str) -> st.SearchStrategy[bytes]:
    """The same text in another encoding (what a spreadsheet export may produce)."""
    return st.sampled_from(["utf-16", "utf-16-le", "latin-1", "cp1252", "utf-8-sig", "utf-32"]).map(
        lambda enc: text.encode(enc, errors="replace")
    )


_serial = itertools.count()


def fresh(folder: Path, name: str) -> Path:
    """A new file path per case: no two cases share a path (nor a fingerprint memo keyed by it)."""
    sub = folder / f"case{next(_serial)}"
    sub.mkdir()
    return sub / name


def check_dataset(ds: Any) -> None:
    """A dataset a reader returned holds together: every item belongs to a sample, captions are text."""
    assert ds.n_samples >= 1
    for m in ds.modalities.values():
        idx = np.asarray(m.sample_index)
        assert len(idx) == len(m.items)
        assert idx.size == 0 or (idx.min() >= 0 and idx.max() < ds.n_samples)
        if m.kind == "text":
            assert all(isinstance(t, str) and t.strip() for t in m.items)
    if ds.labels is not None:
        assert len(ds.labels) == ds.n_samples


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with six digit images and their manifest (image paths are relative to it)."""
    root = tmp_path_factory.mktemp("fuzz-data")
    digits_manifest(root, n=6)
    return root


def link_images(images: Path, folder: Path) -> None:
    (folder / "images").symlink_to(images / "images", target_is_directory=True)


# ------------------------------------------------------------------------------------------------ manifests


def _manifest_text(images: Path, delimiter: str) -> str:
    text = (images / "manifest.csv").read_text(encoding="utf-8")
    return text.replace(",", delimiter)


@pytest.mark.parametrize("suffix", ["csv", "tsv"])
@FUZZ
@given(data=st.data())
def test_fuzz_delimited_manifest(images, suffix, data):
    from gapdiag.data import load_dataset

    text = _manifest_text(images, "," if suffix == "csv" else "\t")
    raw = data.draw(st.one_of(damaged(text.encode()), reencoded(text.replace("hand", "händ ✓"))))
    path = fresh(images, f"manifest.{suffix}")
    path.write_bytes(raw)
    link_images(images, path.parent)
    result = outcome(lambda: load_dataset(path), f"manifest .{suffix}")
    if not isinstance(result, GapdiagError):
        check_dataset(result)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


@FUZZ
@given(data=st.data())
def test_fuzz_jsonl_manifest(images, data):
    from gapdiag.data import load_dataset

    text = (images / "manifest.csv").read_text(encoding="utf-8")
    header, *lines = text.strip().splitlines()
    rows = [dict(zip(header.split(","), line.split(","))) for line in lines]
    if data.draw(st.booleans()):  # a field of a row gets an odd JSON value (list, null, number, object...)
        row = data.draw(st.sampled_from(rows))
        row[data.draw(st.sampled_from(sorted(row)))] = data.draw(json_values)
    text = "".join(json.dumps(r) + "\n" for r in rows)
    raw = data.draw(st.one_of(st.just(text.encode()), damaged(text.encode()), reencoded(text)))
    path = fresh(images, "manifest.jsonl")
    path.write_bytes(raw)
    link_images(images, path.parent)
    result = outcome(lambda: load_dataset(path), "manifest .jsonl")
    if not isinstance(result, GapdiagError):
        check_dataset(result)


CAPTION_LAYOUT = ["caption", "caption_1", "caption_2", "caption_3", "caption_10"]  # the documented order
caption_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from(",\t\"'[]{} "),
                       min_size=1, max_size=12).filter(lambda t: t.strip() and not t.strip().startswith("["))


@FUZZ
@given(data=st.data())
def test_fuzz_manifest_keeps_captions_and_labels_as_written(images, data):
    """Issue #24: a valid manifest (any caption columns of the ``caption``/``caption_N`` kind in any header order,
    captions with commas, tabs, quotes and braces, labels as ids or as names) reads back exactly as written:
    every caption, in the documented order (``caption``, then ``caption_N`` by number), and every label."""
    import csv

    from gapdiag.data import load_dataset

    CASES["manifest as written"] = CASES.get("manifest as written", 0) + 1
    columns = data.draw(st.lists(st.sampled_from(CAPTION_LAYOUT), min_size=1, max_size=5, unique=True))
    n = data.draw(st.integers(1, 5))
    captions = [{c: data.draw(caption_text) for c in columns} for _ in range(n)]
    kind = data.draw(st.sampled_from(["none", "ids", "names"]))
    labels = [data.draw(st.integers(0, 30) if kind == "ids" else st.sampled_from(["cat", "dog", "émeu", "9a"]))
              for _ in range(n)] if kind != "none" else []
    fmt = data.draw(st.sampled_from(["csv", "tsv", "jsonl"]))
    rows = [{"image": f"images/digit_{i}.png", **captions[i], **({"label": labels[i]} if labels else {})}
            for i in range(n)]
    path = fresh(images, f"m.{fmt}")
    link_images(images, path.parent)
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    else:
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="," if fmt == "csv" else "\t")
            writer.writeheader()
            writer.writerows(rows)
    ds = load_dataset(path)
    order = [c for c in CAPTION_LAYOUT if c in columns]
    assert list(ds.modalities["text"].items) == [captions[i][c].strip() for i in range(n) for c in order]
    assert ds.modalities["text"].sample_index.tolist() == [i for i in range(n) for _ in order]
    if kind == "ids":
        assert ds.labels.tolist() == labels and ds.class_names is None
    elif kind == "names":
        assert [ds.class_names[y] for y in ds.labels] == labels


def test_a_jsonl_row_without_a_column_is_a_one_line_error(images):
    """Found by the long run: a row missing a key the other rows have raised KeyError (a traceback)."""
    from gapdiag.data import load_dataset

    rows = [
        {"image": f"images/digit_{i}.png", "caption": f"digit {i}", "label": i % 2, "class_name": f"c{i % 2}"}
        for i in range(4)
    ]
    del rows[1]["class_name"], rows[2]["caption"]
    path = fresh(images, "manifest.jsonl")
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    link_images(images, path.parent)
    result = outcome(lambda: load_dataset(path), "manifest .jsonl")
    assert isinstance(result, GapdiagError) and "manifest.jsonl:" in str(result)


def test_an_image_path_too_long_for_the_os_is_a_one_line_error(images):
    """Found by the long run: Path.is_file raises ENAMETOOLONG instead of answering False (a traceback)."""
    from gapdiag.data import load_dataset

    path = fresh(images, "manifest.csv")
    path.write_text("image,caption\n" + "i" + "x" * 5000 + ".png,a digit\n")
    result = outcome(lambda: load_dataset(path), "manifest .csv")
    assert isinstance(result, GapdiagError) and "manifest.csv:2" in str(result) and "not found" in str(result)


def test_a_damaged_npy_header_is_a_one_line_error(images):
    """Found by the long run: numpy parses the header as a Python literal; a cut brace was a TokenError."""
    from gapdiag.data import load_dataset

    folder = fresh(images, "vectors")
    folder.mkdir()
    for name in ("image", "text"):
        np.save(folder / f"{name}.npy", np.zeros((3, 4), np.float32))
    raw = (folder / "image.npy").read_bytes()
    (folder / "image.npy").write_bytes(raw.replace(b"}", b"", 1))
    result = outcome(lambda: load_dataset(folder, format="precomputed"), "precomputed .npy folder")
    assert isinstance(result, GapdiagError) and "image.npy" in str(result)


# ----------------------------------------------------------------------------------------------------- COCO


def _coco(n: int = 3) -> dict[str, Any]:
    return {
        "images": [{"id": i, "file_name": f"digit_{i}.png"} for i in range(n)],
        "annotations": [
            {"image_id": i % n, "id": i, "caption": f"digit number {i % n}"} for i in range(2 * n)
        ],
    }


@FUZZ
@given(data=st.data())
def test_fuzz_coco_json(images, data):
    from gapdiag.data import load_dataset

    coco = _coco()
    if data.draw(st.booleans()):  # structural damage: a key of an image or annotation gets an odd value
        section = data.draw(st.sampled_from(["images", "annotations"]))
        entry = data.draw(st.sampled_from(coco[section]))
        entry[data.draw(st.sampled_from(sorted(entry)))] = data.draw(json_values)
    text = json.dumps(coco)
    raw = data.draw(st.one_of(st.just(text.encode()), damaged(text.encode()), reencoded(text)))
    path = fresh(images, "captions.json")
    path.write_bytes(raw)
    link_images(images, path.parent)
    result = outcome(lambda: load_dataset(path, format="coco", image_root=images / "images"), "coco json")
    if not isinstance(result, GapdiagError):
        check_dataset(result)


# ---------------------------------------------------------------------------------------------- precomputed


def _npz_bytes(arrays: dict[str, np.ndarray], compressed: bool) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def _arrays(n: int = 5, d: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "image": rng.normal(size=(n, d)).astype(np.float32),
        "text": rng.normal(size=(n, d)).astype(np.float32),
        "labels": np.arange(n) % 2,
        "class_names": np.array(["even", "odd"]),
    }


odd_arrays = st.sampled_from(
    [
        np.zeros((0, 4), np.float32),
        np.zeros((5,), np.float32),
        np.zeros((5, 4, 1), np.float32),
        np.full((5, 4), np.nan, np.float32),
        np.full((5, 4), np.inf, np.float16),
        np.arange(20).reshape(5, 4),
        np.zeros((5, 3), np.float64),
        np.zeros((4, 4), np.float32),
        np.array(["a", "b", "c", "d", "e"]),
        np.array([-1, 0, 7, 0, 1]),
        np.zeros((5, 4), np.complex64),
        np.zeros((5, 4), np.bool_),
    ]
)


@FUZZ
@given(data=st.data())
def test_fuzz_npz(images, data):
    from gapdiag.data import load_dataset

    arrays = _arrays()
    if data.draw(st.booleans()):  # a well-formed file with an odd array in it
        keys = ["image", "text", "labels", "class_names", "sample_index_text", "audio"]
        key = data.draw(st.sampled_from(keys))
        arrays[key] = data.draw(odd_arrays)
    raw = _npz_bytes(arrays, compressed=data.draw(st.booleans()))
    if data.draw(st.booleans()):
        raw = data.draw(damaged(raw))
    path = fresh(images, "vectors.npz")
    path.write_bytes(raw)
    result = outcome(lambda: load_dataset(path), "precomputed .npz")
    if not isinstance(result, GapdiagError):
        check_dataset(result)
        for m in result.modalities.values():
            assert np.isfinite(np.asarray(m.items)).all()


@FUZZ
@given(data=st.data())
def test_fuzz_npy_folder(images, data):
    from gapdiag.data import load_dataset

    folder = fresh(images, "vectors")
    folder.mkdir()
    arrays = _arrays()
    if data.draw(st.booleans()):
        key = data.draw(st.sampled_from(["image", "text", "labels", "class_names"]))
        arrays[key] = data.draw(odd_arrays)
    for key, array in arrays.items():
        buf = io.BytesIO()
        np.save(buf, array)
        (folder / f"{key}.npy").write_bytes(buf.getvalue())
    victim = folder / f"{data.draw(st.sampled_from(sorted(arrays)))}.npy"
    victim.write_bytes(data.draw(damaged(victim.read_bytes())))
    result = outcome(lambda: load_dataset(folder, format="precomputed"), "precomputed .npy folder")
    if not isinstance(result, GapdiagError):
        check_dataset(result)
        for m in result.modalities.values():
            assert np.isfinite(np.asarray(m.items)).all()


# --------------------------------------------------------------------------------------------- WebDataset


def _shard_bytes(n: int = 3) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for i in range(n):
            png = io.BytesIO()
            digit_image(i).save(png, format="PNG")
            members = {
                f"{i:04d}.png": png.getvalue(),
                f"{i:04d}.txt": f"a handwritten {i}".encode(),
                f"{i:04d}.json": json.dumps({"captions": [f"digit {i}"]}).encode(),
                f"{i:04d}.cls": str(i % 2).encode(),
            }
            for name, payload in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


@FUZZ
@given(data=st.data())
def test_fuzz_webdataset_shard(images, data):
    from gapdiag.data import load_dataset

    raw = data.draw(damaged(_shard_bytes()))
    path = fresh(images, "shard-000.tar")
    path.write_bytes(raw)
    result = outcome(lambda: load_dataset(path), "webdataset shard")
    if not isinstance(result, GapdiagError):
        check_dataset(result)


# ------------------------------------------------------------------------------------------------ configs


CONFIG = """[check]
ignore = ["uniformity"]

[check.rules.recall_at_1]
max_drop = 0.02

[check.rules."gap"]
direction = "lower"
max_value = 0.9
"""

toml_scalars = st.one_of(
    st.integers(-3, 3), st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.text(max_size=6),
    st.lists(st.integers(0, 2), max_size=2),
)


@FUZZ
@given(data=st.data())
def test_fuzz_check_config(images, data):
    from gapdiag.check import load_rules

    name = data.draw(st.sampled_from(["gapdiag.toml", "pyproject.toml"]))
    text = CONFIG if name == "gapdiag.toml" else CONFIG.replace("[check", "[tool.gapdiag.check")
    if data.draw(st.booleans()):  # a rule key gets an odd value or an odd name
        keys = ["max_drop", "direction", "max_value", "min_value", "max_dorp", "ignore"]
        key = data.draw(st.sampled_from(keys))
        value = data.draw(toml_scalars)
        text += f"\n[{'check' if name == 'gapdiag.toml' else 'tool.gapdiag.check'}.rules.cos_tp]\n"
        text += f"{key} = {json.dumps(value) if not isinstance(value, float) else repr(value)}\n"
    raw = data.draw(st.one_of(st.just(text.encode()), damaged(text.encode()), reencoded(text)))
    path = fresh(images, name)
    path.write_bytes(raw)
    outcome(lambda: load_rules(path), f"config {name}")
    # Discovered (no --config): the same file found from a sub-folder of a repository root.
    (path.parent / ".git").mkdir()
    (path.parent / "sub").mkdir()
    outcome(lambda: load_rules(None, search_from=path.parent / "sub"), f"config {name} (discovered)")


# ------------------------------------------------------------------------------------------------ reports


def _report_text() -> str:
    from gapdiag.report import Report

    report = Report(
        metrics={"gap": 0.8, "cos_tp": 0.3, "recall_at_1/image_to_text": 0.5},
        provenance={"model": {"name": "m"}, "dataset": {"name": "d", "fingerprint": "f" * 64}},
    )
    with tempfile.TemporaryDirectory() as tmp:
        return report.save(Path(tmp) / "r.json").read_text()


@FUZZ
@given(data=st.data())
def test_fuzz_report_load(images, data):
    from gapdiag.report import Report

    text = _report_text()
    if data.draw(st.booleans()):  # a top-level field gets an odd JSON value
        obj = json.loads(text)
        obj[data.draw(st.sampled_from(sorted(obj) + ["extra"]))] = data.draw(json_values)
        text = json.dumps(obj)
    raw = data.draw(st.one_of(st.just(text.encode()), damaged(text.encode()), reencoded(text)))
    path = fresh(images, "report.json")
    path.write_bytes(raw)
    result = outcome(lambda: Report.load(path), "report json")
    if not isinstance(result, GapdiagError):
        assert all(isinstance(v, float) for v in result.metrics.values())


# ------------------------------------------------------------------------------------------- fingerprints


@FUZZ
@given(data=st.data())
def test_fuzz_fingerprint_follows_content_not_location(images, data):
    """Edited bytes (saved later: a new mtime) give a new fingerprint; a moved copy keeps it."""
    from gapdiag.data.base import fingerprint_files

    CASES["fingerprint"] = CASES.get("fingerprint", 0) + 1
    original = (images / "images" / "digit_3.png").read_bytes()
    path = fresh(images, "digit.png")
    path.write_bytes(original)
    before = fingerprint_files([path])
    moved = fresh(images, "digit.png")
    moved.write_bytes(original)
    os.utime(moved, ns=(1_000_000_000, 1_000_000_000))  # a checkout elsewhere: other folder, other mtime
    assert fingerprint_files([moved]) == before
    damaged_bytes = data.draw(damaged(original))
    mtime = path.stat().st_mtime_ns
    path.write_bytes(damaged_bytes)
    os.utime(path, ns=(mtime + 1_000_000_000, mtime + 1_000_000_000))
    assert (fingerprint_files([path]) == before) == (damaged_bytes == original)


# ------------------------------------------------------------------------------------------- odd paths


@pytest.mark.parametrize("kind", ["dangling symlink", "symlink loop", "directory", "empty dir"])
def test_odd_paths_are_one_line_errors(images, kind, capsys):
    folder = fresh(images, "x").parent
    if kind == "dangling symlink":
        path = folder / "manifest.csv"
        path.symlink_to(folder / "nowhere.csv")
    elif kind == "symlink loop":
        path = folder / "loop.csv"
        path.symlink_to(folder / "loop.csv")
    elif kind == "directory":
        path = folder / "captions.json"
        path.mkdir()
    else:
        path = folder / "empty"
        path.mkdir()
    for command in (["measure", "-d", path, "-m", "gapdiag-tiny-vit", "--random-init", "-q"], ["report", "-d", path, "-q"]):
        assert_one_line_error(*gapdiag(capsys, *command, "--cache-dir", folder / "cache"), str(path.name))
    for reader in ("report", "config"):
        from gapdiag.check import load_rules
        from gapdiag.report import Report

        outcome(lambda: Report.load(path) if reader == "report" else load_rules(path), f"odd path {reader}")


def test_brackets_in_a_path_are_printed_as_written(tmp_path, capsys):
    """Rich markup would swallow ``[bold]`` or ``[red]`` in a file name."""
    path = tmp_path / "data[bold]" / "x[red].npz"
    assert_one_line_error(*gapdiag(capsys, "embed", "-d", path, "-q"), "data[bold]/x[red].npz")
    missing = tmp_path / "[red]base.json"
    assert_one_line_error(*gapdiag(capsys, "check", "--baseline", missing, "--report", missing), str(missing))


# ------------------------------------------------------------------------------------------- through the CLI


@settings(FUZZ, max_examples=max(4, EXAMPLES // 5))
@given(data=st.data())
def test_fuzz_cli_measure_and_check_print_one_line(images, data, capsys):
    """What a user sees: a damaged data file or report is exit 2 and one ``error:`` line, or a normal run."""
    CASES["cli measure/check"] = CASES.get("cli measure/check", 0) + 1
    path = fresh(images, "vectors.npz")
    path.write_bytes(data.draw(damaged(_npz_bytes(_arrays(), compressed=False))))
    code, out, err = gapdiag(capsys, "embed", "-d", path, "-q", "--cache-dir", path.parent / "cache")
    if code != 0:
        assert_one_line_error(code, out, err)
    report = fresh(images, "report.json")
    report.write_bytes(data.draw(damaged(_report_text().encode())))
    code, out, err = gapdiag(capsys, "check", "--baseline", report, "--report", report)
    if code in (2, 3):  # bad input; or a gate that decided nothing (a damaged digit made a value impossible)
        assert_one_line_error(code, out, err, exit_code=code)
    else:
        assert code in (0, 1) and "Traceback" not in err, err


# ------------------------------------------------------------------------------------------------ cache


def _cache_entry(root: Path) -> tuple[Any, str, dict[str, np.ndarray]]:
    from gapdiag.cache import EmbeddingCache

    cache = EmbeddingCache(root)
    rng = np.random.default_rng(1)
    vectors = {"image": rng.normal(size=(6, 4)), "text": rng.normal(size=(12, 4))}
    meta = {
        "model": {"name": "fake-clip", "pretrained": "none"},
        "dataset": {
            "name": "toy", "fingerprint": "f" * 64, "n_samples": 6, "counts": {"image": 6, "text": 12}
        },
        "dtype": "float32",
        "class_names": ["a", "b"],
    }
    with cache.writer("k", meta, chunk_size=4) as w:
        for name, v in vectors.items():
            for s, e in w.chunk_ranges(name, len(v)):
                w.write_chunk(name, s, v[s:e].astype(np.float32))
        index = {"image": np.arange(6), "text": np.repeat(np.arange(6), 2)}
        w.finalize(sample_index=index, labels=np.arange(6) % 2)
    return cache, "k", vectors


def _entry_files(cache: Any, key: str) -> list[str]:
    return sorted(p.name for p in cache.path(key).iterdir() if p.is_file())


def _read_back(cache: Any, key: str, what: str) -> Any:
    CASES[what] = CASES.get(what, 0) + 1
    from gapdiag.errors import CacheError

    try:
        es = cache.get(key, mmap=False)
    except CacheError as e:
        assert "\n" not in e.one_line()
        return e
    return es


@FUZZ
@given(data=st.data())
def test_fuzz_cache_byte_damage_is_detected(data):
    """Any byte changed in any file of a complete entry: it reads back unchanged or raises CacheError."""
    with tempfile.TemporaryDirectory() as tmp:
        cache, key, vectors = _cache_entry(Path(tmp) / "c")
        before = cache.get(key, mmap=False)
        victim = cache.path(key) / data.draw(st.sampled_from(_entry_files(cache, key)))
        raw = victim.read_bytes()
        victim.write_bytes(data.draw(damaged(raw)))
        result = _read_back(cache, key, "cache byte damage")
        if result is None or isinstance(result, GapdiagError):
            return  # a miss (rebuilt) or a detected corruption
        for name in vectors:
            stored, original = np.asarray(result.vectors[name]), np.asarray(before.vectors[name])
            assert stored.tobytes() == original.tobytes(), name
            np.testing.assert_array_equal(result.sample_index[name], before.sample_index[name])


@FUZZ
@given(seed=st.integers(0, 2**32 - 1))
def test_fuzz_cache_permuted_sample_index_is_detected(seed):
    """The sample index of an entry permuted on disk (each value still valid): detected, never used."""
    with tempfile.TemporaryDirectory() as tmp:
        cache, key, _ = _cache_entry(Path(tmp) / "c")
        before = cache.get(key, mmap=False)
        files = sorted(cache.path(key).glob("*.sample_index.npy"))
        assert files, _entry_files(cache, key)
        rng = np.random.default_rng(seed)
        for f in files:
            index = np.load(f)
            permuted = rng.permutation(index)
            if (permuted == index).all():  # the identity: swap two items of different samples
                permuted[[0, -1]] = permuted[[-1, 0]]
            np.save(f, permuted)  # same shape, dtype and values: only the order is wrong
        result = _read_back(cache, key, "cache permuted sample_index")
        if result is None or isinstance(result, GapdiagError):
            return
        for name in before.sample_index:
            np.testing.assert_array_equal(result.sample_index[name], before.sample_index[name])


@pytest.fixture(scope="module", autouse=True)
def report_case_counts():
    """After the module: print how many cases each property tried (``-s`` shows it; docs/reliability.md records
    a long run). Printing is no test, so it lives here and not in a test that cannot fail."""
    yield
    print("\nfuzz cases:", json.dumps(CASES, sort_keys=True))


def test_the_harness_lets_every_other_exception_through_and_counts_cases():
    """What every property relies on: ``outcome`` passes a one-line GapdiagError back as a result, fails a
    multi-line or empty one, lets any other exception through (a traceback for the user), and counts the case."""

    def raises(exc: BaseException) -> Callable[[], Any]:
        def call() -> Any:
            raise exc

        return call

    before = CASES.get("harness", 0)
    assert outcome(lambda: 42, "harness") == 42
    err = InputError("a bad row", hint="fix it")
    assert outcome(raises(err), "harness") is err
    for bad in (InputError("two\nlines"), InputError("  ")):
        with pytest.raises(AssertionError):
            outcome(raises(bad), "harness")
    for other in (KeyError("label"), UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")):
        with pytest.raises(type(other)):
            outcome(raises(other), "harness")
    assert CASES["harness"] == before + 6
