"""Registry facts against what they describe: the direction of every metric against docs/metrics.md, and
against data whose better state is known (a closed gap against an open one).

``check`` reads ``higher_is_better`` to decide what a regression is: a metric registered the wrong way round
(realistic bug (e) of issue #25: ``modality_separability`` as higher-is-better) would fail a run that improved
and pass one that got worse.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from gapdiag.metrics import REGISTRY, compute_all
from gapdiag.vectors import EmbeddingSet

DOCS = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"
DIRECTIONS = {"higher": True, "lower": False, "—": None}


def _metric_table() -> list[tuple[str, list[str], list[str]]]:
    """``(line, base names, cells)`` of each row of the table at the top of docs/metrics.md."""
    lines = DOCS.read_text(encoding="utf-8").splitlines()
    start = lines.index("| Base name | Qualifier | Range | Better | Quadratic |") + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows.append((line, re.findall(r"`([a-z0-9_]+)`", cells[0]), cells))
    return rows


def _one_per_name(line: str, names: list[str], values: list) -> dict:
    """A row's values by base name: one value for every name of the row, or one each."""
    values = values * len(names) if len(values) == 1 else values
    assert len(values) == len(names), line
    return dict(zip(names, values))


def _documented_directions() -> dict[str, bool | None]:
    """Base name -> direction from the "Better" column of the table at the top of docs/metrics.md."""
    found: dict[str, bool | None] = {}
    for line, names, cells in _metric_table():
        found.update(_one_per_name(line, names, [DIRECTIONS[b.split(" (")[0].strip()] for b in cells[3].split(",")]))
    return found


def test_every_direction_is_the_documented_one():
    documented = _documented_directions()
    assert set(documented) == set(REGISTRY)
    wrong = {b: (info.higher_is_better, documented[b]) for b, info in REGISTRY.items()
             if info.higher_is_better is not documented[b]}
    assert not wrong, f"registry vs docs/metrics.md (higher_is_better): {wrong}"


def _pairs(shift: float) -> EmbeddingSet:
    """Captions near their images; ``shift`` moves the whole text modality (a modality gap), 0 closes it."""
    rng = np.random.default_rng(0)
    n, d = 80, 16
    img = rng.normal(size=(n, d))
    txt = img + 0.3 * rng.normal(size=(n, d)) + shift * np.eye(d)[0]
    ids = np.arange(n)
    return EmbeddingSet({"image": img.astype(np.float32), "text": txt.astype(np.float32)},
                        {"image": ids, "text": ids}, n)


#: Metrics of the gap whose better state is the closed gap (Liang et al. 2022; Grassucci et al. 2026).
GAP_METRICS = ["modality_gap", "cos_tp", "alignment", "modality_separability", "v_measure_modality",
               "gap_w2_squared", "recall_at_1"]


def test_a_closed_gap_scores_better_than_an_open_one_in_the_registered_direction():
    closed, _ = compute_all(_pairs(0.0), GAP_METRICS, device="cpu")
    opened, _ = compute_all(_pairs(4.0), GAP_METRICS, device="cpu")
    assert set(closed) == set(opened) and {n.split("/")[0] for n in closed} == set(GAP_METRICS)
    for name in closed:
        higher = REGISTRY[name.split("/")[0]].higher_is_better
        assert higher is not None, name
        better, worse = (closed[name], opened[name]) if higher else (opened[name], closed[name])
        assert better > worse, (name, "closed", closed[name], "open", opened[name], "higher is better", higher)


@pytest.mark.parametrize("base", sorted(REGISTRY))
def test_every_entry_is_complete(base):
    info = REGISTRY[base]
    lo, hi = info.bounds
    assert info.name == base and info.source and info.description and info.family
    assert lo is None or hi is None or lo < hi


def _top_level_split(text: str) -> list[str]:
    """Split at the commas outside every bracket: ``"[0, 6], [0, 2]"`` -> ``["[0, 6]", "[0, 2]"]`` (a range
    opens with ``[`` or ``(`` and closes with ``]`` or ``)``, so ``(−∞, 0]`` nests like ``[1, min(N, d)]``)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch in "[(") - (ch in "])")
        if ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    return [*parts, text[start:].strip()]


def _documented_end(text: str) -> float | None | str:
    """A documented end as a number (None for ±∞), or the text when it depends on the data (N, d, M)."""
    text = text.strip().replace("−", "-")
    if text in ("-∞", "∞", "+∞"):
        return None
    try:
        return float(text)
    except ValueError:
        return text


def _documented_ranges() -> dict[str, tuple[float | None | str, float | None | str]]:
    """Base name -> (low end, high end) from the "Range" column of the table at the top of docs/metrics.md."""
    found: dict[str, tuple[float | None | str, float | None | str]] = {}
    for line, names, cells in _metric_table():
        ranges = []
        for item in _top_level_split(cells[2]):
            item = item.removeprefix("≈").strip()
            ends = ["-∞", "∞"] if item == "ℝ" else _top_level_split(item[1:-1])
            assert len(ends) == 2, line
            ranges.append((_documented_end(ends[0]), _documented_end(ends[1])))
        found.update(_one_per_name(line, names, ranges))
    return found


def test_every_bound_is_the_documented_one():
    """``bounds`` clamp values within rounding of an end (gapdiag.metrics.bounds) and size ``check``'s default
    tolerance (1 % of the range): each numeric end is the documented one, or None (no end claimed); an end that
    depends on the data (``1/M``, ``min(N, d)``) is not checked here."""
    documented = _documented_ranges()
    assert set(documented) == set(REGISTRY)
    wrong = {}
    for base, info in REGISTRY.items():
        for got, want in zip(info.bounds, documented[base]):
            if isinstance(want, str) or got is None:
                continue
            if want is None or got != want:
                wrong[base] = (info.bounds, documented[base])
    assert not wrong, f"registry bounds vs docs/metrics.md's Range column: {wrong}"
