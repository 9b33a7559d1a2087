"""Tests of gapdiag.cache: keys, checkpoint hashes, hits, atomic chunked writes, resume after SIGKILL, locking.

The "embedding function" is a closed-form numpy function of the item index, so any chunking of the same items
gives the same vectors and a resumed build must be byte-identical to an uninterrupted one. Multi-process tests
run this file as a script (see ``_worker``) so that the workers use the very same build code as the tests.
"""

from __future__ import annotations

import ast
import errno
import hashlib
import io
import json
import logging
import os
import re
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import platformdirs
import pytest

import gapdiag
import gapdiag.cache as cache_mod
from gapdiag import fsutil
from gapdiag.cache import EmbeddingCache, cache_key, default_cache_dir, file_sha256
from gapdiag.cache import keys as cache_keys
from gapdiag.errors import CacheError, EmbeddingError, InputError

REPO = Path(__file__).resolve().parents[1]
COUNTS = {"image": 10, "text": 23}  # neither is a multiple of CHUNK
CHUNK = 4
N_SAMPLES = 10
DIM = 6
SAMPLE_INDEX = {"image": np.arange(10), "text": np.arange(23) % 10}
LABELS = np.arange(10) % 3
META = {
    "model": {"name": "fake-clip", "pretrained": "none"},
    "checkpoint_sha256": "0" * 64,
    "dataset": {"name": "toy", "source": "/nowhere", "fingerprint": "f" * 64, "n_samples": N_SAMPLES,
                "counts": COUNTS},
    "dtype": "float32",
    "class_names": ["a", "b", "c"],
}
ALL_CHUNKS = [(m, s, min(s + CHUNK, n)) for m, n in COUNTS.items() for s in range(0, n, CHUNK)]


def fake_vectors(modality: str, start: int, end: int) -> np.ndarray:
    """Deterministic vectors of items [start, end): a closed form of the item index, independent of chunking."""
    item = np.arange(start, end, dtype=np.float64)[:, None]
    phase = 0.5 if modality == "image" else 1.75
    return (np.sin(0.37 * item * np.arange(1, DIM + 1) + phase) * 3.0).astype(np.float32)


def expected(modality: str, dtype: str = "float32") -> np.ndarray:
    return fake_vectors(modality, 0, COUNTS[modality]).astype(dtype)


def build_entry(cache: EmbeddingCache, key: str, *, meta: dict = META, chunk_size: int = CHUNK,
                on_chunk=None, **finalize_kwargs):
    """What gapdiag.embed does: compute the chunks that are not done, then finalize."""
    with cache.writer(key, meta, chunk_size=chunk_size) as w:
        for m, n in COUNTS.items():
            for s, e in w.chunk_ranges(m, n):
                if w.is_done(m, s, e):
                    continue
                if on_chunk is not None:
                    on_chunk(m, s, e)
                w.write_chunk(m, s, fake_vectors(m, s, e))
        return w.finalize(sample_index=SAMPLE_INDEX, labels=LABELS, **finalize_kwargs)


def write_some_chunks(cache: EmbeddingCache, key: str, n_chunks: int, *, meta: dict = META,
                      chunk_size: int = CHUNK) -> None:
    """A build that stops (as if killed) after committing ``n_chunks`` image chunks."""
    with cache.writer(key, meta, chunk_size=chunk_size) as w:
        for s, e in w.chunk_ranges("image", COUNTS["image"])[:n_chunks]:
            w.write_chunk("image", s, fake_vectors("image", s, e))


def files_of(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


# ------------------------------------------------------------------------------------------- subprocesses


def _worker(root: str, key: str, log_path: str, pause_after: int, ready: str, release: str) -> None:
    """Build the entry like gapdiag does, logging each computed chunk.

    Before computing chunk number ``pause_after`` (0-based, counted in this run) it touches ``ready`` and
    waits until ``release`` exists (never, for the kill test).
    """
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    cache = EmbeddingCache(root)
    computed = []

    def on_chunk(m: str, s: int, e: int) -> None:
        if len(computed) == pause_after:
            Path(ready).touch()
            while not Path(release).exists():
                time.sleep(0.01)
        computed.append((m, s, e))
        with open(log_path, "a") as f:
            f.write(f"{m} {s} {e}\n")

    if cache.get(key) is None:
        build_entry(cache, key, on_chunk=on_chunk)
    print("done", flush=True)


def _env_with_repo_on_path() -> dict[str, str]:
    """This environment with the checkout first on PYTHONPATH (kept: it may hold the dependencies)."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def start_worker(root: Path, key: str, log_path: Path, *, pause_after: int = -1, tag: str = "w") -> subprocess.Popen:
    ready, release = root.parent / f"{tag}.ready", root.parent / f"{tag}.release"
    env = _env_with_repo_on_path()
    with open(root.parent / f"{tag}.stderr", "w") as err:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, __file__, str(root), key, str(log_path), str(pause_after), str(ready), str(release)],
            stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=REPO,
        )


#: How long a worker may go without reaching the awaited point before the test calls it hung. Not a speed
#: limit (the points are reached in well under a second): it only turns a deadlock into a failure, not a CI hang.
HUNG_AFTER_S = 600.0


def wait_until(condition, proc: subprocess.Popen, what: str) -> None:
    """Poll ``condition``; fail (instead of waiting forever) if ``proc`` exits first or hangs."""
    give_up = time.monotonic() + HUNG_AFTER_S
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"worker exited with {proc.returncode} before {what}")
        if time.monotonic() > give_up:
            proc.kill()
            raise AssertionError(f"worker hung: not {what} after {HUNG_AFTER_S:.0f} s")
        time.sleep(0.01)


def finish(proc: subprocess.Popen, tag: str, tmp_path: Path) -> str:
    out, _ = proc.communicate()
    stderr = (tmp_path / f"{tag}.stderr").read_text()
    assert proc.returncode == 0, stderr
    return out


def logged(log_path: Path) -> list[tuple[str, int, int]]:
    if not log_path.exists():
        return []
    return [(m, int(s), int(e)) for m, s, e in (line.split() for line in log_path.read_text().splitlines())]


# ------------------------------------------------------------------------------------------------- keys

BASE_PARTS = {
    "model": {"name": "ViT-B-32", "pretrained": "laion2b_s34b_b79k", "config_sha256": "aa"},
    "checkpoint_sha256": "bb",
    "precision": "fp32",
    "dtype": "float32",
    "dataset": {"fingerprint": "cc", "templates": ["a photo of a {}.", "a {}."]},
}


def test_cache_key_matches_an_independent_sha256_of_sorted_json():
    payload = json.dumps({"parts": BASE_PARTS, "cache_format_version": cache_mod.CACHE_FORMAT_VERSION},
                         sort_keys=True, separators=(",", ":"))
    assert cache_key(BASE_PARTS) == hashlib.sha256(payload.encode()).hexdigest()[:20]
    assert re.fullmatch(r"[0-9a-f]{20}", cache_key(BASE_PARTS))


def _reversed(obj):
    return {k: _reversed(obj[k]) for k in reversed(list(obj))} if isinstance(obj, dict) else obj


def test_cache_key_ignores_key_order_at_every_level():
    assert list(_reversed(BASE_PARTS)) != list(BASE_PARTS)
    assert cache_key(_reversed(BASE_PARTS)) == cache_key(BASE_PARTS)


@pytest.mark.parametrize("path, value", [
    (("model", "name"), "ViT-L-14"),
    (("model", "pretrained"), "openai"),
    (("model", "config_sha256"), "ab"),
    (("checkpoint_sha256",), "bc"),
    (("precision",), "amp"),
    (("dtype",), "float16"),
    (("dataset", "fingerprint"), "cd"),
    (("dataset", "templates"), ["a {}.", "a photo of a {}."]),  # list order matters
    (("dataset", "new_part"), 1),
])
def test_cache_key_changes_when_any_part_changes(path, value):
    parts = json.loads(json.dumps(BASE_PARTS))
    target = parts
    for name in path[:-1]:
        target = target[name]
    target[path[-1]] = value
    assert cache_key(parts) != cache_key(BASE_PARTS)


def test_cache_key_changes_with_the_format_version(monkeypatch):
    before = cache_key(BASE_PARTS)
    monkeypatch.setattr(cache_keys, "CACHE_FORMAT_VERSION", cache_keys.CACHE_FORMAT_VERSION + 1)
    assert cache_key(BASE_PARTS) != before


def test_cache_key_accepts_numpy_scalars_and_refuses_values_without_a_json_form():
    assert cache_key({"n": np.int64(3), "x": np.float32(0.5)}) == cache_key({"n": 3, "x": 0.5})
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        cache_key({"s": {1, 2}})
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        cache_key({"o": object()})


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("GAPDIAG_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    for unset in (lambda: monkeypatch.setenv("GAPDIAG_CACHE_DIR", ""),
                  lambda: monkeypatch.delenv("GAPDIAG_CACHE_DIR")):
        unset()
        assert default_cache_dir() == Path(platformdirs.user_cache_dir("gapdiag", appauthor=False))


# --------------------------------------------------------------------------------------- checkpoint hash


def test_file_sha256_is_the_sha256_and_is_invalidated_by_a_same_size_edit(tmp_path, monkeypatch):
    monkeypatch.setattr(fsutil, "RACY_SECONDS", 0)  # the file was written just now: remember it anyway
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"A" * 3000)
    assert file_sha256(ckpt, cache_dir=tmp_path / "c") == hashlib.sha256(b"A" * 3000).hexdigest()
    memo = json.loads((tmp_path / "c" / "hashes.json").read_text())
    assert memo[str(ckpt.resolve())]["sha256"] == hashlib.sha256(b"A" * 3000).hexdigest()

    mtime = ckpt.stat().st_mtime_ns
    ckpt.write_bytes(b"B" * 3000)
    os.utime(ckpt, ns=(mtime + 5_000_000_000, mtime + 5_000_000_000))
    assert file_sha256(ckpt, cache_dir=tmp_path / "c") == hashlib.sha256(b"B" * 3000).hexdigest()


def test_file_sha256_memo_is_shared_across_processes(tmp_path):
    ckpt, root = tmp_path / "model.bin", tmp_path / "c"
    ckpt.write_bytes(b"weights-1" * 100)
    call = f"print(c.file_sha256({str(ckpt)!r}, cache_dir={str(root)!r}))"
    # The file was written just now: remember its digest anyway (see fsutil.RACY_SECONDS).
    compute = "import gapdiag.cache as c, gapdiag.fsutil as f\nf.RACY_SECONDS = 0\n" + call
    # Hashing is forbidden in this process: only the on-disk memo can answer.
    memo_only = ("import gapdiag.cache as c, gapdiag.fsutil as f\n"
                 "def boom(path, **kw): raise SystemExit('re-hashed ' + str(path))\n"
                 "f.hash_file = boom\n" + call)

    def run(code: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=REPO,
                              env=_env_with_repo_on_path())

    first = run(compute)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == hashlib.sha256(b"weights-1" * 100).hexdigest()
    second = run(memo_only)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == first.stdout.strip()

    mtime = ckpt.stat().st_mtime_ns
    ckpt.write_bytes(b"weights-2" * 100)
    os.utime(ckpt, ns=(mtime + 7_000_000_000, mtime + 7_000_000_000))
    stale = run(memo_only)
    assert stale.returncode != 0 and "re-hashed" in stale.stderr  # the memo no longer answers
    fresh = run(compute)
    assert fresh.stdout.strip() == hashlib.sha256(b"weights-2" * 100).hexdigest()


def test_file_sha256_without_a_writable_cache_dir_still_hashes(tmp_path):
    ckpt, blocker = tmp_path / "model.pt", tmp_path / "file"
    ckpt.write_bytes(b"C" * 10)
    blocker.write_text("x")
    assert file_sha256(ckpt, cache_dir=blocker / "c") == hashlib.sha256(b"C" * 10).hexdigest()


def test_file_sha256_of_a_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="cannot read .*nope.pt"):
        file_sha256(tmp_path / "nope.pt", cache_dir=tmp_path / "c")


# ------------------------------------------------------------------------------------------ hit and miss


def test_miss_then_hit_returns_the_stored_vectors_and_provenance(tmp_path):
    cache = EmbeddingCache(tmp_path / "c")
    key = cache_key(BASE_PARTS)
    assert cache.get(key) is None
    built = build_entry(cache, key, class_embeddings=np.eye(3, DIM),
                        attributes={"color": np.array(["red", "blue"] * 5)},
                        # "file" is also the first parameter of np.savez: it must still be a plain name.
                        attribute_embeddings={"red": np.ones(DIM), "blue": -np.ones(DIM), "file": np.zeros(DIM)})
    hit = cache.get(key)
    for emb in (built, hit):
        for m in COUNTS:
            np.testing.assert_array_equal(emb.vectors[m], expected(m))
            np.testing.assert_array_equal(emb.sample_index[m], SAMPLE_INDEX[m])
            assert emb.sample_index[m].dtype == np.int64
        np.testing.assert_array_equal(emb.labels, LABELS)
        np.testing.assert_array_equal(emb.class_embeddings, np.eye(3, DIM))
        np.testing.assert_array_equal(emb.attributes["color"], ["red", "blue"] * 5)
        np.testing.assert_array_equal(emb.attribute_embeddings["blue"], -np.ones(DIM))
        assert sorted(emb.attribute_embeddings) == ["blue", "file", "red"]
        assert emb.n_samples == N_SAMPLES and emb.class_names == ["a", "b", "c"]
    meta = hit.provenance
    assert meta["key"] == key and meta["model"] == META["model"]
    assert meta["checkpoint_sha256"] == META["checkpoint_sha256"]
    assert meta["dataset"] == {**META["dataset"], "counts": COUNTS}
    assert meta["dims"] == {"image": DIM, "text": DIM} and meta["modalities"] == ["image", "text"]
    assert meta["dtype"] == "float32" and meta["cache_format_version"] == cache_mod.CACHE_FORMAT_VERSION
    assert meta["gapdiag_version"] == gapdiag.__version__
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", meta["created"])
    for m in COUNTS:  # the streamed concatenation is exactly what np.save writes for the whole array
        buffer = io.BytesIO()
        np.save(buffer, expected(m))
        assert (cache.path(key) / f"{m}.npy").read_bytes() == buffer.getvalue()
    assert files_of(cache.path(key)) == sorted([
        "meta.json", "image.npy", "text.npy", "image.sample_index.npy", "text.sample_index.npy", "labels.npy",
        "class_embeddings.npy", "attributes.npz", "attribute_embeddings.npz"])

    # A writer opened on a complete entry computes nothing and hands back the entry.
    with cache.writer(key, META, chunk_size=CHUNK) as w:
        assert w.existing is not None and w.is_done("image", 0, CHUNK)
        np.testing.assert_array_equal(w.finalize(sample_index=SAMPLE_INDEX).vectors["text"], expected("text"))


def test_float16_entries_store_float16(tmp_path):
    cache = EmbeddingCache(tmp_path / "c")
    emb = build_entry(cache, "half", meta={**META, "dtype": "float16"})
    assert emb.vectors["image"].dtype == np.float16
    np.testing.assert_array_equal(cache.get("half").vectors["text"], expected("text", "float16"))


def test_get_memory_maps_and_reads_each_file_once_per_state(tmp_path, monkeypatch):
    monkeypatch.setattr(fsutil, "RACY_SECONDS", 0)  # the files were written just now: remember them anyway
    fsutil.forget_digests()
    cache = EmbeddingCache(tmp_path / "c")
    build_entry(cache, "k")
    hashed = []
    hash_file = fsutil.hash_file
    monkeypatch.setattr(fsutil, "hash_file", lambda path, **kw: hashed.append(Path(path).name) or hash_file(path, **kw))
    emb = cache.get("k")
    assert all(isinstance(v, np.memmap) for v in emb.vectors.values())
    assert sorted(hashed) == sorted(json.loads((cache.path("k") / "meta.json").read_text())["checksums"])
    hashed.clear()
    eager = cache.get("k", mmap=False)  # unchanged files (same size, mtime, ctime, inode): not read again
    assert hashed == []
    assert not isinstance(eager.vectors["image"], np.memmap)
    np.testing.assert_array_equal(eager.vectors["image"], emb.vectors["image"])


def test_meta_json_records_the_sha256_of_every_stored_file(tmp_path):
    cache = EmbeddingCache(tmp_path / "c")
    build_entry(cache, "k", class_embeddings=np.eye(3, DIM), attributes={"colour": np.array(["r"] * N_SAMPLES)},
                attribute_embeddings={"r": np.ones(DIM)})
    entry = cache.path("k")
    checksums = json.loads((entry / "meta.json").read_text())["checksums"]
    stored = sorted(f for f in files_of(entry) if f != "meta.json")
    assert sorted(checksums) == stored
    for name in stored:
        assert checksums[name] == "sha256:" + hashlib.sha256((entry / name).read_bytes()).hexdigest()


def _flip_a_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x10  # in the vectors, past the .npy header: the header checks cannot see it
    path.write_bytes(bytes(data))


def _same_size_garbage(path: Path) -> None:
    array = np.load(path)
    np.save(path, np.random.default_rng(0).standard_normal(array.shape).astype(array.dtype))


def _permute(path: Path) -> None:
    np.save(path, np.load(path)[::-1].copy())


@pytest.mark.parametrize("file, damage", [
    ("image.npy", _flip_a_bit),
    ("text.npy", _same_size_garbage),
    ("text.sample_index.npy", _permute),
    ("labels.npy", _permute),
])
def test_same_size_damage_of_a_final_file_is_one_line_naming_entry_and_file(tmp_path, file, damage):
    cache = EmbeddingCache(tmp_path / "c")
    build_entry(cache, "k")
    path = cache.path("k") / file
    size = path.stat().st_size
    cache.get("k")  # verified once in this process: the damage below must still be seen
    damage(path)
    assert path.stat().st_size == size
    with pytest.raises(CacheError, match=f"corrupt cache file {re.escape(str(path))}: checksum mismatch") as info:
        cache.get("k")
    assert "`gapdiag cache rm k`" in str(info.value) and "\n" not in str(info.value)
    # Asked to build that key, the writer rebuilds the damaged entry.
    np.testing.assert_array_equal(build_entry(cache, "k").vectors["text"], expected("text"))


def test_chunk_checksum_is_recorded_before_the_rename_that_commits_the_chunk(tmp_path, monkeypatch):
    cache = EmbeddingCache(tmp_path / "c")
    seen = []
    replace = os.replace

    def checking_replace(src, dst):
        dst = Path(dst)
        if dst.parent.name == "chunks" and dst.suffix == ".npy":
            recorded = dst.with_name(dst.name + ".sha256").read_text().split()
            seen.append(dst.name)
            assert recorded == [hashlib.sha256(Path(src).read_bytes()).hexdigest(), dst.name]
        return replace(src, dst)

    monkeypatch.setattr(os, "replace", checking_replace)
    write_some_chunks(cache, "k", 2)
    assert seen == ["image.0-4.npy", "image.4-8.npy"]


@pytest.mark.parametrize("damage", ["garbage", "flipped", "no_checksum"])
def test_a_bad_chunk_of_an_unfinished_run_is_re_embedded_on_resume(tmp_path, damage, caplog):
    cache = EmbeddingCache(tmp_path / "c")
    write_some_chunks(cache, "k", 2)
    chunk = cache.path("k") / "chunks" / "image.4-8.npy"
    if damage == "garbage":
        _same_size_garbage(chunk)  # a readable chunk of the right shape and dtype: only the checksum knows
    elif damage == "flipped":
        _flip_a_bit(chunk)
    else:
        chunk.with_name(chunk.name + ".sha256").unlink()
    computed = []
    with caplog.at_level(logging.WARNING, logger="gapdiag.cache"):
        emb = build_entry(cache, "k", on_chunk=lambda m, s, e: computed.append((m, s, e)))
    assert ("image", 4, 8) in computed and ("image", 0, 4) not in computed
    np.testing.assert_array_equal(emb.vectors["image"], expected("image"))
    assert any("re-embedding chunk image.4-8.npy" in r.getMessage() for r in caplog.records)


def test_a_chunk_changed_after_its_check_is_caught_while_assembling(tmp_path, monkeypatch):
    cache = EmbeddingCache(tmp_path / "c")
    with cache.writer("k", META, chunk_size=CHUNK) as w:
        for m, n in COUNTS.items():
            for s, e in w.chunk_ranges(m, n):
                w.write_chunk(m, s, fake_vectors(m, s, e))
        chunk = cache.path("k") / "chunks" / "text.8-12.npy"
        _same_size_garbage(chunk)
        with pytest.raises(CacheError, match="text.8-12.npy changed after it was committed"):
            w.finalize(sample_index=SAMPLE_INDEX, labels=LABELS)
    assert not chunk.exists() and not (cache.path("k") / "meta.json").exists()
    np.testing.assert_array_equal(build_entry(cache, "k").vectors["text"], expected("text"))


def test_verify_reports_every_corrupt_file_and_partial_chunk(tmp_path):
    cache = EmbeddingCache(tmp_path / "c")
    build_entry(cache, "good")
    build_entry(cache, "bad")
    write_some_chunks(cache, "part", 2)
    assert [r["ok"] for r in cache.verify()] == [True, True, True]
    _flip_a_bit(cache.path("bad") / "text.npy")
    _same_size_garbage(cache.path("part") / "chunks" / "image.0-4.npy")
    results = {r["key"]: r for r in cache.verify()}
    assert results["good"]["ok"] and results["good"]["files"] == 5
    assert results["bad"]["problems"] == [{"file": "text.npy", "reason": results["bad"]["problems"][0]["reason"]}]
    assert results["bad"]["problems"][0]["reason"].startswith("checksum mismatch")
    assert results["part"]["problems"] == [{"file": "chunks/image.0-4.npy", "reason": "checksum mismatch"}]
    assert [r["key"] for r in cache.verify("go")] == ["good"]


def test_cache_verify_command_exit_codes(tmp_path, capsys):
    from cli_helpers import assert_one_line_error, gapdiag

    cache = EmbeddingCache(tmp_path / "c")
    build_entry(cache, "k1")
    build_entry(cache, "k2")
    code, out, err = gapdiag(capsys, "cache", "verify", "--cache-dir", cache.root)
    assert (code, err) == (0, "") and out.count(" ok ") == 2
    _permute(cache.path("k2") / "image.sample_index.npy")
    code, out, err = gapdiag(capsys, "cache", "verify", "--cache-dir", cache.root, "--json")
    assert code == 2
    assert [e["ok"] for e in json.loads(out)["entries"]] == [True, False]
    code, out, err = gapdiag(capsys, "cache", "verify", "k2", "--cache-dir", cache.root)
    assert_one_line_error(code, "", err, "k2/image.sample_index.npy", "checksum mismatch", "gapdiag cache rm")
    assert "CORRUPT" in out


def test_a_second_writer_says_who_holds_the_lock_and_that_it_waits(tmp_path, caplog, monkeypatch):
    import socket
    import threading

    import filelock

    from gapdiag.cache import integrity as cache_integrity

    # Set once the waiter is about to block on the entry lock, or has ended: waiting on it never hangs and needs
    # no clock (it replaced a poll of the log records without a timeout).
    blocking = threading.Event()

    class SignallingLock(filelock.FileLock):
        def acquire(self, timeout=None, *args, **kwargs):
            if timeout is None or timeout < 0:  # the blocking wait (a try with timeout=0 comes first)
                blocking.set()
            return super().acquire(timeout, *args, **kwargs)

    monkeypatch.setattr(cache_integrity, "entry_lock", lambda root, key: SignallingLock(str(root / f"{key}.lock")))
    cache = EmbeddingCache(tmp_path / "c")
    result = {}

    def wait_for_the_entry() -> None:
        try:
            result["emb"] = build_entry(cache, "k")
        finally:
            blocking.set()

    with caplog.at_level(logging.WARNING, logger="gapdiag.cache"):
        with cache.writer("k", META, chunk_size=CHUNK) as holder:
            holder.chunk_ranges("image", COUNTS["image"])
            holder.write_chunk("image", 0, fake_vectors("image", 0, 4))
            waiter = threading.Thread(target=wait_for_the_entry)
            waiter.start()
            blocking.wait()
            assert waiter.is_alive() and "emb" not in result  # it waits for the holder instead of building
            said = [r.getMessage() for r in caplog.records if "waiting" in r.getMessage()]
            assert said, "the second writer waited without saying so"
        waiter.join()  # the holder let go: the waiter takes the lock and reuses the entry
    message = said[0]
    assert f"cache entry k is being built by pid {os.getpid()} on {socket.gethostname()}" in message
    np.testing.assert_array_equal(result["emb"].vectors["image"], expected("image"))


def test_ls_says_why_an_entry_is_incomplete(tmp_path):
    cache = EmbeddingCache(tmp_path / "c")
    with pytest.raises(RuntimeError, match="out of memory"):
        with cache.writer("k", META, chunk_size=CHUNK) as w:
            w.chunk_ranges("image", COUNTS["image"])
            w.write_chunk("image", 0, fake_vectors("image", 0, 4))
            raise RuntimeError("CUDA out of memory")
    (row,) = cache.ls()
    assert row["complete"] is False
    assert row["why"].startswith("stopped: RuntimeError: CUDA out of memory; 1 chunks committed")
    with cache.writer("k", META, chunk_size=CHUNK):
        assert cache.ls()[0]["why"].startswith(f"being built by pid {os.getpid()}")


def test_an_incomplete_entry_is_a_miss(tmp_path):
    cache = EmbeddingCache(tmp_path / "c")
    write_some_chunks(cache, "k", 2)
    assert (cache.path("k") / "partial.json").is_file()
    assert cache.get("k") is None


@pytest.mark.parametrize("damage, reason", [
    ("fewer_rows", "expected shape \\(23, 6\\), found \\(20, 6\\)"),
    ("truncated", ""),
    ("wrong_dtype", "expected dtype float32, found float64"),
    ("missing", "file is missing"),
])
def test_a_damaged_entry_raises_cache_error_naming_the_file_and_the_fix(tmp_path, damage, reason):
    cache = EmbeddingCache(tmp_path / "c")
    build_entry(cache, "k")
    path = cache.path("k") / "text.npy"
    if damage == "fewer_rows":
        np.save(path, expected("text")[:20])
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:-40])
    elif damage == "wrong_dtype":
        np.save(path, expected("text").astype(np.float64))
    else:
        path.unlink()
    with pytest.raises(CacheError, match=f"corrupt cache file {re.escape(str(path))}: {reason}") as info:
        cache.get("k")
    assert "`gapdiag cache rm k`" in str(info.value) and "\n" not in str(info.value)


def test_unreadable_meta_is_a_cache_error(tmp_path):
    cache = EmbeddingCache(tmp_path / "c")
    build_entry(cache, "k")
    (cache.path("k") / "meta.json").write_text("{not json")
    with pytest.raises(CacheError, match="meta.json.*gapdiag cache rm k"):
        cache.get("k")
    # Asked to build that key, the writer rebuilds the damaged entry.
    np.testing.assert_array_equal(build_entry(cache, "k").vectors["text"], expected("text"))


def test_keys_that_are_not_plain_names_are_refused(tmp_path):
    cache = EmbeddingCache(tmp_path / "c")
    for bad in ("../escape", "a/b", "", ".hidden"):
        with pytest.raises(InputError, match="invalid cache key"):
            cache.get(bad)


# ------------------------------------------------------------------------------ resume, kill, concurrency


def test_resume_after_sigkill_skips_done_chunks_and_is_byte_identical(tmp_path):
    reference = EmbeddingCache(tmp_path / "ref")
    build_entry(reference, "k")

    root, log1, log2 = tmp_path / "c", tmp_path / "run1.log", tmp_path / "run2.log"
    proc = start_worker(root, "k", log1, pause_after=4, tag="run1")
    wait_until((tmp_path / "run1.ready").exists, proc, "committing 4 chunks")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL

    cache = EmbeddingCache(root)
    first = logged(log1)
    assert first == ALL_CHUNKS[:4]
    assert sorted(p.name for p in (root / "k" / "chunks").glob("*.npy")) == sorted(
        f"{m}.{s}-{e}.npy" for m, s, e in first)
    assert cache.get("k") is None
    assert [(r["key"], r["complete"]) for r in cache.ls()] == [("k", False)]

    proc = start_worker(root, "k", log2, tag="run2")
    assert finish(proc, "run2", tmp_path).strip() == "done"
    assert logged(log2) == ALL_CHUNKS[4:]  # only what the killed run had not committed

    got, ref = root / "k", tmp_path / "ref" / "k"
    assert files_of(got) == files_of(ref)
    for name in files_of(ref):
        if name != "meta.json":
            assert (got / name).read_bytes() == (ref / name).read_bytes(), name
    meta_got, meta_ref = (json.loads((d / "meta.json").read_text()) for d in (got, ref))
    for meta in (meta_got, meta_ref):  # the time differs, and so does the checksum that covers it
        meta.pop("created"), meta.pop("meta_checksum")
    assert meta_got == meta_ref


def test_a_second_writer_waits_for_the_lock_and_reuses_the_entry(tmp_path):
    root = tmp_path / "c"
    first = start_worker(root, "k", tmp_path / "a.log", pause_after=2, tag="a")
    wait_until((tmp_path / "a.ready").exists, first, "holding the lock")
    second = start_worker(root, "k", tmp_path / "b.log", tag="b")
    wait_until(lambda: "waiting for it to finish" in (tmp_path / "b.stderr").read_text(), second,
               "waiting for the lock")
    (tmp_path / "a.release").touch()
    finish(first, "a", tmp_path), finish(second, "b", tmp_path)

    assert logged(tmp_path / "a.log") == ALL_CHUNKS
    assert logged(tmp_path / "b.log") == []  # the waiting process computed nothing
    emb = EmbeddingCache(root).get("k")
    for m in COUNTS:
        np.testing.assert_array_equal(emb.vectors[m], expected(m))
    assert not (root / "k" / "chunks").exists() and not (root / "k" / "partial.json").exists()


def test_two_writers_started_together_build_one_correct_entry(tmp_path):
    root = tmp_path / "c"
    procs = [start_worker(root, "k", tmp_path / f"{t}.log", tag=t) for t in ("x", "y")]
    for proc, tag in zip(procs, ("x", "y")):
        finish(proc, tag, tmp_path)
    # Whatever the interleaving, every chunk was computed exactly once.
    assert sorted(logged(tmp_path / "x.log") + logged(tmp_path / "y.log")) == sorted(ALL_CHUNKS)
    emb = EmbeddingCache(root).get("k")
    for m in COUNTS:
        np.testing.assert_array_equal(emb.vectors[m], expected(m))
    assert [r["key"] for r in EmbeddingCache(root).ls()] == ["k"]


def test_same_settings_resume_from_committed_chunks(tmp_path):
    cache = EmbeddingCache(tmp_path / "c")
    write_some_chunks(cache, "k", 2)
    computed = []
    emb = build_entry(cache, "k", on_chunk=lambda *c: computed.append(c))
    assert computed == ALL_CHUNKS[2:]
    np.testing.assert_array_equal(emb.vectors["image"], expected("image"))


@pytest.mark.parametrize("change", [
    {"chunk_size": 3},
    {"meta": {**META, "dtype": "float16"}},
    {"meta": {**META, "model": {"name": "other-clip", "pretrained": "none"}}},
])
def test_a_partial_entry_built_with_other_settings_is_restarted(tmp_path, change):
    cache = EmbeddingCache(tmp_path / "c")
    write_some_chunks(cache, "k", 2)
    chunk_size = change.get("chunk_size", CHUNK)
    meta = change.get("meta", META)
    with cache.writer("k", meta, chunk_size=chunk_size):
        assert list((cache.path("k") / "chunks").iterdir()) == []  # the old chunks are gone, not set aside
        partial = json.loads((cache.path("k") / "partial.json").read_text())
        assert partial["chunk_size"] == chunk_size and partial["meta"] == meta
    computed = []
    emb = build_entry(cache, "k", on_chunk=lambda *c: computed.append(c), **change)
    assert len(computed) == sum(-(-n // chunk_size) for n in COUNTS.values())  # everything recomputed
    dtype = change.get("meta", META)["dtype"]
    for m in COUNTS:
        np.testing.assert_array_equal(emb.vectors[m], expected(m, dtype))
    assert emb.provenance["model"] == change.get("meta", META)["model"]


def test_stray_temp_files_and_unreadable_chunks_are_removed_and_recomputed(tmp_path):
    cache = EmbeddingCache(tmp_path / "c")
    write_some_chunks(cache, "k", 3)
    chunks = cache.path("k") / "chunks"
    stray = chunks / "image.8-10.npy.4242.tmp"
    stray.write_bytes(b"half a chunk")
    (chunks / "image.4-8.npy").write_bytes((chunks / "image.4-8.npy").read_bytes()[:-7])
    np.save(chunks / "image.8-10.npy", fake_vectors("image", 8, 10).astype(np.float64))  # wrong dtype

    with cache.writer("k", META, chunk_size=CHUNK) as w:
        assert not stray.exists()
        w.chunk_ranges("image", COUNTS["image"])
        assert [w.is_done("image", s, e) for s, e in ((0, 4), (4, 8), (8, 10))] == [True, False, False]
    assert sorted(p.name for p in chunks.iterdir()) == ["image.0-4.npy", "image.0-4.npy.sha256"]
    np.testing.assert_array_equal(build_entry(cache, "k").vectors["image"], expected("image"))


def test_chunks_must_follow_chunk_ranges(tmp_path):
    cache = EmbeddingCache(tmp_path / "c")
    with cache.writer("k", META, chunk_size=CHUNK) as w:
        assert w.chunk_ranges("text", 10) == [(0, 4), (4, 8), (8, 10)]
        with pytest.raises(ValueError, match="not one of its chunk_ranges"):
            w.write_chunk("text", 2, fake_vectors("text", 2, 6))
        with pytest.raises(ValueError, match="call chunk_ranges"):
            w.write_chunk("image", 0, fake_vectors("image", 0, 4))
        w.write_chunk("text", 0, fake_vectors("text", 0, 4))
        with pytest.raises(ValueError, match="chunks not written: text items 4-7, text items 8-9"):
            w.finalize(sample_index={"text": np.arange(10)})


# ------------------------------------------------------------------------------------------- bad values


@pytest.mark.parametrize("dtype, bad_value, hint", [
    ("float32", np.nan, "precision fp32"),
    ("float32", -np.inf, "precision fp32"),
    ("float16", 1e6, "overflow float16"),  # finite in float32, inf once stored as float16
])
def test_non_finite_vectors_are_rejected_and_not_stored(tmp_path, dtype, bad_value, hint):
    cache = EmbeddingCache(tmp_path / "c")
    with cache.writer("k", {**META, "dtype": dtype}, chunk_size=CHUNK) as w:
        w.chunk_ranges("text", COUNTS["text"])
        vectors = fake_vectors("text", 4, 8)
        vectors[2, 3] = bad_value
        with pytest.raises(EmbeddingError, match=r"in text embeddings of items 4-7 \(first at item 6\)") as info:
            w.write_chunk("text", 4, vectors)
        assert hint in str(info.value)
        assert not w.is_done("text", 4, 8)


# ----------------------------------------------------------------------------------- unwritable, disk full


def test_a_cache_dir_under_a_regular_file_is_not_writable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CacheError) as info:
        EmbeddingCache(blocker / "cache")
    assert str(info.value) == f"cache dir {blocker / 'cache'} is not writable (set --cache-dir or GAPDIAG_CACHE_DIR)"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores permission bits")
def test_a_read_only_cache_dir_is_not_writable(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(CacheError, match="is not writable"):
            EmbeddingCache(ro)
    finally:
        ro.chmod(0o700)


def test_disk_full_during_a_chunk_keeps_committed_chunks_and_the_build_resumes(tmp_path, monkeypatch):
    cache = EmbeddingCache(tmp_path / "c")
    real_save = np.save

    def save_until_full(f, array, **kwargs):
        f.write(b"\x93NUMPY partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with cache.writer("k", META, chunk_size=CHUNK) as w:
        ranges = w.chunk_ranges("image", COUNTS["image"])
        for s, e in ranges[:2]:
            w.write_chunk("image", s, fake_vectors("image", s, e))
        monkeypatch.setattr(np, "save", save_until_full)
        target = cache.path("k") / "chunks" / "image.8-10.npy"
        with pytest.raises(CacheError) as info:
            w.write_chunk("image", 8, fake_vectors("image", 8, 10))
        assert str(info.value) == f"disk full while writing {target} (free space or use --cache-dir)"
        monkeypatch.setattr(np, "save", real_save)
    chunks = cache.path("k") / "chunks"
    assert sorted(p.name for p in chunks.iterdir()) == ["image.0-4.npy", "image.0-4.npy.sha256", "image.4-8.npy",
                                                      "image.4-8.npy.sha256"]  # no temp file left
    np.testing.assert_array_equal(np.load(chunks / "image.4-8.npy"), fake_vectors("image", 4, 8))

    computed = []
    emb = build_entry(cache, "k", on_chunk=lambda *c: computed.append(c))
    assert computed == ALL_CHUNKS[2:]
    np.testing.assert_array_equal(emb.vectors["image"], expected("image"))


def test_disk_full_while_finalizing_leaves_a_resumable_entry(tmp_path, monkeypatch):
    cache = EmbeddingCache(tmp_path / "c")

    def fsync_full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with cache.writer("k", META, chunk_size=CHUNK) as w:
        for m, n in COUNTS.items():
            for s, e in w.chunk_ranges(m, n):
                w.write_chunk(m, s, fake_vectors(m, s, e))
        monkeypatch.setattr(os, "fsync", fsync_full)
        with pytest.raises(CacheError, match=r"disk full while writing .*image\.npy"):
            w.finalize(sample_index=SAMPLE_INDEX)
        monkeypatch.undo()
    assert cache.get("k") is None
    assert not list(cache.path("k").rglob("*.tmp"))
    computed = []
    emb = build_entry(cache, "k", on_chunk=lambda *c: computed.append(c))
    assert computed == []  # every chunk survived
    np.testing.assert_array_equal(emb.vectors["text"], expected("text"))


# --------------------------------------------------------------------------------------------------- ls/rm


def test_ls_lists_complete_and_partial_entries(tmp_path):
    cache = EmbeddingCache(tmp_path / "c")
    build_entry(cache, "abc123")
    build_entry(cache, "abd456", meta={**META, "dtype": "float16"})
    write_some_chunks(cache, "abx789", 1)
    file_sha256(REPO / "pyproject.toml", cache_dir=cache.root)  # hashes.json and lock files are not entries
    rows = {r["key"]: r for r in cache.ls()}
    assert set(rows) == {"abc123", "abd456", "abx789"}
    assert [rows[k]["complete"] for k in ("abc123", "abd456", "abx789")] == [True, True, False]
    for key, row in rows.items():
        entry = cache.path(key)
        assert row["size_bytes"] == sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(entry)
                                        for f in fs)
        assert row["dataset"] == "toy" and row["model"] == "fake-clip" and row["counts"] == COUNTS
        assert row["created"]
    assert rows["abd456"]["dtype"] == "float16" and rows["abc123"]["dtype"] == "float32"


def test_rm_by_unique_prefix_and_all(tmp_path):
    cache = EmbeddingCache(tmp_path / "c")
    for key in ("abc123", "abd456", "xyz000"):
        build_entry(cache, key)
    file_sha256(REPO / "pyproject.toml", cache_dir=cache.root)
    with pytest.raises(InputError, match="'ab' matches 2 entries: abc123, abd456"):
        cache.rm("ab")
    with pytest.raises(InputError, match="no cache entry matches 'zz'"):
        cache.rm("zz")
    assert cache.rm("abc") == ["abc123"]
    assert not cache.path("abc123").exists() and cache.get("abd456") is not None
    assert cache.rm("all") == ["abd456", "xyz000"]
    assert cache.ls() == [] and not (cache.root / "hashes.json").exists()
    assert cache.rm("all") == []


def test_rm_refuses_an_entry_being_written(tmp_path):
    cache = EmbeddingCache(tmp_path / "c")
    with cache.writer("busy", META, chunk_size=CHUNK), \
            pytest.raises(CacheError, match="busy is being written by another gapdiag process"):
        cache.rm("busy")
    assert cache.rm("busy") == ["busy"]


# ------------------------------------------------------------------------------------- numpy-only reading


def test_the_numpy_only_reader_in_docs_reads_an_entry(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "cache.md").read_text(), flags=re.DOTALL)
    snippet = next(b for b in blocks if "def load_entry" in b)
    imported = set()
    for node in ast.walk(ast.parse(snippet)):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert imported <= {"json", "pathlib", "numpy"}

    cache = EmbeddingCache(tmp_path / "c")
    emb = build_entry(cache, "k", class_embeddings=np.eye(3, DIM), attributes={"shape": np.array(["o", "x"] * 5)},
                      attribute_embeddings={"o": np.zeros(DIM)})
    reader = tmp_path / "reader.py"
    reader.write_text(snippet)
    raw = runpy.run_path(str(reader))["load_entry"](cache.path("k"))
    assert raw["meta"] == emb.provenance
    for m in COUNTS:
        np.testing.assert_array_equal(raw["vectors"][m], expected(m))
        np.testing.assert_array_equal(raw["sample_index"][m], SAMPLE_INDEX[m])
    np.testing.assert_array_equal(raw["labels"], LABELS)
    np.testing.assert_array_equal(raw["class_embeddings"], np.eye(3, DIM))
    np.testing.assert_array_equal(raw["attributes"]["shape"], ["o", "x"] * 5)
    np.testing.assert_array_equal(raw["attribute_embeddings"]["o"], np.zeros(DIM))


if __name__ == "__main__":
    root_arg, key_arg, log_arg, pause_arg, ready_arg, release_arg = sys.argv[1:7]
    _worker(root_arg, key_arg, log_arg, int(pause_arg), ready_arg, release_arg)


@pytest.mark.parametrize("n", [5, 6])
def test_an_ambiguous_prefix_lists_five_matches_and_says_when_there_are_more(tmp_path, n):
    cache = EmbeddingCache(tmp_path / "c")
    keys = [f"ab{i}0" for i in range(n)]
    for key in keys:
        build_entry(cache, key)
    with pytest.raises(InputError, match=f"'ab' matches {n} entries") as excinfo:
        cache.rm("ab")
    shown = excinfo.value.message.split(": ", 1)[1]
    assert shown == ", ".join(keys[:5]) + (", ..." if n > 5 else "")
    assert all(cache.path(key).exists() for key in keys)
