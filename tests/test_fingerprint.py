"""Dataset fingerprints follow content, not location: a fresh clone or CI checkout hits the same cache entry."""

from __future__ import annotations

import os
import shutil

from gapdiag.data import load_dataset
from tests.data_fixtures import digits_manifest


def test_a_copy_elsewhere_with_new_mtimes_has_the_same_fingerprint(tmp_path, monkeypatch):
    monkeypatch.setenv("GAPDIAG_CACHE_DIR", str(tmp_path / "cache"))
    manifest, _ = digits_manifest(tmp_path / "a", n=6)
    copy = shutil.copytree(tmp_path / "a", tmp_path / "elsewhere" / "b")
    for f in (copy / "images").iterdir():
        os.utime(f, ns=(1_000_000_000, 1_000_000_000))  # a checkout gives every file a new mtime
    assert load_dataset(manifest).fingerprint == load_dataset(copy / "manifest.csv").fingerprint


def test_changed_image_content_changes_the_fingerprint(tmp_path, monkeypatch):
    monkeypatch.setenv("GAPDIAG_CACHE_DIR", str(tmp_path / "cache"))
    manifest, _ = digits_manifest(tmp_path / "a", n=6)
    before = load_dataset(manifest).fingerprint
    image = tmp_path / "a" / "images" / "digit_1.png"
    shutil.copyfile(tmp_path / "a" / "images" / "digit_2.png", image)  # same size class, different pixels
    assert load_dataset(manifest).fingerprint != before


def test_the_memo_is_used_when_nothing_changed(tmp_path, monkeypatch):
    monkeypatch.setenv("GAPDIAG_CACHE_DIR", str(tmp_path / "cache"))
    manifest, _ = digits_manifest(tmp_path / "a", n=6)
    first = load_dataset(manifest).fingerprint
    from gapdiag.data import base

    def no_hashing(path):
        raise AssertionError(f"re-hashed {path} although nothing changed")

    monkeypatch.setattr(base, "_file_digest", no_hashing)
    assert load_dataset(manifest).fingerprint == first
