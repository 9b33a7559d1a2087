"""Regression rules, their config, evaluation, outputs and the `gapdiag check` command (gapdiag.check)."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_helpers import assert_one_line_error, gapdiag

from gapdiag import check as chk
from gapdiag.check import Rule, RuleSet, check_reports, evaluate_rule, load_rules
from gapdiag.cli import run
from gapdiag.errors import ConfigError, InputError, ProvenanceError
from gapdiag.report import Report


@dataclass(frozen=True)
class FakeInfo:
    higher_is_better: bool | None
    bounds: tuple[float | None, float | None]


# Bounds chosen so the default tolerances are easy to state: 1 % of the range, or 5 % of |baseline|.
FAKE = {
    "recall_at_1": FakeInfo(True, (0.0, 1.0)),  # tolerance 0.01
    "modality_gap": FakeInfo(False, (0.0, 2.0)),  # tolerance 0.02
    "effective_rank": FakeInfo(True, (1.0, None)),  # tolerance 5 % of |baseline|
    "cos_nonmatching": FakeInfo(None, (-1.0, 1.0)),  # no direction
}


def make_report(
    metrics,
    *,
    intervals=None,
    fingerprint="fp-aaaaaaaaaaaaaaaa",
    size=None,
    seed=0,
    defs=1,
    version="0.1.0",
    model="m",
) -> Report:
    return Report(
        metrics=dict(metrics),
        intervals=dict(intervals or {}),
        metric_definitions_version=defs,
        gapdiag_version=version,
        provenance={
            "model": {"name": model},
            "dataset": {"name": "d", "fingerprint": fingerprint},
            "sample": {"size": size, "seed": seed},
            "device": "cpu",
        },
    )


BASE = {
    "recall_at_1/image_to_text": 0.80,
    "recall_at_1/text_to_image": 0.70,
    "modality_gap/image-text": 0.50,
    "effective_rank/image": 20.0,
    "cos_nonmatching/image-text": 0.10,
}


def outcomes(current, baseline=BASE, rules=None, **kw) -> dict[str, chk.RuleOutcome]:
    rules = RuleSet() if rules is None else rules
    cur = current if isinstance(current, Report) else make_report(current)
    base = baseline if isinstance(baseline, Report) else make_report(baseline)
    return {o.name: o for o in check_reports(cur, base, rules, registry=FAKE, **kw).outcomes}


def statuses(*args, **kw) -> dict[str, str]:
    return {k: o.status for k, o in outcomes(*args, **kw).items()}


def rules_from(tmp_path: Path, text: str, name: str = "gapdiag.toml", registry=FAKE) -> RuleSet:
    path = tmp_path / name
    path.write_text(text)
    return load_rules(path, registry=registry)


# ---------------------------------------------------------------------------------------------- defaults


def test_identical_reports_pass_and_descriptive_metrics_skip():
    got = statuses(BASE)
    assert got == {
        "recall_at_1/image_to_text": "pass",
        "recall_at_1/text_to_image": "pass",
        "modality_gap/image-text": "pass",
        "effective_rank/image": "pass",
        "cos_nonmatching/image-text": "skip",
    }


@pytest.mark.parametrize(
    "name, current, expected",
    [
        ("recall_at_1/image_to_text", 0.791, "pass"),  # worsened 0.009 <= 0.01
        ("recall_at_1/image_to_text", 0.789, "fail"),  # worsened 0.011
        ("recall_at_1/image_to_text", 0.95, "pass"),  # improved
        ("modality_gap/image-text", 0.519, "pass"),  # lower is better: +0.019 <= 0.02
        ("modality_gap/image-text", 0.521, "fail"),
        ("modality_gap/image-text", 0.10, "pass"),
        ("effective_rank/image", 19.1, "pass"),  # 0.9 <= 5 % of 20
        ("effective_rank/image", 18.9, "fail"),
    ],
)
def test_default_tolerances(name, current, expected):
    assert statuses({**BASE, name: current})[name] == expected


def test_regression_result_exit_code_and_reason():
    result = check_reports(
        make_report({**BASE, "recall_at_1/text_to_image": 0.60}), make_report(BASE), RuleSet(), registry=FAKE
    )
    assert (
        not result.passed and result.exit_code == 1 and result.counts() == {"pass": 3, "fail": 1, "skip": 1}
    )
    bad = next(o for o in result.outcomes if o.status == "fail")
    assert bad.name == "recall_at_1/text_to_image" and bad.delta == pytest.approx(-0.10)
    assert "worsened by 0.1" in bad.reason and bad.origin == "default"


def test_summary_names_at_most_three_failures():
    worse = {
        **BASE,
        "recall_at_1/image_to_text": 0.1,
        "recall_at_1/text_to_image": 0.1,
        "modality_gap/image-text": 1.5,
        "effective_rank/image": 2.0,
    }
    result = check_reports(make_report(worse), make_report(BASE), RuleSet(), registry=FAKE)
    assert result.summary() == (
        "regression in recall_at_1/image_to_text, recall_at_1/text_to_image, modality_gap/image-text and 1 more: "
        "0 passed, 4 failed, 1 skipped"
    )


def test_infinite_tolerance_disables_the_drop_check(tmp_path):
    rules = rules_from(tmp_path, "[check.rules.recall_at_1]\nmax_drop = inf\n")
    assert (
        statuses({**BASE, "recall_at_1/image_to_text": 0.0}, rules=rules)["recall_at_1/image_to_text"]
        == "pass"
    )


def test_drop_equal_to_the_limit_passes_despite_float_rounding():
    rule = Rule("recall_at_1/x", direction="higher", max_drop=0.01)
    assert 0.80 - 0.79 > 0.01  # the rounding this guards against
    assert evaluate_rule(rule, 0.80, 0.79).status == "pass"


def test_metric_missing_from_current_fails_and_new_metric_skips():
    cur = dict(BASE)
    del cur["recall_at_1/text_to_image"]
    cur["modality_gap/image-audio"] = 0.3
    got = outcomes(cur)
    assert got["recall_at_1/text_to_image"].status == "fail"
    assert "missing" in got["recall_at_1/text_to_image"].reason
    assert got["modality_gap/image-audio"].status == "skip"
    assert statuses({**BASE, "recall_at_1/text_to_image": math.nan})["recall_at_1/text_to_image"] == "fail"


def test_unknown_metric_skips():
    got = outcomes({**BASE, "mystery/x": 1.0}, {**BASE, "mystery/x": 2.0})
    assert got["mystery/x"].status == "skip" and "registry" in got["mystery/x"].reason


# ---------------------------------------------------------------------------------------------- rules


def test_base_rule_covers_every_qualifier_and_full_name_rule_overrides(tmp_path):
    rules = rules_from(
        tmp_path,
        """
[check.rules.recall_at_1]
max_drop = 0.05
min = 0.5

[check.rules."recall_at_1/text_to_image"]
max_drop = 0.2
""",
    )
    cur = {**BASE, "recall_at_1/image_to_text": 0.76, "recall_at_1/text_to_image": 0.55}
    got = outcomes(cur, rules=rules)
    # image_to_text: base rule, 0.04 <= 0.05.
    assert (
        got["recall_at_1/image_to_text"].status == "pass"
        and got["recall_at_1/image_to_text"].origin == "config"
    )
    # text_to_image: its own max_drop 0.2 (0.15 ok) and the min 0.5 inherited from the base rule (0.55 ok).
    assert got["recall_at_1/text_to_image"].status == "pass"
    assert got["recall_at_1/text_to_image"].rule == "↑ tol 0.2 min 0.5"
    assert (
        outcomes({**cur, "recall_at_1/text_to_image": 0.45}, rules=rules)["recall_at_1/text_to_image"].status
        == "fail"
    )
    assert (
        outcomes({**cur, "recall_at_1/image_to_text": 0.74}, rules=rules)["recall_at_1/image_to_text"].status
        == "fail"
    )


def test_setting_one_tolerance_replaces_the_inherited_pair():
    specific = Rule("x", max_drop_relative=0.5)
    merged = specific.over(Rule("x", direction="higher", max_drop=0.01, min=0.2))
    assert (merged.max_drop, merged.max_drop_relative, merged.min, merged.direction) == (
        None,
        0.5,
        0.2,
        "higher",
    )


def test_both_limits_must_hold():
    rule = Rule("m", direction="higher", max_drop=0.5, max_drop_relative=0.1)
    assert evaluate_rule(rule, 10.0, 9.2).status == "fail"  # 0.8 > 0.5 though within 10 %
    assert evaluate_rule(rule, 2.0, 1.7).status == "fail"  # 0.3 <= 0.5 but > 10 % of 2
    assert evaluate_rule(rule, 10.0, 9.6).status == "pass"


def test_direction_override(tmp_path):
    rules = rules_from(tmp_path, '[check.rules.recall_at_1]\ndirection = "lower"\nmax_drop = 0.0\n')
    got = statuses({**BASE, "recall_at_1/image_to_text": 0.81}, rules=rules)
    assert got["recall_at_1/image_to_text"] == "fail" and got["recall_at_1/text_to_image"] == "pass"


@pytest.mark.parametrize("current, expected", [(0.45, "fail"), (0.5, "pass"), (0.9, "pass"), (0.96, "fail")])
def test_hard_bounds(tmp_path, current, expected):
    rules = rules_from(
        tmp_path, '[check.rules."modality_gap/image-text"]\nmin = 0.5\nmax = 0.95\nmax_drop = 10.0\n'
    )
    assert (
        statuses({**BASE, "modality_gap/image-text": current}, rules=rules)["modality_gap/image-text"]
        == expected
    )


def test_bounds_apply_to_a_metric_new_in_the_current_report(tmp_path):
    rules = rules_from(tmp_path, "[check.rules.recall_at_1]\nmin = 0.5\n")
    base = {k: v for k, v in BASE.items() if k != "recall_at_1/text_to_image"}
    assert (
        statuses({**BASE, "recall_at_1/text_to_image": 0.4}, base, rules=rules)["recall_at_1/text_to_image"]
        == "fail"
    )
    assert statuses(BASE, base, rules=rules)["recall_at_1/text_to_image"] == "pass"


def test_ignore_only_listed_and_unmatched_rules(tmp_path):
    rules = rules_from(
        tmp_path,
        """
[check]
only_listed = true
ignore = ["recall_at_1/text_to_image"]

[check.rules.recall_at_1]
max_drop = 0.0

[check.rules."modality_gap/image-audio"]
max_drop = 0.1
""",
    )
    got = outcomes({**BASE, "effective_rank/image": 1.0, "recall_at_1/text_to_image": 0.0}, rules=rules)
    assert (
        got["effective_rank/image"].status == "skip" and "only_listed" in got["effective_rank/image"].reason
    )
    assert (
        got["recall_at_1/text_to_image"].status == "skip"
        and "ignored" in got["recall_at_1/text_to_image"].reason
    )
    assert got["recall_at_1/image_to_text"].status == "pass"
    assert (
        got["modality_gap/image-audio"].status == "skip"
        and "matches no metric" in got["modality_gap/image-audio"].reason
    )


def test_rule_on_metric_without_direction(tmp_path):
    bounded = rules_from(tmp_path, "[check.rules.cos_nonmatching]\nmax = 0.2\n")
    assert (
        statuses({**BASE, "cos_nonmatching/image-text": 0.3}, rules=bounded)["cos_nonmatching/image-text"]
        == "fail"
    )
    assert statuses(BASE, rules=bounded)["cos_nonmatching/image-text"] == "pass"
    directed = rules_from(tmp_path, '[check.rules.cos_nonmatching]\ndirection = "lower"\n')
    # The default tolerance (1 % of [-1, 1] = 0.02) applies once the rule gives a direction.
    assert (
        statuses({**BASE, "cos_nonmatching/image-text": 0.115}, rules=directed)["cos_nonmatching/image-text"]
        == "pass"
    )
    assert (
        statuses({**BASE, "cos_nonmatching/image-text": 0.125}, rules=directed)["cos_nonmatching/image-text"]
        == "fail"
    )
    undirected = rules_from(tmp_path, "[check.rules.cos_nonmatching]\nmax_drop = 0.1\n")
    with pytest.raises(ConfigError, match="direction"):
        outcomes(BASE, rules=undirected)


# ---------------------------------------------------------------------------------------------- noise-aware


def _noise_case(
    current: float, half: float, *, base_half: float | None = 0.03, cur_half: float | None = None
):
    cur_half = half if cur_half is None else cur_half
    base = make_report(
        {"recall_at_1/t": 0.80},
        intervals={} if base_half is None else {"recall_at_1/t": (0.80 - base_half, 0.80 + base_half)},
    )
    cur = make_report(
        {"recall_at_1/t": current},
        intervals={}
        if cur_half is None or cur_half < 0
        else {"recall_at_1/t": (current - cur_half, current + cur_half)},
    )
    rules = RuleSet(rules={"recall_at_1": Rule("recall_at_1", max_drop=0.01, noise_aware=True)})
    return check_reports(cur, base, rules, registry=FAKE).outcomes[0]


@pytest.mark.parametrize("current", [0.80, 0.785, 0.76, 0.745, 0.735, 0.70, 0.60])
def test_noise_aware_fails_exactly_when_symmetric_intervals_separate(current):
    half = 0.03
    overlap = current + half >= 0.80 - half  # independent statement of the documented rule
    within_limit = 0.80 - current <= 0.01
    got = _noise_case(current, half)
    assert got.status == ("pass" if overlap or within_limit else "fail")
    if not within_limit and overlap:
        assert "noise margin" in got.reason


def test_noise_aware_passes_when_the_intervals_just_touch():
    # The documented rule fails only when the intervals separate: a worsening exactly equal to the margin (the
    # intervals touch) passes, by a hair more fails. Binary fractions, so the boundary is exact (the cases above
    # never land on it; moving "<=" to "<" passed them: realistic bug (f) of issue #25).
    rules = RuleSet(rules={"recall_at_1": Rule("recall_at_1", max_drop=0.0625, noise_aware=True)})

    def status(current: float) -> str:
        base = make_report({"recall_at_1/t": 0.75}, intervals={"recall_at_1/t": (0.625, 0.875)})
        cur = make_report({"recall_at_1/t": current}, intervals={"recall_at_1/t": (current - 0.125, current + 0.125)})
        return check_reports(cur, base, rules, registry=FAKE).outcomes[0].status

    assert status(0.5) == "pass"  # worsening 0.25 == margin 0.125 + 0.125
    assert status(0.5 - 2.0**-40) == "fail"  # still exact: the margin stays 0.25


def test_noise_aware_borrows_a_missing_interval_and_needs_at_least_one():
    # Only the baseline has an interval (half-width 0.03): margin 2 × 0.03.
    assert _noise_case(0.75, 0.0, cur_half=-1).status == "pass"
    assert _noise_case(0.73, 0.0, cur_half=-1).status == "fail"
    # Neither report has one: a plain rule, and the reason says how to get intervals.
    got = _noise_case(0.78, 0.0, base_half=None, cur_half=-1)
    assert got.status == "fail" and "--bootstrap" in got.reason


def test_plain_rule_ignores_intervals():
    base = make_report({"recall_at_1/t": 0.80}, intervals={"recall_at_1/t": (0.7, 0.9)})
    cur = make_report({"recall_at_1/t": 0.75}, intervals={"recall_at_1/t": (0.65, 0.85)})
    assert check_reports(cur, base, RuleSet(), registry=FAKE).outcomes[0].status == "fail"
    noisy = RuleSet(noise_aware=True)  # [check] noise_aware = true applies to default rules too
    assert check_reports(cur, base, noisy, registry=FAKE).outcomes[0].status == "pass"


# ---------------------------------------------------------------------------------------------- provenance


def test_different_data_refused_unless_forced():
    other = make_report(BASE, fingerprint="fp-bbbbbbbbbbbbbbbb")
    with pytest.raises(ProvenanceError) as e:
        check_reports(other, make_report(BASE), RuleSet(), registry=FAKE)
    msg = str(e.value)
    assert "fp-aaaaaaaaa" in msg and "fp-bbbbbbbbb" in msg and "--force" in msg and "\n" not in msg
    result = check_reports(other, make_report(BASE), RuleSet(), registry=FAKE, force=True)
    assert result.passed and any("fingerprint" in w for w in result.warnings)


@pytest.mark.parametrize(
    "kw, needle",
    [
        ({"defs": 2}, "metric_definitions_version 1 (baseline) vs 2 (current)"),
        ({"size": 500}, "sample size None (baseline) vs 500 (current)"),
        ({"seed": 3}, "sample seed 0 (baseline) vs 3 (current)"),
    ],
)
def test_other_provenance_conflicts(kw, needle):
    with pytest.raises(ProvenanceError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        check_reports(make_report(BASE, **kw), make_report(BASE), RuleSet(), registry=FAKE)


def test_other_gapdiag_version_only_warns():
    result = check_reports(make_report(BASE, version="9.9"), make_report(BASE), RuleSet(), registry=FAKE)
    assert result.passed and any("9.9" in w and "0.1.0" in w for w in result.warnings)


# ---------------------------------------------------------------------------------------------- config files


def test_pyproject_table_and_discovery(tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.gapdiag.check.rules.recall_at_1]\nmax_drop = 0.3\n'
    )
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    found = load_rules(None, search_from=sub, registry=FAKE)
    assert found.source == str(tmp_path / "pyproject.toml") and found.rules["recall_at_1"].max_drop == 0.3
    # gapdiag.toml in a nearer directory wins.
    (tmp_path / "a" / "gapdiag.toml").write_text("[check.rules.recall_at_1]\nmax_drop = 0.4\n")
    assert load_rules(None, search_from=sub, registry=FAKE).rules["recall_at_1"].max_drop == 0.4


def test_discovery_stops_at_the_repository_root(tmp_path):
    (tmp_path / "gapdiag.toml").write_text("[check.rules.recall_at_1]\nmax_drop = 0.4\n")
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    assert load_rules(None, search_from=repo, registry=FAKE) == RuleSet()


@pytest.mark.parametrize(
    "text, needles",
    [
        ("[check.rules.recall_at_1\nmax_drop = 1", ["invalid TOML", "line 1"]),
        (
            "[check.rules.recall_at_1]\nmax_dorp = 0.1\n",
            ["check.rules.recall_at_1.max_dorp", "known keys", "max_drop"],
        ),
        (
            '[check.rules.recall_at_1]\nmax_drop = "0.1"\n',
            ["check.rules.recall_at_1.max_drop must be a number", "(e.g. max_drop = 0.01)"],
        ),
        ("[check.rules.recall_at_1]\nnoise_aware = 1\n", ["noise_aware must be true or false", "(e.g. noise_aware = true)"]),
        ("[check.rules.recall_at_1]\nmin = nan\n", ["check.rules.recall_at_1.min must be a number"]),
        ('[check.rules."recal_at_1/x"]\nmax_drop = 0.1\n', ['check.rules."recal_at_1/x"', "unknown metric"]),
        ('[check.rules.recall_at_1]\ndirection = "up"\n', ["direction must be 'higher' or 'lower'"]),
        ("[check.rules.recall_at_1]\nmax_drop = -0.1\n", ["max_drop must be >= 0"]),
        ("[check.rules.recall_at_1]\nmin = 0.9\nmax = 0.1\n", ["min 0.9 is above max 0.1"]),
        ("[check]\nonly_listd = true\n", ["unknown key check.only_listd"]),
        ('[check]\nignore = "recall_at_1"\n', ["check.ignore must be a list"]),
        ("[check]\nrules = 3\n", ["check.rules must be a table"]),
        ("[other]\nx = 1\n", ["no [check] table"]),
    ],
)
def test_malformed_config_is_one_line_naming_file_and_key(tmp_path, text, needles):
    with pytest.raises(ConfigError) as e:
        rules_from(tmp_path, text)
    msg = e.value.one_line()
    assert "\n" not in msg and str(tmp_path / "gapdiag.toml") in msg
    for needle in needles:
        assert needle in msg


def test_pyproject_keys_are_named_with_their_prefix(tmp_path):
    with pytest.raises(ConfigError, match=r"tool\.gapdiag\.check\.rules\.recall_at_1\.mx"):
        rules_from(tmp_path, "[tool.gapdiag.check.rules.recall_at_1]\nmx = 1\n", name="pyproject.toml")


def test_missing_explicit_config(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_rules(tmp_path / "nope.toml", registry=FAKE)


def test_real_registry_directions():
    """With gapdiag's own registry: R@1 is higher-is-better and the modality gap lower-is-better."""
    base = make_report({"recall_at_1/image_to_text": 0.8, "modality_gap/image-text": 0.8})
    worse = make_report({"recall_at_1/image_to_text": 0.7, "modality_gap/image-text": 0.9})
    better = make_report({"recall_at_1/image_to_text": 0.9, "modality_gap/image-text": 0.7})
    assert {o.status for o in check_reports(worse, base, RuleSet()).outcomes} == {"fail"}
    assert {o.status for o in check_reports(better, base, RuleSet()).outcomes} == {"pass"}
    with pytest.raises(ConfigError, match="unknown metric"):
        chk.parse_rules({"rules": {"recal_at_1": {}}}, source="gapdiag.toml", registry=chk.metric_registry())


# ---------------------------------------------------------------------------------------------- outputs


@pytest.fixture
def mixed_result():
    cur = make_report({**BASE, "recall_at_1/text_to_image": 0.5, "modality_gap/image-text": 0.9})
    return check_reports(cur, make_report(BASE, version="0.0.9"), RuleSet(), registry=FAKE)


def _markdown_rows(md: str) -> list[list[str]]:
    rows = [line for line in md.splitlines() if line.startswith("|")]
    assert set(rows[1].replace("|", "")) == {"-"}  # header separator
    return [[c.strip() for c in row.strip("|").split(" | ")] for row in rows[2:]]


def test_markdown_table(mixed_result):
    md = chk.to_markdown(mixed_result)
    rows = _markdown_rows(md)
    assert len(rows) == len(mixed_result.outcomes) == 5
    icons = [r[0] for r in rows]
    assert icons.count("❌") == 2 and icons.count("✅") == 2 and icons.count("⏭️") == 1
    gap_row = next(r for r in rows if r[1] == "`modality_gap/image-text`")
    assert gap_row[2:5] == ["0.5000", "0.9000", "+0.4000"]
    assert "0.0.9" in md  # the version warning


def test_junit_xml_counts(mixed_result):
    root = ET.fromstring(chk.to_junit_xml(mixed_result))
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == int(suite.get("tests")) == 5
    assert len(suite.findall("testcase/failure")) == int(suite.get("failures")) == 2
    assert len(suite.findall("testcase/skipped")) == int(suite.get("skipped")) == 1
    failed = {c.get("name") for c in cases if c.find("failure") is not None}
    assert failed == {"recall_at_1/text_to_image", "modality_gap/image-text"}


def test_json_is_strict_json(mixed_result):
    mixed_result.outcomes.append(
        evaluate_rule(Rule("recall_at_1/new", direction="higher", min=0.1), math.nan, 0.5)
    )
    data = json.loads(json.dumps(chk.to_json(mixed_result), allow_nan=False))
    assert data["passed"] is False and data["exit_code"] == 1
    assert data["counts"] == {"pass": 3, "fail": 2, "skip": 1}
    new = data["outcomes"][-1]
    assert new["baseline"] is None and new["delta"] is None and new["current"] == 0.5


def test_step_summary_is_appended_not_overwritten(tmp_path):
    summary = tmp_path / "summary.md"
    summary.write_text("# earlier step\n")
    assert chk.append_step_summary("first\n", summary) == summary
    chk.append_step_summary("second\n", str(summary))
    text = summary.read_text()
    assert text.startswith("# earlier step\n") and text.index("first") < text.index("second")
    with pytest.raises(InputError, match="cannot append the step summary"):
        chk.append_step_summary("x", tmp_path)  # a directory


# ---------------------------------------------------------------------------------------------- CLI


@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    """Run the CLI in an empty directory with the fake registry; return a helper that writes reports."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.setattr(chk.rules, "metric_registry", lambda: FAKE)

    def write(name: str, report: Report) -> str:
        report.save(tmp_path / name)
        return str(tmp_path / name)

    return write


def test_cli_pass_writes_outputs_and_step_summary(cli_env, tmp_path, monkeypatch, capsys):
    summary = tmp_path / "summary.md"
    summary.write_text("previous\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    base, cur = cli_env("base.json", make_report(BASE)), cli_env("cur.json", make_report(BASE))
    code = run(
        ["check", "--baseline", base, "--report", cur, "--markdown", "out/s.md", "--junit", "out/j.xml"]
    )
    out = capsys.readouterr().out
    assert code == 0 and "passed" in out and "recall_at_1/image_to_text" in out
    assert len(_markdown_rows((tmp_path / "out/s.md").read_text())) == 5
    assert ET.parse(tmp_path / "out/j.xml").getroot().find("testsuite").get("failures") == "0"
    assert summary.read_text().startswith("previous\n") and "gapdiag check" in summary.read_text()


def test_cli_regression_exits_1_with_json(cli_env, capsys):
    base = cli_env("base.json", make_report(BASE))
    cur = cli_env("cur.json", make_report({**BASE, "recall_at_1/image_to_text": 0.5}))
    assert run(["check", "--baseline", base, "--report", cur, "--json"]) == 1
    captured = capsys.readouterr()
    data = json.loads(captured.out)  # stdout holds the JSON only
    assert data["passed"] is False
    assert [o["name"] for o in data["outcomes"] if o["status"] == "fail"] == ["recall_at_1/image_to_text"]
    assert "regression in recall_at_1/image_to_text" in captured.err and "Traceback" not in captured.err


def test_cli_config_file(cli_env, tmp_path):
    base = cli_env("base.json", make_report(BASE))
    cur = cli_env("cur.json", make_report({**BASE, "recall_at_1/image_to_text": 0.75}))
    assert run(["check", "--baseline", base, "--report", cur]) == 1
    (tmp_path / "gapdiag.toml").write_text("[check.rules.recall_at_1]\nmax_drop = 0.1\n")  # discovered in cwd
    assert run(["check", "--baseline", base, "--report", cur]) == 0
    (tmp_path / "strict.toml").write_text("[check.rules.recall_at_1]\nmax_drop = 0.0\n")
    assert run(["check", "--baseline", base, "--report", cur, "--config", "strict.toml"]) == 1


def test_cli_mismatched_data_exits_2_and_force_passes(cli_env, capsys):
    base = cli_env("base.json", make_report(BASE))
    cur = cli_env("cur.json", make_report(BASE, fingerprint="fp-other"))
    assert_one_line_error(*gapdiag(capsys, "check", "--baseline", base, "--report", cur), "different data")
    assert run(["check", "--baseline", base, "--report", cur, "--force"]) == 0
    assert "forced" in capsys.readouterr().err


def test_cli_malformed_baseline_and_config_exit_2(cli_env, tmp_path, capsys):
    cur = cli_env("cur.json", make_report(BASE))
    (tmp_path / "bad.json").write_text('{"metrics": {"a": 1,}')
    assert_one_line_error(*gapdiag(capsys, "check", "--baseline", "bad.json", "--report", cur), "bad.json")
    (tmp_path / "gapdiag.toml").write_text("[check.rules.recall_at_1]\nmax_dorp = 0.1\n")
    assert_one_line_error(*gapdiag(capsys, "check", "--baseline", cur, "--report", cur), "max_dorp")


@pytest.mark.parametrize(
    "extra, fragment",
    [
        ([], "--baseline"),  # no --baseline
        (["--baseline", "b.json", "--bootstrap", "many"], "--bootstrap"),  # not an integer
        (["--baseline", "b.json", "--report", "c.json", "--model", "x.pt"], "--model"),
        (["--baseline", "b.json", "--report", "c.json", "--bootstrap", "10"], "--bootstrap"),
        (["--baseline", "b.json", "--no-such-option"], "--no-such-option"),
    ],
)
def test_cli_usage_errors_exit_2(cli_env, capsys, extra, fragment):
    assert_one_line_error(*gapdiag(capsys, "check", *extra), fragment)
    from typer.testing import CliRunner

    from gapdiag.cli import app

    if "--report" not in extra:  # options that do not apply to --report are refused by the api (issue #23)
        assert CliRunner().invoke(app, ["check", *extra]).exit_code == 2  # the bare Typer app agrees


def test_cli_measures_now_with_the_baseline_sampling(cli_env, tmp_path, monkeypatch, capsys):
    from gapdiag.api import gate

    calls = []

    def fake_measure(data, model, options, at, device, **kwargs):
        calls.append({"data": data, "model": model, "progress": options.progress, "device": device, **kwargs})
        return make_report(BASE, size=kwargs["sample"], seed=kwargs["seed"])

    monkeypatch.setattr(gate, "measure_source", fake_measure)
    base = cli_env("base.json", make_report(BASE, size=100, seed=4))
    code = run(
        [
            "check",
            "--baseline",
            base,
            "--model",
            "new.pt",
            "--data",
            "d.csv",
            "--bootstrap",
            "20",
            "--out",
            "new.json",
            "--quiet",
        ]
    )
    assert code == 0, capsys.readouterr().err
    (kw,) = calls
    assert (kw["model"], kw["data"], kw["sample"], kw["seed"], kw["bootstrap"]) == (
        "new.pt",
        "d.csv",
        100,
        4,
        20,
    )
    assert kw["progress"] is False and str(kw["device"]) != "auto"  # resolved once, at the door
    assert Report.load(tmp_path / "new.json").metrics == BASE


def _with_skipped(metrics, skipped) -> Report:
    report = make_report(metrics)
    report.extras["skipped"] = dict(skipped)
    return report


def test_a_gated_metric_that_could_not_be_computed_is_an_input_error_naming_why():
    current = _with_skipped(
        {k: v for k, v in BASE.items() if k != "recall_at_1/image_to_text"},
        {"recall_at_1/image_to_text": "K=1 exceeds the gallery (0 items)"},
    )
    with pytest.raises(InputError, match=r"recall_at_1/image_to_text \(K=1 exceeds the gallery"):
        check_reports(current, make_report(BASE), RuleSet(), registry=FAKE)


def test_a_metric_named_by_a_config_rule_but_skipped_is_an_error_even_without_a_baseline_value(tmp_path):
    rules = rules_from(tmp_path, "[check.rules.effective_rank]\nmin = 2\n")
    base = {k: v for k, v in BASE.items() if not k.startswith("effective_rank")}
    current = _with_skipped(base, {"effective_rank/image": "needs class labels"})
    with pytest.raises(InputError, match="effective_rank/image"):
        check_reports(current, make_report(base), rules, registry=FAKE)
    # The same skip, ungated (no rule names it, no baseline value), stays a skip: it says nothing of the model.
    assert statuses(current, base) == {k: statuses(base, base)[k] for k in base}


def test_skipped_metrics_survive_the_report_round_trip(tmp_path):
    report = _with_skipped(BASE, {"v_measure_class/joint": "needs class labels"})
    data = report.to_dict(include_extras=False)
    assert data["skipped"] == {"v_measure_class/joint": "needs class labels"}  # --json keeps the reasons
    report.save(tmp_path / "r.json")
    assert Report.load(tmp_path / "r.json").skipped == report.skipped


@pytest.mark.parametrize(("what", "fragment"), [
    ("dir", "is a directory"),
    ("missing", "not found"),
    ("binary", "not UTF-8"),
    ("bad-intervals", "'intervals'"),
    ("bad-provenance", "'provenance'"),
])
def test_every_unusable_baseline_is_one_line_exit_2(cli_env, tmp_path, capsys, what, fragment):
    from cli_helpers import assert_one_line_error

    cur = cli_env("cur.json", make_report(BASE))
    base = tmp_path / "base"
    if what == "dir":
        base.mkdir()
    elif what == "binary":
        base.write_bytes(b"\xff\xfe\x00garbage")
    elif what == "bad-intervals":
        base.write_text('{"schema_version": 1, "metrics": {"a": 1}, "intervals": {"a": 5}}')
    elif what == "bad-provenance":
        base.write_text('{"schema_version": 1, "metrics": {"a": 1}, "provenance": [1]}')
    for command in (["check", "--baseline", base, "--report", cur], ["compare", base, cur]):
        code = run([str(a) for a in command])
        out, err = capsys.readouterr()
        assert_one_line_error(code, out, err, "base", fragment)  # 2, never 1 (which CI reads as a regression)


@pytest.mark.parametrize(("content", "fragment"), [
    (b"[check\nmin = ", "invalid TOML"),
    (b"\xff\xfe[check]", "not UTF-8"),
    (None, "is a directory"),
])
def test_every_unusable_config_is_one_line_exit_2(cli_env, tmp_path, capsys, content, fragment):
    from cli_helpers import assert_one_line_error

    cur = cli_env("cur.json", make_report(BASE))
    config = tmp_path / "conf.toml"
    if content is None:
        config.mkdir()
    else:
        config.write_bytes(content)
    code, out, err = run(["check", "--baseline", cur, "--report", cur, "--config", str(config)]), *capsys.readouterr()
    assert_one_line_error(code, out, err, "conf.toml", fragment)
    (tmp_path / "gapdiag.toml").write_bytes(b"\xff\xfe")  # a discovered config too
    code, out, err = run(["check", "--baseline", cur, "--report", cur]), *capsys.readouterr()
    assert_one_line_error(code, out, err, "gapdiag.toml", "not UTF-8")


def test_cli_gated_metric_skipped_in_the_current_report_exits_2_not_0_or_1(cli_env, capsys):
    from cli_helpers import assert_one_line_error

    base = cli_env("base.json", make_report(BASE))
    current = _with_skipped({k: v for k, v in BASE.items() if k != "modality_gap/image-text"},
                            {"modality_gap/image-text": "needs two modalities"})
    cur = cli_env("cur.json", current)
    code = run(["check", "--baseline", base, "--report", cur])
    assert_one_line_error(code, *capsys.readouterr(), "modality_gap/image-text", "needs two modalities")


def test_ci_output_files_are_written_atomically(tmp_path, monkeypatch):
    """A --markdown/--junit file is replaced whole: a failure before the rename keeps the old file intact."""
    import os

    from gapdiag.api.gate import write_text
    from gapdiag.errors import InputError

    target = tmp_path / "out" / "summary.md"
    write_text(target, "old summary\n", "--markdown")
    monkeypatch.setattr(os, "replace", lambda *a, **k: (_ for _ in ()).throw(OSError(28, "No space left")))
    with pytest.raises(InputError, match="--markdown"):
        write_text(target, "new summary that never lands\n", "--markdown")
    assert target.read_text() == "old summary\n"
    assert [p.name for p in target.parent.iterdir()] == ["summary.md"]


# ------------------------------------------------------------------ issue #23 item 7: a gate that decides nothing


@pytest.mark.parametrize(("baseline", "why"), [
    ({}, "the baseline has no metrics"),
    ({k: math.nan for k in BASE}, "no finite baseline value"),  # null in the JSON file
])
def test_a_gate_that_checked_nothing_fails_with_its_own_exit_code(baseline, why):
    with pytest.raises(chk.GateUndecidedError) as err:
        check_reports(make_report(BASE), make_report(baseline), RuleSet(), registry=FAKE)
    assert err.value.exit_code == 3 and "checked nothing" in str(err.value) and why in str(err.value), err.value


def test_only_listed_rules_that_match_nothing_check_nothing(tmp_path):
    rules = rules_from(tmp_path, "[check]\nonly_listed = true\nignore = ['recall_at_1', 'modality_gap', "
                                 "'effective_rank']\n")
    with pytest.raises(chk.GateUndecidedError, match="checked nothing"):
        check_reports(make_report(BASE), make_report(BASE), rules, registry=FAKE)


@pytest.mark.parametrize(("side", "name", "value", "fragment"), [
    ("current", "modality_gap/image-text", -5.0, "modality_gap/image-text = -5 (current) is outside [0, 2]"),
    ("current", "recall_at_1/image_to_text", 7.0, "recall_at_1/image_to_text = 7 (current) is outside [0, 1]"),
    ("baseline", "recall_at_1/text_to_image", -0.5, "recall_at_1/text_to_image = -0.5 (baseline)"),
    ("baseline", "effective_rank/image", math.inf, "effective_rank/image = inf (baseline)"),
    ("current", "cos_nonmatching/image-text", 1.5, "cos_nonmatching/image-text = 1.5"),  # ungated, still impossible
])
def test_impossible_values_fail_with_the_undecided_exit_code(side, name, value, fragment):
    """A value outside the registry's bounds (or infinite) is no measurement: a forged or damaged report.
    It must not pass (gap -5 "improved") nor count as a regression."""
    current, baseline = dict(BASE), dict(BASE)
    (current if side == "current" else baseline)[name] = value
    with pytest.raises(chk.GateUndecidedError) as err:
        check_reports(make_report(current), make_report(baseline), RuleSet(), registry=FAKE)
    assert err.value.exit_code == 3 and fragment in str(err.value), str(err.value)


def test_values_on_the_bounds_up_to_float_rounding_are_possible():
    edge = {**BASE, "recall_at_1/image_to_text": 1.0 + 1e-9, "modality_gap/image-text": 0.0}
    assert statuses(edge, edge)["recall_at_1/image_to_text"] == "pass"


@pytest.mark.parametrize(("metrics", "fragment"), [
    ({}, "checked nothing"),
    ({k: None for k in BASE}, "checked nothing"),
    ({**BASE, "modality_gap/image-text": "Infinity"}, "inf (baseline)"),
])
def test_cli_undecided_gate_exits_3_with_one_line(cli_env, tmp_path, capsys, metrics, fragment):
    """null, Infinity or {} in a baseline file: exit 3, not 0 ("47 skipped") and not 1 ("regression")."""
    text = json.dumps({"schema_version": 1, "metric_definitions_version": 1, "metrics": metrics,
                       "provenance": make_report(BASE).provenance}).replace('"Infinity"', "Infinity")
    (tmp_path / "base.json").write_text(text)
    cur = cli_env("cur.json", make_report(BASE))
    code, out, err = gapdiag(capsys, "check", "--baseline", tmp_path / "base.json", "--report", cur,
                             "--markdown", tmp_path / "s.md")
    assert_one_line_error(code, out, err, fragment, exit_code=3)
    assert not (tmp_path / "s.md").exists()  # no summary that reads "passed"


def test_check_help_lists_every_exit_code(capsys):
    code, out, _ = gapdiag(capsys, "check", "--help")
    text = " ".join(out.split())
    assert code == 0 and all(f"{n} " in text for n in ("0", "1", "2", "3")), text
    assert "checked nothing" in text


# ------------------------------------------------------------- issue #23 item 16: check never exits 1 unless it found a regression


def test_a_contradictory_inherited_rule_is_a_config_error(tmp_path):
    """max = 1 on the base with min = 5 on one full name: the resolved rule can never hold, so every run would
    read as a regression; it is a config error naming both keys."""
    with pytest.raises(ConfigError) as err:
        rules_from(tmp_path, '[check.rules.modality_gap]\nmax = 1\n[check.rules."modality_gap/image-text"]\nmin = 5\n')
    line = str(err.value)
    assert "modality_gap/image-text" in line and "min 5" in line and "max 1" in line and "\n" not in line, line


@pytest.mark.parametrize(("rule", "fragment"), [
    ("min = 5", "min 5 is above the highest possible value 1"),
    ("max = -1", "max -1 is below the lowest possible value 0"),
])
def test_a_bound_no_value_can_meet_is_a_config_error(tmp_path, rule, fragment):
    with pytest.raises(ConfigError, match=fragment):
        rules_from(tmp_path, f"[check.rules.recall_at_1]\n{rule}\n")


def test_cli_contradictory_rule_exits_2(cli_env, tmp_path, capsys):
    base = cli_env("base.json", make_report(BASE))
    (tmp_path / "gapdiag.toml").write_text(
        '[check.rules.modality_gap]\nmax = 1\n[check.rules."modality_gap/image-text"]\nmin = 5\n')
    assert_one_line_error(*gapdiag(capsys, "check", "--baseline", base, "--report", base), "gapdiag.toml",
                          "modality_gap/image-text")


def test_a_crash_inside_check_is_never_exit_1(cli_env, capsys, monkeypatch):
    """1 tells CI "regression found"; an unexpected exception (a bug) exits 70 with one line, and --debug still
    shows the traceback."""
    import gapdiag.api.gate as check_run

    base = cli_env("base.json", make_report(BASE))

    def crash(*args, **kwargs):
        raise TypeError("something no test foresaw")

    monkeypatch.setattr(check_run, "check_reports", crash)
    code, out, err = gapdiag(capsys, "check", "--baseline", base, "--report", base)
    line = assert_one_line_error(code, out, err, "internal error", "TypeError: something no test foresaw",
                                 "--debug", exit_code=70)
    assert "regression" not in line
    with pytest.raises(TypeError):
        run(["check", "--baseline", base, "--report", base, "--debug"])


# ------------------------------------------------------------- issue #23 item 1: random weights against trained ones


def _weights(random_init):
    report = make_report(BASE)
    if random_init is not None:
        report.provenance["model"]["random_init"] = random_init
    return report


def test_a_random_init_run_against_a_trained_baseline_is_a_gate_conflict_and_a_compare_warning():
    with pytest.raises(ProvenanceError, match=r"random-init weights \(current\) against trained weights \(baseline\)"):
        check_reports(_weights(True), _weights(False), RuleSet(), registry=FAKE)
    with pytest.raises(ProvenanceError, match=r"trained weights \(current\) against random-init weights"):
        check_reports(_weights(False), _weights(True), RuleSet(), registry=FAKE)
    forced = check_reports(_weights(True), _weights(False), RuleSet(), registry=FAKE, force=True)
    assert any(w.startswith("forced: random-init weights") for w in forced.warnings)
    # compare shows what training changed: a warning, not a refusal.
    comparison = chk.compare_reports([_weights(False), _weights(True)], ["trained", "random"])
    assert any("random-init weights (random)" in w for w in comparison.warnings)
    # Reports that do not say (older gapdiag, precomputed vectors) are not guessed at.
    assert check_reports(_weights(None), _weights(False), RuleSet(), registry=FAKE).passed


def _default_gate_table() -> dict[str, tuple[str, str]]:
    """docs/check.md's table of default gates: base -> (Better, Default tolerance) as written."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "check.md").read_text(encoding="utf-8")
    start = text.index("| Base | Better | Default tolerance | Range |")
    rows = {}
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        for base in cells[0].replace("`", "").split(","):
            rows[base.strip()] = (cells[1], cells[2])
    return rows


def test_the_documented_default_gates_are_the_registry_s():
    """Every registered metric has its row in docs/check.md, with the direction and tolerance the gate applies
    (conformity_w1 was gated by default without a row)."""
    from gapdiag.check.rules import default_rule
    from gapdiag.metrics import REGISTRY

    table = _default_gate_table()
    rows = {name: table.get(name) or next((v for k, v in table.items()
                                           if k.endswith("*") and name.startswith(k[:-1])), None)
            for name in REGISTRY}
    assert [name for name, row in rows.items() if row is None] == []
    for name, (better, tolerance) in rows.items():
        rule = default_rule(name, REGISTRY[name])
        if rule is None or rule.direction is None or not rule.has_tolerance:
            assert better == "—", name
            continue
        assert better == rule.direction, name
        if tolerance.startswith("only when"):  # the similarity rules: applied when a rule names them
            continue
        shown = f"{rule.max_drop_relative:.0%}".replace("%", " %") if rule.max_drop_relative else f"{rule.max_drop:g}"
        assert tolerance == shown, (name, tolerance, shown)


def test_a_bound_is_crossed_only_beyond_a_relative_millionth_of_it():
    """Float rounding of a value at its bound is not a crossing: the slack is 1e-6 of the bound's size (at least
    1e-6), on bounds larger than 1 too (uniformity's -8)."""
    from gapdiag.check.rules import outside_bounds

    assert not outside_bounds(-8.0 - 4e-6, -8.0, 0.0) and outside_bounds(-8.0 - 2e-5, -8.0, 0.0)
    assert not outside_bounds(4.0 + 3e-6, 0.0, 4.0) and outside_bounds(4.0 + 5e-6, 0.0, 4.0)
    assert not outside_bounds(1.0 + 5e-7, 0.0, 1.0) and outside_bounds(1.0 + 2e-6, 0.0, 1.0)
