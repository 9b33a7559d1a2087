"""Issue #23, the results store: an entry is bound to its key and its metadata (items 3, 14), a damaged entry is
rebuilt by whoever is asked to build it (item 17), and a full disk is called a full disk.

The entries are built with the closed-form fake vectors of ``test_cache`` (no model).
"""

from __future__ import annotations

import errno
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, gapdiag
from test_cache import COUNTS, META, _flip_a_bit, _permute, build_entry, expected, write_some_chunks

from gapdiag.cache import EmbeddingCache
from gapdiag.cache import files as cache_files
from gapdiag.cache import keys as cache_keys
from gapdiag.errors import CacheError

OTHER_META = {**META, "dataset": {**META["dataset"], "name": "other", "fingerprint": "e" * 64}}


def _edit_meta(entry: Path, edit) -> None:
    """Change ``meta.json`` as a person with an editor would: parse, change, write back (valid JSON)."""
    meta = json.loads((entry / "meta.json").read_text())
    edit(meta)
    (entry / "meta.json").write_text(json.dumps(meta, indent=2))


# ---------------------------------------------------------------------------- item 3: key and metadata bound


def test_two_entry_folders_swapped_with_mv_are_detected_by_get_and_verify(tmp_path):
    cache = EmbeddingCache(tmp_path / "c")
    build_entry(cache, "aaaa")
    build_entry(cache, "bbbb", meta=OTHER_META)
    a, b, t = cache.path("aaaa"), cache.path("bbbb"), tmp_path / "c" / "swap"
    os.rename(a, t)
    os.rename(b, a)
    os.rename(t, b)
    for key, other in (("aaaa", "bbbb"), ("bbbb", "aaaa")):
        with pytest.raises(CacheError, match=f"{key}/meta.json: .*entry {other}.*moved") as info:
            cache.get(key)
        assert "\n" not in str(info.value) and f"gapdiag cache rm {key}" in str(info.value)
    results = {r["key"]: r for r in cache.verify()}
    for key, other in (("aaaa", "bbbb"), ("bbbb", "aaaa")):
        assert not results[key]["ok"]
        assert results[key]["problems"][0]["file"] == "meta.json"
        assert f"entry {other}" in results[key]["problems"][0]["reason"]


@pytest.mark.parametrize("edit, what", [
    (lambda m: m["arrays"].remove("labels"), "labels dropped from arrays"),
    (lambda m: m["dataset"].update(n_samples=m["dataset"]["n_samples"]), "unchanged"),
    (lambda m: m.update(class_names=["a", "b", "z"]), "a class name"),
    (lambda m: m["dataset"].update(name="someone else"), "the dataset name"),
    (lambda m: m.update(key="other"), "the key"),
    (lambda m: m.update(modalities=["image"]), "a modality dropped"),
])
def test_an_edited_meta_json_is_detected(tmp_path, edit, what):
    cache = EmbeddingCache(tmp_path / "c")
    build_entry(cache, "k")
    _edit_meta(cache.path("k"), edit)
    if what == "unchanged":  # rewritten with other whitespace, same content: still the entry it was
        np.testing.assert_array_equal(cache.get("k").labels, build_entry(cache, "k").labels)
        return
    with pytest.raises(CacheError, match=r"corrupt cache file .*k/meta\.json: ") as info:
        cache.get("k")
    assert "\n" not in str(info.value)
    (result,) = cache.verify("k")
    assert not result["ok"] and result["problems"][0]["file"] == "meta.json", what


def test_meta_json_records_its_own_checksum_over_everything_else(tmp_path):
    cache = EmbeddingCache(tmp_path / "c")
    meta = build_entry(cache, "k").provenance
    body = {k: v for k, v in meta.items() if k != "meta_checksum"}
    import hashlib

    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    assert meta["meta_checksum"] == "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    assert body["key"] == "k" and "checksums" in body  # the key and every file's checksum are inside it


def test_an_entry_of_the_previous_cache_format_is_named_with_what_to_run(tmp_path, capsys):
    cache = EmbeddingCache(tmp_path / "c")
    build_entry(cache, "old")
    build_entry(cache, "new")

    def downgrade(m):  # what gapdiag before the meta checksum wrote
        m.pop("meta_checksum")
        m["cache_format_version"] = 2

    _edit_meta(cache.path("old"), downgrade)
    with pytest.raises(CacheError, match="older gapdiag.*cache format 2.*gapdiag cache rm old"):
        cache.get("old")
    rows = {r["key"]: r for r in cache.ls()}
    assert "older gapdiag" in rows["old"]["error"] and "error" not in rows["new"]
    assert rows["old"]["dataset"] == "toy"  # still described
    code, _out, err = gapdiag(capsys, "cache", "verify", "--cache-dir", cache.root)
    assert_one_line_error(code, "", err, "1 of 2", "old/meta.json", "older gapdiag", "cache rm")
    assert cache_keys.CACHE_FORMAT_VERSION == 3


# -------------------------------------------------------------- item 14: one bad meta.json, its entry only

BAD_META = {
    "nested too deeply": "[" * 100_000,
    "not JSON": "{not json",
    "a list": "[1, 2]",
    "created is a number": json.dumps({"created": 5, "dataset": {"name": "x"}}),
    "counts is a string": json.dumps({"dataset": {"counts": "x", "name": ["a"]}, "created": "z"}),
    "modalities is a number": json.dumps({"modalities": 5, "arrays": 7, "checksums": []}),
    "empty": "",
    "not UTF-8": b"\xff\xfe{".decode("latin-1"),
}


@pytest.mark.parametrize("content", list(BAD_META.values()), ids=list(BAD_META))
def test_one_bad_meta_json_affects_its_own_entry_only(tmp_path, capsys, content):
    cache = EmbeddingCache(tmp_path / "c")
    build_entry(cache, "good")
    build_entry(cache, "bad")
    write_some_chunks(cache, "part", 1)
    (cache.path("bad") / "meta.json").write_bytes(content.encode("latin-1" if "\xff" in content else "utf-8"))

    rows = {r["key"]: r for r in cache.ls()}
    assert set(rows) == {"good", "bad", "part"}
    assert "error" in rows["bad"] and "error" not in rows["good"]
    assert rows["good"]["counts"] == COUNTS
    code, out, err = gapdiag(capsys, "cache", "ls", "--cache-dir", cache.root)
    assert code == 0 and "good" in out and "bad" in out and err == "", err
    code, out, err = gapdiag(capsys, "cache", "ls", "--cache-dir", cache.root, "--json")
    assert code == 0 and len(json.loads(out)["entries"]) == 3

    results = {r["key"]: r["ok"] for r in cache.verify()}
    assert results == {"good": True, "bad": False, "part": True}
    code, out, err = gapdiag(capsys, "cache", "verify", "--cache-dir", cache.root)
    assert_one_line_error(code, "", err, "1 of 3", "bad/meta.json")

    np.testing.assert_array_equal(cache.get("good").vectors["text"], expected("text"))
    with pytest.raises(CacheError, match="bad/meta.json"):
        cache.get("bad")


# ----------------------------------------------------- item 17: embed rebuilds a damaged entry, with a warning


def _swap_in(other_entry: Path):
    """Damage: the entry's folder replaced by another entry's folder (a `mv` gone wrong)."""
    def damage(entry: Path) -> None:
        import shutil

        shutil.rmtree(entry)
        shutil.copytree(other_entry, entry)
    return damage


DAMAGES = {
    "a flipped bit in image.npy": lambda e: _flip_a_bit(e / "image.npy"),
    "text.npy missing": lambda e: (e / "text.npy").unlink(),
    "text.npy truncated": lambda e: (e / "text.npy").write_bytes((e / "text.npy").read_bytes()[:-40]),
    "sample_index permuted": lambda e: _permute(e / "text.sample_index.npy"),
    "labels dropped from meta.json": lambda e: _edit_meta(e, lambda m: m["arrays"].remove("labels")),
    "meta.json not JSON": lambda e: (e / "meta.json").write_text("{"),
    "meta.json nested too deeply": lambda e: (e / "meta.json").write_text("[" * 100_000),
    "another entry's folder": "swap",
}
NAMED = {"a flipped bit in image.npy": "image.npy", "text.npy missing": "text.npy",
         "text.npy truncated": "text.npy", "sample_index permuted": "text.sample_index.npy"}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_embed_rebuilds_a_damaged_entry_with_one_warning_naming_the_damage(manifest, tmp_path, caplog, damage):
    from data_fixtures import digits_manifest

    from gapdiag import api

    first = api.embed(manifest, progress=False, device="cpu")
    vectors = {m: np.array(v) for m, v in first.vectors.items()}
    entry, key = Path(first.provenance["path"]), first.provenance["key"]
    if DAMAGES[damage] == "swap":
        other_data, _ = digits_manifest(tmp_path / "other", n=5)
        other = api.embed(other_data, progress=False, device="cpu")
        _swap_in(Path(other.provenance["path"]))(entry)
    else:
        DAMAGES[damage](entry)
    with caplog.at_level(logging.WARNING):
        again = api.embed(manifest, progress=False, device="cpu")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    (line,) = warnings
    assert line.startswith(f"cache entry {key} is damaged") and "embedding it again" in line and "\n" not in line
    assert "cache rm" not in line  # nothing for the user to do: it is being rebuilt
    assert NAMED.get(damage, "meta.json") in line
    for m, v in vectors.items():  # same model, data, batch size and device: the very same vectors
        np.testing.assert_array_equal(again.vectors[m], v)
    assert again.labels is not None
    (result,) = EmbeddingCache(entry.parent).verify(key)
    assert result["ok"]


def test_verify_still_reports_a_damaged_entry_that_nothing_rebuilt(manifest, capsys):
    from gapdiag import api

    es = api.embed(manifest, progress=False, device="cpu")
    _flip_a_bit(Path(es.provenance["path"]) / "image.npy")
    code, _out, err = gapdiag(capsys, "cache", "verify", "--cache-dir", Path(es.provenance["path"]).parent)
    assert_one_line_error(code, "", err, f"{es.provenance['key']}/image.npy", "checksum mismatch")


def test_a_cache_entry_given_as_data_is_refused_when_damaged(manifest, capsys):
    """`-d <entry folder>` reads vectors that nothing could rebuild: the damage stops the command, named."""
    from gapdiag import api

    es = api.embed(manifest, progress=False, device="cpu")
    entry = Path(es.provenance["path"])
    _flip_a_bit(entry / "text.npy")
    code, out, err = gapdiag(capsys, "measure", "-d", entry, "-q")
    assert_one_line_error(code, out, err, "corrupt cache file", "text.npy", f"gapdiag cache rm {entry.name}")


# ----------------------------------------------------------------------------- item 17: a full disk, in words


def test_a_short_write_by_numpy_is_reported_as_disk_full(tmp_path, monkeypatch):
    """numpy writes arrays with C fwrite; when the disk fills it raises ``OSError("3200 requested and 992
    written")`` with no errno, which was reported as "cannot write ... (check its permissions...)"."""
    cache = EmbeddingCache(tmp_path / "c")
    write_some_chunks(cache, "k", 1)
    real_save = np.save

    def short_save(file, array, **kw):
        real_save(file, array[: len(array) // 2], **kw)
        raise OSError(f"{array.nbytes} requested and {array.nbytes // 3} written")

    monkeypatch.setattr(np, "save", short_save)
    with pytest.raises(CacheError, match=r"disk full while writing .*image\.4-8\.npy") as info:
        build_entry(cache, "k")  # resumes: chunk 0-4 is done, 4-8 is written next
    assert "permissions" not in str(info.value) and "\n" not in str(info.value)
    monkeypatch.setattr(np, "save", real_save)
    assert [p.name for p in (cache.path("k") / "chunks").glob("*.npy")] == ["image.0-4.npy"]  # kept, no torn file
    np.testing.assert_array_equal(build_entry(cache, "k").vectors["image"], expected("image"))


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"),
                                     OSError(errno.EDQUOT, "Disk quota exceeded"),
                                     OSError("3200 requested and 992 written")])
def test_every_disk_full_of_the_cache_says_disk_full(tmp_path, failure):
    error = cache_files.write_error(tmp_path / "x.npy", failure)
    assert error.message.startswith(f"disk full while writing {tmp_path / 'x.npy'}"), error.message
    assert "permissions" not in error.one_line()
    other = cache_files.write_error(tmp_path / "x.npy", OSError(errno.EACCES, "Permission denied"))
    assert "Permission denied" in other.message and "disk full" not in other.message


def test_no_change_of_a_byte_of_meta_json_is_read_as_other_metadata(tmp_path):
    """Exhaustive over the file: each byte XOR 0x01, 0x20 and 0x80. A changed meta.json is either refused, or
    (a change JSON cannot see, e.g. inside whitespace) read back with exactly the metadata that was written."""
    cache = EmbeddingCache(tmp_path / "c")
    written = build_entry(cache, "k").provenance
    path = cache.path("k") / "meta.json"
    original = path.read_bytes()
    refused = same = 0
    for position in range(len(original)):
        for flip in (0x01, 0x20, 0x80):
            data = bytearray(original)
            data[position] ^= flip
            path.write_bytes(bytes(data))
            try:
                meta = cache.get("k", verify=False).provenance
            except CacheError:
                refused += 1
            else:
                assert meta == written, (position, flip)
                same += 1
    path.write_bytes(original)
    assert refused + same == 3 * len(original) and refused > 0.99 * 3 * len(original)


@pytest.mark.parametrize("damage", ["empty", "truncated", "not a zip"])
def test_a_damaged_npz_of_an_entry_is_a_one_line_cache_error_naming_it(tmp_path, damage):
    """An entry's attribute arrays are read before its checksums are verified: a damaged ``.npz`` must still be
    the one-line "corrupt cache file" error with the fix, not numpy's or zipfile's exception."""
    path = tmp_path / "attributes.npz"
    np.savez(path, colour=np.arange(40), shape=np.ones((8, 3)))
    data = path.read_bytes()
    path.write_bytes({"empty": b"", "truncated": data[: len(data) // 2], "not a zip": b"PK\x03\x04" + data[8:]}[damage])
    with pytest.raises(CacheError, match=r"corrupt cache file .*attributes\.npz") as excinfo:
        cache_files.load_npz(path, "k123")
    assert "\n" not in str(excinfo.value) and "gapdiag cache rm k123" in excinfo.value.hint


def test_verify_reports_every_damaged_file_of_an_entry_after_one_it_cannot_read(tmp_path, monkeypatch):
    """``gapdiag cache verify`` is the full check: a file that cannot be read (an I/O error) is one problem,
    and the files after it are still checked, so a damaged one among them is reported too."""
    from gapdiag.cache import integrity

    cache = EmbeddingCache(tmp_path / "c")
    build_entry(cache, "aaaa")
    entry = cache.path("aaaa")
    names = integrity.entry_files(json.loads((entry / "meta.json").read_text()))
    unreadable, damaged = names[0], names[-1]
    _flip_a_bit(entry / damaged)
    read = integrity.checksum

    def checksum(path, on_block=None):
        if path.name == unreadable:
            raise OSError(errno.EIO, "Input/output error")
        return read(path, on_block=on_block)

    monkeypatch.setattr(integrity, "checksum", checksum)
    (result,) = cache.verify("aaaa")
    problems = {p["file"]: p["reason"] for p in result["problems"]}
    assert not result["ok"] and len(names) > 2
    assert problems.get(unreadable) == "cannot read: Input/output error"
    assert problems.get(damaged, "").startswith("checksum mismatch"), problems
