"""``-m hf:ID_OR_DIR``: transformers models of the CLIP family with their own processor and tokenizer (issue #30 §2).

Tiny random CLIPModel, SiglipModel, Siglip2Model, ChineseCLIPModel and AltCLIPModel folders are written offline by
``save_pretrained`` (tests/hf_fixtures.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, gapdiag
from data_fixtures import digit_image, digits_manifest
from hf_fixtures import KINDS, own_features, write_hf_model

import gapdiag as gd
from gapdiag.models.resolving import resolve_model


@pytest.fixture(scope="module")
def hf_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    return {kind: write_hf_model(root / kind, kind) for kind in KINDS}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[list[object]]]:
    return digits_manifest(tmp_path_factory.mktemp("digits"), n=5)


@pytest.mark.parametrize("kind", KINDS)
def test_vectors_equal_the_models_own_features(kind: str, hf_models: dict[str, Path], manifest, tmp_path: Path) -> None:
    path, rows = manifest
    es = gd.embed(path, f"hf:{hf_models[kind]}", device="cpu", cache_dir=tmp_path, progress=False)
    captions = [c for row in rows for c in row[1:3]]
    images, texts = own_features(hf_models[kind], [digit_image(i) for i in range(len(rows))], captions)
    np.testing.assert_allclose(np.asarray(es.vectors["image"]), np.stack(images), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(es.vectors["text"]), np.stack(texts), rtol=1e-5, atol=1e-5)
    model = es.provenance["model"]
    assert model["architecture"] == f"hf:{hf_models[kind]}" and model["random_init"] is False


#: The most tokens each tiny text tower takes: its position embeddings, less RoBERTa's offset (AltCLIP's XLM-R
#: numbers positions from the padding index + 1, so 18 positions hold 16 tokens).
TOWER_TOKENS = {"clip": 16, "siglip": 16, "siglip2": 64, "chinese_clip": 16, "altclip": 16, "blip": 16}


@pytest.mark.parametrize("kind", KINDS)
def test_a_caption_longer_than_the_text_tower_is_cut_to_it(kind: str, hf_models: dict[str, Path],
                                                           tmp_path: Path) -> None:
    """Many hub tokenizers set no ``model_max_length``: the tower's own positions bound the caption then."""
    import shutil

    from data_fixtures import write_csv, write_digits

    folder = shutil.copytree(hf_models[kind], tmp_path / kind)
    settings = json.loads((folder / "tokenizer_config.json").read_text())
    settings.pop("model_max_length", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(settings))
    write_digits(tmp_path / "images", [0, 1])
    captions = [" ".join(["one", "two"] * 40), "the number 1 by hand"]
    path = write_csv(tmp_path / "long.csv", ["image", "caption"],
                     [[f"images/digit_{i}.png", c] for i, c in enumerate(captions)])
    es = gd.embed(path, f"hf:{folder}", device="cpu", cache_dir=tmp_path / "cache", progress=False)
    _, texts = own_features(folder, [], captions, max_length=TOWER_TOKENS[kind])
    np.testing.assert_allclose(np.asarray(es.vectors["text"]), np.stack(texts), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_cache_key_follows_the_processor_and_weights(kind: str, hf_models: dict[str, Path], tmp_path: Path) -> None:
    def fingerprint(folder: Path) -> dict:
        spec = resolve_model(f"hf:{folder}", cache_root=tmp_path)
        return spec.fingerprint(precision="fp32", cache_dir=tmp_path)

    base = fingerprint(hf_models[kind])
    assert base == fingerprint(hf_models[kind])
    padding = "max_length" if kind in ("siglip", "siglip2") else "longest"
    assert base["preprocess_cfg"]["text_padding"]["padding"] == padding
    # The tokenizer's files are hashed into the key (tokenizer.json; BERT's vocab.txt too).
    assert "tokenizer.json" in base["preprocess_cfg"]["processor_files"]
    other_mean = write_hf_model(tmp_path / "mean", kind, mean=0.25)
    changed = fingerprint(other_mean)
    # Same weights (same seed), another normalisation: another key, and the setting is readable in the key.
    assert changed["weight_files_sha256"] == base["weight_files_sha256"]
    assert changed["preprocess_cfg"] != base["preprocess_cfg"]
    assert "0.25" in json.dumps(changed["preprocess_cfg"])
    other_weights = write_hf_model(tmp_path / "seed", kind, seed=1)
    assert fingerprint(other_weights)["weight_files_sha256"] != base["weight_files_sha256"]


def test_a_second_run_is_a_cache_hit_without_building(hf_models: dict[str, Path], manifest, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = manifest
    first = gd.embed(path, f"hf:{hf_models['clip']}", device="cpu", cache_dir=tmp_path, progress=False)
    from gapdiag.models import loading

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cache hit built the model")

    monkeypatch.setattr(loading, "build_hf", refuse)
    second = gd.embed(path, f"hf:{hf_models['clip']}", device="cpu", cache_dir=tmp_path, progress=False)
    assert second.provenance["key"] == first.provenance["key"]


def test_measure_runs_on_an_hf_model_from_the_cli(hf_models: dict[str, Path], manifest, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = manifest
    code, out, err = gapdiag(capsys, "measure", "-d", path, "-m", f"hf:{hf_models['siglip']}", "--device", "cpu",
                             "--cache-dir", tmp_path, "--json")
    assert code == 0, err
    assert "modality_gap/image-text" in json.loads(out)["metrics"]


def test_pretrained_beside_an_hf_model_is_refused(hf_models: dict[str, Path], manifest, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = gapdiag(capsys, "embed", "-d", manifest[0], "-m", f"hf:{hf_models['clip']}", "-p", "openai",
                             "--cache-dir", tmp_path)
    assert_one_line_error(code, out, err, "--pretrained 'openai'", "hf:")


def test_missing_folder_is_one_line(manifest, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = gapdiag(capsys, "embed", "-d", manifest[0], "-m", f"hf:{tmp_path / 'nothing'}", "--cache-dir", tmp_path)
    assert_one_line_error(code, out, err, "model folder not found", "nothing")


def test_a_folder_without_weights_is_named(hf_models: dict[str, Path], manifest, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "noweights"
    folder.mkdir()
    (folder / "config.json").write_text((hf_models["clip"] / "config.json").read_text())
    code, out, err = gapdiag(capsys, "embed", "-d", manifest[0], "-m", f"hf:{folder}", "--cache-dir", tmp_path)
    assert_one_line_error(code, out, err, str(folder), "no weight file")


def test_a_model_without_image_features_is_refused(manifest, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hf_fixtures import tokenizer
    from transformers import BertConfig, BertModel

    folder = tmp_path / "bert"
    BertModel(BertConfig(vocab_size=32, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(folder)
    tokenizer().save_pretrained(folder)
    capsys.readouterr()  # transformers' own progress bar while saving
    code, out, err = gapdiag(capsys, "embed", "-d", manifest[0], "-m", f"hf:{folder}", "--device", "cpu",
                             "--cache-dir", tmp_path)
    assert_one_line_error(code, out, err, f"hf:{folder}", "BertModel", "no get_image_features")


def test_an_uncached_hub_id_offline_says_what_to_do(manifest, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    code, out, err = gapdiag(capsys, "embed", "-d", manifest[0], "-m", "hf:google/siglip-base-patch16-224",
                             "--cache-dir", tmp_path)
    assert_one_line_error(code, out, err, "hf:google/siglip-base-patch16-224", "HF_HUB_OFFLINE",
                          "hf download google/siglip-base-patch16-224", "-m hf:./FOLDER")


def test_a_hub_id_in_the_local_hub_cache_loads_offline(hf_models: dict[str, Path], manifest, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from huggingface_hub import constants

    # The layout huggingface_hub writes: models--ORG--NAME/{refs/main, snapshots/REVISION/<files>}.
    repo = tmp_path / "hub" / "models--example-org--tiny-clip"
    shutil.copytree(hf_models["clip"], repo / "snapshots" / "0123abcd")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    by_id = gd.embed(manifest[0], "hf:example-org/tiny-clip", device="cpu", cache_dir=tmp_path, progress=False)
    by_folder = gd.embed(manifest[0], f"hf:{hf_models['clip']}", device="cpu", cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(np.asarray(by_id.vectors["image"]), np.asarray(by_folder.vectors["image"]))
    assert by_id.provenance["model"]["architecture"] == "hf:example-org/tiny-clip"


def test_only_the_weights_transformers_loads_are_in_the_key(hf_models: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "both"
    shutil.copytree(hf_models["clip"], folder)
    (folder / "pytorch_model.bin").write_bytes(b"an older copy of the weights")
    spec = resolve_model(f"hf:{folder}", cache_root=tmp_path)
    assert list(spec.fingerprint(precision="fp32")["weight_files_sha256"]) == ["model.safetensors"]
