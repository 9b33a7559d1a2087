"""Tests of gapdiag.report.presentation (number format, metric order, summary in words) and gapdiag.report.references."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from gapdiag.metrics import REGISTRY
from gapdiag.report.presentation import format_number, group_by_family, order_metrics, summarize
from gapdiag.report.references import load_reference_points, references_for


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1.000"),
        (0.24, "0.2400"),
        (7.5, "7.500"),
        (5.261e-05, "0.00005261"),
        (-3.2171, "-3.217"),
        (123456.7, "123500"),
        (0.99996, "1.000"),  # rounding carries into a new digit: still 4 significant digits
        (9.99951, "10.00"),
        (1.23456e-7, "1.235e-07"),
        (2.5e7, "2.500e+07"),
        (0.0, "0"),
        (3, "3"),
        (None, "—"),
        (math.nan, "n/a"),
    ],
)
def test_format_number_gives_four_significant_digits_in_one_notation(value, text):
    assert format_number(value) == text


def test_order_metrics_follows_registry_families_then_bases_and_keeps_qualifier_order():
    names = ["recall_at_1/text_to_image", "zzz_unknown", "angular_value/text", "modality_gap/image-text",
             "angular_value/image", "recall_at_1/image_to_text", "cos_tp/image-text"]
    assert order_metrics(names) == [
        "modality_gap/image-text", "cos_tp/image-text", "angular_value/text", "angular_value/image",
        "recall_at_1/text_to_image", "recall_at_1/image_to_text", "zzz_unknown",
    ]
    families = [family for family, _ in group_by_family(names)]
    registry_families = list(dict.fromkeys(m.family for m in REGISTRY.values()))
    assert families == [f for f in registry_families if f in families[:-1]] + [""]


def test_summary_separable_although_gap_is_small():
    text = summarize({"modality_gap/image-text": 0.24, "modality_separability/joint": 1.0})
    assert text == ["The modalities are linearly separable (1.000) although the gap is small (0.2400)."]


def test_summary_large_gap_and_pair_margin():
    text = summarize({"modality_gap/image-text": 0.82, "modality_separability/joint": 0.999,
                      "cos_tp/image-text": 0.31, "cos_nonmatching/image-text": 0.12})
    assert text[0] == "The modalities are linearly separable (0.9990) and the gap is large (0.8200)."
    assert "0.3100 against 0.1200" in text[1] and "true pairs stand out" in text[1]


def test_summary_closed_gap_with_mixed_modalities_and_indistinct_pairs():
    text = summarize({"modality_gap/image-text": 0.05, "modality_separability/joint": 0.55,
                      "cos_tp/image-text": 0.2, "cos_nonmatching/image-text": 0.19})
    assert text[0].startswith("The gap is closed (0.05000)") and "0.5500" in text[0]
    assert "barely differ" in text[1]


def test_summary_flags_collapse_by_angular_value_and_effective_rank():
    metrics = {"angular_value/image": 0.004, "angular_value/text": 0.6, "effective_rank/image": 40.0,
               "effective_rank/joint": 1.3}
    text = summarize(metrics)
    assert len(text) == 2
    assert "Narrow cone" in text[0] and "text 0.6000" in text[0] and "image" not in text[0]
    assert "Dimensional collapse" in text[1] and "joint 1.300" in text[1]
    assert summarize({"angular_value/image": 0.004, "effective_rank/joint": 40.0}) == []


def test_summary_without_separability_and_of_nothing():
    text = summarize({"modality_gap/audio-text": 0.5})
    assert text == ["The modality gap (audio-text) is moderate (0.5000)."]
    assert summarize({}) == []
    assert summarize({"modality_gap/image-text": math.nan}) == []


def test_reference_points_are_complete_and_name_registered_metrics():
    points = load_reference_points()
    assert len(points) >= 5
    for p in points:
        assert p.metric in REGISTRY
        lo, hi = REGISTRY[p.metric].bounds
        assert (lo is None or p.value >= lo) and (hi is None or p.value <= hi)
        assert p.model and p.data and p.cite and p.source and p.url.startswith("https://")
        assert p.n is None or p.n > 0
    # The numbers the issue names, traced to their sources (docs/report-schema.md).
    values = {(p.cite, p.model, p.n): p.value for p in points}
    assert values[("Humer et al., JoVI 2024", "CLIP RN50 (OpenAI)", 5000)] == pytest.approx(0.8186, abs=1e-4)
    cyclip = values[("Humer et al., JoVI 2024", "CyCLIP (Goel et al. 2022 checkpoint)", 5000)]
    assert cyclip == pytest.approx(0.8730, abs=1e-4)


def test_reference_file_is_package_data():
    root = Path(__file__).resolve().parents[1]
    pyproject = (root / "pyproject.toml").read_text()
    assert '"report/reference_points.json"' in pyproject
    assert json.loads((root / "gapdiag" / "report" / "reference_points.json").read_text())["points"]


def test_references_for_matches_base_names_only():
    assert references_for(["cos_tp/image-text"]) == []
    found = references_for(["modality_gap/image-text", "cos_tp/image-text"])
    assert found and {p.metric for p in found} == {"modality_gap"}
    assert "N = 5,000" in found[1].label() and "0.8186" in found[1].label()


def test_measure_prints_grouped_table_with_references_and_json_key(tmp_path, capsys):
    import numpy as np

    from tests.cli_helpers import gapdiag

    rng = np.random.default_rng(0)
    z = rng.normal(size=(20, 8)).astype(np.float32)
    np.savez(tmp_path / "e.npz", image=z + 2 * np.eye(8, dtype=np.float32)[0], text=z)
    args = ("measure", "-d", tmp_path / "e.npz", "--metrics", "recall_at_1,modality_gap,cos_tp", "-q")
    code, out, _ = gapdiag(capsys, *args)
    assert code == 0
    rows = [line for line in out.splitlines() if "│" in line]
    assert [r.split("│")[2].strip() for r in rows[:2]] == ["modality_gap", "cos_tp"]  # family order
    assert "reference modality_gap: CLIP RN50 (OpenAI) 0.8186" in out
    code, out, _ = gapdiag(capsys, *args, "--json")
    data = json.loads(out)
    assert code == 0 and set(data["metrics"]) >= {"modality_gap/image-text", "cos_tp/image-text"}
    assert {r["metric"] for r in data["references"]} == {"modality_gap"}
    assert all({"value", "model", "data", "n", "source", "url"} <= set(r) for r in data["references"])
