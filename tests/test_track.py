"""``gapdiag track`` (issue #28 §1): a checkpoint series measured on one dataset, ordered by step, cached."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from cli_helpers import assert_one_line_error, gapdiag
from conftest import TINY_ARCH, instrument_encoding, tiny_model
from test_models_training_output import open_clip_run, training_checkpoint

from gapdiag import api
from gapdiag.models.checkpoints import find_checkpoints
from gapdiag.report.track import Track

CPU = ("--device", "cpu")


def measured(capsys, manifest, *model_args) -> dict:
    code, out, err = gapdiag(capsys, "measure", "-d", manifest, *model_args, *CPU, "--json", "-q")
    assert code == 0, err
    return json.loads(out)["metrics"]


# ------------------------------------------------------------------------------------------ the equality


def test_track_on_one_checkpoint_equals_measure_on_it(tmp_path, capsys, manifest, tiny_checkpoint):
    code, out, err = gapdiag(capsys, "track", tiny_checkpoint, "-d", manifest, *CPU, "--json", "-q")
    assert code == 0, err
    (point,) = json.loads(out)["points"]
    assert point["checkpoint"] == str(tiny_checkpoint)
    assert point["report"]["metrics"] == measured(capsys, manifest, "-m", tiny_checkpoint)
    assert len(point["report"]["metrics"]) > 30  # every metric, not a chosen few


def test_each_point_of_a_run_equals_measure_of_its_checkpoint(tmp_path, capsys, manifest):
    paths, _ = open_clip_run(tmp_path / "logs" / "run", epochs=2)
    code, out, err = gapdiag(capsys, "track", tmp_path / "logs" / "run", "-d", manifest, *CPU, "--json", "-q")
    assert code == 0, err
    points = json.loads(out)["points"]
    assert [(p["step"], p["checkpoint"]) for p in points] == [(1, str(paths[0])), (2, str(paths[1]))]
    for point, path in zip(points, paths, strict=True):
        assert point["report"]["metrics"] == measured(capsys, manifest, "-m", path)
    assert points[0]["report"]["metrics"] != points[1]["report"]["metrics"]  # two different models


# ------------------------------------------------------------------------------------------------ order


def _bare_epochs(folder: Path, steps: list[int], names: list[str] | None = None) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    names = names or [f"epoch_{s}.pt" for s in steps]
    return [training_checkpoint(folder / name, tiny_model(seed=s), epoch=s, ddp=True)
            for s, name in zip(steps, names, strict=True)]


def test_a_series_is_ordered_by_the_number_not_the_text_of_its_names(tmp_path):
    _bare_epochs(tmp_path / "checkpoints", [10, 2, 1])
    assert [s for s, _ in find_checkpoints([tmp_path])] == [1, 2, 10]  # the run folder: its checkpoints/
    assert [s for s, _ in find_checkpoints([str(tmp_path / "checkpoints" / "epoch_*.pt")])] == [1, 2, 10]


def test_names_without_a_step_are_ordered_by_the_epoch_they_store(tmp_path):
    paths = _bare_epochs(tmp_path, [7, 3], names=["latest.pt", "best.pt"])
    assert find_checkpoints(paths) == [(3, paths[1]), (7, paths[0])]


def test_open_clips_copy_of_the_latest_epoch_is_not_that_epoch_twice(tmp_path):
    paths = _bare_epochs(tmp_path / "checkpoints", [1, 2])
    shutil.copy(paths[-1], tmp_path / "checkpoints" / "epoch_latest.pt")  # open_clip's --save-most-recent
    assert find_checkpoints([tmp_path]) == [(1, paths[0]), (2, paths[1])]
    assert find_checkpoints([str(tmp_path / "checkpoints" / "*.pt")]) == [(1, paths[0]), (2, paths[1])]
    assert find_checkpoints([tmp_path / "checkpoints" / "epoch_latest.pt"]) == [
        (2, tmp_path / "checkpoints" / "epoch_latest.pt")]


def test_a_file_named_twice_counts_once(tmp_path):
    (path,) = _bare_epochs(tmp_path, [1])
    assert find_checkpoints([path, tmp_path, str(tmp_path / "*.pt")]) == [(1, path)]


@pytest.mark.parametrize("case", ["same step", "no step", "empty folder", "no match", "missing"])
def test_a_series_that_cannot_be_ordered_is_one_line_and_embeds_nothing(tmp_path, capsys, manifest, monkeypatch,
                                                                        case):
    counts = instrument_encoding(monkeypatch.setattr)
    folder = tmp_path / "ckpts"
    folder.mkdir()
    if case == "same step":
        _bare_epochs(folder, [1])
        shutil.copy(folder / "epoch_1.pt", folder / "epoch-1.pth")
        args, fragments = [folder], ["epoch_1.pt", "epoch-1.pth", "both step 1"]
    elif case == "no step":
        _bare_epochs(folder, [1])
        torch.save(tiny_model(seed=1).state_dict(), folder / "final.pt")  # a series of one would be step 0
        args, fragments = [folder], ["final.pt", "no step", "epoch_3.pt"]
    elif case == "empty folder":
        args, fragments = [folder], [str(folder), "no checkpoint files"]
    elif case == "no match":
        args, fragments = [str(folder / "epoch_*.pt")], ["no checkpoint matches", "epoch_*.pt"]
    else:
        args, fragments = [folder / "epoch_9.pt"], ["checkpoint not found", "epoch_9.pt"]
    code, out, err = gapdiag(capsys, "track", *args, "-d", manifest, "-m", TINY_ARCH, *CPU, "-q")
    assert_one_line_error(code, out, err, *fragments)
    assert counts == {"image": 0, "text": 0}


def test_an_output_that_would_overwrite_a_checkpoint_is_refused_before_any_work(tmp_path, capsys, manifest):
    (path,) = _bare_epochs(tmp_path, [1])
    before = path.read_bytes()
    code, out, err = gapdiag(capsys, "track", path, "-d", manifest, "-m", TINY_ARCH, *CPU, "--out", path, "-q")
    assert_one_line_error(code, out, err, "--out", str(path))
    assert path.read_bytes() == before


def test_a_malicious_checkpoint_in_a_series_is_refused_and_never_run(tmp_path, capsys, manifest):
    from test_models import Payload

    marker = tmp_path / "code-ran"
    torch.save({"epoch": 2, "state_dict": {}, "payload": Payload(str(marker))}, tmp_path / "latest.pt")
    code, out, err = gapdiag(capsys, "track", tmp_path / "latest.pt", "-d", manifest, "-m", TINY_ARCH, *CPU, "-q")
    assert_one_line_error(code, out, err, "latest.pt", "pickled")
    assert not marker.exists()


# -------------------------------------------------------------------------------------------- the cache


def test_tracking_again_after_one_more_epoch_embeds_and_measures_only_that_epoch(tmp_path, manifest, monkeypatch):
    import gapdiag.metrics as metrics_package

    run = tmp_path / "logs" / "run"
    open_clip_run(run, epochs=2)
    counts = instrument_encoding(monkeypatch.setattr)
    first = api.track([run], manifest, device="cpu", progress=False)
    two_models = dict(counts)
    counts.update(image=0, text=0)
    computed = []
    compute_all = metrics_package.compute_all
    monkeypatch.setattr(metrics_package, "compute_all", lambda *a, **k: computed.append(1) or compute_all(*a, **k))
    (run / "params.txt").touch()
    training_checkpoint(run / "checkpoints" / "epoch_3.pt", tiny_model(seed=13), epoch=3, ddp=True)
    second = api.track([run], manifest, device="cpu", progress=False)
    assert [p.step for p in second.points] == [1, 2, 3]
    assert counts == {kind: n // 2 for kind, n in two_models.items()}  # one model's worth of encoding
    assert counts["image"] == 8  # the manifest's 8 images
    assert len(computed) == 1
    for old, new in zip(first.points, second.points[:2], strict=True):
        assert old.report.metrics == new.report.metrics


# ------------------------------------------------------------------------------------------- the outputs


def test_json_record_and_parquet_hold_every_metric_per_checkpoint(tmp_path, capsys, manifest):
    import pyarrow.parquet as pq

    run = tmp_path / "logs" / "run"
    open_clip_run(run, epochs=2)
    record, table = tmp_path / "track.json", tmp_path / "track.parquet"
    code, out, err = gapdiag(capsys, "track", run, "-d", manifest, *CPU, "--out", record, "--parquet", table)
    assert code == 0, err
    assert "step 1" in out and "step 2" in out and "modality_gap/image-text" in out
    track = Track.load(record)
    rows = pq.read_table(table).to_pylist()
    assert [r["step"] for r in rows] == [1, 2]
    for row, point in zip(rows, track.points, strict=True):
        assert row["checkpoint"] == point.checkpoint
        assert row["checkpoint_sha256"] == point.report.provenance["model"]["checkpoint_sha256"]
        values = {k: v for k, v in row.items() if k not in ("step", "checkpoint", "checkpoint_sha256")}
        assert values.keys() == point.report.metrics.keys()
        for name, value in values.items():
            expected = point.report.metrics[name]
            assert value == expected or (value is None and math.isnan(expected)), name  # NaN is null


@pytest.mark.parametrize(("content", "fragment"), [
    ("{", "track.json:1: not valid JSON"), ('{"kind": "other"}', "not a gapdiag track record"),
    ('{"kind": "gapdiag-track", "schema_version": 1, "points": [{"step": "1", "checkpoint": "a"}]}', "point 0"),
])
def test_a_damaged_track_record_is_one_line(tmp_path, content, fragment):
    from gapdiag.errors import InputError

    path = tmp_path / "track.json"
    path.write_text(content)
    with pytest.raises(InputError) as err:
        Track.load(path)
    assert fragment in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


# ------------------------------------------------------------------------------------------ gapdiag train


def test_track_reads_the_epochs_gapdiag_train_saves(tmp_path, capsys, manifest):
    run = tmp_path / "run"
    code, _, err = gapdiag(capsys, "train", "-d", manifest, "--out", run, "--epochs", 2, "--batch-size", 8, "-q",
                           *CPU)
    assert code == 0, err
    code, out, err = gapdiag(capsys, "track", run, "-d", manifest, *CPU, "--json", "-q")
    assert code == 0, err
    points = json.loads(out)["points"]
    assert [p["step"] for p in points] == [1, 2]
    assert points[-1]["report"]["metrics"] == measured(capsys, manifest, "-m", run / "checkpoints" / "epoch_2.pt")


# ------------------------------------------------------------------------------------------- the figure


def synthetic_track(path: Path) -> Path:
    """A track record of three steps with known values (no model: the figure only reads the record)."""
    from gapdiag.report import Report
    from gapdiag.report.track import TrackPoint

    points = [TrackPoint(step, f"run/checkpoints/epoch_{step}.pt", Report(
        metrics={"modality_gap/image-text": 0.8 - 0.1 * i, "cos_tp/image-text": 0.2 + 0.05 * i,
                 "recall_at_1/image_to_text": 0.1 * i, "recall_at_1/text_to_image": 0.05 * i,
                 "uniformity_wang_isola/image": -1.0 - i},
        provenance={"dataset": {"name": "digits"}})) for i, step in enumerate([1, 2, 10])]
    Track(points).save(path)
    return path


def _lines(figure) -> dict[str, tuple[list[float], list[float]]]:
    return {line.get_gid(): (list(line.get_xdata()), list(line.get_ydata()))
            for ax in figure.axes for line in ax.lines if (line.get_gid() or "").startswith("track/")}


def test_the_track_figure_draws_the_chosen_metrics_against_step(tmp_path, capsys):
    record = synthetic_track(tmp_path / "track.json")
    code, out, err = gapdiag(capsys, "plot", "--kind", "track", "--track", record, "--metrics",
                             "modality_gap,recall_at_1", "--out", tmp_path / "figs", "--json")
    assert code == 0, err
    assert str(tmp_path / "figs" / "track.png") in out
    from PIL import Image

    with Image.open(tmp_path / "figs" / "track.png") as image:
        assert image.size[0] > 300
    from gapdiag.figures import plot_track

    figure = plot_track(Track.load(record), ["modality_gap", "recall_at_1"])
    lines = _lines(figure)
    assert set(lines) == {"track/modality_gap/image-text", "track/recall_at_1/image_to_text",
                          "track/recall_at_1/text_to_image"}
    steps, gaps = lines["track/modality_gap/image-text"]
    assert steps == [1, 2, 10] and gaps == pytest.approx([0.8, 0.7, 0.6])
    assert len(figure.axes) == 2  # one panel per base metric, its qualifiers as lines


def test_the_track_figure_draws_the_default_metrics_the_record_has(tmp_path):
    from gapdiag.figures import plot_track

    lines = _lines(plot_track(Track.load(synthetic_track(tmp_path / "track.json"))))
    assert set(lines) == {"track/modality_gap/image-text", "track/cos_tp/image-text",
                          "track/uniformity_wang_isola/image", "track/recall_at_1/image_to_text",
                          "track/recall_at_1/text_to_image"}


@pytest.mark.parametrize(("args", "fragments"), [
    (["--kind", "track"], ["--kind track needs a track record", "--track"]),
    (["--kind", "track", "--track", "TRACK", "--metrics", "hubness"], ["hubness", "modality_gap"]),
    (["--kind", "map", "--track", "TRACK"], ["--track"]),
])
def test_track_figure_options_that_cannot_be_drawn_are_one_line(tmp_path, capsys, args, fragments):
    record = synthetic_track(tmp_path / "track.json")
    args = [record if a == "TRACK" else a for a in args]
    code, out, err = gapdiag(capsys, "plot", *args, "--out", tmp_path / "figs")
    assert_one_line_error(code, out, err, *fragments)
    assert not (tmp_path / "figs" / "track.png").exists()


# --------------------------------------------------------------------------------------------- the page


def test_the_html_report_has_a_section_over_training(tmp_path, capsys, manifest):
    from html.parser import HTMLParser

    run = tmp_path / "logs" / "run"
    paths, _ = open_clip_run(run, epochs=2)
    record = tmp_path / "track.json"
    code, _, err = gapdiag(capsys, "track", run, "-d", manifest, *CPU, "--out", record, "-q")
    assert code == 0, err
    page = tmp_path / "page.html"
    code, _, err = gapdiag(capsys, "report", "-d", manifest, "-m", paths[-1], *CPU, "--kind", "hist", "--track",
                           record, "--no-interactive", "--dpi", "30", "--out", page, "-q")
    assert code == 0, err
    text = page.read_text()
    assert "<h2>Over training</h2>" in text and 'id="fig-track"' in text
    track = Track.load(record)

    class Rows(HTMLParser):
        rows: dict[str, list[str]] = {}  # noqa: RUF012 - one parse per test

        def handle_starttag(self, tag, attrs):
            self.current = dict(attrs).get("data-track-metric") if tag == "tr" else getattr(self, "current", None)

        def handle_data(self, data):
            if getattr(self, "current", None) and data.strip():
                self.rows.setdefault(self.current, []).append(data.strip())

    parser = Rows()
    parser.feed(text)
    assert set(parser.rows) == set(track.metric_names)
    from gapdiag.report.presentation import format_number

    gap = "modality_gap/image-text"
    assert parser.rows[gap][1:] == [format_number(p.report.metrics[gap]) for p in track.points]


def test_a_track_of_other_data_is_refused_on_the_page(tmp_path, capsys, manifest):
    from data_fixtures import digits_manifest

    record = synthetic_track(tmp_path / "track.json")
    data = json.loads(record.read_text())
    data["points"][0]["report"]["provenance"]["dataset"]["fingerprint"] = "f" * 64
    record.write_text(json.dumps(data))
    other, _ = digits_manifest(tmp_path / "other", n=6)
    code, out, err = gapdiag(capsys, "report", "-d", other, "-m", TINY_ARCH, "--random-init", *CPU, "--kind", "hist",
                             "--track", record, "--no-interactive", "--out", tmp_path / "page.html", "-q")
    assert_one_line_error(code, out, err, str(record), "another dataset")
    assert not (tmp_path / "page.html").exists()


def test_several_runs_are_drawn_side_by_side_named_by_their_labels(tmp_path, capsys):
    from gapdiag.figures import plot_track

    first = synthetic_track(tmp_path / "infonce.json")
    second = tmp_path / "atp.json"
    data = json.loads(first.read_text())
    for point in data["points"]:
        point["report"]["metrics"]["modality_gap/image-text"] /= 4
    second.write_text(json.dumps(data))
    code, out, err = gapdiag(capsys, "plot", "--track", first, "--track", second, "--label", "InfoNCE", "--label",
                             "ATP+CU", "--metrics", "modality_gap", "--out", tmp_path / "figs")
    assert code == 0, err
    assert (tmp_path / "figs" / "track.png").is_file()
    lines = _lines(plot_track([Track.load(first), Track.load(second)], ["modality_gap"], labels=["InfoNCE", "ATP+CU"]))
    assert set(lines) == {"track/InfoNCE/modality_gap/image-text", "track/ATP+CU/modality_gap/image-text"}
    assert lines["track/ATP+CU/modality_gap/image-text"][1] == pytest.approx([0.2, 0.175, 0.15])
    code, out, err = gapdiag(capsys, "plot", "--track", first, "--track", second, "--label", "InfoNCE",
                             "--out", tmp_path / "figs2")
    assert_one_line_error(code, out, err, "1 --label values for 2 --track files")


def test_a_track_record_that_is_a_folder_or_not_utf8_is_one_line(tmp_path):
    """Track.load read its file with its own error handling, a twin of Report.load's with fewer cases."""
    from gapdiag.errors import InputError

    (tmp_path / "binary.json").write_bytes(b"\xff\xfe{}")
    for path, fragment in ((tmp_path, "is a directory, not a track record"),
                           (tmp_path / "binary.json", "not a text file (not UTF-8), so not a track record"),
                           (tmp_path / "missing.json", "track record not found")):
        with pytest.raises(InputError) as err:
            Track.load(path)
        assert fragment in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)
