"""Issue #25, run 12: what the survivors of the fresh samples (seeds 40 and 41) showed no test asserted.

Each test fails with its survivor applied and passes without (docs/reliability.md, "Run 12").
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import reference as ref

from gapdiag.metrics.rank import effective_rank, singular_values
from gapdiag.metrics.retrieval import recall_and_topk, recall_at_k


def test_the_spectrum_of_a_rank_one_set_is_one_singular_value_and_zeros_not_nan():
    """A rank-deficient Gram's zero eigenvalues come back from ``eigh`` as about ±1e-15; clipped at 0 they give
    singular values of 0, never NaN: a Gram of eigenvalues 4, 0 and −1e-9 (that rounding, magnified so that it
    survives the rotation on any machine) has singular values 2, 0, 0, and a
    rank-one set (thirty positive multiples of one vector: one unit row, repeated) has effective rank 1 (closed
    form). Survivor: the clip's floor ``0.0`` → ``-1.0`` (square roots of the negative rounding: NaN)."""
    from gapdiag.metrics.blocked import LinearStats
    from gapdiag.metrics.rank import singular_values_from_stats

    rotation = np.linalg.qr(np.random.default_rng(4).normal(size=(3, 3)))[0]
    gram = rotation @ np.diag([4.0, 0.0, -1e-9]) @ rotation.T
    s = singular_values_from_stats(LinearStats(n=5, total=np.zeros(3), gram=(gram + gram.T) / 2))
    assert np.all(np.isfinite(s)) and s == pytest.approx([2.0, 0.0, 0.0], abs=1e-7)
    rng = np.random.default_rng(4)
    x = (np.repeat(rng.normal(size=(1, 8)), 30, axis=0) * rng.uniform(0.5, 2.0, size=(30, 1))).astype(np.float32)
    assert np.all(np.isfinite(singular_values(x)))
    assert effective_rank(x) == pytest.approx(1.0, abs=1e-5)


def test_recall_and_its_top_lists_default_to_r_at_1_5_and_10():
    """``recall_and_topk`` (what hubness reuses) has the same default Ks as ``recall_at_k``: 1, 5 and 10. Survivor:
    its default ``(1, 5, 10)`` → ``(1, 5, 9)``."""
    rng = np.random.default_rng(13)
    q, g = rng.normal(size=(12, 4)), rng.normal(size=(12, 4))
    recall, top = recall_and_topk(q, g, np.arange(12), np.arange(12), device="cpu")
    assert sorted(recall) == [1, 5, 10] and top.shape == (12, 10)
    assert recall == recall_at_k(q, g, np.arange(12), np.arange(12), device="cpu")
    assert inspect.signature(recall_at_k).parameters["ks"].default == (1, 5, 10)


@pytest.mark.parametrize("rule, text", [
    ({"direction": "lower", "max_drop_relative": 0.05}, "↓ tol 5%"),
    ({"direction": "higher", "max_drop_relative": 0.5, "min": 0.1}, "↑ tol 50% min 0.1"),
    ({"direction": "higher", "max_drop": 0.01}, "↑ tol 0.01"),
])
def test_a_rule_describes_a_relative_tolerance_as_a_percentage_of_the_baseline(rule, text):
    """``Rule.describe`` (the gate's tables): a relative tolerance as its percentage of the baseline, an absolute one
    as it is. Survivor: ``100 * max_drop_relative`` → ``100 ** max_drop_relative`` ("tol 1.25893%" for 5 %)."""
    from gapdiag.check import Rule

    assert Rule("modality_gap/image-text", **rule).describe() == text


def test_a_config_without_only_listed_gates_every_metric(tmp_path):
    """``only_listed`` defaults to false: a config that names one metric's rule still gates every other metric by
    its default rule. Survivor: the default ``False`` → ``True`` (only the named metric gated)."""
    from test_check import BASE, FAKE, make_report, rules_from

    from gapdiag.check import check_reports

    rules = rules_from(tmp_path, "[check.rules.recall_at_1]\nmax_drop = 0.5\n")
    assert rules.only_listed is False
    worse = {**BASE, "modality_gap/image-text": BASE["modality_gap/image-text"] + 0.5}
    result = check_reports(make_report(worse), make_report(BASE), rules, registry=FAKE)
    assert "modality_gap/image-text" in {o.name for o in result.outcomes if o.status == "fail"}


@pytest.mark.parametrize("n", [6, 7])
def test_the_uniformity_of_an_even_and_an_odd_number_of_items_is_the_brute_force_mean(n):
    """``uniformity_wang_isola/<m>`` is the log of the mean of exp(−2‖u − v‖²) over the n(n − 1)/2 pairs, for an
    even n as for an odd one. Survivor: the number of pairs ``n * (n - 1) // 2`` → ``n * (n ^ 1) // 2`` (n(n + 1)/2
    for an even n)."""
    from gapdiag.metrics import compute_all
    from gapdiag.vectors import EmbeddingSet

    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    es = EmbeddingSet({"image": x, "text": rng.normal(size=(n, 4)).astype(np.float32)},
                      {"image": np.arange(n), "text": np.arange(n)}, n)
    values, _ = compute_all(es, ["uniformity_wang_isola"], device="cpu")
    assert values["uniformity_wang_isola/image"] == pytest.approx(ref.uniformity(x), rel=1e-6)


def test_prompt_embeddings_of_more_rows_than_classes_times_templates_are_refused():
    """``build_classifier`` needs exactly C·T prompt rows (class-major): more rows are refused like fewer, naming
    both counts. Survivor: ``!=`` → ``<`` (more rows than that were let past this check)."""
    from gapdiag.errors import InputError
    from gapdiag.metrics.zeroshot import build_classifier

    prompts = np.eye(5, dtype=np.float32)
    for rows in (3, 5):
        with pytest.raises(InputError, match=rf"prompt_embeddings has {rows} rows but 2 classes × 2 templates need 4"):
            build_classifier(prompts[:rows], 2, 2)


def test_cka_of_a_single_item_is_skipped_as_too_few_items_for_both_forms():
    """``compare_embeddings`` of a one-item modality: both CKA forms are skipped as needing more items (4 for the
    debiased form, 2 for the biased one), not as "no variance". Survivor: the biased form's minimum ``2`` → ``1``."""
    from gapdiag.metrics.similarity import compare_embeddings
    from gapdiag.vectors import EmbeddingSet

    rng = np.random.default_rng(14)

    def one_item():
        return EmbeddingSet({"image": rng.normal(size=(1, 3)).astype(np.float32),
                             "text": rng.normal(size=(1, 3)).astype(np.float32)},
                            {"image": np.arange(1), "text": np.arange(1)}, 1)

    _, extras = compare_embeddings(one_item(), one_item())
    assert extras["skipped"]["linear_cka/image"] == "needs at least 4 items, got 1"
    assert extras["skipped"]["linear_cka_biased/image"] == "needs at least 2 items, got 1"
