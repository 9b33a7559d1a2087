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
from test_cache import COUNTS, META, build_entry, expected

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


@pytest.mark.parametrize("chunk_size", [1, 23, 24])
def test_an_entry_written_in_chunks_of_one_item_or_of_everything_reads_back_the_same(tmp_path, chunk_size):
    """The smallest chunk the writer accepts is one item, the largest any; the entry reads back the vectors
    whatever the chunking (23 = the larger modality's count; 24 leaves every chunk short)."""
    cache = EmbeddingCache(tmp_path / "c")
    build_entry(cache, "k", chunk_size=chunk_size)
    got = cache.get("k")
    for m in COUNTS:
        np.testing.assert_array_equal(got.vectors[m], expected(m))
    with cache.writer("k2", META, chunk_size=chunk_size) as w:
        assert w.chunk_ranges("image", 0) == []  # a modality of no items has no chunks (not an error)
