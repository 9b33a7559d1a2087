"""gapdiag.fsutil: the one atomic writer and the one memoised file digest."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from gapdiag import fsutil


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "out.json"
    fsutil.atomic_write_json(path, {"a": 1})

    def half_then_fail(f):
        f.write(b'{"a": ')
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        fsutil.atomic_write(path, half_then_fail)
    assert json.loads(path.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_before_replace_sees_the_complete_temp_file_before_the_target_changes(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"old")
    seen = []

    def check(tmp):
        seen.append((tmp.read_bytes(), path.read_bytes()))

    fsutil.atomic_write_bytes(path, b"new")  # no hook: plain write
    fsutil.atomic_write(path, lambda f: f.write(b"newer"), before_replace=check)
    assert seen == [(b"newer", b"new")] and path.read_bytes() == b"newer"


def test_file_digest_is_sha256_and_follows_each_file_state(tmp_path, monkeypatch):
    monkeypatch.setattr(fsutil, "RACY_SECONDS", 0)
    fsutil.forget_digests()
    path = tmp_path / "f.bin"
    path.write_bytes(b"a" * 100)
    assert fsutil.file_digest(path) == hashlib.sha256(b"a" * 100).hexdigest()
    hashed = []
    hash_file = fsutil.hash_file
    monkeypatch.setattr(fsutil, "hash_file", lambda p, **kw: hashed.append(p) or hash_file(p, **kw))
    fsutil.file_digest(path)
    assert hashed == []  # unchanged: the memo answers
    st = path.stat()
    other = tmp_path / "g.bin"
    other.write_bytes(b"b" * 100)
    os.replace(other, path)  # same size, mtime restored below: only inode and ctime differ
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert fsutil.file_digest(path) == hashlib.sha256(b"b" * 100).hexdigest()


def test_a_file_changed_just_before_hashing_is_not_memoised(tmp_path, monkeypatch):
    fsutil.forget_digests()
    path = tmp_path / "f.bin"
    path.write_bytes(b"a" * 100)  # ctime is now: within RACY_SECONDS
    fsutil.file_digest(path)
    hashed = []
    hash_file = fsutil.hash_file
    monkeypatch.setattr(fsutil, "hash_file", lambda p, **kw: hashed.append(p) or hash_file(p, **kw))
    fsutil.file_digest(path)
    assert len(hashed) == 1


@pytest.mark.parametrize("text", ["[" * 100_000, '{"a":' * 100_000, b"[" * 100_000])
def test_json_nested_too_deeply_is_a_decode_error_not_a_recursion_error(text):
    with pytest.raises(json.JSONDecodeError, match="nested too deeply"):
        fsutil.loads_json(text)


def test_loads_json_parses_what_json_parses():
    assert fsutil.loads_json('{"a": [1, 2.5, null]}') == {"a": [1, 2.5, None]}
    with pytest.raises(json.JSONDecodeError):
        fsutil.loads_json("{")
