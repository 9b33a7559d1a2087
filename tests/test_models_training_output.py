"""Training output as ``--model`` (issue #30 §2): open_clip's ``epoch_N.pt`` and ``gapdiag train``'s run folders.

The checkpoints are written as open_clip's trainer writes them (``open_clip_train/main.py``): a dict with
``epoch``, ``name`` (the run's name, not the architecture), ``state_dict`` (``module.``-prefixed under DDP) and
``optimizer`` (a real AdamW state), beside ``params.txt`` in the run folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_helpers import assert_one_line_error, gapdiag
from conftest import TINY_ARCH, tiny_model
from test_models import Payload, assert_same_weights

from gapdiag.api import load_model
from gapdiag.errors import ModelError
from gapdiag.models import checkpoints

#: What open_clip's trainer writes to params.txt (sorted argument names, ``name: value``), abridged.
PARAMS = """batch_size: 4
epochs: 3
force_custom_text: False
force_image_size: None
force_quick_gelu: False
lr: 0.0005
model: {model}
name: 2026_12_07-run
pretrained:
"""


def training_checkpoint(path: Path, model: torch.nn.Module, *, epoch: int, ddp: bool) -> Path:
    """``path`` as open_clip's trainer saves it: epoch, run name, (DDP-prefixed) state_dict and optimizer state."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss = sum(p.sum() for p in model.parameters())
    loss.backward()
    optimizer.step()  # a real optimizer state: step counts and moment tensors
    optimizer.zero_grad()
    prefix = "module." if ddp else ""
    state = {prefix + k: v for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": epoch, "name": "2026_12_07-run", "state_dict": state,
                "optimizer": optimizer.state_dict()}, path)
    return path


def open_clip_run(root: Path, *, epochs: int = 2, ddp: bool = True, model: str = TINY_ARCH,
                  params: str = PARAMS) -> tuple[list[Path], list[torch.nn.Module]]:
    """An open_clip run folder ``root`` (params.txt, checkpoints/epoch_1..N.pt): the paths and the models saved."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.txt").write_text(params.format(model=model))
    models = [tiny_model(seed=10 + epoch) for epoch in range(1, epochs + 1)]
    paths = [training_checkpoint(root / "checkpoints" / f"epoch_{e}.pt", m, epoch=e, ddp=ddp)
             for e, m in enumerate(models, start=1)]
    return paths, models


# --------------------------------------------------------------------------- -m epoch_N.pt in its run folder


@pytest.mark.parametrize("ddp", [True, False], ids=["module-prefixed", "plain"])
def test_an_open_clip_epoch_checkpoint_loads_from_its_run_folder(tmp_path, ddp):
    (path, *_), (model, *_) = open_clip_run(tmp_path / "logs" / "run", epochs=1, ddp=ddp)
    loaded = load_model(path, device="cpu")
    assert loaded.spec.architecture == TINY_ARCH and loaded.spec.checkpoint == path
    assert_same_weights(loaded.model, model)
    assert "epoch_1" in loaded.spec.display_name


@pytest.mark.parametrize("ddp", [True, False], ids=["module-prefixed", "plain"])
def test_an_epoch_checkpoint_loads_with_its_architecture_named(tmp_path, ddp):
    model = tiny_model(seed=3)
    path = training_checkpoint(tmp_path / "epoch_4.pt", model, epoch=4, ddp=ddp)
    assert_same_weights(load_model(TINY_ARCH, str(path), device="cpu").model, model)


def test_a_gapdiag_train_epoch_checkpoint_loads_from_its_run_folder(tmp_path):
    run = tmp_path / "run"
    model = tiny_model(seed=5)
    path = training_checkpoint(run / "checkpoints" / "epoch_2.pt", model, epoch=2, ddp=False)
    (run / "run.json").write_text(json.dumps({"model": {"architecture": TINY_ARCH, "pretrained": None}}))
    loaded = load_model(path, device="cpu")
    assert loaded.spec.architecture == TINY_ARCH
    assert_same_weights(loaded.model, model)


def test_safetensors_with_the_ddp_prefix_loads(tmp_path):
    from safetensors.torch import save_file

    model = tiny_model(seed=6)
    path = tmp_path / "ddp.safetensors"
    save_file({"module." + k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    assert_same_weights(load_model(TINY_ARCH, str(path), device="cpu").model, model)


# ------------------------------------------------------------------------------------------- refused


def test_a_state_dict_mixing_prefixed_and_plain_keys_is_refused_naming_both(tmp_path):
    model = tiny_model(seed=7)
    state = model.state_dict()
    keys = list(state)
    mixed = {("module." + k if i % 2 else k): v for i, (k, v) in enumerate(state.items())}
    path = tmp_path / "mixed.pt"
    torch.save({"epoch": 1, "state_dict": mixed}, path)
    with pytest.raises(ModelError) as err:
        load_model(TINY_ARCH, str(path), device="cpu")
    text = str(err.value)
    assert "\n" not in text
    assert str(path) in text and "module." in text and repr(keys[0]) in text and repr("module." + keys[1]) in text


def test_a_malicious_epoch_checkpoint_in_a_run_folder_is_refused_and_never_run(tmp_path, capsys, manifest):
    run = tmp_path / "logs" / "run"
    (path, *_), _ = open_clip_run(run, epochs=1)
    marker = tmp_path / "code-ran"
    state = torch.load(path, weights_only=True)
    torch.save({**state, "payload": Payload(str(marker))}, path)
    code, out, err = gapdiag(capsys, "measure", "-d", manifest, "-m", path, "--json")
    assert_one_line_error(code, out, err, str(path), "pickled")
    assert not marker.exists()


def test_a_checkpoint_without_a_state_dict_is_one_line(tmp_path):
    path = tmp_path / "logs" / "run" / "checkpoints" / "epoch_1.pt"
    open_clip_run(tmp_path / "logs" / "run", epochs=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 1, "name": "run", "optimizer": {}}, path)
    with pytest.raises(ModelError) as err:
        load_model(path, device="cpu")
    assert "\n" not in str(err.value) and str(path) in str(err.value) and "state_dict" in str(err.value)


def test_an_epoch_checkpoint_outside_a_run_folder_says_how_to_name_its_architecture(tmp_path):
    path = training_checkpoint(tmp_path / "epoch_1.pt", tiny_model(seed=1), epoch=1, ddp=True)
    with pytest.raises(ModelError) as err:
        load_model(path, device="cpu")
    assert "\n" not in str(err.value)
    for fragment in (str(path), "--pretrained", "params.txt"):
        assert fragment in str(err.value)


def test_params_naming_an_unknown_architecture_or_changing_the_model_are_refused(tmp_path):
    (path, *_), _ = open_clip_run(tmp_path / "a", epochs=1, model="NoSuchNet-1")
    with pytest.raises(ModelError) as err:
        load_model(path, device="cpu")
    assert "NoSuchNet-1" in str(err.value) and "params.txt" in str(err.value)
    (path, *_), _ = open_clip_run(tmp_path / "b", epochs=1,
                                  params=PARAMS.replace("force_image_size: None", "force_image_size: 64"))
    with pytest.raises(ModelError) as err:
        load_model(path, device="cpu")
    assert "force_image_size" in str(err.value) and "\n" not in str(err.value)


# ------------------------------------------------------------------------------------------- every command


def test_measure_of_an_epoch_checkpoint_equals_measure_of_its_weights_named_otherwise(tmp_path, capsys, manifest):
    (path, *_), _ = open_clip_run(tmp_path / "logs" / "run", epochs=1)
    code, by_run, err = gapdiag(capsys, "measure", "-d", manifest, "-m", path, "--json", "-q")
    assert code == 0, err
    code, by_arch, err = gapdiag(capsys, "measure", "-d", manifest, "-m", TINY_ARCH, "-p", path, "--json", "-q")
    assert code == 0, err
    assert json.loads(by_run)["metrics"] == json.loads(by_arch)["metrics"]


def test_compare_takes_epoch_checkpoints_as_models(tmp_path, capsys, manifest):
    (first, second), _ = open_clip_run(tmp_path / "logs" / "run", epochs=2)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    for path, out in ((first, a), (second, b)):
        code, _, err = gapdiag(capsys, "measure", "-d", manifest, "-m", path, "-o", out, "-q")
        assert code == 0, err
    code, out, err = gapdiag(capsys, "compare", a, b, "--json")
    assert code == 0, err


# ----------------------------------------------------------------------------------------------- steps


@pytest.mark.parametrize(("name", "step"), [
    ("epoch_12.pt", 12), ("epoch-3.safetensors", 3), ("step_3000.pt", 3000), ("ckpt900.pt", 900),
    ("model_v2_epoch_7.pt", 7), ("1000.pt", 1000), ("epoch_3_step_900.pt", 900), ("ViT-B-32.pt", None),
    ("run3-final-20.pt", None), ("deep10.pt", None), ("latest.pt", None)])
def test_the_step_in_a_file_name(name, step):
    assert checkpoints.step_from_name(Path(name)) == step


def test_the_step_in_a_checkpoint(tmp_path):
    path = training_checkpoint(tmp_path / "latest.pt", tiny_model(seed=1), epoch=9, ddp=False)
    assert checkpoints.step_from_metadata(path) == 9
    torch.save(tiny_model(seed=1).state_dict(), tmp_path / "bare.pt")
    assert checkpoints.step_from_metadata(tmp_path / "bare.pt") is None


def test_the_step_in_a_safetensors_checkpoint(tmp_path):
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in tiny_model(seed=1).state_dict().items()}
    save_file(state, str(tmp_path / "final.safetensors"), metadata={"step": "3000"})
    save_file(state, str(tmp_path / "bare.safetensors"))
    assert checkpoints.step_from_metadata(tmp_path / "final.safetensors") == 3000
    assert checkpoints.step_from_metadata(tmp_path / "bare.safetensors") is None
