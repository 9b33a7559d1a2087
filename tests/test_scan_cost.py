"""Issue #25: what the compiled strip scan costs, not only what it returns.

The scan (gapdiag.metrics.strip_scan._scan) promises one branch-free pass over a strip and a closer look only at
the entries it flags: a near-tie of a row or a column, or a score at one of the running top-K thresholds. A scan
that flags more, or walks the flag words of a row it flagged nothing in, gives the same values slower, so no
value test sees it (docs/reliability.md, run 6's survivor #9 and run 2's #5 and #6). Here the scan's Python body
runs on a strip whose flagged entries are known, with its reads counted, against the compiled scan.
"""

from __future__ import annotations

from collections import Counter
from typing import ClassVar

import numpy as np
import pytest

from gapdiag.metrics import strip_scan
from gapdiag.metrics.running_topk import RunningTopK
from gapdiag.metrics.strip_scan import QueryState, ScanOutput

N_ROWS, N_COLS = 5, 21  # 21 columns: three flag words, the last one partly used


class _CountedReads(np.ndarray):
    """An array that counts the single-element reads made of it, by dtype (``reads`` is shared by its views)."""

    reads: ClassVar[Counter] = Counter()

    def __getitem__(self, key):  # type: ignore[no-untyped-def]
        if isinstance(key, (int, np.integer)) and self.ndim == 1:
            _CountedReads.reads[self.dtype.str] += 1
        return super().__getitem__(key)


class _RecordingNumpy:
    """numpy for the scan's Python body, whose own buffers (``np.zeros``) count their reads."""

    def __getattr__(self, name):  # type: ignore[no-untyped-def]
        return getattr(np, name)

    def zeros(self, shape, dtype=float):  # type: ignore[no-untyped-def]
        return np.zeros(shape, dtype).view(_CountedReads)


#: The top-K thresholds: 0.9 for every row; 0.95 for columns 0-9 and 0.85 for 10-20 (so that a score can be at
#: one side's threshold only).
ROW_THRESHOLD = np.full(N_ROWS, 0.9, np.float32)
COLUMN_THRESHOLD = np.where(np.arange(N_COLS) < 10, 0.95, 0.85).astype(np.float32)


def _state(n: int, m: int, *, lo: float, hi: float, threshold: np.ndarray) -> QueryState:
    top = RunningTopK(n, 1)
    return QueryState(hi=np.full(n, hi, np.float32), lo=np.full(n, lo, np.float32), top_scores=top.scores,
                      top_index=top.index, gallery=np.arange(m), threshold=threshold.copy())


def _scan(scan, s, same):  # type: ignore[no-untyped-def]
    """Run ``scan`` on strip ``s`` (``same``: its same-sample mask, or None): rows' near-tie band [0.4, 0.6],
    columns' [0.7, 0.8]."""
    rows = _state(N_ROWS, N_COLS, lo=0.4, hi=0.6, threshold=ROW_THRESHOLD)
    cols = _state(N_COLS, N_ROWS, lo=0.7, hi=0.8, threshold=COLUMN_THRESHOLD)
    out = ScanOutput(np.zeros(N_ROWS, np.int64), np.zeros(N_COLS, np.int32), np.empty(s.size, np.intp),
                     np.empty(s.size, np.intp))
    mask = strip_scan._NO_MASK if same is None else same.view(np.uint8)
    found = scan(s, mask, same is not None, rows, cols, out)
    return [out.ahead_rows.tolist(), out.ahead_cols.tolist(), out.near_i[:found].tolist(),
            out.near_j[:found].tolist(), rows.top_index.tolist(), cols.top_index.tolist()]


_CASES = [
    {},                                             # nothing to look at: no row's flag words are read
    {(0, 5): 0.5},                                  # a row's near-tie
    {(3, 20): 0.75},                                # a column's near-tie, in the last, partial word
    {(2, 7): 0.95, (2, 8): 0.5, (4, 0): 0.95},      # top-K candidates and a near-tie sharing a word
    {(1, 9): 0.9, (0, 14): 0.85},                   # on a row's threshold only, on a column's only
    {(4, 3): 0.4, (0, 12): 0.6, (3, 1): 0.7, (2, 19): 0.8},  # on each end of each band
]


@pytest.mark.parametrize("masked", [None, set(), {(0, 5), (3, 20), (2, 8), (2, 7), (1, 9), (4, 3)}], ids=["no-mask", "mask-0", "same"])
@pytest.mark.parametrize("scores", _CASES)
def test_the_scan_looks_closer_only_at_flagged_entries_and_only_in_rows_that_have_one(monkeypatch, scores, masked):
    """Every entry is read once by the counting pass; the per-entry step reads again exactly the flagged ones
    (a near-tie of another sample's item, or a score at a top-K threshold, same-sample ones included), and only a
    row with a flag walks its flag words (3 words of 8 columns), and only a word with a flag its 8 flags."""
    s = np.full((N_ROWS, N_COLS), 0.1, dtype=np.float32)  # below every band and threshold
    for (i, j), v in scores.items():
        s[i, j] = v
    same = None
    if masked is not None:
        same = np.zeros((N_ROWS, N_COLS), dtype=bool)
        for i, j in masked:
            same[i, j] = True
    at_threshold = {(i, j) for (i, j), v in scores.items()
                    if np.float32(v) >= ROW_THRESHOLD[i] or np.float32(v) >= COLUMN_THRESHOLD[j]}
    flagged = at_threshold | {(i, j) for i, j in scores if not (masked and (i, j) in masked)}
    compiled = _scan(strip_scan._scan, s, same)

    monkeypatch.setattr(strip_scan, "np", _RecordingNumpy())
    _CountedReads.reads.clear()
    python = _scan(strip_scan._scan.py_func, s.view(_CountedReads), same)

    assert python == compiled
    rows_with_a_flag = len({i for i, _ in flagged})
    assert _CountedReads.reads["<f4"] == N_ROWS * N_COLS + len(flagged)  # the scores: a pass, then the flagged
    assert _CountedReads.reads["<u8"] == 3 * rows_with_a_flag            # the flag words of flagged rows only
    words_with_a_flag = {(i, j // 8) for i, j in flagged}
    assert _CountedReads.reads["|u1"] == sum(min(8, N_COLS - 8 * w) for _, w in words_with_a_flag)  # their flags
