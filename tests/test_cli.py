"""The ``gapdiag`` command line: help with examples, JSON output, reports, one-line errors, the cache commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from cli_helpers import assert_one_line_error, gapdiag
from conftest import TINY_ARCH, export_tiny
from data_fixtures import digits_manifest, write_csv

from gapdiag import __version__
from gapdiag.cli import app, run
from gapdiag.errors import DatasetError
from gapdiag.report import Report, split_metric_name

ROOT = Path(__file__).parent.parent
HEADER = ["image", "caption_1", "caption_2", "label", "class_name", "split"]


def command_paths() -> list[list[str]]:
    """Every command and sub-command registered on the app, as argv prefixes ([] = the root)."""

    def walk(command, path):
        yield path
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            yield from walk(sub, [*path, name])

    return list(walk(typer.main.get_command(app), []))


# -------------------------------------------------------------------------------------------------- help


@pytest.mark.parametrize("path", command_paths(), ids=lambda p: " ".join(p) or "gapdiag")
def test_every_command_has_help_with_an_example(capsys, path):
    code, out, _ = gapdiag(capsys, *path, "--help")
    assert code == 0
    assert "Usage:" in out
    assert "example" in out.lower()


def test_the_commands_the_issue_asks_for_are_registered():
    names = {" ".join(p) for p in command_paths()}
    assert {"embed", "measure", "cache", "cache ls", "cache rm", "cache dir"} <= names


def test_docs_cli_md_documents_every_command():
    text = (ROOT / "docs" / "cli.md").read_text()
    missing = [" ".join(p) for p in command_paths() if p and f"gapdiag {' '.join(p)}" not in text]
    assert not missing, f"docs/cli.md does not document: {missing}"


def test_version(capsys):
    code, out, _ = gapdiag(capsys, "--version")
    assert code == 0 and out.strip() == f"gapdiag {__version__}"


# ------------------------------------------------------------------------------------------ embed, measure


def test_embed_json(capsys, tiny_checkpoint, manifest):
    code, out, err = gapdiag(capsys, "embed", "-m", tiny_checkpoint, "-d", manifest, "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["counts"] == {"image": 8, "text": 16}
    assert summary["dim"] == 32 and summary["dtype"] == "float32"
    assert summary["skipped"] == []
    entry = Path(summary["path"])
    assert entry.name == summary["key"] and (entry / "meta.json").is_file()
    assert json.loads((entry / "meta.json").read_text())["dataset"]["counts"] == summary["counts"]


def test_embed_float16_and_human_output(capsys, tiny_checkpoint, manifest):
    code, out, _ = gapdiag(capsys, "embed", "-m", tiny_checkpoint, "-d", manifest, "--dtype", "float16", "-q")
    assert code == 0
    assert "8 image" in out and "16 text" in out and "float16" in out


REPORT_KEYS = {
    "schema_version",
    "gapdiag_version",
    "metric_definitions_version",
    "created",
    "provenance",
    "metrics",
}


def test_measure_json_report(capsys, tiny_checkpoint, manifest):
    code, out, err = gapdiag(capsys, "measure", "-m", tiny_checkpoint, "-d", manifest, "--json")
    assert code == 0, err
    report = json.loads(out)
    # docs/report-schema.md: --json leaves the bulky extras out (arrays, spectra), keeping notes and the item lists.
    assert REPORT_KEYS <= set(report)
    assert set(report.get("extras", {})) == {"conformity_items/image", "conformity_items/text"}
    prov = report["provenance"]
    assert {"model", "dataset", "sample", "device", "dtype", "cache_key"} <= set(prov)
    assert prov["model"]["checkpoint"] == str(tiny_checkpoint) and prov["model"]["architecture"] == TINY_ARCH
    assert prov["dataset"]["counts"] == {"image": 8, "text": 16}
    assert 0 <= report["metrics"]["modality_gap/image-text"] <= 2
    assert -1 <= report["metrics"]["cos_tp/image-text"] <= 1


def test_measure_out_writes_a_loadable_report(capsys, tiny_checkpoint, manifest, tmp_path):
    out_path = tmp_path / "reports" / "report.json"
    code, out, err = gapdiag(
        capsys, "measure", "-m", tiny_checkpoint, "-d", manifest, "--out", out_path, "--json"
    )
    assert code == 0, err
    loaded = Report.load(out_path)
    assert loaded.metrics == pytest.approx(json.loads(out)["metrics"])
    assert "gap_vector/image-text" in loaded.extras  # --out keeps the extras


def test_measure_metrics_selects(capsys, tiny_checkpoint, manifest):
    code, out, err = gapdiag(
        capsys, "measure", "-m", tiny_checkpoint, "-d", manifest, "--json", "--metrics", "modality_gap,cos_tp"
    )
    assert code == 0, err
    metrics = json.loads(out)["metrics"]
    assert {split_metric_name(name)[0] for name in metrics} == {"modality_gap", "cos_tp"}


def test_measure_table(capsys, tiny_checkpoint, manifest):
    code, out, _ = gapdiag(
        capsys, "measure", "-m", tiny_checkpoint, "-d", manifest, "-q", "--metrics", "modality_gap"
    )
    assert code == 0
    assert "modality_gap" in out and "image-text" in out


# ---------------------------------------------------------------------------------------------- bad input


def broken_manifest(tmp_path: Path, kind: str) -> Path:
    path, rows = digits_manifest(tmp_path / kind, n=6)
    images = path.parent / "images"
    if kind == "missing_image":
        (images / "digit_2.png").unlink()
    elif kind == "corrupt_image":
        png = images / "digit_3.png"
        png.write_bytes(png.read_bytes()[:40])  # a truncated PNG: the header survives, the pixels do not
    elif kind == "empty_caption":
        rows[4][1] = "   "
        write_csv(path, HEADER, rows)
    return path


@pytest.mark.parametrize(
    "kind, fragments",
    [
        ("missing_image", ["manifest.csv:4", "digit_2.png", "--skip-bad"]),
        ("corrupt_image", ["manifest.csv:5", "digit_3.png", "--skip-bad"]),
        ("empty_caption", ["manifest.csv:6", "caption_1"]),
    ],
)
def test_bad_rows_are_one_line_errors(capsys, tiny_checkpoint, tmp_path, kind, fragments):
    path = broken_manifest(tmp_path, kind)
    assert_one_line_error(*gapdiag(capsys, "embed", "-m", tiny_checkpoint, "-d", path, "-q"), *fragments)


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("missing_image", "image file not found"),
        ("corrupt_image", "cannot decode image"),
    ],
)
def test_skip_bad_skips_counts_and_reports(capsys, tiny_checkpoint, tmp_path, kind, reason):
    path = broken_manifest(tmp_path, kind)
    code, out, err = gapdiag(capsys, "embed", "-m", tiny_checkpoint, "-d", path, "--skip-bad", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["counts"] == {"image": 5, "text": 10}
    assert len(summary["skipped"]) == 1 and reason in summary["skipped"][0]

    code, out, err = gapdiag(capsys, "embed", "-m", tiny_checkpoint, "-d", path, "--skip-bad", "-q")
    assert code == 0
    assert [line for line in err.splitlines() if line.startswith("skipped:")] == [
        f"skipped: {summary['skipped'][0]}"
    ]


def test_skip_bad_is_reported_in_the_measure_report(capsys, tiny_checkpoint, tmp_path):
    path = broken_manifest(tmp_path, "corrupt_image")
    code, out, err = gapdiag(
        capsys,
        "measure",
        "-m",
        tiny_checkpoint,
        "-d",
        path,
        "--skip-bad",
        "--json",
        "--metrics",
        "modality_gap",
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["provenance"]["dataset"]["counts"] == {"image": 5, "text": 10}
    assert len(report["provenance"]["skipped"]) == 1


def test_unknown_model(capsys, manifest):
    assert_one_line_error(
        *gapdiag(capsys, "embed", "-m", "ViT-B-3", "-d", manifest, "-q"), "ViT-B-3", "ViT-B-32"
    )


def test_checkpoint_that_does_not_fit(capsys, manifest, tmp_path):
    wide = export_tiny(tmp_path / "wide.safetensors", seed=3, architecture="gapdiag-tiny-vit-64")
    assert_one_line_error(
        *gapdiag(capsys, "embed", "-m", TINY_ARCH, "-p", wide, "-d", manifest, "-q"),
        "does not fit",
        str(wide),
    )


def test_unwritable_cache_dir(capsys, tiny_checkpoint, manifest, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    cache = blocker / "cache"  # cannot be created whatever the permissions (root ignores chmod)
    assert_one_line_error(
        *gapdiag(capsys, "embed", "-m", tiny_checkpoint, "-d", manifest, "-q", "--cache-dir", cache),
        str(cache),
        "--cache-dir",
    )


def test_missing_data_file(capsys, tiny_checkpoint, tmp_path):
    missing = tmp_path / "nope.csv"
    assert_one_line_error(
        *gapdiag(capsys, "measure", "-m", tiny_checkpoint, "-d", missing, "-q"), str(missing)
    )


def test_debug_raises_instead_of_one_line(tiny_checkpoint, tmp_path):
    path = broken_manifest(tmp_path, "missing_image")
    with pytest.raises(DatasetError, match="digit_2.png"):
        run(["embed", "-m", str(tiny_checkpoint), "-d", str(path), "-q", "--debug"])


@pytest.mark.slow
def test_console_script_traceback_only_with_debug(tmp_path):
    missing = tmp_path / "nope.csv"
    argv = [sys.executable, "-c", "from gapdiag.cli import main; main()", "embed", "-d", str(missing), "-q"]
    plain = subprocess.run(argv, check=False, capture_output=True, text=True)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert plain.stderr.count("\n") == 1 and str(missing) in plain.stderr
    debug = subprocess.run([*argv[:4], "--debug", *argv[4:]], check=False, capture_output=True, text=True)
    assert debug.returncode != 0
    assert "Traceback" in debug.stderr and "DatasetError" in debug.stderr


# -------------------------------------------------------------------------------------------------- cache


def test_cache_ls_and_rm(capsys, tiny_checkpoint, manifest, isolated_cache):
    code, out, _ = gapdiag(capsys, "embed", "-m", tiny_checkpoint, "-d", manifest, "--json")
    key = json.loads(out)["key"]

    code, out, _ = gapdiag(capsys, "cache", "ls", "--json")
    listing = json.loads(out)
    assert code == 0 and Path(listing["root"]) == isolated_cache
    entry = next(e for e in listing["entries"] if e["key"] == key)
    assert entry["complete"] and entry["counts"] == {"image": 8, "text": 16} and entry["size_bytes"] > 0

    code, out, _ = gapdiag(capsys, "cache", "ls")
    assert code == 0 and key in out

    code, out, _ = gapdiag(capsys, "cache", "rm", key[:8], "--json")
    assert code == 0 and json.loads(out) == {"removed": [key]}
    assert not (isolated_cache / key).exists()
    code, out, _ = gapdiag(capsys, "cache", "ls", "--json")
    assert key not in [e["key"] for e in json.loads(out)["entries"]]

    assert_one_line_error(*gapdiag(capsys, "cache", "rm", key), key, "cache ls")


def test_cache_ls_without_a_terminal_prints_whole_values(capsys, monkeypatch, tiny_checkpoint, manifest):
    monkeypatch.setenv("COLUMNS", "40")  # a narrow CI log; capsys is no terminal either
    code, out, _ = gapdiag(capsys, "embed", "-m", tiny_checkpoint, "-d", manifest, "--json")
    entry = json.loads(out)
    code, out, _ = gapdiag(capsys, "cache", "ls")
    assert code == 0 and "…" not in out
    row = next(line for line in out.splitlines() if entry["key"] in line)
    created = json.loads(gapdiag(capsys, "cache", "ls", "--json")[1])["entries"][0]["created"]
    for value in (entry["model"], entry["dataset"], "image=8, text=16", entry["dtype"], created):
        assert value in row


def test_cache_ls_lists_only_entries(capsys, tiny_checkpoint, manifest):
    code, out, _ = gapdiag(capsys, "embed", "-m", tiny_checkpoint, "-d", manifest, "--json")
    key = json.loads(out)["key"]
    code, out, _ = gapdiag(capsys, "cache", "ls", "--json")
    assert code == 0
    assert [e["key"] for e in json.loads(out)["entries"]] == [key]


def test_cache_dir_prints_the_path_unwrapped(capsys, tmp_path):
    deep = tmp_path / ("a-rather-long-folder-name-" * 4) / "cache"
    code, out, _ = gapdiag(capsys, "cache", "dir", "--cache-dir", deep)
    assert code == 0 and out == f"{deep}\n"


def test_measure_with_no_arguments_measures_the_bundled_default(capsys):
    """The Quickstart's main job: bundled InfoNCE checkpoint on the bundled digits (test split), offline."""
    code, out, err = gapdiag(capsys, "measure", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["provenance"]["model"]["name"] == "infonce"
    assert report["provenance"]["dataset"]["name"] == "digits"
    assert report["provenance"]["dataset"]["counts"] == {"image": 359, "text": 3 * 359}
    metrics = report["metrics"]
    # A trained model: a real gap, well-aligned true pairs, the classes recovered by clustering.
    assert 0.05 < metrics["modality_gap/image-text"] < 1.0
    assert metrics["cos_tp/image-text"] > metrics["cos_nonmatching/image-text"]
    assert metrics["v_measure_class/joint"] > 0.5
    assert metrics["zero_shot_accuracy/image"] > 0.5
    code, out, _ = gapdiag(capsys, "measure")
    assert code == 0 and "modality_gap" in out and "infonce on digits" in out


def test_reader_options_name_the_manifest_columns_and_templates(capsys, tiny_checkpoint, tmp_path):
    from tests.data_fixtures import write_csv, write_digits

    write_digits(tmp_path / "images", list(range(6)))
    rows = [[f"images/digit_{i}.png", f"handwritten {i}", f"digit {i} by hand", i % 2] for i in range(6)]
    path = write_csv(tmp_path / "odd.csv", ["picture", "desc_a", "desc_b", "parity"], rows)
    # The error names the option that fixes it.
    assert_one_line_error(*gapdiag(capsys, "embed", "-m", tiny_checkpoint, "-d", path, "--json"), "--image-column")
    code, out, err = gapdiag(capsys, "embed", "-m", tiny_checkpoint, "-d", path, "--image-column", "picture",
                             "--text-column", "desc_a", "--text-column", "desc_b", "--label-column", "parity",
                             "--template", "the number {}", "--json")
    assert code == 0, err
    assert json.loads(out)["counts"] == {"image": 6, "text": 12}


def test_shift_writes_the_experiment_that_plot_reads(capsys, tiny_checkpoint, manifest, tmp_path):
    from gapdiag.figures import load_shift_result

    out = tmp_path / "shift.json"
    code, stdout, err = gapdiag(capsys, "shift", "-m", tiny_checkpoint, "-d", manifest, "--lambdas", "-0.5:0.5:0.5",
                                "--temperatures", "0.01,1", "--out", out, "--json")
    assert code == 0, err
    result = json.loads(stdout)
    assert result["lambdas"] == [-0.5, 0.0, 0.5]
    assert len(result["gap"]) == 3 and set(result["loss"]) == {"0.01", "1.0"}
    assert load_shift_result(out)["lambdas"] == result["lambdas"]
    assert_one_line_error(
        *gapdiag(capsys, "shift", "-m", tiny_checkpoint, "-d", manifest, "--lambdas", "a:b"), "--lambdas"
    )


def test_train_command_trains_logs_and_exports(capsys, manifest, tmp_path):
    out = tmp_path / "run"
    code, stdout, err = gapdiag(capsys, "train", "--data", manifest, "--split", "train", "--eval-split", "test",
                                "--epochs", "1", "--batch-size", "4", "--loss", "atp_cu", "--out", out, "--json")
    assert code == 0, err
    summary = json.loads(stdout)
    assert [e["epoch"] for e in summary["epochs"]] == [1]
    assert (out / "model.safetensors").is_file() and (out / "checkpoints" / "epoch_1.pt").is_file()
    code, _, err = gapdiag(capsys, "measure", "-m", out / "model.safetensors", "-d", manifest, "--json")
    assert code == 0, err
    code, _, err = gapdiag(capsys, "train", "--data", manifest, "--loss", "nope", "--out", tmp_path / "x")
    assert code == 2 and "unknown loss 'nope'" in err


@pytest.mark.parametrize("argv", [("measure",), ("report", "--out", "r.html"),
                                  ("compare", "a.json", "-m", "x")])
def test_sample_floor_is_one_check_for_every_command(capsys, tmp_path, monkeypatch, argv):
    """--sample has one floor (2, the pairwise metrics need two samples) and one message, whatever the command;
    it is refused before anything is embedded (the cache stays empty)."""
    from gapdiag.metrics.sampling import MIN_SAMPLE

    monkeypatch.setenv("GAPDIAG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    if argv[0] == "compare":
        from gapdiag.report import Report

        Report(metrics={"modality_gap/image-text": 0.5}).save(tmp_path / "a.json")
    code, out, err = gapdiag(capsys, *argv, "--sample", str(MIN_SAMPLE - 1), "-q")
    assert_one_line_error(code, out, err, "sample must be an integer >= 2", "--sample 2 or more")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_measure_threads_reaches_the_pair_passes_and_leaves_the_numbers_alone(capsys, tiny_checkpoint, manifest,
                                                                             tmp_path, monkeypatch):
    import gapdiag.metrics as metrics_module

    calls = []
    real = metrics_module.compute_all
    monkeypatch.setattr(metrics_module, "compute_all", lambda *a, **k: calls.append(k) or real(*a, **k))
    runs = {}
    for threads in ("1", "3"):  # separate caches: a memoised report would not be recomputed
        code, out, err = gapdiag(capsys, "measure", "-m", tiny_checkpoint, "-d", manifest, "--json",
                                 "--threads", threads, "--cache-dir", tmp_path / threads)
        assert code == 0, err
        runs[threads] = json.loads(out)["metrics"]
    assert [c["threads"] for c in calls] == [1, 3]
    assert runs["1"] == runs["3"]  # the same bits


def test_measure_threads_must_be_positive(capsys, tiny_checkpoint, manifest):
    code, _, err = gapdiag(capsys, "measure", "-m", tiny_checkpoint, "-d", manifest, "--threads", "0")
    assert code == 2 and "--threads" in err and "Traceback" not in err
