"""Issue #25's hand sweep of ``gapdiag/check``: every comparison flipped (``<`` ↔ ``<=``, ``==`` ↔ ``!=``,
``and`` ↔ ``or``) and every number ±1 in its eight modules, run against the tests the mutation map runs for
them (test_check.py, test_compare.py, test_bootstrap.py). Each mutant that survived has a test here that
asserts what it breaks: the smallest valid input passes, the value on a boundary gets its own verdict, and
a message or table shows the number it should."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from test_check import BASE, FAKE, FakeInfo, make_report, rules_from

from gapdiag.check import (
    Rule,
    RuleSet,
    append_step_summary,
    check_reports,
    compare_reports,
    comparison_to_markdown,
    evaluate_rule,
    noise_margin,
    provenance_conflicts,
    two_model_bases,
)
from gapdiag.check.bootstrap import bootstrap_intervals
from gapdiag.check.rules import GateUndecidedError, default_rule, outside_bounds
from gapdiag.errors import ConfigError, InputError
from gapdiag.vectors import EmbeddingSet


def _one_dim_set(n: int) -> EmbeddingSet:
    """``n`` samples of one item each, sample ``i``'s vector being ``(i,)``: a replicate shows its draws."""
    return EmbeddingSet({"a": np.arange(n, dtype=np.float32)[:, None]}, {"a": np.arange(n)}, n)


def _recording(draws: list, seeds: list | None = None):
    def compute(es, metrics, *, sample, seed, **options):
        draws.append(es.vectors["a"][:, 0].astype(int).tolist())
        if seeds is not None:
            seeds.append(seed)
        return {"mean": float(es.vectors["a"].mean())}, {}

    return compute


# ---------------------------------------------------------------------------------------------- bootstrap


def test_a_set_of_one_sample_is_bootstrapped_and_an_empty_one_is_a_one_line_input_error():
    """The smallest set is one sample (every replicate draws it); none is refused by name, not by numpy."""
    draws: list = []
    intervals = bootstrap_intervals(_one_dim_set(1), None, n=3, compute=_recording(draws))
    assert draws == [[0], [0], [0]] and intervals == {"mean": (0.0, 0.0)}
    empty = EmbeddingSet({"a": np.zeros((0, 1), np.float32)}, {"a": np.zeros(0, np.int64)}, 0)
    with pytest.raises(InputError, match="no samples"):
        bootstrap_intervals(empty, None, n=3, compute=_recording([]))


def test_replicates_draw_from_every_sample_the_first_included():
    """Each replicate draws ids uniformly from all ``n_samples`` samples: with 2 samples and 20 replicates
    (seeded) both occur, sample 0 too."""
    draws: list = []
    bootstrap_intervals(_one_dim_set(2), None, n=20, compute=_recording(draws))
    assert {i for d in draws for i in d} == {0, 1}
    assert all(len(d) == 2 for d in draws)


def test_the_default_seed_is_zero_and_reaches_compute():
    """``seed`` defaults to 0 (the CLI's default): the same draws, and seed 0 passed to each computation."""
    default, explicit, seeds = [], [], []
    bootstrap_intervals(_one_dim_set(9), None, n=4, compute=_recording(default, seeds))
    bootstrap_intervals(_one_dim_set(9), None, n=4, seed=0, compute=_recording(explicit))
    assert default == explicit and seeds == [0, 0, 0, 0]


# ---------------------------------------------------------------------------------------------- compare


def test_the_markdown_table_shows_the_first_report_plainly_and_an_arrow_for_each_sign_of_change():
    """The first report's cells are values only; then ▲ for a rise, ▼ for a fall (also one of less than 1) and
    = for no change (the verdict mark follows the metric's direction)."""
    first = {"recall_at_1/image_to_text": 0.60, "modality_gap/image-text": 0.80, "effective_rank/image": 9.0}
    second = {"recall_at_1/image_to_text": 0.60, "modality_gap/image-text": 0.30, "effective_rank/image": 9.5}
    comp = compare_reports([make_report(first), make_report(second)], ["a", "b"], registry=FAKE)
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[3:5]]
            for line in comparison_to_markdown(comp).splitlines() if line.startswith("| `")}
    assert rows["`recall_at_1/image_to_text`"][0] == "0.6000"
    assert rows["`recall_at_1/image_to_text`"][1].endswith("=)")
    assert rows["`modality_gap/image-text`"][1].endswith("▼🟢)")  # a gap of 0.5 less: better
    assert rows["`effective_rank/image`"][1].endswith("▲🟢)")


# ---------------------------------------------------------------------------------------------- config


def test_a_rule_that_pins_one_value_with_min_equal_to_max_is_valid(tmp_path):
    """``min = max`` is a rule one value meets (only ``min > max`` is unmeetable)."""
    rules = rules_from(tmp_path, "[check.rules.recall_at_1]\nmin = 0.5\nmax = 0.5\n")
    assert (rules.rules["recall_at_1"].min, rules.rules["recall_at_1"].max) == (0.5, 0.5)


def test_an_unmeetable_rule_names_where_only_the_inherited_bound_comes_from(tmp_path):
    """A full-name rule's own ``min`` against its base rule's ``max``: the message says the max is inherited
    and the min is not."""
    text = '[check.rules.modality_gap]\nmax = 1.0\n[check.rules."modality_gap/image-text"]\nmin = 1.5\n'
    with pytest.raises(ConfigError) as e:
        rules_from(tmp_path, text)
    assert ": min 1.5 is above max 1 (from check.rules.modality_gap): no value can meet both" in e.value.one_line()


def test_bounds_on_the_ends_of_the_metrics_range_are_valid(tmp_path):
    """``min`` at the highest possible value (R@1 ≥ 1: every query's first hit right) and ``max`` at the lowest
    (a gap ≤ 0) can be met; only a bound beyond the range is a config error."""
    rules = rules_from(tmp_path, "[check.rules.recall_at_1]\nmin = 1.0\n[check.rules.modality_gap]\nmax = 0.0\n")
    assert rules.rules["recall_at_1"].min == 1.0 and rules.rules["modality_gap"].max == 0.0


# ---------------------------------------------------------------------------------------------- evaluate


def test_a_passing_check_exits_0_and_a_regression_1():
    """The CI contract: 0 = every rule holds, 1 = regression (2 and 3 are raised, not returned)."""
    same = check_reports(make_report(BASE), make_report(BASE), RuleSet(), registry=FAKE)
    worse = check_reports(make_report({**BASE, "recall_at_1/image_to_text": 0.1}), make_report(BASE), RuleSet(),
                          registry=FAKE)
    assert (same.passed, same.exit_code) == (True, 0)
    assert (worse.passed, worse.exit_code) == (False, 1)


def test_a_summary_of_exactly_three_failures_names_all_three_and_no_more():
    worse = {**BASE, "recall_at_1/image_to_text": 0.1, "recall_at_1/text_to_image": 0.1,
             "modality_gap/image-text": 1.5}
    result = check_reports(make_report(worse), make_report(BASE), RuleSet(), registry=FAKE)
    assert result.summary() == ("regression in recall_at_1/image_to_text, recall_at_1/text_to_image, "
                                "modality_gap/image-text: 1 passed, 3 failed, 1 skipped")


def test_the_float_slack_on_a_drop_limit_is_rounding_not_tolerance():
    """The slack excuses float rounding (about 1e-17 here), not a real excess: a drop past the limit by 1.5e-9
    fails, one past it by 7e-10 (within the 1e-9 slack) passes. The slack is relative for limits above 1
    (1e-9 × 10 for a drop limit of 10: run 10's survivor ``_SLACK * max(1, |limit|)`` → ``**``)."""
    rule = Rule("recall_at_1/x", direction="higher", max_drop=0.01)
    assert evaluate_rule(rule, 0.5, 0.5 - 0.01 - 1.5e-9).status == "fail"
    assert evaluate_rule(rule, 0.5, 0.5 - 0.01 - 7e-10).status == "pass"
    large = Rule("effective_rank/x", direction="higher", max_drop=10.0)
    assert evaluate_rule(large, 100.0, 100.0 - 10.0 - 5e-9).status == "pass"
    assert evaluate_rule(large, 100.0, 100.0 - 10.0 - 2e-8).status == "fail"


def test_a_base_rule_that_matches_qualified_metrics_adds_no_unmatched_rule_outcome():
    """``[check.rules.recall_at_1]`` matches ``recall_at_1/image_to_text``: no "matches no metric" skip for it."""
    rules = RuleSet(rules={"recall_at_1": Rule("recall_at_1", max_drop=0.5)})
    result = check_reports(make_report(BASE), make_report(BASE), rules, registry=FAKE)
    assert [o.name for o in result.outcomes] == list(BASE)


def test_a_full_name_rule_on_an_uncomputable_metric_is_skipped_with_its_bases_reason():
    """A two-model metric the check could not compute (``unavailable``, by base name) is skipped with that reason,
    when the rule names it by its full name too."""
    rules = RuleSet(rules={"mutual_knn/image": Rule("mutual_knn/image", direction="higher", max_drop=0.1)})
    why = "the baseline's vectors are not cached"
    result = check_reports(make_report(BASE), make_report(BASE), rules, registry=FAKE,
                           unavailable={"mutual_knn": why})
    (outcome,) = [o for o in result.outcomes if o.name == "mutual_knn/image"]
    assert (outcome.status, outcome.reason, outcome.origin) == ("skip", why, "config")


@pytest.mark.parametrize("n_bad", [5, 6])
def test_impossible_values_are_named_five_at_most_with_a_count_of_the_rest(n_bad):
    """Five impossible values are all named; a sixth is counted ("; and 1 more"), never a "0 more"."""
    bad = {f"recall_at_1/q{i}": 7.0 for i in range(n_bad)}
    with pytest.raises(GateUndecidedError) as e:
        check_reports(make_report({**BASE, **bad}), make_report(BASE), RuleSet(), registry=FAKE)
    message = e.value.one_line()
    named = [f"recall_at_1/q{i} = 7 (current) is outside [0, 1]" for i in range(n_bad)]
    assert all(name in message for name in named[:5]) and not any(name in message for name in named[5:])
    assert message.count("is outside") == 5
    assert ("; and 1 more" in message) == (n_bad == 6) and "and 0 more" not in message


def test_a_gate_that_checked_nothing_names_its_two_most_common_reasons():
    """Every metric skipped: the message counts the two commonest reasons (3 and 2 here), not the third."""
    baseline = {"foo/a": 1.0, "foo/b": 1.0, "foo/c": 1.0, "recall_at_1/a": 0.5, "recall_at_1/b": 0.5,
                "cos_nonmatching/image-text": 0.1}
    with pytest.raises(GateUndecidedError) as e:
        check_reports(make_report(baseline), make_report(baseline), RuleSet(ignore=("recall_at_1",)), registry=FAKE)
    message = e.value.one_line()
    assert "all 6 metrics were skipped (3: no default rule: not in the metric registry" in message
    assert "; 2: ignored by config)" in message
    assert "gives no better direction" not in message


def test_a_skipped_metric_that_no_rule_gates_is_no_input_error():
    """The current report could not compute a metric the config ignores: nothing gated is missing, the check
    runs (an ignored metric with a baseline value is not "a gated metric that could not be computed")."""
    current = make_report({k: v for k, v in BASE.items() if k != "recall_at_1/text_to_image"})
    current.extras["skipped"] = {"recall_at_1/text_to_image": "K exceeds the gallery"}
    result = check_reports(current, make_report(BASE), RuleSet(ignore=("recall_at_1/text_to_image",)),
                           registry=FAKE)
    assert result.passed


def test_the_two_model_metrics_are_found_by_the_base_of_each_rules_name():
    """``check`` computes linear CKA / mutual k-NN only when a rule names them, by base or by full name."""
    registry = {"mutual_knn": SimpleNamespace(two_models=True), "linear_cka": SimpleNamespace(two_models=True),
                "recall_at_1": SimpleNamespace(two_models=False)}
    rules = RuleSet(rules={"mutual_knn/image": Rule("mutual_knn/image"), "recall_at_1": Rule("recall_at_1")})
    assert two_model_bases(rules, registry) == {"mutual_knn"}


def test_hard_bounds_are_inclusive_and_a_bound_alone_is_reported_as_held():
    """``min``/``max`` are met by a value equal to them; a rule with only one bound says "within bounds"."""
    at_max = evaluate_rule(Rule("x", max=0.5), 0.4, 0.5)
    at_min = evaluate_rule(Rule("x", min=0.5), 0.6, 0.5)
    assert (at_max.status, at_max.reason) == ("pass", "within bounds")
    assert (at_min.status, at_min.reason) == ("pass", "within bounds")


@pytest.mark.parametrize("current, note", [(0.8, "improved"), (0.3, "unchanged"),
                                           (-0.2, "worsened by 0.5, within tolerance")])
def test_a_change_within_tolerance_is_named_by_its_sign(current, note):
    """Improvements and worsenings of less than 1 (and none) are told apart in the reason."""
    assert evaluate_rule(Rule("x", direction="higher", max_drop=1.0), 0.3, current).reason == note


def test_a_worsening_equal_to_the_limit_plus_the_rounding_slack_passes():
    """``max_drop = 0``: a worsening of exactly the slack (1e-9 here) is rounding; the rule holds."""
    assert evaluate_rule(Rule("x", direction="higher", max_drop=0.0), 1e-9, 0.0).status == "pass"


def test_the_noise_margin_adds_both_half_widths_or_doubles_the_one_there_is():
    """``h_baseline + h_current`` (0.1 + 0.3 here), or twice the one available interval's half-width."""
    both = noise_margin("m", make_report({"m": 0.5}, intervals={"m": (0.4, 0.6)}),
                        make_report({"m": 0.5}, intervals={"m": (0.2, 0.8)}))
    one = noise_margin("m", make_report({"m": 0.5}), make_report({"m": 0.5}, intervals={"m": (0.2, 0.8)}))
    assert both == pytest.approx(0.4) and one == pytest.approx(0.6)


# ---------------------------------------------------------------------------------------------- provenance


def test_a_precomputed_pair_with_one_fingerprint_is_not_warned_about_and_with_two_is():
    """Two precomputed files always have different fingerprints (the warning says why they are compared anyway);
    the same fingerprint needs no warning."""
    same = provenance_conflicts(make_report(BASE), make_report(BASE), ("a", "b"), precomputed_pair=True)
    other = provenance_conflicts(make_report(BASE), make_report(BASE, fingerprint="fp-bbbbbbbbbbbbbbbb"), ("a", "b"),
                                 precomputed_pair=True)
    assert same == ([], [])
    assert other[0] == [] and len(other[1]) == 1 and "two files of precomputed vectors" in other[1][0]


def test_different_data_names_the_first_12_characters_of_each_fingerprint():
    conflicts, _ = provenance_conflicts(make_report(BASE), make_report(BASE, fingerprint="fp-bbbbbbbbbbbbbbbb"),
                                        ("a", "b"))
    assert conflicts == ["different data: dataset fingerprint fp-aaaaaaaaa (a) vs fp-bbbbbbbbb (b)"]


def test_a_report_without_a_fingerprint_is_named_in_a_warning():
    """One report lacks the dataset fingerprint: the data cannot be verified, and the warning says which."""
    unknown = make_report(BASE, fingerprint=None)
    _, warnings = provenance_conflicts(unknown, make_report(BASE), ("a", "b"))
    assert warnings == ["the a report has no dataset fingerprint: cannot verify that both used the same data"]


# ---------------------------------------------------------------------------------------------- render


def test_the_step_summary_starts_a_new_file_without_a_blank_line_and_separates_later_sections(tmp_path):
    summary = tmp_path / "summary.md"
    append_step_summary("first\n", summary)
    assert summary.read_text() == "first\n"
    append_step_summary("second\n", summary)
    assert summary.read_text() == "first\n\nsecond\n"


# ---------------------------------------------------------------------------------------------- rules


def test_a_default_rule_takes_a_fraction_of_the_range_only_when_the_range_is_not_empty():
    """Finite bounds with ``hi > lo``: 1 % of the range; a range of one point (no width to take 1 % of) falls
    back to 5 % of the baseline, like an unbounded metric."""
    ranged = default_rule("m", FakeInfo(True, (0.0, 2.0)))
    point = default_rule("m", FakeInfo(True, (1.0, 1.0)))
    assert (ranged.max_drop, ranged.max_drop_relative) == (pytest.approx(0.02), None)
    assert (point.max_drop, point.max_drop_relative) == (None, 0.05)


def test_a_value_past_its_bound_by_float_rounding_is_on_it_and_one_further_out_is_impossible():
    """The slack is a relative 1e-6 of the bound (at least 1e-6): R@1 = -1e-6 or 1 + 1e-6 is on the bound,
    -1.5e-6 or 1 + 1.5e-6 is outside [0, 1]."""
    assert not outside_bounds(-1e-6, 0.0, 1.0) and not outside_bounds(1.0 + 1e-6, 0.0, 1.0)
    assert outside_bounds(-1.5e-6, 0.0, 1.0) and outside_bounds(1.0 + 1.5e-6, 0.0, 1.0)
