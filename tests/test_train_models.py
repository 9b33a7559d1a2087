"""What ``gapdiag train -m`` takes (issue #30 §2): it fine-tunes open_clip models, so a bundled checkpoint and open_clip
training output start the run from their weights, and a transformers model (``hf:``) is refused in one line.

A run with ``lr=0`` changes no weight (AdamW's step and its decoupled weight decay both scale with the learning
rate), so its export is exactly the weights the run started from: the checkpoint's, not a fresh initialisation.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_helpers import assert_one_line_error, gapdiag
from data_fixtures import digits_manifest
from hf_fixtures import write_hf_model
from test_models_training_output import open_clip_run

from gapdiag.api import bundled_checkpoint, train
from gapdiag.data import load_dataset

#: One short run that changes nothing: the export holds the starting weights.
FROZEN = {"epochs": 1, "batch_size": 4, "lr": 0.0, "warmup_steps": 1, "seed": 3, "device": "cpu", "progress": False}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return digits_manifest(tmp_path_factory.mktemp("train-models"), n=8)[0]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def assert_starts_from(exported: Path, weights: dict[str, torch.Tensor]) -> None:
    trained = _weights(exported)
    assert set(trained) == set(weights)
    for name, value in weights.items():
        assert torch.equal(trained[name], value.float()), name


def test_train_fine_tunes_a_bundled_checkpoint_named_bundled(manifest: Path, tmp_path: Path) -> None:
    result = train(load_dataset(manifest), "bundled:gap_closing", out_dir=tmp_path / "run", cache_dir=tmp_path,
                   **FROZEN)
    assert_starts_from(result.model_path, _weights(bundled_checkpoint("gap_closing")))


@pytest.mark.parametrize("ddp", [True, False], ids=["module-prefixed", "plain"])
def test_train_fine_tunes_an_open_clip_epoch_checkpoint(manifest: Path, tmp_path: Path, ddp: bool) -> None:
    paths, models = open_clip_run(tmp_path / "logs" / "run", ddp=ddp)
    result = train(load_dataset(manifest), paths[-1], out_dir=tmp_path / "run", cache_dir=tmp_path, **FROZEN)
    assert_starts_from(result.model_path, models[-1].state_dict())


def test_cli_train_fine_tunes_an_epoch_checkpoint_and_its_export_measures(manifest: Path, tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    paths, _ = open_clip_run(tmp_path / "logs" / "run")
    code, out, err = gapdiag(capsys, "train", "-d", manifest, "--split", "train", "--eval-split", "test", "-m",
                             paths[0], "--epochs", "1", "--batch-size", "4", "--device", "cpu", "--out",
                             tmp_path / "ft", "-q")
    assert code == 0, err
    code, out, err = gapdiag(capsys, "measure", "-d", manifest, "-m", tmp_path / "ft" / "model.safetensors",
                             "--device", "cpu", "--cache-dir", tmp_path, "--json")
    assert code == 0, err
    assert "modality_gap/image-text" in json.loads(out)["metrics"]


def test_train_refuses_a_transformers_model_in_one_line(manifest: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_hf_model(tmp_path / "clip", "clip")
    capsys.readouterr()  # transformers' own progress bar while saving
    code, out, err = gapdiag(capsys, "train", "-d", manifest, "-m", f"hf:{folder}", "--epochs", "1",
                             "--device", "cpu", "--out", tmp_path / "run")
    assert_one_line_error(code, out, err, f"hf:{folder}", "open_clip", "bundled:NAME", "-m hf:")
    assert not (tmp_path / "run").exists()


def test_a_refused_model_with_restart_keeps_the_previous_run(manifest: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    train(load_dataset(manifest), "bundled:infonce", out_dir=run, cache_dir=tmp_path, **FROZEN)
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    for model, named in ((f"hf:{tmp_path / 'nothing'}", "transformers model"),
                         (str(tmp_path / "missing.pt"), "checkpoint not found")):
        code, out, err = gapdiag(capsys, "train", "-d", manifest, "-m", model, "--epochs", "1", "--device", "cpu",
                                 "--out", run, "--restart")
        assert_one_line_error(code, out, err, named)
        assert {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("restart", [True, False], ids=["restart", "resume"])
def test_a_checkpoint_of_the_out_folder_is_refused_as_the_model_it_fine_tunes(manifest: Path, tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture[str],
                                                                             restart: bool) -> None:
    """``--restart`` deletes the folder's ``epoch_N.pt`` and a run writes them: fine-tuning one of them into its own
    folder would destroy it, so the command stops first, naming the file."""
    run = tmp_path / "run"
    train(load_dataset(manifest), "bundled:infonce", out_dir=run, cache_dir=tmp_path, **FROZEN)
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    checkpoint = run / "checkpoints" / "epoch_1.pt"
    code, out, err = gapdiag(capsys, "train", "-d", manifest, "-m", checkpoint, "--epochs", "1", "--device", "cpu",
                             "--out", run, *(["--restart"] if restart else []))
    assert_one_line_error(code, out, err, str(checkpoint), "--model")
    assert {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
