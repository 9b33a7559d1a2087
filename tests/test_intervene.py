"""``gapdiag intervene`` / ``api.intervene`` / ``gapdiag.apply_intervention``: held-out by construction, the
saved transform equal to the fitted one, and bad input refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error
from cli_helpers import gapdiag as run_cli

import gapdiag
from gapdiag.api import intervening
from gapdiag.errors import InputError
from gapdiag.training import interventions
from gapdiag.training.intervention_files import load_intervention, save_intervention
from gapdiag.training.interventions import METHODS, fit_intervention
from gapdiag.vectors import EmbeddingSet


def _paired_set(n: int = 40, d: int = 8, captions: int = 2, seed: int = 0) -> EmbeddingSet:
    """``n`` images with ``captions`` captions each, a gap along axis 0, ``n % 4`` classes."""
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(n, d)) + 2.0 * np.eye(d)[0]
    texts = np.repeat(images, captions, axis=0) + 0.5 * rng.normal(size=(n * captions, d)) - 3.0 * np.eye(d)[0]
    labels = np.arange(n) % 4
    classes = np.stack([texts[np.repeat(labels, captions) == c].mean(0) for c in range(4)])
    return EmbeddingSet(
        vectors={"image": images.astype(np.float32), "text": texts.astype(np.float32)},
        sample_index={"image": np.arange(n), "text": np.repeat(np.arange(n), captions)},
        n_samples=n, labels=labels, class_names=[str(c) for c in range(4)],
        class_embeddings=(classes / np.linalg.norm(classes, axis=1, keepdims=True)).astype(np.float32))


def _write_npz(path: Path, es: EmbeddingSet) -> Path:
    np.savez(path, image=es.vectors["image"], text=es.vectors["text"], sample_index_text=es.sample_index["text"])
    return path


def test_default_split_never_fits_on_an_evaluated_sample(monkeypatch):
    es = _paired_set()
    fitted, measured = [], []
    real_fit, real_evaluate = interventions.fit_intervention, intervening.evaluate

    def spy_fit(method, x, y, **kwargs):
        fitted.append((np.asarray(x), np.asarray(y)))
        return real_fit(method, x, y, **kwargs)

    def spy_evaluate(eval_es, names, **kwargs):
        measured.append(eval_es)
        return real_evaluate(eval_es, names, **kwargs)

    monkeypatch.setattr(interventions, "fit_intervention", spy_fit)
    monkeypatch.setattr(intervening, "evaluate", spy_evaluate)
    result = gapdiag.intervene(es, methods=["centering"], progress=False)
    (x_fit, y_fit), before_set = fitted[0], measured[0]
    fit_rows = {row.tobytes() for row in x_fit.astype(np.float32)}
    assert not any(row.tobytes() in fit_rows for row in before_set.vectors["image"].astype(np.float32))
    fit_texts = {row.tobytes() for row in y_fit.astype(np.float32)}
    assert not any(row.tobytes() in fit_texts for row in before_set.vectors["text"].astype(np.float32))
    # Every caption went with its image: 20 + 20 samples, 40 + 40 captions.
    assert result["split"]["fit_items"] == {"image": 20, "text": 40}
    assert result["split"]["eval_items"] == {"image": 20, "text": 40}


def test_held_out_samples_are_disjoint_seeded_and_cover_everything():
    fit, held = intervening.held_out_samples(101, 0.5, seed=3)
    assert set(fit).isdisjoint(held) and len(fit) + len(held) == 101 and len(fit) == 50
    again, _ = intervening.held_out_samples(101, 0.5, seed=3)
    np.testing.assert_array_equal(fit, again)
    assert not np.array_equal(fit, intervening.held_out_samples(101, 0.5, seed=4)[0])
    with pytest.raises(InputError, match="at least 4"):
        intervening.held_out_samples(3, 0.5, seed=0)


def test_the_same_split_for_fit_and_evaluation_is_refused(capsys):
    code, out, err = run_cli(capsys, "intervene", "--fit-split", "test", "--eval-split", "test")
    assert_one_line_error(code, out, err, "--fit-split and --eval-split are both 'test'")


def test_one_named_split_alone_is_refused(capsys):
    code, out, err = run_cli(capsys, "intervene", "--fit-split", "train")
    assert_one_line_error(code, out, err, "--fit-split and --eval-split go together")


def test_splits_that_share_an_image_are_refused():
    es = _paired_set()
    with pytest.raises(InputError, match="image item 0 of split 'test' is also in split 'train'"):
        intervening.refuse_shared_items(es, es, "train", "test")


def test_fit_sample_caps_each_modality_by_whole_samples():
    es = _paired_set(n=40, captions=2)
    capped = intervening.cap_fit_items(es, ("image", "text"), 21, seed=0)
    assert capped.vectors["text"].shape[0] <= 21 and capped.vectors["image"].shape[0] == 10
    assert capped.vectors["text"].shape[0] == 2 * capped.vectors["image"].shape[0]
    assert intervening.cap_fit_items(es, ("image", "text"), 80, seed=0) is es


def test_result_reports_every_metric_before_and_after_with_a_summary(tmp_path):
    pytest.importorskip("ot")
    result = gapdiag.intervene(_paired_set(), progress=False, out=tmp_path / "iv.json")
    assert result["methods"] == list(METHODS)
    for base in ("modality_gap/", "gap_w2_squared/", "gap_bures/", "gap_w2_centroid/", "cos_tp/",
                 "recall_at_1/image_to_text", "recall_at_5/text_to_image", "hubness_skewness/",
                 "v_measure_class/", "zero_shot_accuracy/"):
        assert any(k.startswith(base) for k in result["before"]), base
    centering = result["results"]["centering"]
    gap = "modality_gap/image-text"
    assert centering["change"][gap] == pytest.approx(centering["after"][gap] - result["before"][gap])
    assert centering["after"][gap] < 0.2 * result["before"][gap]
    assert centering["summary"].startswith("centering closes ")
    assert "of the centroid gap" in centering["summary"] and "R@1 image→text" in centering["summary"]
    assert json.loads((tmp_path / "iv.json").read_text())["methods"] == list(METHODS)


@pytest.mark.parametrize("method", METHODS)
def test_saved_then_applied_equals_in_process(tmp_path, method):
    if method == "ot":
        pytest.importorskip("ot")
    es = _paired_set(seed=1)
    t = fit_intervention(method, es.vectors["image"][:20], es.vectors["text"][:40],
                         x_sample=es.sample_index["image"][:20], y_sample=es.sample_index["text"][:40])
    path = save_intervention(t, tmp_path / "fix.safetensors", version=gapdiag.__version__)
    new = np.random.default_rng(9).normal(size=(7, 8)) + np.eye(8)[0]
    for side in ("image", "text"):
        np.testing.assert_array_equal(gapdiag.apply_intervention(path, new, side), t.apply(new, side))
    loaded = load_intervention(path)
    assert loaded.method == method and loaded.params == pytest.approx(t.params)


def test_intervene_save_writes_the_fitted_transform_with_its_method_and_version(tmp_path):
    from safetensors import safe_open

    result = gapdiag.intervene(_paired_set(), methods=["gap_shift"], save=tmp_path / "s.safetensors",
                               progress=False)
    assert result["saved"] == str(tmp_path / "s.safetensors")
    with safe_open(str(tmp_path / "s.safetensors"), framework="numpy") as f:
        meta = f.metadata()
    assert meta["method"] == "gap_shift" and meta["gapdiag_version"] == gapdiag.__version__
    assert load_intervention(tmp_path / "s.safetensors").params["lambda"] == pytest.approx(
        result["results"]["gap_shift"]["params"]["lambda"])


def test_save_with_several_methods_is_refused_before_any_work(capsys, tmp_path):
    code, out, err = run_cli(capsys, "intervene", "--method", "centering,ablation", "--save",
                             tmp_path / "x.safetensors", "--data", tmp_path / "missing.npz")
    assert_one_line_error(code, out, err, "--save writes one fitted transform")


@pytest.mark.parametrize(("content", "fragment"), [
    (b"not a safetensors file at all", "is not a readable safetensors file"),
    (None, "is not a gapdiag intervention file"),
])
def test_a_damaged_or_foreign_file_is_named(tmp_path, content, fragment):
    path = tmp_path / "bad.safetensors"
    if content is None:
        from safetensors.numpy import save_file

        save_file({"w": np.zeros(3, dtype=np.float32)}, str(path), metadata={"format": "pt"})
    else:
        path.write_bytes(content)
    with pytest.raises(InputError, match=fragment):
        gapdiag.apply_intervention(path, np.ones((2, 3)))


def test_cli_prints_the_table_the_summaries_and_what_it_fitted_on(capsys, tmp_path):
    data = _write_npz(tmp_path / "emb.npz", _paired_set())
    code, out, err = run_cli(capsys, "intervene", "--data", data, "--method", "centering", "--method",
                             "procrustes", "--quiet", "--seed", "2")
    assert code == 0, err
    assert "modality_gap/image-text" in out and "procrustes" in out
    assert "- centering closes " in out
    assert "fitted on 20 image and 40 text items" in out and "seed 2" in out and "--fit-sample 10,000" in out


def test_cli_json_is_machine_readable(capsys, tmp_path):
    data = _write_npz(tmp_path / "emb.npz", _paired_set())
    code, out, err = run_cli(capsys, "intervene", "--data", data, "--method", "ablation", "--json")
    assert code == 0, err
    parsed = json.loads(out)
    assert parsed["methods"] == ["ablation"] and parsed["split"]["kind"] == "seeded"


@pytest.mark.parametrize(("args", "fragment"), [
    (["--method", "nope"], "unknown --method 'nope'"),
    (["--fit-fraction", "1.5"], "--fit-fraction 1.5 must lie strictly between 0 and 1"),
    (["--fit-sample", "1"], "--fit-sample 1 must be a whole number of at least 2"),
    (["--seed", "-1"], "--seed -1 is outside"),
])
def test_bad_options_are_one_line_errors(capsys, tmp_path, args, fragment):
    data = _write_npz(tmp_path / "emb.npz", _paired_set())
    code, out, err = run_cli(capsys, "intervene", "--data", data, *args)
    assert_one_line_error(code, out, err, fragment)


def test_without_pot_ot_is_left_out_with_a_note_or_refused_when_named(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(intervening, "pot_installed", lambda: False)
    data = _write_npz(tmp_path / "emb.npz", _paired_set())
    code, out, err = run_cli(capsys, "intervene", "--data", data, "--quiet", "--json")
    assert code == 0, err
    assert "ot" not in json.loads(out)["methods"] and "ot left out: POT is not installed" in err
    code, out, err = run_cli(capsys, "intervene", "--data", data, "--method", "ot")
    assert_one_line_error(code, out, err, "--method ot needs POT", "gapdiag[ot]")
