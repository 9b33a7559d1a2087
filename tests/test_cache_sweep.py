"""Issue #25's sweep of the cache: the checksum pass shows its progress from the size docs/cache.md states,
counted to the entry's exact size, and the writer's bounds let their smallest valid values through (progress
counters, display bounds and checks moved by one survived fresh mutation samples elsewhere)."""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from test_cache import COUNTS, LABELS, META, SAMPLE_INDEX, build_entry, expected, fake_vectors

from gapdiag.cache import EmbeddingCache, integrity

DOCS = Path(__file__).resolve().parents[1] / "docs" / "cache.md"


class _Bar:
    def __init__(self, enabled: bool) -> None:
        self.enabled, self.total, self.done = enabled, None, 0.0

    def add_task(self, description: str, *, total: float) -> int:
        self.total = total
        return 0

    def advance(self, task: int, amount: float) -> None:
        self.done += amount


@pytest.fixture
def bars(monkeypatch):
    shown: list[_Bar] = []

    @contextmanager
    def recording_bar(enabled: bool = True, *, unit: str = "it"):
        assert unit == "MiB"
        shown.append(_Bar(enabled))
        yield shown[-1]

    monkeypatch.setattr(integrity, "progress_bar", recording_bar)
    return shown


def test_the_progress_threshold_is_the_documented_size():
    text = re.sub(r"\s+", " ", DOCS.read_text(encoding="utf-8"))
    mib = int(re.search(r"Entries of (\d+) MiB or more show a `verify cache entry <key>` progress bar", text).group(1))
    assert integrity.VERIFY_PROGRESS_BYTES == mib << 20


def test_an_entry_of_the_threshold_size_shows_its_pass_counted_to_every_byte(tmp_path, monkeypatch, bars):
    """``gapdiag cache verify`` (every byte read): the bar is shown from the threshold on, never below it, and
    counts each file of the entry once, to the entry's size."""
    cache = EmbeddingCache(tmp_path / "c")
    build_entry(cache, "k")
    entry = cache.path("k")
    meta = json.loads((entry / "meta.json").read_text())
    size = sum((entry / name).stat().st_size for name in integrity.entry_files(meta))
    for threshold, shown in ((size + 1, False), (size, True)):
        monkeypatch.setattr(integrity, "VERIFY_PROGRESS_BYTES", threshold)
        bars.clear()
        (result,) = cache.verify("k", progress=True)
        assert result["ok"]
        assert [bar.enabled for bar in bars] == [shown], threshold
        assert bars[0].total == pytest.approx(size / 2**20)
        assert bars[0].done == pytest.approx(size / 2**20)  # every byte read once, in MiB


@pytest.mark.parametrize("chunk_size", [1, 3, 5, 7, 23, 24])
def test_an_entry_written_in_chunks_of_one_item_or_of_everything_reads_back_the_same(tmp_path, chunk_size):
    """The smallest chunk the writer accepts is one item, the largest any; the entry reads back the vectors
    whatever the chunking (23 = the larger modality's count; 24 leaves every chunk short; 3, 5, 7: chunks that
    start at offsets other than powers of two, where ``start + i`` and ``start ^ i`` differ), and verifies."""
    cache = EmbeddingCache(tmp_path / "c")
    build_entry(cache, "k", chunk_size=chunk_size)
    got = cache.get("k")
    for m in COUNTS:
        np.testing.assert_array_equal(got.vectors[m], expected(m))
    assert all(result["ok"] for result in cache.verify("k"))
    with cache.writer("k2", META, chunk_size=chunk_size) as w:
        assert w.chunk_ranges("image", 0) == []  # a modality of no items has no chunks (not an error)
        n = COUNTS["text"]
        assert w.chunk_ranges("text", n) == [(s, min(s + chunk_size, n)) for s in range(0, n, chunk_size)]


def test_a_full_disk_while_writing_meta_json_is_a_one_line_cache_error_and_keeps_the_chunks(tmp_path, monkeypatch):
    """finalize() writes meta.json last; a full disk there must say so (not an OSError traceback), name the file,
    and keep every chunk already written, so that the next run only finishes the entry."""
    import errno

    from gapdiag import fsutil
    from gapdiag.errors import CacheError

    cache = EmbeddingCache(tmp_path / "c")
    real = fsutil.atomic_write_json

    def full_at_meta(path, obj, *args, **kwargs):
        if Path(path).name == "meta.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, obj, *args, **kwargs)

    monkeypatch.setattr(fsutil, "atomic_write_json", full_at_meta)
    with pytest.raises(CacheError, match=r"disk full while writing .*meta\.json") as info:
        build_entry(cache, "k")
    assert "\n" not in info.value.one_line()
    chunks = sorted(p.name for p in (cache.path("k") / "chunks").glob("*.npy"))
    assert len(chunks) == 3 + 6  # 10 images and 23 captions in chunks of 4: all kept
    monkeypatch.setattr(fsutil, "atomic_write_json", real)
    written = []
    got = build_entry(cache, "k", on_chunk=lambda *chunk: written.append(chunk))
    assert written == []  # nothing computed again
    for m in COUNTS:
        np.testing.assert_array_equal(got.vectors[m], expected(m))


def test_finalize_without_a_sample_count_counts_the_largest_sample_id_plus_one(tmp_path):
    """A meta with no ``dataset.n_samples`` takes the number of samples from the sample ids: largest id + 1
    (ids 0..9 are 10 samples; every other test's meta states the count)."""
    meta = {**META, "dataset": {k: v for k, v in META["dataset"].items() if k != "n_samples"}}
    cache = EmbeddingCache(tmp_path / "c")
    got = build_entry(cache, "k", meta=meta)
    assert got.n_samples == 10
    np.testing.assert_array_equal(got.labels, LABELS)


def test_a_chunk_with_nan_names_its_first_bad_item_whatever_the_chunk_size(tmp_path):
    """Chunks of 3 items start at rows 3, 6, ...; the error names the first bad item of the whole modality."""
    from gapdiag.errors import EmbeddingError

    cache = EmbeddingCache(tmp_path / "c")
    with cache.writer("k", META, chunk_size=3) as w:
        w.chunk_ranges("image", COUNTS["image"])
        bad = fake_vectors("image", 3, 6)
        bad[1:, 2] = np.nan
        with pytest.raises(EmbeddingError, match=r"items 3-5 \(first at item 4\)"):
            w.write_chunk("image", 3, bad)


@pytest.mark.parametrize("shape", [(6,), (0, 6)])
def test_a_chunk_that_is_not_a_non_empty_matrix_is_refused_naming_its_shape(tmp_path, shape):
    cache = EmbeddingCache(tmp_path / "c")
    with cache.writer("k", META, chunk_size=4) as w:
        w.chunk_ranges("image", COUNTS["image"])
        with pytest.raises(ValueError, match=re.escape(f"non-empty 2-D array, got shape {shape}")):
            w.write_chunk("image", 0, np.zeros(shape, np.float32))


def test_a_range_that_starts_at_the_end_is_not_a_chunk_whatever_the_count(tmp_path):
    """``[n, n)`` is no chunk of n items, for counts past CPython's small-int cache too (an identity test of
    ``start is n`` held only below 257)."""
    cache = EmbeddingCache(tmp_path / "c")
    with cache.writer("k", META, chunk_size=4) as w:
        for n in (10, 1000):
            w.chunk_ranges("text", n)
            with pytest.raises(ValueError, match=f"items {n}-{n} of 'text' are not one of its chunk_ranges"):
                w.is_done("text", int(str(n)), n)  # an int built at run time, as a caller's would be


@pytest.mark.parametrize("dim", [5, 7])
def test_a_chunk_of_another_dimension_names_its_items_and_both_dimensions(tmp_path, dim):
    """Chunks of one modality must share a dimension (a model switched half-way): the error names the chunk's
    items, its dimension and the earlier chunks' (4 rows of dimension 5 or 7 after chunks of 6)."""
    cache = EmbeddingCache(tmp_path / "c")
    with cache.writer("k", META, chunk_size=4) as w:
        w.chunk_ranges("image", COUNTS["image"])
        w.write_chunk("image", 0, fake_vectors("image", 0, 4))
        with pytest.raises(ValueError, match=f"items 4-7 have dimension {dim}, earlier chunks have 6"):
            w.write_chunk("image", 4, np.ones((4, dim), np.float32))


@pytest.mark.parametrize(("change", "message"), [
    ({"sample_index": {**SAMPLE_INDEX, "image": np.r_[np.arange(9), 10]}}, "values in [0, 10)"),  # id = n_samples
    ({"sample_index": {**SAMPLE_INDEX, "image": np.r_[-1, np.arange(1, 10)]}}, "values in [0, 10)"),
    ({"labels": LABELS[:9]}, "labels must have shape (10,), got (9,)"),
    ({"labels": np.r_[LABELS, 0]}, "labels must have shape (10,), got (11,)"),
    ({"class_embeddings": np.ones(6, np.float32)}, "class_embeddings must be a 2-D"),
])
def test_a_bad_finalize_is_refused_before_anything_is_written_and_the_entry_still_finishes(tmp_path, change, message):
    """finalize() validates its sample ids, labels and class embeddings before the first write: a bad call is a
    ValueError naming what is wrong, and the chunks stay, so a correct call finishes the entry."""
    cache = EmbeddingCache(tmp_path / "c")
    with cache.writer("k", META, chunk_size=4) as w:
        for m, n in COUNTS.items():
            for s, e in w.chunk_ranges(m, n):
                w.write_chunk(m, s, fake_vectors(m, s, e))
        with pytest.raises(ValueError, match=re.escape(message)):
            w.finalize(**{"sample_index": SAMPLE_INDEX, "labels": LABELS, **change})
        got = w.finalize(sample_index=SAMPLE_INDEX, labels=LABELS)
    for m in COUNTS:
        np.testing.assert_array_equal(got.vectors[m], expected(m))


def test_a_cache_folder_that_cannot_be_made_is_a_one_line_cache_error_naming_it(tmp_path):
    """``make_dir`` under a path that is a file (or on a read-only disk) says so in one line, not an OSError
    traceback."""
    from gapdiag.cache import files
    from gapdiag.errors import CacheError

    (tmp_path / "c").write_text("not a folder")
    with pytest.raises(CacheError, match=re.escape(str(tmp_path / "c" / "entry"))) as info:
        files.make_dir(tmp_path / "c" / "entry")
    assert "\n" not in info.value.one_line()


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4)])
def test_an_array_that_must_be_a_matrix_and_is_not_is_a_corrupt_file(tmp_path, shape):
    """``load_checked(shape=None)`` asks for any 2-D array: a 1-D or 3-D file is named as corrupt with its shape."""
    from gapdiag.cache import files
    from gapdiag.errors import CacheError

    path = tmp_path / "image.npy"
    np.save(path, np.zeros(shape, np.float32))
    with pytest.raises(CacheError, match=re.escape(f"expected a 2-D array, found shape {shape}")):
        files.load_checked(path, "k", shape=None, dtype=None, mmap=False)
    ok = tmp_path / "ok.npy"
    np.save(ok, np.zeros((2, 3), np.float32))
    assert files.load_checked(ok, "k", shape=None, dtype=None, mmap=False).shape == (2, 3)


@pytest.mark.parametrize("name", ["labels", "class_embeddings", "a/b", "../x", "", "two words"])
def test_a_modality_the_cache_cannot_name_a_file_after_is_refused(name):
    """A modality names files of the entry (``<modality>.npy``): names with a path separator or a space, and the
    names of the entry's own arrays, are refused; ordinary names pass."""
    from gapdiag.cache.keys import check_modality_name

    with pytest.raises(ValueError, match="invalid modality name"):
        check_modality_name(name)
    for ok in ("image", "text", "caption_2", "audio-1"):
        check_modality_name(ok)
