"""gapdiag train: per-epoch log, checkpoints in open_clip's format, exact resume, self-describing export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_helpers import assert_one_line_error, gapdiag

from gapdiag.data import load_dataset
from gapdiag.errors import InputError
from gapdiag.models import resolve_model
from gapdiag.train import EPOCH_METRICS, train
from tests.data_fixtures import digits_manifest

FAST = {"model": "gapdiag-tiny-vit", "batch_size": 8, "lr": 1e-3, "warmup_steps": 2, "seed": 3, "device": "cpu",
        "progress": False}


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory):
    manifest, _ = digits_manifest(tmp_path_factory.mktemp("train-data"), n=24)
    return load_dataset(manifest)


def _state(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_train_logs_every_epoch_and_exports_a_loadable_model(pairs, tmp_path):
    result = train(pairs, out_dir=tmp_path / "run", epochs=2, **FAST)
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    for base in EPOCH_METRICS:
        assert any(k.startswith(base + "/") for k in lines[-1]), base
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["epoch_1.pt", "epoch_2.pt"]
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "epoch_2.pt", weights_only=True)
    assert {"epoch", "name", "state_dict", "optimizer"} <= set(ckpt) and ckpt["epoch"] == 2
    # The export names its own architecture: --model model.safetensors needs nothing else.
    spec = resolve_model(result.model_path)
    assert spec.model_cfg["embed_dim"] == 32
    exported = _state(result.model_path)
    assert torch.equal(exported["logit_scale"], ckpt["state_dict"]["logit_scale"])


def test_training_changes_the_weights(pairs, tmp_path):
    from gapdiag.models import build_model

    # the initial weights train() starts from: the architecture initialised from the run's seed
    initial = build_model(resolve_model("gapdiag-tiny-vit"), device="cpu", init_seed=FAST["seed"]).model.state_dict()
    result = train(pairs, out_dir=tmp_path / "run", epochs=1, **FAST)
    trained = _state(result.model_path)
    assert not torch.equal(trained["visual.proj"], initial["visual.proj"])


def test_resume_after_interruption_gives_the_uninterrupted_weights(pairs, tmp_path, monkeypatch):
    full = train(pairs, out_dir=tmp_path / "full", epochs=3, **FAST)

    import gapdiag.train as train_module

    real_order = train_module._epoch_order

    def interrupted(dataset, text_name, epoch, seed):
        if epoch == 2:
            raise KeyboardInterrupt  # as if Ctrl-C arrived during the third epoch
        return real_order(dataset, text_name, epoch, seed)

    monkeypatch.setattr(train_module, "_epoch_order", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(pairs, out_dir=tmp_path / "resumed", epochs=3, **FAST)
    assert not (tmp_path / "resumed" / "model.safetensors").exists()
    monkeypatch.setattr(train_module, "_epoch_order", real_order)
    resumed = train(pairs, out_dir=tmp_path / "resumed", epochs=3, **FAST)

    assert resumed.resumed_from == 2
    a, b = _state(full.model_path), _state(resumed.model_path)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    log = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in log] == [1, 2, 3]


def test_unknown_loss_is_a_one_line_error(pairs, tmp_path):
    with pytest.raises(InputError, match="unknown loss 'nope'"):
        train(pairs, out_dir=tmp_path / "run", loss="nope", epochs=1, **FAST)


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--loss", "nope"], ["unknown loss 'nope'"]),
        (["--epochs", "0"], ["--epochs"]),
        (["--split", "nope"], ["nope"]),
    ],
)
def test_cli_train_errors_are_one_line(tmp_path, capsys, args, fragments):
    manifest, _ = digits_manifest(tmp_path / "data", n=4)
    code, out, err = gapdiag(capsys, "train", "-d", manifest, "--out", tmp_path / "run", "-q", *args)
    assert_one_line_error(code, out, err, *fragments)
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_gap_closing_loss_weights_reach_the_loss(pairs, tmp_path):
    with pytest.raises(InputError, match="no weight 'lambda_x'"):
        train(pairs, out_dir=tmp_path / "run", loss="atp_cu", loss_weights={"lambda_x": 1.0}, epochs=1, **FAST)


ONE_EPOCH = {**FAST, "epochs": 1}


@pytest.fixture(scope="module")
def finished_run(pairs, tmp_path_factory):
    """A one-epoch run (what every resume test starts from); tests copy it before changing it."""
    out = tmp_path_factory.mktemp("finished") / "run"
    train(pairs, out_dir=out, **ONE_EPOCH)
    return out


def _copy(run: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(run, tmp_path / "run"))


@pytest.mark.parametrize(("change", "named"), [
    ({"loss": "cua"}, "loss 'infonce' -> 'cua'"),
    ({"epochs": 2}, "epochs 1 -> 2"),  # more epochs stretch the cosine schedule: not the same run continued
    ({"lr": 2e-3}, "lr 0.001 -> 0.002"),
    ({"seed": 4}, "seed 3 -> 4"),
    ({"batch_size": 6}, "batch_size 8 -> 6"),
])
def test_resume_with_another_setting_is_refused_naming_it(pairs, finished_run, tmp_path, change, named):
    run = _copy(finished_run, tmp_path)
    before = (run / "model.safetensors").read_bytes()
    with pytest.raises(InputError) as err:
        train(pairs, out_dir=run, **{**ONE_EPOCH, **change})
    line = str(err.value)
    assert "\n" not in line and named in line and "--restart" in line, line
    assert (run / "model.safetensors").read_bytes() == before  # the old model is not passed off as the new one


def test_resume_on_other_data_is_refused(finished_run, tmp_path):
    run = _copy(finished_run, tmp_path)
    manifest, _ = digits_manifest(tmp_path / "other-data", n=20)
    with pytest.raises(InputError, match=r"data \(another fingerprint\)"):
        train(load_dataset(manifest), out_dir=run, **ONE_EPOCH)


def test_restart_trains_afresh_with_the_new_settings(pairs, finished_run, tmp_path):
    run = _copy(finished_run, tmp_path)
    result = train(pairs, out_dir=run, restart=True, **{**ONE_EPOCH, "loss": "cua"})
    assert result.resumed_from == 0
    fresh = train(pairs, out_dir=tmp_path / "fresh", **{**ONE_EPOCH, "loss": "cua"})
    a, b = _state(result.model_path), _state(fresh.model_path)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    assert json.loads((run / "run.json").read_text())["loss"] == "cua"


@pytest.mark.parametrize("damage", ["truncated", "pickled"])
def test_unreadable_checkpoint_is_one_line_exit_2(finished_run, tmp_path, capsys, damage):
    from cli_helpers import assert_one_line_error, gapdiag

    run = _copy(finished_run, tmp_path)
    ckpt = run / "checkpoints" / "epoch_1.pt"
    if damage == "truncated":
        ckpt.write_bytes(ckpt.read_bytes()[:1000])
    else:
        torch.save({"state_dict": Path("not a tensor")}, ckpt)  # a pickled object weights_only refuses
    manifest, _ = digits_manifest(tmp_path / "digits", n=24)
    code, out, err = gapdiag(capsys, "train", "--out", run, "-d", manifest, "--epochs", 1, "--batch-size", 8, "-q")
    assert_one_line_error(code, out, err, "epoch_1.pt", "cannot resume", "--restart")
