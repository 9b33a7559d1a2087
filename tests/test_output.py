"""Output off a terminal (issue #30 §3): what `check`, `compare`, `shift`, `measure` and `train` print into a
pipe, a file or a CI log.

Rich assumes 80 columns when stdout is not a terminal and squeezes tables to fit: a cell cut to "…", a row
wrapped onto three lines, a value and its delta folded into one another. These tests run the real console
script through a real pipe (``stdout=PIPE``, no ``COLUMNS``), as a CI job does, and read the rows back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gapdiag.report import Report
from gapdiag.report.presentation import format_delta, format_value

REPO = Path(__file__).resolve().parents[1]

#: Real metric names (the registry's directions and default rules apply), long enough to fill a row.
BASELINE = {
    "modality_gap/image-text": 0.8123,
    "cos_tp/image-text": 0.3012,
    "uniformity_wang_isola/joint": -1.9249,
    "effective_rank/joint": 14.9198,
    "recall_at_1/text_to_image": 0.4321,
    "hubness_skewness/image_to_text": 1.3051,
    "zero_shot_accuracy/image": 0.9359,
}
CURRENT = {**BASELINE, "modality_gap/image-text": 0.0463, "recall_at_1/text_to_image": 0.4011,
           "hubness_skewness/image_to_text": 1.5990, "effective_rank/joint": 16.6721}
#: Rules whose text ("↓ tol 5% min 0 max 1.5") does not fit beside the numbers in 80 columns.
CONFIG = """\
[check.rules.modality_gap]
max_drop_relative = 0.05
min = 0
max = 1.5

[check.rules.recall_at_1]
max_drop = 0.5
min = 0.05
max = 0.999

[check.rules.hubness_skewness]
max_drop_relative = 0.5
min = -10
max = 10
"""


def run_piped(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``gapdiag ARGS`` as a separate process whose stdout and stderr are pipes, with no width in the
    environment: what a CI job or ``gapdiag ... | cat`` sees."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "gapdiag", *map(str, args)], cwd=cwd, env=env, text=True,
                          capture_output=True, stdin=subprocess.DEVNULL, check=False)


def _report(metrics: dict[str, float]) -> Report:
    return Report(metrics=dict(metrics), provenance={
        "model": {"name": "a-model-with-a-rather-long-name"}, "dataset": {"name": "d", "fingerprint": "fp-1"},
        "sample": {"size": None, "seed": 0}, "device": "cpu"})


@pytest.fixture
def reports(tmp_path: Path) -> Path:
    _report(BASELINE).save(tmp_path / "baseline.json")
    _report(CURRENT).save(tmp_path / "candidate.json")
    _report({**CURRENT, "cos_tp/image-text": 0.3113}).save(tmp_path / "third.json")
    (tmp_path / "gapdiag.toml").write_text(CONFIG)
    return tmp_path


def the_line(out: str, name: str) -> list[str]:
    """The one line of ``out`` that names metric ``name``, as whitespace-separated cells."""
    lines = [line for line in out.splitlines() if f" {name} " in f" {line} "]
    assert len(lines) == 1, (name, out)
    return lines[0].split()


def test_check_through_a_pipe_prints_one_whole_row_per_metric(reports):
    piped = run_piped("check", "--baseline", "baseline.json", "--report", "candidate.json", cwd=reports)
    assert piped.returncode == 0, piped.stderr
    outcomes = json.loads(run_piped("check", "--baseline", "baseline.json", "--report", "candidate.json",
                                    "--json", cwd=reports).stdout)["outcomes"]
    assert "…" not in piped.stdout
    assert any(len(line) > 80 for line in piped.stdout.splitlines())  # wider than rich's 80 columns
    assert len(outcomes) == len(BASELINE)
    for o in outcomes:
        cells = the_line(piped.stdout, o["name"])
        rule = o["rule"] or "—"
        assert cells[:4] == [o["name"], format_value(o["baseline"]), format_value(o["current"]),
                             format_delta(o["delta"])]
        assert " ".join(cells[4:]) == f"{rule} {o['status']}"  # the whole rule, then the status
    long_rule = next(o["rule"] for o in outcomes if o["name"] == "modality_gap/image-text")
    assert long_rule.count(" ") >= 4  # the rule really is the long one the config asks for


def test_compare_through_a_pipe_keeps_values_and_deltas_apart(reports):
    labels = ("released-2026-11-30", "candidate-gap-closing-lr3e-4", "candidate-gap-closing-lr1e-3")
    piped = run_piped("compare", "baseline.json", "candidate.json", "third.json",
                      *(arg for label in labels for arg in ("-l", label)), cwd=reports)
    assert piped.returncode == 0, piped.stderr
    assert "…" not in piped.stdout
    header = next(line for line in piped.stdout.splitlines() if line.split()[:1] == ["metric"])
    assert all(label in header.split() for label in labels), header
    for name, before in BASELINE.items():
        cells = the_line(piped.stdout, name)
        after = CURRENT[name]
        assert format_value(before) in cells and format_value(after) in cells
        if after != before:  # the delta is a cell of its own, never glued to a value
            assert format_delta(after - before) in cells
    gap = the_line(piped.stdout, "modality_gap/image-text")
    assert gap[gap.index(format_delta(CURRENT["modality_gap/image-text"] - BASELINE["modality_gap/image-text"]))
               + 1] == "better"


@pytest.fixture
def embeddings(tmp_path: Path) -> Path:
    """Precomputed image and text vectors of 6 clusters (no model to load in the subprocess)."""
    rng = np.random.default_rng(0)
    labels = np.arange(60) % 6
    centres = rng.normal(size=(6, 16))
    image = centres[labels] + 0.3 * rng.normal(size=(60, 16)) + 1.5
    text = centres[labels] + 0.3 * rng.normal(size=(60, 16)) - 1.5
    path = tmp_path / "vectors.npz"
    np.savez(path, image=image.astype(np.float32), text=text.astype(np.float32))
    return path


def test_shift_through_a_pipe_prints_whole_headers_and_one_line_per_lambda(embeddings, tmp_path):
    piped = run_piped("shift", "-d", embeddings, "--lambdas", "-0.5:0.5:0.5", "--temperatures",
                      "0.01,0.02,0.05,0.1,0.5,1", "--quiet", cwd=tmp_path)
    assert piped.returncode == 0, piped.stderr
    assert "…" not in piped.stdout
    header = next(line for line in piped.stdout.splitlines() if "λ" in line)
    for column in ("gap", "loss τ=0.01", "loss τ=0.5", "R@1 i→t", "R@1 t→i"):
        assert column in header, header
    rows = [line for line in piped.stdout.splitlines() if any(f" {lam} " in line for lam in ("-0.50", "+0.00",
                                                                                          "+0.50"))]
    assert len(rows) == 3, piped.stdout
    assert all(len([c for c in row.replace("│", " ").split() if c[-1].isdigit()]) >= 10 for row in rows)


def test_measure_through_a_pipe_prints_whole_rows_also_with_intervals(embeddings, tmp_path):
    piped = run_piped("measure", "-d", embeddings, "--metrics", "modality_gap,uniformity_wang_isola,"
                      "hubness_skewness", "--bootstrap", "3", "--quiet", cwd=tmp_path)
    assert piped.returncode == 0, piped.stderr
    assert "…" not in piped.stdout
    report = json.loads(run_piped("measure", "-d", embeddings, "--metrics", "modality_gap,uniformity_wang_isola,"
                                  "hubness_skewness", "--bootstrap", "3", "--json", cwd=tmp_path).stdout)
    for name, value in report["metrics"].items():
        base, qualifier = name.split("/")
        rows = [line for line in piped.stdout.splitlines() if f" {base} " in line and f" {qualifier} " in line]
        assert len(rows) == 1, (name, piped.stdout)
        lo, hi = report["intervals"][name]
        assert format_value(value) in rows[0] and f"[{format_value(lo)}, {format_value(hi)}]" in rows[0]


def test_train_prints_one_plain_line_per_epoch_into_a_log(tmp_path, capsys):
    from cli_helpers import gapdiag
    from data_fixtures import digits_manifest

    from gapdiag.training.evaluation import EPOCH_METRICS

    manifest, _ = digits_manifest(tmp_path / "data", n=12)
    code, _out, err = gapdiag(capsys, "train", "-d", manifest, "--out", tmp_path / "run", "--epochs", "2",
                             "--batch-size", "4", "--device", "cpu")  # capsys: stderr is no terminal
    assert code == 0, err
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    lines = [line for line in err.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"]
    for line, record in zip(lines, logged):
        cells = line.split()
        # loss, then the headline metrics the trainer measured (EPOCH_METRICS; metrics.jsonl holds more), each as
        # "name value" with the logged value, then the epoch's seconds
        assert cells[2:4] == ["loss", format_value(record["loss"])]
        shown = [name for name in record if "/" in name and name.split("/")[0] in EPOCH_METRICS]
        assert "modality_gap/image-text" in shown and any(n.startswith("recall_at_1/") for n in shown)
        for name in shown:
            assert cells[cells.index(name) + 1] == format_value(record[name]), (name, line)
        assert cells[cells.index("τ") + 1] == format_value(record["temperature"])

    code, _out, err = gapdiag(capsys, "train", "-d", manifest, "--out", tmp_path / "quiet", "--epochs", "1",
                             "--batch-size", "4", "--device", "cpu", "--quiet")
    assert code == 0 and not [line for line in err.splitlines() if line.startswith("epoch ")]


class FakeClock:
    """A clock the test moves by hand: progress lines depend on time, the test does not wait for it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_progress_off_a_terminal_is_a_plain_line_every_interval_and_at_the_end(capsys):
    import datetime

    from gapdiag.progress import PLAIN_INTERVAL_S, print_line, progress_bar

    def hms(seconds: float) -> str:
        return str(datetime.timedelta(seconds=int(seconds)))

    clock = FakeClock()
    with progress_bar(True, unit="items", clock=clock) as bar:  # capsys: stderr is no terminal
        task = bar.add_task("embed image", total=1000)
        bar.advance(task, 100)
        clock.now += PLAIN_INTERVAL_S / 2
        bar.advance(task, 100)  # too soon for another line
        clock.now += PLAIN_INTERVAL_S
        bar.advance(task, 300)
        print_line(bar, "a status line")
        other = bar.add_task("embed text", total=10)
        bar.update(other, completed=10)  # done: its last line at once
        clock.now += 1
        bar.update(task, completed=1000)
    lines = capsys.readouterr().err.splitlines()
    at = 1.5 * PLAIN_INTERVAL_S
    assert lines == [
        "embed image 0/1,000 items (0%)",
        f"embed image 500/1,000 items (50%), {500 / at:,.0f} items/s, elapsed {hms(at)}, eta {hms(500 / (500 / at))}",
        "a status line",
        "embed text 0/10 items (0%)",
        "embed text 10/10 items (100%), done in 0:00:00",
        f"embed image 1,000/1,000 items (100%), done in {hms(at + 1)}",
    ]


def test_the_console_is_unbounded_only_where_nothing_redraws():
    from gapdiag.progress import UNBOUNDED_WIDTH, LogConsole

    assert LogConsole(force_terminal=False).size.width == UNBOUNDED_WIDTH  # a pipe, a file, a CI log
    assert LogConsole(force_terminal=True, width=77).size.width == 77  # a terminal keeps its width
    notebook = LogConsole(force_jupyter=True)  # a notebook renders live too: rich's width, rich's bars
    assert notebook.is_live and notebook.size.width < UNBOUNDED_WIDTH


def test_notes_warnings_and_skipped_lines_keep_their_brackets(capsys):
    """A note such as "pip install 'gapdiag[parquet]'" lost its "[parquet]" when printed as rich markup."""
    from gapdiag.commands.printing import print_labelled, print_skipped

    print_labelled("note", ["install it with: pip install 'gapdiag[parquet]'"])
    print_labelled("warning", ["reports/[old].json differs"])
    print_skipped(["data/[x].csv:3: empty caption (caption dropped)"], {"[b]tw[/b]": "no labels"})
    err = capsys.readouterr().err
    assert "note: install it with: pip install 'gapdiag[parquet]'" in err
    assert "warning: reports/[old].json differs" in err
    assert "skipped: data/[x].csv:3: empty caption" in err
    assert "skipped metric: [b]tw[/b]: no labels" in err


def test_every_command_prints_its_labelled_lines_through_the_one_escaping_helper():
    """Each command used to print its own "[yellow]note:[/] {note}" lines, and three did not escape the note."""
    import re

    commands = Path(__file__).resolve().parent.parent / "gapdiag" / "commands"
    offenders = [f"{p.name}:{i}" for p in sorted(commands.glob("*.py")) if p.name != "printing.py"
                 for i, line in enumerate(p.read_text().splitlines(), 1)
                 if re.search(r"\[yellow\](note|warning|skipped)", line)]
    assert offenders == []
