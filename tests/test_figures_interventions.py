"""The interventions figure (``plot --kind interventions``) and its place in the HTML report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_helpers import assert_one_line_error
from cli_helpers import gapdiag as run_cli

import gapdiag
from gapdiag.errors import InputError
from gapdiag.figures import load_interventions_result, parse_kinds, plot_interventions


def _result(with_classes: bool = True) -> dict:
    before = {"modality_gap/image-text": 0.25, "gap_bures/image-text": 0.12, "cos_tp/image-text": 0.83,
              "recall_at_1/image_to_text": 0.05, "recall_at_1/text_to_image": 0.06}
    if with_classes:
        before["v_measure_class/joint"] = 0.96
    after = {k: v * 0.5 for k, v in before.items()}
    return {"methods": ["centering", "ot"], "before": before, "metrics": list(before),
            "results": {m: {"after": after, "change": {k: after[k] - before[k] for k in before}} for m in
                        ("centering", "ot")}, "split": {"kind": "seeded"}, "provenance": {}}


def test_one_panel_per_metric_present_a_bar_per_method_and_the_value_before():
    fig = plot_interventions(_result())
    assert len(fig.axes) == 6
    gids = {a.get_gid() for ax in fig.axes for a in [*ax.patches, *ax.lines]}
    assert "before/modality_gap/image-text" in gids and "bar/v_measure_class/joint" in gids
    gap_axis = fig.axes[0]
    heights = [p.get_height() for p in gap_axis.patches]
    np.testing.assert_allclose(heights, [0.125, 0.125])
    assert [t.get_text() for t in gap_axis.texts] == ["-0.12", "-0.12"]


def test_metrics_the_result_lacks_get_no_panel():
    assert len(plot_interventions(_result(with_classes=False)).axes) == 5


def test_kind_interventions_needs_its_result():
    assert parse_kinds(None, have_interventions=True) == ["interventions"]
    with pytest.raises(InputError, match="--kind interventions needs an intervention result"):
        parse_kinds(["interventions"])


@pytest.mark.parametrize(("content", "fragment"), [
    (None, "intervention result not found"),
    ("{not json", "not valid JSON"),
    (json.dumps({"methods": ["ot"]}), "not an intervention result"),
    (json.dumps({"methods": ["ot"], "before": {}, "results": {}}), "method 'ot' has no values after"),
])
def test_a_bad_result_file_is_a_one_line_error(capsys, tmp_path, content, fragment):
    path = tmp_path / "iv.json"
    if content is not None:
        path.write_text(content)
    code, out, err = run_cli(capsys, "plot", "--interventions", path, "--out", tmp_path / "figs")
    assert_one_line_error(code, out, err, fragment)


def test_plot_and_report_draw_it_from_the_file(capsys, tmp_path):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(30, 8)).astype(np.float32)
    np.savez(tmp_path / "emb.npz", image=images, text=images + 0.3 + 0.2 * rng.normal(size=(30, 8)))
    gapdiag.intervene(str(tmp_path / "emb.npz"), methods=["centering"], out=tmp_path / "iv.json",
                      progress=False)
    assert load_interventions_result(tmp_path / "iv.json")["methods"] == ["centering"]
    code, _, err = run_cli(capsys, "plot", "--interventions", tmp_path / "iv.json", "--out", tmp_path / "figs")
    assert code == 0, err
    assert (tmp_path / "figs" / "interventions.png").stat().st_size > 0
    gapdiag.measure(str(tmp_path / "emb.npz"), metrics=["modality_gap"], out=tmp_path / "m.json", progress=False)
    code, _, err = run_cli(capsys, "report", "--report", tmp_path / "m.json", "--kind", "interventions",
                             "--interventions", tmp_path / "iv.json", "--out", tmp_path / "r.html", "--quiet")
    assert code == 0, err
    page = (tmp_path / "r.html").read_text()
    assert "Post-hoc interventions fitted on one part of the items" in page
