"""Embedding through the cache: hits that never build the model, misses on every change, vectors equal to a bare
encode loop, float16, text dedupe, 1:N alignment, resume after a real kill, concurrent writers, NaN."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import export_tiny, instrument_encoding
from data_fixtures import digit_image, digits_manifest, write_csv

import gapdiag.embedding.encode as enc
from gapdiag import api
from gapdiag.api import load_model
from gapdiag.cache import EmbeddingCache
from gapdiag.data import load_dataset
from gapdiag.data.images import load_image
from gapdiag.errors import DatasetError, EmbeddingError
from gapdiag.metrics.zeroshot import build_classifier
from gapdiag.models import resolving
from gapdiag.settings import Settings

TESTS = Path(__file__).parent


def embed(data, model, **kwargs):
    return api.embed(
        data, model, device="cpu", batch_size=kwargs.pop("batch_size", 4), progress=False, **kwargs
    )


def as_arrays(es) -> dict[str, np.ndarray]:
    return {name: np.array(v) for name, v in es.vectors.items()}


def forbid_model_build(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the model was built although the entry is cached")

    monkeypatch.setattr(enc, "build_model", fail)


# ------------------------------------------------------------------------------------------ hits and misses


def test_second_embed_is_a_hit_without_building_the_model(tiny_checkpoint, manifest, monkeypatch):
    first = embed(manifest, tiny_checkpoint)
    forbid_model_build(monkeypatch)
    second = embed(manifest, tiny_checkpoint)
    assert second.provenance["key"] == first.provenance["key"]
    for name, vectors in as_arrays(first).items():
        np.testing.assert_array_equal(np.asarray(second.vectors[name]), vectors)
        np.testing.assert_array_equal(second.sample_index[name], first.sample_index[name])


def test_batch_size_is_not_part_of_the_key(tiny_checkpoint, manifest, monkeypatch):
    first = embed(manifest, tiny_checkpoint, batch_size=3)
    forbid_model_build(monkeypatch)
    assert embed(manifest, tiny_checkpoint, batch_size=5).provenance["key"] == first.provenance["key"]


def _bump_mtime(path: Path) -> None:
    # Filesystems with coarse timestamps could give a rewritten file its old mtime; make the change visible.
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_changed_checkpoint_is_a_miss(tiny_checkpoint, manifest, tmp_path):
    ckpt = Path(shutil.copy(tiny_checkpoint, tmp_path / "model.safetensors"))
    before = embed(manifest, ckpt)
    export_tiny(ckpt, seed=7)  # same path and size, other weights
    _bump_mtime(ckpt)
    after = embed(manifest, ckpt)
    assert after.provenance["key"] != before.provenance["key"]
    assert not np.allclose(np.asarray(after.vectors["image"]), np.asarray(before.vectors["image"]))
    complete = {e["key"] for e in EmbeddingCache(Settings.build().cache_root).ls() if e["complete"]}
    assert complete == {before.provenance["key"], after.provenance["key"]}


def test_changed_caption_is_a_miss(tiny_checkpoint, tmp_path):
    path, rows = digits_manifest(tmp_path / "data", n=6)
    before = embed(path, tiny_checkpoint)
    rows[2][1] = "a different caption"
    write_csv(path, ["image", "caption_1", "caption_2", "label", "class_name", "split"], rows)
    _bump_mtime(path)
    after = embed(path, tiny_checkpoint)
    assert after.provenance["key"] != before.provenance["key"]
    changed = 2 * 2  # row 2, first caption
    text_before, text_after = np.asarray(before.vectors["text"]), np.asarray(after.vectors["text"])
    assert not np.allclose(text_after[changed], text_before[changed])
    np.testing.assert_allclose(
        np.delete(text_after, changed, 0), np.delete(text_before, changed, 0), atol=1e-5
    )


def test_changed_templates_are_a_miss_and_the_classifier_follows_them(tiny_checkpoint, manifest):
    # The prompt templates only shape the zero-shot classifier (class_embeddings), not the caption vectors: a
    # stale entry would keep the old classifier and measure zero-shot accuracy with prompts the user did not give.
    one, two = ["a photo of a {}."], ["a sketch of a {}.", "a drawing of a {}."]
    photo, sketch = embed(manifest, tiny_checkpoint, templates=one), embed(manifest, tiny_checkpoint, templates=two)
    assert sketch.provenance["key"] != photo.provenance["key"]
    loaded = load_model(tiny_checkpoint, device="cpu")
    for es, templates in ((photo, one), (sketch, two)):
        names = load_dataset(manifest).class_names
        prompts = enc.encode_texts(loaded, [t.format(c) for c in names for t in templates])
        want = build_classifier(prompts, len(names), len(templates))
        np.testing.assert_allclose(es.class_embeddings, want, atol=1e-5)


def test_the_key_covers_the_templates_whatever_the_reader_fingerprints(tiny_checkpoint, manifest):
    # Every reader hashes the templates into its fingerprint today; the key keeps them too, so a reader that
    # forgets them can never serve a classifier built from other prompts (issue #25, realistic bug (a)).
    ds = load_dataset(manifest, templates=["a photo of a {}."])
    other = dataclasses.replace(ds, templates=("a sketch of a {}.",))  # same fingerprint, other prompts
    spec = resolve_model(tiny_checkpoint)
    keys = {enc.embedding_key(d, spec, precision="fp32", dtype="float32") for d in (ds, other)}
    assert len(keys) == 2
    no_classes = dataclasses.replace(ds, class_names=None)  # no classifier: the templates change nothing
    sketches = dataclasses.replace(no_classes, templates=("a sketch of a {}.",))
    assert len({enc.embedding_key(d, spec, precision="fp32", dtype="float32") for d in (no_classes, sketches)}) == 1


def test_changed_image_file_is_a_miss(tiny_checkpoint, manifest):
    before = embed(manifest, tiny_checkpoint)
    image = manifest.parent / "images" / "digit_1.png"
    digit_image(100).save(image)
    _bump_mtime(image)
    after = embed(manifest, tiny_checkpoint)
    assert after.provenance["key"] != before.provenance["key"]
    assert not np.allclose(np.asarray(after.vectors["image"][1]), np.asarray(before.vectors["image"][1]))


# ----------------------------------------------------------------------------------------------- vectors


def test_vectors_equal_a_bare_encode_loop(tiny_checkpoint, tmp_path):
    # 12 digits: labels 0..9, 0, 1, so some captions repeat and go through the text dedupe.
    path, _ = digits_manifest(tmp_path / "data", n=12)
    es = embed(path, tiny_checkpoint, batch_size=5)
    dataset = load_dataset(path)
    loaded = load_model(tiny_checkpoint, device="cpu")
    images, texts = dataset.modalities["image"], dataset.modalities["text"]
    assert len(set(texts.items)) < len(texts.items)
    with torch.no_grad():
        image_ref = np.stack(
            [
                loaded.model.encode_image(
                    loaded.preprocess(load_image(images.items[i], images.location(i)))[None]
                )[0].numpy()
                for i in range(len(images))
            ]
        )
        text_ref = loaded.model.encode_text(loaded.tokenizer(list(texts.items))).numpy()
    np.testing.assert_allclose(np.asarray(es.vectors["image"]), image_ref, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.asarray(es.vectors["text"]), text_ref, atol=1e-5, rtol=0)
    assert es.vectors["image"].dtype == np.float32


def test_worker_processes_give_the_same_vectors_and_one_line_errors(tiny_checkpoint, manifest, tmp_path):
    in_process = embed(manifest, tiny_checkpoint, batch_size=3)
    workers = embed(manifest, tiny_checkpoint, batch_size=3, workers=2, cache_dir=tmp_path / "other-cache")
    assert workers.provenance["key"] == in_process.provenance["key"]  # workers do not change the vectors
    for name, vectors in as_arrays(in_process).items():
        np.testing.assert_array_equal(np.asarray(workers.vectors[name]), vectors)

    # A decode error inside a DataLoader worker still arrives as the reader's one line.
    png = manifest.parent / "images" / "digit_5.png"
    png.write_bytes(png.read_bytes()[:30])
    with pytest.raises(DatasetError) as err:
        embed(manifest, tiny_checkpoint, batch_size=3, workers=2)
    assert "\n" not in str(err.value) and "manifest.csv:7" in str(err.value) and str(png) in str(err.value)


def test_float16_is_stored_as_float16(tiny_checkpoint, manifest):
    full = embed(manifest, tiny_checkpoint)
    half = embed(manifest, tiny_checkpoint, dtype="float16")
    assert half.provenance["key"] != full.provenance["key"]
    for name, vectors in as_arrays(full).items():
        stored = np.load(Path(half.provenance["path"]) / f"{name}.npy")
        assert stored.dtype == np.float16
        np.testing.assert_array_equal(stored, vectors.astype(np.float16))


def test_text_dedupe_gives_the_same_vectors_as_no_dedupe(tiny_checkpoint, monkeypatch):
    loaded = load_model(tiny_checkpoint, device="cpu")
    texts = ["a cat", "a dog", "a cat", "a bird", "a dog", "a cat"]
    rows = []
    forward = loaded.model.encode_text
    monkeypatch.setattr(
        loaded.model, "encode_text", lambda tokens: rows.append(len(tokens)) or forward(tokens)
    )
    deduped = enc.encode_texts(loaded, texts, batch_size=2)
    assert sum(rows) == 3  # each distinct string once
    alone = np.concatenate([enc.encode_texts(loaded, [t]) for t in texts])
    np.testing.assert_allclose(deduped, alone, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(deduped[0], deduped[2])


def test_one_image_many_captions_keeps_sample_index(tiny_checkpoint, tmp_path):
    path, rows = digits_manifest(tmp_path / "data", n=5)
    es = embed(path, tiny_checkpoint)
    n_captions = 2
    np.testing.assert_array_equal(es.sample_index["image"], np.arange(len(rows)))
    np.testing.assert_array_equal(es.sample_index["text"], np.repeat(np.arange(len(rows)), n_captions))
    assert es.counts() == {"image": len(rows), "text": n_captions * len(rows)}
    # The caption vectors of one image are those of its own captions, in column order.
    loaded = load_model(tiny_checkpoint, device="cpu")
    own = enc.encode_texts(loaded, [rows[3][1], rows[3][2]])
    np.testing.assert_allclose(np.asarray(es.vectors["text"])[es.sample_index["text"] == 3], own, atol=1e-5)


# ------------------------------------------------------------------------------------- interruption and NaN


WORKER = textwrap.dedent("""
    import json, sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from conftest import instrument_encoding
    import gapdiag.embedding.encode as enc
    from gapdiag import api
    ckpt, data, cache, out, kill_after, role = sys.argv[2:8]
    kill_after = int(kill_after) if kill_after else None
    counts = instrument_encoding(setattr, chunk_size=4, kill_after=kill_after)
    if role == "hold":
        # Holding the entry lock (inside the writer, before the first image batch): say so, wait for the test.
        build = enc.build_model
        def holding_build(*args, **kwargs):
            loaded = build(*args, **kwargs)
            encode_image, held = loaded.model.encode_image, []
            def encode(x, *a, **k):
                if not held:
                    held.append(True)
                    print("HOLDING", flush=True)
                    sys.stdin.readline()
                return encode_image(x, *a, **k)
            loaded.model.encode_image = encode
            return loaded
        enc.build_model = holding_build
    if role == "wait":
        # Say so as the entry lock is about to block (after a try with timeout=0 failed).
        import filelock
        from gapdiag.cache import integrity as cache_integrity
        class AnnouncingLock(filelock.FileLock):
            def acquire(self, timeout=None, *a, **k):
                if timeout is None or timeout < 0:
                    print("BLOCKING", flush=True)
                return super().acquire(timeout, *a, **k)
        cache_integrity.entry_lock = lambda root, key: AnnouncingLock(str(root / f"{key}.lock"))
    es = api.embed(data, ckpt, cache_dir=cache, device="cpu", batch_size=2, progress=False)
    np.savez(out, **{name: np.asarray(v) for name, v in es.vectors.items()})
    with open(out + ".json", "w") as f:
        json.dump(counts, f)
""")


def start_worker(
    tmp_path: Path,
    ckpt: Path,
    data: Path,
    cache: Path,
    out: str,
    kill_after: int | None = None,
    role: str = "",
) -> subprocess.Popen:
    """A worker process embedding ``data``; its stdout is a pipe (``role`` "hold"/"wait" print there, "hold" reads
    its stdin), its stderr goes to ``<out>.stderr`` (a pipe nobody reads could fill and block it)."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    with open(tmp_path / f"{out}.stderr", "w") as err:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [
                sys.executable,
                str(script),
                str(TESTS),
                str(ckpt),
                str(data),
                str(cache),
                str(tmp_path / out),
                "" if kill_after is None else str(kill_after),
                role,
            ],
            stdin=subprocess.PIPE if role == "hold" else None,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )


def stderr_of(tmp_path: Path, out: str) -> str:
    """What a worker wrote to stderr so far (never waits)."""
    return (tmp_path / f"{out}.stderr").read_text()


def finish(proc: subprocess.Popen, tmp_path: Path, out: str) -> str:
    """Wait for a worker to end (its stdin, if any, closed by the caller); its stderr."""
    proc.stdout.read()
    proc.wait()
    return stderr_of(tmp_path, out)


def chunk_files(cache: Path, modality: str) -> list[Path]:
    return sorted(cache.glob(f"*/chunks/{modality}.*.npy"))


@pytest.mark.slow
def test_resume_after_kill_encodes_only_missing_chunks(tiny_checkpoint, tmp_path, monkeypatch):
    n = 16
    data, _ = digits_manifest(tmp_path / "data", n=n)
    cache = tmp_path / "cache"
    # The worker kills itself (SIGKILL, no cleanup) as it starts on image 8: two chunks of 4 are committed.
    proc = start_worker(tmp_path, tiny_checkpoint, data, cache, "killed.npz", kill_after=8)
    err = finish(proc, tmp_path, "killed.npz")
    assert proc.returncode == -signal.SIGKILL, err
    assert [p.name for p in chunk_files(cache, "image")] == ["image.0-4.npy", "image.4-8.npy"]
    committed = 8
    assert not list(cache.glob("*/meta.json"))

    counts = instrument_encoding(monkeypatch.setattr, chunk_size=4)
    resumed = api.embed(data, tiny_checkpoint, cache_dir=cache, device="cpu", batch_size=2, progress=False)
    assert counts["image"] == n - committed
    assert not chunk_files(cache, "image")  # finalised: chunks folded into image.npy

    reference = api.embed(
        data, tiny_checkpoint, cache_dir=tmp_path / "fresh", device="cpu", batch_size=2, progress=False
    )
    assert counts["image"] == n - committed + n
    for name in reference.vectors:
        assert np.asarray(resumed.vectors[name]).tobytes() == np.asarray(reference.vectors[name]).tobytes()


@pytest.mark.slow
def test_two_processes_embedding_the_same_entry(tiny_checkpoint, tmp_path):
    # The second process starts while the first holds the entry lock mid-build, and must wait for it: the first
    # says when it holds the lock, the second when it blocks on it, and only then is the first let go. (Started
    # together with a sleep per batch, the two passed whether or not they overlapped.) No clock: each step waits
    # for a line from a worker, and a worker that dies ends that wait.
    n = 8
    data, _ = digits_manifest(tmp_path / "data", n=n)
    cache = tmp_path / "cache"
    holder = start_worker(tmp_path, tiny_checkpoint, data, cache, "out0.npz", role="hold")
    waiter = None
    try:
        assert holder.stdout.readline().strip() == "HOLDING", stderr_of(tmp_path, "out0.npz")
        waiter = start_worker(tmp_path, tiny_checkpoint, data, cache, "out1.npz", role="wait")
        assert waiter.stdout.readline().strip() == "BLOCKING", stderr_of(tmp_path, "out1.npz")
        holder.stdin.write("go\n")
        holder.stdin.close()
        errs = [finish(p, tmp_path, f"out{i}.npz") for i, p in enumerate((holder, waiter))]
    finally:
        for p in (holder, waiter):
            if p is not None and p.poll() is None:
                p.kill()
    assert holder.returncode == 0 and waiter.returncode == 0, errs
    assert f"is being built by pid {holder.pid}" in errs[1]  # the waiter named who held the lock
    outs = [np.load(tmp_path / f"out{i}.npz") for i in range(2)]
    for name in outs[0].files:
        assert outs[0][name].tobytes() == outs[1][name].tobytes()
    counts = [json.loads((tmp_path / f"out{i}.npz.json").read_text()) for i in range(2)]
    assert counts[0]["image"] == n and counts[1]["image"] == 0  # the waiter read the entry the holder built
    assert len([e for e in EmbeddingCache(cache).ls() if e["complete"]]) == 1
    assert not list(cache.glob("*/partial.json")) and not list(cache.glob("*/chunks"))  # nothing half-built


def test_nan_embeddings_fail_with_one_line_and_keep_earlier_chunks(tiny_checkpoint, manifest, monkeypatch):
    healthy = {"build_model": enc.build_model, "embed_dataset": enc.embed_dataset}
    instrument_encoding(monkeypatch.setattr, chunk_size=4, nan_after=4)
    with pytest.raises(EmbeddingError) as err:
        embed(manifest, tiny_checkpoint, batch_size=4)
    message = str(err.value)
    assert "\n" not in message
    assert "image" in message and "items 4-7" in message and "NaN" in message
    cache = Path(os.environ["GAPDIAG_CACHE_DIR"])
    kept = chunk_files(cache, "image")
    assert [p.name for p in kept] == ["image.0-4.npy"]

    # A healthy model then resumes from the kept chunk and encodes only the rest.
    for name, original in healthy.items():
        monkeypatch.setattr(enc, name, original)
    counts = instrument_encoding(monkeypatch.setattr, chunk_size=4)
    es = embed(manifest, tiny_checkpoint, batch_size=4)
    assert counts["image"] == 4
    assert np.isfinite(np.asarray(es.vectors["image"])).all()


# ---------------------------------------------------------------------------------- interrupts and failures


def test_ctrl_c_prints_the_resume_message_exits_130_and_keeps_committed_chunks(tiny_checkpoint, manifest,
                                                                               monkeypatch, capsys, request):
    from cli_helpers import gapdiag

    # An interactive shell's process: SIGINT not ignored. A process started with it ignored keeps ignoring it, by
    # design (cli._interrupt_as); a suite started as a background job (`… &` from a shell without job control)
    # is such a process, and every worker with it.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous))
    counts = instrument_encoding(monkeypatch.setattr, chunk_size=4)
    build = enc.build_model

    def build_then_interrupt(*args, **kwargs):
        loaded = build(*args, **kwargs)
        encode_image = loaded.model.encode_image

        def encode(x, *a, **k):
            if counts["image"] >= 4:  # one chunk committed: now the user presses Ctrl-C
                os.kill(os.getpid(), signal.SIGINT)
            return encode_image(x, *a, **k)

        loaded.model.encode_image = encode
        return loaded

    monkeypatch.setattr(enc, "build_model", build_then_interrupt)
    code, out, err = gapdiag(capsys, "embed", "-d", manifest, "-m", tiny_checkpoint, "--device", "cpu",
                             "--batch-size", "4", "--quiet")
    assert code == 130
    assert err.strip() == "interrupted: work committed so far is kept in the cache; run again to resume"
    cache = EmbeddingCache(os.environ["GAPDIAG_CACHE_DIR"])
    assert [p.name for p in chunk_files(cache.root, "image")] == ["image.0-4.npy"]
    (row,) = cache.ls()
    assert row["complete"] is False and row["why"].startswith("stopped: interrupted; 1 chunks committed")


def test_a_model_that_cannot_be_loaded_leaves_no_cache_entry(manifest, monkeypatch, tmp_path):
    from gapdiag.errors import ModelError

    def offline(*args, **kwargs):
        raise ModelError("cannot download ViT-B-32 weights: no network", hint="pass a local checkpoint")

    monkeypatch.setattr(enc, "build_model", offline)
    with pytest.raises(ModelError, match="no network"):
        embed(manifest, "ViT-B-32", random_init=True)
    cache = EmbeddingCache(os.environ["GAPDIAG_CACHE_DIR"])
    assert cache.ls() == []
    assert not [p for p in cache.root.iterdir() if p.is_dir() and p.name not in ("fingerprints", "model_configs")]


def resolve_model(model, pretrained=None):
    """:func:`gapdiag.models.resolving.resolve_model` under this test's cache root (what the api hands it)."""
    return resolving.resolve_model(model, pretrained, cache_root=Settings.build().cache_root)
