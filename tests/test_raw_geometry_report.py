"""The raw geometry (issue #27 §2) through ``measure``: the cache keeps the raw vectors, the most and least
conforming items are named by their captions and paths, in the terminal, ``--json`` and the HTML report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_helpers import gapdiag

from gapdiag import api
from gapdiag.report.html import render_html
from gapdiag.report.record import Report


@pytest.fixture(scope="module")
def measured() -> Report:
    return api.measure(device="cpu", progress=False)  # the bundled model on the bundled digits, via the cache


def test_the_cache_keeps_the_raw_vectors_and_their_norms_are_measured(measured):
    es = api.embed(device="cpu", progress=False)
    for m in ("image", "text"):
        norms = np.linalg.norm(np.asarray(es.vectors[m], dtype=np.float64), axis=1)
        assert np.abs(norms - 1.0).max() > 1e-2  # the model's output as it came, not normalised
        assert measured.metrics[f"raw_norm_mean/{m}"] == pytest.approx(norms.mean(), rel=1e-6)
        assert measured.metrics[f"thin_shell_ratio/{m}"] == pytest.approx(norms.std() / norms.mean(), rel=1e-5)


def test_the_most_and_least_conforming_items_are_named_by_path_and_caption(measured):
    for m, word in (("image", "path"), ("text", "caption")):
        listed = measured.extras[f"conformity_items/{m}"]
        assert len(listed["most"]) == len(listed["least"]) == 5
        assert all(e.get(word) and "estimate" in e for e in listed["most"] + listed["least"])


def test_the_html_report_shows_the_raw_geometry(measured):
    page = render_html(measured, {})
    assert "<h3>Raw geometry</h3>" in page
    assert f"{measured.metrics['thin_shell_ratio/text']:.4g}" in page
    least = measured.extras["conformity_items/text"]["least"][0]
    assert f"#{least['item']} {least['caption']}" in page
    assert "raw vectors" in page  # raw_separability beside the unit one


def test_a_report_given_normalised_vectors_says_so_in_the_html():
    report = Report(metrics={"modality_gap/image-text": 0.5},
                    extras={"skipped": {"raw_norm_mean/image": "the image vectors are already L2-normalised (...)"}})
    page = render_html(report, {})
    assert "Raw geometry" in page and "the image vectors are already L2-normalised" in page


def test_measure_prints_the_items_and_json_keeps_them(capsys):
    code, out, _ = gapdiag(capsys, "measure", "--device", "cpu", "-q")
    assert code == 0 and "most conforming text: #" in out and "least conforming image: #" in out
    code, out, _ = gapdiag(capsys, "measure", "--device", "cpu", "-q", "--json")
    summary = json.loads(out)
    assert code == 0 and summary["extras"]["conformity_items/text"]["most"][0]["caption"]
    assert "raw_norms/text" not in summary["extras"]  # the short lists only, not every summary


def test_a_precomputed_set_saved_normalised_is_named_on_stderr_and_its_norms_not_shown(capsys, tmp_path):
    rng = np.random.default_rng(0)
    img, txt = rng.normal(size=(30, 8)) + 1.0, rng.normal(size=(30, 8)) * 3.0
    img = (img / np.linalg.norm(img, axis=1, keepdims=True)).astype(np.float16)  # saved after normalisation
    np.savez(tmp_path / "emb.npz", image=img, text=txt.astype(np.float32))
    code, out, err = gapdiag(capsys, "measure", "-d", tmp_path / "emb.npz", "--device", "cpu", "--json")
    report = json.loads(out)
    assert code == 0
    assert "skipped metric: raw_norm_mean/image: the image vectors are already L2-normalised" in err
    assert "raw_norm_mean/image" not in report["metrics"] and "thin_shell_ratio/image" not in report["metrics"]
    assert report["metrics"]["raw_norm_mean/text"] > 1.5  # the raw modality beside it is measured
    assert "raw_separability/joint" in report["metrics"]  # one modality raw: the raw variant differs


def test_the_summary_says_when_only_the_norms_separate_the_modalities():
    from gapdiag.report.presentation import summarize

    text = " ".join(summarize({"modality_gap/image-text": 0.05, "modality_separability/joint": 0.55,
                               "raw_separability/joint": 1.0}))
    assert "raw vectors are linearly separable (1.000) but their unit vectors are not (0.5500)" in text
    assert "norm" in text
    both = " ".join(summarize({"modality_separability/joint": 1.0, "raw_separability/joint": 1.0}))
    assert "raw vectors" not in both  # separable either way: nothing more to say
