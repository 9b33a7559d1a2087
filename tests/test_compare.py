"""Side-by-side comparison of reports (gapdiag.check.compare_reports and `gapdiag compare`)."""

from __future__ import annotations

import json
import math

import pytest
from cli_helpers import assert_one_line_error, gapdiag
from test_check import FAKE, make_report  # tests/ is on sys.path, as for reference.py

from gapdiag import check as chk
from gapdiag.check import compare_reports, comparison_to_json, comparison_to_markdown
from gapdiag.cli import run
from gapdiag.errors import ProvenanceError
from gapdiag.report import Report

A = {"recall_at_1/image_to_text": 0.60, "modality_gap/image-text": 0.80, "cos_nonmatching/image-text": 0.10}
B = {"recall_at_1/image_to_text": 0.70, "modality_gap/image-text": 0.90, "cos_nonmatching/image-text": 0.20}
C = {"recall_at_1/image_to_text": 0.55, "modality_gap/image-text": 0.80, "effective_rank/image": 9.0}


def _reference_rows(values_by_report: list[dict[str, float]]):
    """Independent expectation: delta vs the first report and better/worse from a hand-written direction table."""
    higher = {"recall_at_1": True, "modality_gap": False, "effective_rank": True}
    names = list(dict.fromkeys(k for r in values_by_report for k in r))
    rows = {}
    for name in names:
        first = values_by_report[0].get(name, math.nan)
        deltas, verdicts = [], []
        for r in values_by_report[1:]:
            d = r.get(name, math.nan) - first
            deltas.append(d)
            hib = higher.get(name.split("/")[0])
            if hib is None or math.isnan(d):
                verdicts.append(None)
            elif d == 0:
                verdicts.append("same")
            else:
                verdicts.append("better" if (d > 0) == hib else "worse")
        rows[name] = (deltas, verdicts)
    return rows


def test_deltas_and_verdicts_against_reference():
    comp = compare_reports([make_report(A), make_report(B), make_report(C)], ["a", "b", "c"], registry=FAKE)
    expected = _reference_rows([A, B, C])
    assert [r.metric for r in comp.rows] == list(expected)
    for row in comp.rows:
        deltas, verdicts = expected[row.metric]
        assert row.deltas[0] == 0 or math.isnan(row.deltas[0])
        assert row.deltas[1:] == pytest.approx(deltas, nan_ok=True)
        assert row.verdicts == [None, *verdicts]
    gap = next(r for r in comp.rows if r.metric == "modality_gap/image-text")
    assert gap.verdicts == [None, "worse", "same"] and gap.direction == "lower"


def test_json_is_strict_and_complete():
    comp = compare_reports([make_report(A), make_report(C)], ["a", "c"], registry=FAKE)
    data = json.loads(json.dumps(comparison_to_json(comp), allow_nan=False))
    assert data["labels"] == ["a", "c"]
    by_name = {m["metric"]: m for m in data["metrics"]}
    assert by_name["recall_at_1/image_to_text"]["deltas"][1] == pytest.approx(-0.05)
    assert by_name["recall_at_1/image_to_text"]["verdicts"] == [None, "worse"]
    assert by_name["effective_rank/image"]["values"] == [None, 9.0]
    assert by_name["cos_nonmatching/image-text"]["values"] == [0.10, None]


def test_markdown_has_one_row_per_metric_and_marks():
    comp = compare_reports([make_report(A), make_report(B)], ["base", "new"], registry=FAKE)
    md = comparison_to_markdown(comp)
    rows = [line for line in md.splitlines() if line.startswith("|")][2:]
    assert len(rows) == 3
    recall = next(r for r in rows if "recall_at_1" in r)
    assert "0.7000 (+0.1000 ▲🟢)" in recall
    gap = next(r for r in rows if "modality_gap" in r)
    assert "0.9000 (+0.1000 ▲🔴)" in gap


def test_provenance_guard_against_the_first_report():
    with pytest.raises(ProvenanceError, match="cannot compare a with b"):
        compare_reports([make_report(A), make_report(B, fingerprint="other")], ["a", "b"], registry=FAKE)
    comp = compare_reports(
        [make_report(A), make_report(B, fingerprint="other")], ["a", "b"], registry=FAKE, force=True
    )
    assert comp.warnings and "forced" in comp.warnings[0]


# ---------------------------------------------------------------------------------------------- CLI


@pytest.fixture
def reports(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(chk.rules, "metric_registry", lambda: FAKE)
    for name, values in (("a.json", A), ("b.json", B), ("c.json", C)):
        make_report(values).save(tmp_path / name)
    return tmp_path


def test_cli_json(reports, capsys):
    assert run(["compare", "a.json", "b.json", "c.json", "--json", "-l", "x", "-l", "y", "-l", "z"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["labels"] == ["x", "y", "z"]
    recall = next(m for m in data["metrics"] if m["metric"] == "recall_at_1/image_to_text")
    assert recall["deltas"][1:] == pytest.approx([0.10, -0.05]) and recall["verdicts"] == [
        None,
        "better",
        "worse",
    ]


def test_cli_table_markdown_and_plot(reports, capsys):
    assert run(["compare", "a.json", "b.json", "--markdown", "cmp.md", "--plot", "figs"]) == 0
    out = capsys.readouterr().out
    assert "a.json" in out and "b.json" in out and "+0.1000" in out and "recall_at_1/image_to_text" in out
    assert (reports / "cmp.md").read_text().count("\n| `") == 3
    assert (reports / "figs" / "compare.png").stat().st_size > 0


def test_cli_table_says_better_or_worse_in_words_under_short_headers(reports, capsys):
    runs = reports / "runs" / "2026-12-01"
    runs.mkdir(parents=True)
    make_report(A).save(runs / "base.json")
    make_report(B).save(runs / "candidate.json")
    assert run(["compare", "runs/2026-12-01/base.json", "runs/2026-12-01/candidate.json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = {name: next(line for line in lines if name in line).split() for name in ("recall_at_1", "modality_gap")}
    # Without colour the words carry the verdict: a rise is better for recall and worse for the gap. The value,
    # its delta and the word are cells of their own.
    assert row["recall_at_1"][-3:] == ["0.7000", "+0.1000", "better"]
    assert row["modality_gap"][-3:] == ["0.9000", "+0.1000", "worse"]
    assert not any(arrow in line for line in lines for arrow in "▲▼")
    header = next(line for line in lines if "metric" in line)
    assert "base" in header and "candidate" in header and "runs/" not in header
    assert "base: runs/2026-12-01/base.json" in lines and "candidate: runs/2026-12-01/candidate.json" in lines


def test_short_labels_are_unique():
    from gapdiag.commands.check import short_labels

    assert short_labels(["a/x.json", "b/y.json", "epoch 3"]) == ["x", "y", "epoch 3"]
    assert short_labels(["a/x.json", "b/x.json"]) == ["1:x", "2:x"]


def test_cli_measures_models_with_the_first_report_sampling(reports, monkeypatch, capsys):
    from gapdiag.api import gate

    calls = []

    def fake_measure(data, model, options, at, device, **kwargs):
        calls.append({"data": data, "model": model, **kwargs})
        return make_report(B, size=kwargs["sample"], seed=kwargs["seed"])

    make_report(A, size=50, seed=2).save(reports / "s.json")
    monkeypatch.setattr(gate, "measure_source", fake_measure)
    assert (
        run(["compare", "s.json", "-m", "e1.pt", "-m", "e2.pt", "-d", "data.csv", "--json", "--quiet"]) == 0
    )
    assert [(c["model"], c["data"], c["sample"], c["seed"]) for c in calls] == [
        ("e1.pt", "data.csv", 50, 2),
        ("e2.pt", "data.csv", 50, 2),
    ]
    assert json.loads(capsys.readouterr().out)["labels"] == ["s.json", "e1.pt", "e2.pt"]


def test_cli_errors(reports, capsys):
    assert_one_line_error(*gapdiag(capsys, "compare", "a.json", "missing.json"), "missing.json")
    Report(metrics=A, provenance={"dataset": {"fingerprint": "zzz"}}).save(reports / "other.json")
    assert_one_line_error(*gapdiag(capsys, "compare", "a.json", "other.json"), "different data")
    assert run(["compare", "a.json", "other.json", "--force", "--json"]) == 0


@pytest.mark.parametrize(
    "args, fragment",
    [(["a.json"], "at least two reports"), (["a.json", "b.json", "-l", "only-one"], "label")],
)
def test_cli_usage_errors_exit_2(reports, capsys, args, fragment):
    assert_one_line_error(*gapdiag(capsys, "compare", *args), fragment)
    from typer.testing import CliRunner

    from gapdiag.cli import app

    assert CliRunner().invoke(app, ["compare", *args]).exit_code == 2  # the bare Typer app agrees
