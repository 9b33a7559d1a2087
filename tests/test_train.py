"""gapdiag train: per-epoch log, checkpoints in open_clip's format, exact resume, self-describing export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_helpers import assert_one_line_error, gapdiag

from gapdiag.api import train
from gapdiag.data import load_dataset
from gapdiag.errors import InputError
from gapdiag.models.resolving import resolve_model
from gapdiag.settings import Settings
from gapdiag.training.train import EPOCH_METRICS
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
    spec = resolve_model(result.model_path, cache_root=Settings.build().cache_root)
    assert spec.model_cfg["embed_dim"] == 32
    exported = _state(result.model_path)
    assert torch.equal(exported["logit_scale"], ckpt["state_dict"]["logit_scale"])


def test_training_changes_the_weights(pairs, tmp_path):
    # the initial weights train() starts from: the architecture initialised from the run's seed
    from gapdiag.device import Device
    from gapdiag.models.loading import build_model

    spec = resolve_model("gapdiag-tiny-vit", cache_root=Settings.build().cache_root)
    initial = build_model(spec, device=Device("cpu"), init_seed=FAST["seed"]).model.state_dict()
    result = train(pairs, out_dir=tmp_path / "run", epochs=1, **FAST)
    trained = _state(result.model_path)
    assert not torch.equal(trained["visual.proj"], initial["visual.proj"])


def test_resume_after_interruption_gives_the_uninterrupted_weights(pairs, tmp_path, monkeypatch):
    full = train(pairs, out_dir=tmp_path / "full", epochs=3, **FAST)

    import gapdiag.training.train as train_module

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


# ------------------------------------------------------- issue #23 item 9: checksummed checkpoints, deterministic bytes


def _flip_a_bit_in_the_tensor_data(path: Path) -> None:
    """One bit flipped in the middle of the largest tensor record of a torch zip checkpoint (stored, not
    compressed): the file still loads, with other weights."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
        assert info.compress_type == zipfile.ZIP_STORED
    raw = bytearray(path.read_bytes())
    name_len = int.from_bytes(raw[info.header_offset + 26:info.header_offset + 28], "little")
    extra_len = int.from_bytes(raw[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len
    raw[start + info.file_size // 2] ^= 0x10
    path.write_bytes(bytes(raw))


def test_a_checkpoint_with_one_flipped_bit_is_refused_on_resume(pairs, finished_run, tmp_path):
    run = _copy(finished_run, tmp_path)
    before = {name: (run / name).read_bytes() for name in ("model.safetensors", "run.json", "metrics.jsonl")}
    ckpt = run / "checkpoints" / "epoch_1.pt"
    _flip_a_bit_in_the_tensor_data(ckpt)
    torch.load(ckpt, map_location="cpu", weights_only=True)  # torch itself notices nothing
    with pytest.raises(InputError) as err:
        train(pairs, out_dir=run, **ONE_EPOCH)
    line = str(err.value)
    assert "\n" not in line and "epoch_1.pt" in line and "checksum" in line and "--restart" in line, line
    assert {name: (run / name).read_bytes() for name in before} == before  # nothing rewritten from it


def test_cli_a_checkpoint_with_one_flipped_bit_is_one_line_exit_2(finished_run, tmp_path, capsys):
    run = _copy(finished_run, tmp_path)
    _flip_a_bit_in_the_tensor_data(run / "checkpoints" / "epoch_1.pt")
    manifest, _ = digits_manifest(tmp_path / "digits", n=24)
    code, out, err = gapdiag(capsys, "train", "--out", run, "-d", manifest, "--epochs", 1, "--batch-size", 8, "-q")
    assert_one_line_error(code, out, err, "epoch_1.pt", "checksum")


def test_the_exported_model_is_the_same_bytes_every_time(tmp_path):
    """safetensors writes its metadata in hash-map order (random per map): the hash of a model, and the cache key
    made from it, changed between two identical exports."""
    from conftest import tiny_model

    from gapdiag.training.checkpoint_files import export_safetensors

    model, cfg = tiny_model(1), resolve_model("gapdiag-tiny-vit", cache_root=Settings.build().cache_root).model_cfg
    extra = {"gapdiag_loss": "infonce", "gapdiag_seed": "0", "gapdiag_epochs": "3", "a": "1", "b": "2"}
    written = {export_safetensors(model, "gapdiag-tiny-vit", cfg, tmp_path / f"m{i}.safetensors",
                                  extra=extra).read_bytes() for i in range(8)}
    assert len(written) == 1
    from safetensors import safe_open

    with safe_open(str(tmp_path / "m0.safetensors"), framework="pt") as f:  # still a valid safetensors file
        assert f.metadata()["gapdiag_epochs"] == "3" and set(f.keys()) == set(model.state_dict())
        key = next(iter(f.keys()))
        assert torch.equal(f.get_tensor(key), model.state_dict()[key])


def test_two_identical_training_runs_write_identical_model_bytes(pairs, finished_run, tmp_path):
    again = train(pairs, out_dir=tmp_path / "again", **ONE_EPOCH)
    assert again.model_path.read_bytes() == (finished_run / "model.safetensors").read_bytes()


# ------------------------------------------- issue #23 item 12: a finished run is never overwritten by other settings


def _run_files(run: Path) -> dict[str, bytes]:
    return {name: (run / name).read_bytes() for name in ("model.safetensors", "run.json", "metrics.jsonl")}


def test_a_finished_run_without_checkpoints_is_not_overwritten_by_other_settings(pairs, finished_run, tmp_path):
    """With its checkpoints deleted, `train --lr 0.01 --epochs 2` into a finished run replaced its model, run.json
    and metrics, although different settings must stop and write nothing."""
    import shutil

    run = _copy(finished_run, tmp_path)
    shutil.rmtree(run / "checkpoints")
    before = _run_files(run)
    with pytest.raises(InputError) as err:
        train(pairs, out_dir=run, **{**ONE_EPOCH, "lr": 0.01, "epochs": 2})
    line = str(err.value)
    assert "\n" not in line and "lr 0.001 -> 0.01" in line and "epochs 1 -> 2" in line and "--restart" in line, line
    assert _run_files(run) == before and not (run / "checkpoints").exists()


def test_cli_a_finished_run_without_checkpoints_is_not_overwritten(finished_run, tmp_path, capsys):
    import shutil

    run = _copy(finished_run, tmp_path)
    shutil.rmtree(run / "checkpoints")
    before = _run_files(run)
    manifest, _ = digits_manifest(tmp_path / "digits", n=24)
    code, out, err = gapdiag(capsys, "train", "--out", run, "-d", manifest, "--lr", "0.01", "--epochs", 2, "-q")
    assert_one_line_error(code, out, err, "run.json", "--restart")
    assert _run_files(run) == before and not (run / "checkpoints").exists()


@pytest.mark.parametrize("damage", ["run.json unreadable", "run.json deleted"])
def test_a_run_whose_settings_cannot_be_read_is_not_overwritten(pairs, finished_run, tmp_path, damage):
    import shutil

    run = _copy(finished_run, tmp_path)
    shutil.rmtree(run / "checkpoints")
    if damage == "run.json unreadable":
        (run / "run.json").write_text("{ not json")
    else:
        (run / "run.json").unlink()
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    with pytest.raises(InputError, match="--restart"):
        train(pairs, out_dir=run, **ONE_EPOCH)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_the_same_settings_train_a_run_without_checkpoints_again(pairs, finished_run, tmp_path):
    """Nothing to resume from and nothing that differs: the run is trained again, to the same bytes."""
    import shutil

    run = _copy(finished_run, tmp_path)
    shutil.rmtree(run / "checkpoints")
    result = train(pairs, out_dir=run, **ONE_EPOCH)
    assert result.resumed_from == 0
    assert result.model_path.read_bytes() == (finished_run / "model.safetensors").read_bytes()
