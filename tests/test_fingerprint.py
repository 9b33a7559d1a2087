"""Dataset fingerprints follow content, not location: a fresh clone or CI checkout hits the same cache entry."""

from __future__ import annotations

import os
import shutil

from gapdiag import fsutil
from gapdiag.data import load_dataset
from tests.data_fixtures import digits_manifest


def read(path, tmp_path):
    """``path`` read with its fingerprint memoised under ``tmp_path/cache`` (the folder the api hands down)."""
    return load_dataset(path, memo_dir=tmp_path / "cache" / "fingerprints")


def test_a_copy_elsewhere_with_new_mtimes_has_the_same_fingerprint(tmp_path, monkeypatch):
    monkeypatch.setenv("GAPDIAG_CACHE_DIR", str(tmp_path / "cache"))
    manifest, _ = digits_manifest(tmp_path / "a", n=6)
    copy = shutil.copytree(tmp_path / "a", tmp_path / "elsewhere" / "b")
    for f in (copy / "images").iterdir():
        os.utime(f, ns=(1_000_000_000, 1_000_000_000))  # a checkout gives every file a new mtime
    assert read(manifest, tmp_path).fingerprint == read(copy / "manifest.csv", tmp_path).fingerprint


def test_changed_image_content_changes_the_fingerprint(tmp_path, monkeypatch):
    monkeypatch.setenv("GAPDIAG_CACHE_DIR", str(tmp_path / "cache"))
    manifest, _ = digits_manifest(tmp_path / "a", n=6)
    before = read(manifest, tmp_path).fingerprint
    image = tmp_path / "a" / "images" / "digit_1.png"
    shutil.copyfile(tmp_path / "a" / "images" / "digit_2.png", image)  # same size class, different pixels
    assert read(manifest, tmp_path).fingerprint != before


def test_the_memo_is_used_when_nothing_changed(tmp_path, monkeypatch):
    monkeypatch.setenv("GAPDIAG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(fsutil, "RACY_SECONDS", 0)  # the files were written just now: memoise anyway
    manifest, _ = digits_manifest(tmp_path / "a", n=6)
    first = read(manifest, tmp_path).fingerprint
    fsutil.forget_digests()  # only the on-disk fingerprint memo may answer

    def no_hashing(path, **kwargs):
        raise AssertionError(f"re-hashed {path} although nothing changed")

    monkeypatch.setattr(fsutil, "hash_file", no_hashing)
    assert read(manifest, tmp_path).fingerprint == first


def _restore(path, st):
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_same_size_image_replaced_with_its_mtime_restored_is_not_a_stale_hit(tmp_path, monkeypatch):
    # The memo is written (files count as settled at once) and keyed by size and mtime only on old versions:
    # there, the replaced image below was a stale hit. The new file has another inode and ctime.
    monkeypatch.setenv("GAPDIAG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(fsutil, "RACY_SECONDS", 0)
    manifest, _ = digits_manifest(tmp_path / "a", n=6)
    before = read(manifest, tmp_path).fingerprint
    assert list((tmp_path / "cache" / "fingerprints").iterdir())  # the memo exists and would answer
    image = tmp_path / "a" / "images" / "digit_1.png"
    st = image.stat()
    replacement = image.with_name("new.png")
    replacement.write_bytes(bytes(b ^ 0xFF for b in image.read_bytes()))  # same size, other bytes
    os.replace(replacement, image)
    _restore(image, st)
    assert (image.stat().st_size, image.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert read(manifest, tmp_path).fingerprint != before


def test_an_image_rewritten_in_place_right_after_fingerprinting_is_not_a_stale_hit(tmp_path, monkeypatch):
    # Same inode, same size, mtime restored, and possibly the same ctime tick: only the racy rule (a file changed
    # less than RACY_SECONDS before hashing is not memoised) tells this rewrite apart.
    monkeypatch.setenv("GAPDIAG_CACHE_DIR", str(tmp_path / "cache"))
    manifest, _ = digits_manifest(tmp_path / "a", n=6)
    before = read(manifest, tmp_path).fingerprint
    image = tmp_path / "a" / "images" / "digit_1.png"
    st = image.stat()
    data = image.read_bytes()
    with open(image, "r+b") as f:
        f.write(bytes(b ^ 0xFF for b in data))
    _restore(image, st)
    assert (image.stat().st_ino, image.stat().st_mtime_ns) == (st.st_ino, st.st_mtime_ns)
    assert read(manifest, tmp_path).fingerprint != before


# ------------------------------------- issue #24: the cache key changes wherever the returned data changes


def test_every_field_a_reader_returns_is_in_the_fingerprint(tmp_path, monkeypatch):
    """A reader that returns other captions, alignment, labels, class names, templates or attributes from the same
    files gets another fingerprint (so another cache key): the fingerprint hashes what is returned, not only the
    files. This is why the readers of issue #24 (which return more captions, other labels) need no version bump."""
    import numpy as np

    from gapdiag.data.base import ImageTextItems, image_text_dataset

    monkeypatch.setenv("GAPDIAG_CACHE_DIR", str(tmp_path / "cache"))
    _, _ = digits_manifest(tmp_path, n=2)
    images = sorted((tmp_path / "images").iterdir())

    def fingerprint(captions=(("a", "b"), ("c",)), labels=(0, 1), names=("zero", "one"), templates=("a {}.",),
                    attributes=("red", "blue")):
        items = ImageTextItems()
        for image, caps in zip(images, captions):
            items.add(image, image.name, [(c, image.name) for c in caps])
        return image_text_dataset(name="d", source="d", format="manifest", items=items, files=images,
                                  labels=np.asarray(labels, np.int64), class_names=list(names),
                                  templates=templates, attributes={"color": list(attributes)}).fingerprint

    base = fingerprint()
    assert fingerprint() == base
    changed = [fingerprint(captions=(("a",), ("c",))),               # a caption dropped (caption,caption_1)
               fingerprint(captions=(("a",), ("b", "c"))),           # a caption moved to another sample
               fingerprint(captions=(("a", "b"), ("c", "[c]"))),     # a caption added
               fingerprint(labels=(1, 1)), fingerprint(names=("0", "1")), fingerprint(templates=("{}",)),
               fingerprint(attributes=("red", "red"))]
    assert len({base, *changed}) == len(changed) + 1


def test_the_image_decode_rule_is_in_the_cache_key(tmp_path, monkeypatch):
    """Decoding changed (16-bit and float images scaled, EXIF orientation applied): vectors of images decoded the
    old way must not be reused, so the decode rule's version is part of the key of every dataset with images."""
    from gapdiag.api import bundled_checkpoint
    from gapdiag.data.images import IMAGE_DECODE_VERSION
    from gapdiag.embedding import encode
    from gapdiag.models.resolving import resolve_model
    from gapdiag.settings import Settings

    monkeypatch.setenv("GAPDIAG_CACHE_DIR", str(tmp_path / "cache"))
    manifest, _ = digits_manifest(tmp_path, n=3)
    dataset = read(manifest, tmp_path)
    spec = resolve_model(bundled_checkpoint(), None, cache_root=Settings.build().cache_root)
    key = encode.embedding_key(dataset, spec, precision="fp32", dtype="float32")
    assert IMAGE_DECODE_VERSION >= 2
    monkeypatch.setattr(encode, "IMAGE_DECODE_VERSION", IMAGE_DECODE_VERSION - 1)
    assert encode.embedding_key(dataset, spec, precision="fp32", dtype="float32") != key
    assert encode.embedding_key(dataset, spec, precision="fp32", dtype="float32", preprocess="device") != key


def test_the_readers_keep_no_memo_of_their_own(tmp_path, monkeypatch):
    """The fingerprint memo's folder is handed to the readers as a value (issue #26): without one they hash and
    remember nothing; they never look up a cache root (an environment variable, a context) of their own."""
    from gapdiag.cache import file_sha256

    monkeypatch.setenv("GAPDIAG_CACHE_DIR", str(tmp_path / "env-cache"))
    monkeypatch.setattr(fsutil, "RACY_SECONDS", 0)
    manifest, _ = digits_manifest(tmp_path / "a", n=6)
    assert load_dataset(manifest).fingerprint == read(manifest, tmp_path).fingerprint
    file_sha256(manifest)  # the checkpoint hash: no cache root given, so no hashes.json anywhere
    assert not (tmp_path / "env-cache").exists()
    assert list((tmp_path / "cache" / "fingerprints").iterdir())  # where the memo was handed, it is kept
