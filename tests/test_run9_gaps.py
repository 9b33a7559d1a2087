"""Issue #25, run 9: what the survivors of the fresh samples (seeds 34 and 35) showed no test asserted.

Each test fails with its survivor applied and passes without (docs/reliability.md, "Run 9").
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from test_cache import META, build_entry
from test_check import BASE, FAKE, make_report

from gapdiag import check as chk
from gapdiag.cache import CACHE_FORMAT_VERSION, EmbeddingCache, EntryWriter
from gapdiag.check import RuleSet, check_reports
from gapdiag.errors import CacheError, InputError
from gapdiag.metrics import search_index
from gapdiag.metrics.blocked import paired_dot_sum
from gapdiag.metrics.decomposition import gap_decomposition
from gapdiag.metrics.similarity import compare_embeddings
from gapdiag.metrics.strip_scan import QueryState, StripScanner
from gapdiag.vectors import EmbeddingSet


def test_a_gap_of_zero_has_no_dimension_carrying_it():
    """Two modalities with the same centroid (Δ = 0): every dimension's share of ‖Δ‖² is 0 (not 0/0), in the
    model's basis and the PCA one, and no dimension is needed to carry it. Survivor: ``total > 0`` → ``>= 0`` in
    ``contributions`` (NaN shares, and NaN in the report's top dimensions)."""
    x = np.random.default_rng(1).normal(size=(10, 4)).astype(np.float32)
    d = gap_decomposition(x, x.copy())
    assert d["centroid"] == 0.0
    assert d["contributions"] == d["contributions_pca"] == [0.0] * 4
    assert [e["share"] for e in d["top_dims"]] == [0.0] * 4
    assert d["dims_50"] == d["dims_90"] == d["dims_50_pca"] == d["dims_90_pca"] == 0


@pytest.mark.parametrize("first, second", [(("image", "text"), ("image", "audio")), (("image", "audio"), ("image", "text"))])
def test_embeddings_of_different_modalities_are_refused_in_either_order(first, second):
    """``compare_embeddings`` of two sets whose modalities differ is a one-line error naming both, whichever comes
    first. Survivor: ``names != b.modality_names`` → ``>`` (refused in one order only)."""
    rng = np.random.default_rng(2)

    def embeddings(names):
        return EmbeddingSet({m: rng.normal(size=(4, 3)).astype(np.float32) for m in names},
                            {m: np.arange(4) for m in names}, 4)

    with pytest.raises(InputError, match=r"the two embeddings have different modalities .* embed the same data"):
        compare_embeddings(embeddings(first), embeddings(second))


def test_the_strip_scanner_reuses_its_buffers_for_strips_that_fit():
    """The scanner keeps one strip's worth of near-tie buffers and reuses them for every strip that fits (the
    strips of a pass are all the same size but the last); only a larger strip allocates. Survivor: ``size < n``
    → ``size <= n`` (new buffers for every strip of the same size)."""
    def sides(n_rows, n_cols):
        def state(n, m):
            return QueryState(hi=np.full(n, np.inf, np.float32), lo=np.full(n, np.inf, np.float32),
                              top_scores=np.zeros((n, 0), np.float32), top_index=np.zeros((n, 0), np.int64),
                              gallery=np.arange(m), threshold=np.full(n, np.inf, np.float32))
        return state(n_rows, n_cols), state(n_cols, n_rows)

    scanner = StripScanner()
    scanner(np.zeros((4, 6), np.float32), None, *sides(4, 6))
    first = scanner.out_i
    for shape in ((4, 6), (3, 6), (2, 5)):
        scanner(np.zeros(shape, np.float32), None, *sides(*shape))
        assert scanner.out_i is first
    scanner(np.zeros((5, 6), np.float32), None, *sides(5, 6))
    assert scanner.out_i is not first and scanner.out_i.size == 30


def test_pairs_that_are_the_first_d_items_are_gathered_not_read_whole():
    """``paired_dot_sum`` reads the rows in play contiguously only when they are every item; pairs of the first 4
    of 10 items, in 4 dimensions, are gathered (brute force: the sum of their cosines). Survivor: the test for
    "every item" against ``x.shape[0]`` → ``x.shape[-1]`` (the first d items taken as all of them)."""
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(10, 4)), rng.normal(size=(6, 4))
    ix, iy = np.arange(4), np.array([5, 0, 2, 3])
    ux, uy = (v / np.linalg.norm(v, axis=1, keepdims=True) for v in (x, y))
    want = float(np.sum(ux[ix] * uy[iy]))
    for block_size in (3, 16):
        assert paired_dot_sum(x.astype(np.float32), y.astype(np.float32), ix, iy,
                              block_size=block_size) == pytest.approx(want, rel=1e-6)
        assert paired_dot_sum(y.astype(np.float32), x.astype(np.float32), iy, ix,
                              block_size=block_size) == pytest.approx(want, rel=1e-6)


def test_the_torch_index_scores_one_query_at_a_time_when_one_row_fills_its_budget(monkeypatch):
    """The torch index holds at most ``max_scores`` scores at once, and at least one query's row: with a budget of
    5 scores and 10 gallery items each query is its own slice. Survivor: ``max(1, …)`` → ``max(2, …)`` (two
    queries, twice the budget)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    g, q = rng.normal(size=(10, 4)).astype(np.float32), rng.normal(size=(3, 4)).astype(np.float32)
    index = search_index._TorchFlatIndex(g, "cpu")
    index.max_scores = 5
    calls = []
    real_topk = torch.topk
    monkeypatch.setattr(torch, "topk", lambda *a, **kw: calls.append(tuple(a[0].shape)) or real_topk(*a, **kw))
    _, idx = index.search(q, 2)
    assert calls == [(1, 10)] * 3
    np.testing.assert_array_equal(idx, np.argsort(-(q @ g.T), axis=1, kind="stable")[:, :2])


@pytest.mark.parametrize("n_failed", [1, 2, 3, 4])
def test_the_gate_summary_names_up_to_three_failures_and_counts_the_rest(n_failed):
    """``CheckResult.summary``: the first three failed metrics by name, then "and N more" only when there are more
    than three. Survivor: ``len(failed) > 3`` → ``!= 3`` ("and -2 more" after one failure)."""
    worse_values = {"recall_at_1/image_to_text": 0.1, "recall_at_1/text_to_image": 0.1, "modality_gap/image-text": 1.5,
                    "recall_at_5/image_to_text": 0.1}
    failing = dict(list(worse_values.items())[:n_failed])
    registry = {**FAKE, "recall_at_5": FAKE["recall_at_1"]}
    base = {**BASE, "recall_at_5/image_to_text": 0.9}
    result = check_reports(make_report({**base, **failing}), make_report(base), RuleSet(), registry=registry)
    names = ", ".join(list(failing)[:3])
    more = " and 1 more" if n_failed == 4 else ""
    assert result.summary().startswith(f"regression in {names}{more}: ")
    assert f"{n_failed} failed" in result.summary()


def test_the_gate_markdown_names_the_config_its_rules_came_from_only_when_there_was_one():
    """The PR-comment Markdown ends with "Rules from `<config>`." when the rules came from a config file, and
    says nothing of a config when the defaults applied. Survivor: ``if result.config`` → ``if not result.config``."""
    result = check_reports(make_report(BASE), make_report(BASE), RuleSet(), registry=FAKE)
    assert result.config is None and "Rules from" not in chk.to_markdown(result)
    from_config = dataclasses.replace(result, config="ci/gapdiag.toml")
    assert chk.to_markdown(from_config).endswith("\n\nRules from `ci/gapdiag.toml`.\n")


def test_an_entry_of_a_newer_cache_format_says_a_newer_gapdiag_wrote_it(tmp_path):
    """An entry whose format is newer than this gapdiag reads was written by a newer gapdiag (an upgrade reads it;
    removing it loses it), an older one by an older gapdiag: the message says which. Survivor: ``version <
    CACHE_FORMAT_VERSION`` → ``!=`` (every other version "older")."""
    cache = EmbeddingCache(tmp_path / "c")
    build_entry(cache, "e")
    meta_path = cache.path("e") / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta.pop("meta_checksum")
    meta["cache_format_version"] = CACHE_FORMAT_VERSION + 1
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CacheError, match=rf"written by a newer gapdiag \(cache format {CACHE_FORMAT_VERSION + 1};"):
        cache.get("e")


def test_an_entry_writer_refuses_work_outside_its_with_block(tmp_path):
    """An :class:`EntryWriter` works only inside ``with``: before it is entered (no lock, nothing prepared) and after
    it has exited, writing a chunk is a programming error that names the ``with`` block. Survivor: the writer made
    active from the start (``self._active = False`` → ``True``)."""
    root = tmp_path / "c"
    root.mkdir()
    writer = EntryWriter(root, "abcd", META, chunk_size=4)
    chunk = np.ones((2, 3), dtype=np.float32)
    with pytest.raises(RuntimeError, match=r"use EntryWriter inside a `with cache.writer\(...\)` block"):
        writer.write_chunk("image", 0, chunk)
    assert not (root / "abcd").exists()


def test_arithmetic_on_a_grid_with_a_missing_combination_is_exact_and_warns_nothing():
    """Three images on a 2 × 2 attribute grid, (green, square) missing: an edit towards it is not a valid query, the
    other edits are, and images built as colour + shape answer every query exactly (accuracy 1), with no numpy
    warning on the way. Survivor: the valid-edit mask ``(b != code) & np.isin(…)`` → ``//`` (the same 0/1 values, but
    a "divide by zero" RuntimeWarning for every missing combination)."""
    import warnings

    from gapdiag.metrics.arithmetic import arithmetic_accuracy

    e = np.eye(4, dtype=np.float32)
    text = {"red": e[0], "green": e[1], "round": e[2], "square": e[3]}
    colour, shape = np.array(["red", "green", "red"]), np.array(["round", "round", "square"])
    images = np.stack([text[c] + text[s] for c, s in zip(colour, shape)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert arithmetic_accuracy(images, {"color": colour, "shape": shape}, text, device="cpu") == 1.0
