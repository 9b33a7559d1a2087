"""Issue #25, run 10: what the survivors of the fresh samples (seeds 36 and 37) showed no test asserted.

Each test fails with its survivor applied and passes without (docs/reliability.md, "Run 10").
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from gapdiag.metrics import compute_all, cross
from gapdiag.metrics.bounds import keep_in_bounds, rounding_slack
from gapdiag.metrics.intrinsic import twonn_from_distances
from gapdiag.vectors import EmbeddingSet


def test_a_value_below_its_lower_bound_is_the_bound_within_the_slack_and_skipped_beyond():
    """The bounds rule on the lower side, as the upper side is tested: exactly the rounding slack below the bound
    is the bound, further below is skipped as a bug (never clamped). Survivors: ``lo - value <= slack`` → ``<``
    (the exact edge skipped) and → ``lo + value <= slack`` (every value below a bound of 0 or −1 clamped)."""
    slack = rounding_slack(512)
    values = {"isoscore/image": -slack, "modality_gap/image-text": -0.5, "cos_tp/image-text": -1.5}
    skipped: dict[str, str] = {}
    keep_in_bounds(values, skipped, 512)
    assert values == {"isoscore/image": 0.0}
    assert "-0.5" in skipped["modality_gap/image-text"] and "bug" in skipped["modality_gap/image-text"]
    assert "-1.5" in skipped["cos_tp/image-text"] and "[-1.0, 1.0]" in skipped["cos_tp/image-text"]


def test_the_best_true_item_keeps_the_lowest_index_among_exact_ties_whatever_the_pair_batches(monkeypatch):
    """Three identical images (samples 0, 1, 0) and two captions (samples 0, 1), pairs scored one row per batch:
    caption 0's true images 0 and 2 tie, and its best is image 0 (ties to the lower index), so image 1 (another
    sample, the same score, a higher index than 0) does not rank ahead of it: a hit at 1. Caption 1's true image 1
    ties with image 0, a lower index of another sample: a miss. Text-to-image R@1 is therefore 1/2, the
    brute-force order (−score, index). Survivor: in ``_Direction.update_best`` a tie with the best ``g < arg`` →
    ``g > arg`` (image 2, met in a later batch, became the best and image 1 then ranked ahead of it)."""
    monkeypatch.setattr(cross, "_PAIR_BATCH", 1)
    image = np.tile(np.array([[0.6, 0.8, 0.0]], dtype=np.float32), (3, 1))
    text = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)
    es = EmbeddingSet({"image": image, "text": text}, {"image": np.array([0, 1, 0]), "text": np.array([0, 1])}, 2)
    values, _ = compute_all(es, ["recall_at_1"], device="cpu", block_size=2)
    assert values["recall_at_1/text_to_image"] == 0.5


def test_the_cross_pass_with_tiles_of_one_row_gives_the_values_of_larger_tiles():
    """``block_size = 1`` is valid (tiles of one row, column bands of one column): every value of the cross pass is
    that of tiles of 4 rows. Survivor: the bands' width ``max(1, block_size // 2)`` → ``max(0, …)`` (bands of no
    column: an error)."""
    rng = np.random.default_rng(5)
    es = EmbeddingSet({"image": rng.normal(size=(20, 4)).astype(np.float32),
                       "text": rng.normal(size=(20, 4)).astype(np.float32)},
                      {"image": np.arange(20), "text": np.arange(20)}, 20)
    names = ["recall_at_1", "recall_at_5", "uniformity_cross", "hubness_skewness"]
    one, _ = compute_all(es, names, device="cpu", block_size=1)
    four, _ = compute_all(es, names, device="cpu", block_size=4)
    assert one.keys() == four.keys()
    for name in one:
        assert one[name] == pytest.approx(four[name], rel=1e-6, abs=1e-9), name


def test_twonn_from_the_distances_of_two_points_is_the_mle_and_of_one_point_nan():
    """``twonn_from_distances``: ``(N − 1)/Σ log(r₂/r₁)``, NaN with fewer than 2 points (its docstring); 2 points
    are enough. Survivor: the minimum ``mu.size >= 2`` → ``>= 3``."""
    assert twonn_from_distances([1.0, 1.0], [2.0, 4.0]) == pytest.approx(1.0 / math.log(8.0), rel=1e-12)
    assert math.isnan(twonn_from_distances([1.0], [2.0]))
    assert math.isnan(twonn_from_distances([0.0, 1.0], [1.0, 2.0]))  # r₁ = 0 is dropped: one point left


def test_the_torch_within_pass_of_fewer_than_two_rows_is_minus_infinity():
    """``within_pass_torch`` returns -inf when there are fewer than two rows (its docstring, as the numpy pass):
    no pair, an empty sum. Survivor: the empty combination ``-math.inf`` → ``~math.inf`` (a TypeError)."""
    pytest.importorskip("torch")
    from gapdiag.metrics.blocked import within_pass
    from gapdiag.metrics.torch_passes import within_pass_torch

    for n in (0, 1):
        z = np.ones((n, 4), dtype=np.float32) / 2.0
        assert within_pass_torch(z, device="cpu") == within_pass(z) == -math.inf


def test_a_comparison_row_is_an_immutable_value():
    """``compare_reports`` returns rows that are values: a row cannot be changed in place after the comparison
    (the Markdown, JSON and terminal tables all read the same rows). Survivor: ``@dataclass(frozen=True)`` →
    ``frozen=False``."""
    import dataclasses

    from test_check import BASE, make_report

    from gapdiag.check import compare_reports

    comparison = compare_reports([make_report(BASE), make_report({**BASE, "modality_gap/image-text": 0.9})])
    row = comparison.rows[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.metric = "something else"  # type: ignore[misc]


def test_cache_files_that_hold_pickled_objects_are_refused_not_unpickled(tmp_path):
    """A cache ``.npz`` is read with ``allow_pickle=False``: an object array (a pickle: code that runs when it is
    loaded) is a one-line cache error naming the file, never unpickled. Survivor: ``allow_pickle=False`` →
    ``True`` (the object array loaded)."""
    from gapdiag.cache.files import load_npz
    from gapdiag.errors import CacheError

    path = tmp_path / "attributes.npz"
    np.savez(path, color=np.array([{"not": "numbers"}], dtype=object))
    with pytest.raises(CacheError, match="attributes.npz"):
        load_npz(path, "abcd")


def _entry_with_meta(tmp_path, edit):  # type: ignore[no-untyped-def]
    """A complete cache entry whose ``meta.json`` is edited by ``edit`` and then checksummed again (as a tool that
    rewrites it would), so that only the edit is wrong."""
    import json

    from test_cache import build_entry

    from gapdiag.cache import EmbeddingCache
    from gapdiag.cache.files import meta_checksum

    cache = EmbeddingCache(tmp_path / "c")
    build_entry(cache, "e")
    path = cache.path("e") / "meta.json"
    meta = json.loads(path.read_text())
    edit(meta)
    meta.pop("meta_checksum")
    meta["meta_checksum"] = meta_checksum(meta)
    path.write_text(json.dumps(meta))
    return cache


def test_verify_names_a_meta_json_without_modalities_whose_checksum_holds(tmp_path):
    """``cache verify`` of an entry whose ``meta.json`` lacks ``modalities`` (its own checksum recomputed, so only
    the content is wrong) reports that field for that entry, and goes on: no traceback. Survivor: ``except
    (KeyError, TypeError)`` → ``except (<never raised>, TypeError)`` (the KeyError escaped)."""
    cache = _entry_with_meta(tmp_path, lambda meta: meta.pop("modalities"))
    (check,) = cache.verify()
    assert not check["ok"]
    assert check["problems"] == [{"file": "meta.json", "reason": "field 'modalities' missing or malformed"}]


def test_a_file_checksum_mismatch_shows_both_digests_to_the_same_number_of_digits(tmp_path):
    """A damaged file of a complete entry: ``cache verify`` shows the recorded and the found checksum as
    ``sha256:`` plus 12 hex digits each (docs/cache.md, as for ``meta.json`` itself). Survivor: the recorded
    one cut at ``[: 20]`` (13 digits) instead of ``[:19]``."""
    import re

    from test_cache import build_entry

    from gapdiag.cache import EmbeddingCache

    cache = EmbeddingCache(tmp_path / "c")
    build_entry(cache, "e")
    image = cache.path("e") / "image.npy"
    data = bytearray(image.read_bytes())
    data[-1] ^= 0xFF  # the last byte of the last vector: still a loadable array, with other bytes
    image.write_bytes(bytes(data))
    (check,) = cache.verify()
    (reason,) = [p["reason"] for p in check["problems"] if p["file"] == "image.npy"]
    shown = re.search(r"checksum mismatch \(meta.json has (\S+)…, file has (\S+)…\)", reason)
    assert shown is not None, reason
    assert all(re.fullmatch(r"sha256:[0-9a-f]{12}", digest) for digest in shown.groups()), reason
