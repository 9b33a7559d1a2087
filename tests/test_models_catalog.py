"""Models by name: the bundled checkpoints as ``-m bundled:NAME`` and the ``gapdiag models`` listing (issue #30 §2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import assert_one_line_error, gapdiag

import gapdiag as gd
from gapdiag import api
from gapdiag.api import bundled_checkpoint


@pytest.mark.parametrize("name", ["infonce", "gap_closing"])
def test_a_bundled_checkpoint_is_named_as_a_model(name: str, manifest: Path) -> None:
    es = gd.embed(manifest, f"bundled:{name}", device="cpu", progress=False)
    model = es.provenance["model"]
    assert Path(model["checkpoint"]) == bundled_checkpoint(name)
    assert model["checkpoint_sha256"]
    assert es.provenance["key"] == gd.embed(manifest, bundled_checkpoint(name), device="cpu",
                                            progress=False).provenance["key"]


def test_bundled_names_differ_in_their_vectors(manifest: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = set()
    for name in ("infonce", "gap_closing"):
        code, out, err = gapdiag(capsys, "embed", "-d", manifest, "-m", f"bundled:{name}", "--json", "-q")
        assert code == 0, err
        keys.add(json.loads(out)["key"])
    assert len(keys) == 2


def test_an_unknown_bundled_name_lists_the_known_ones(manifest: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = gapdiag(capsys, "embed", "-d", manifest, "-m", "bundled:clip")
    assert_one_line_error(code, out, err, "unknown bundled checkpoint 'clip'", "bundled:infonce", "bundled:gap_closing")


def test_train_starts_from_a_bundled_checkpoint(manifest: Path, tmp_path: Path) -> None:
    result = api.train(manifest, "bundled:gap_closing", out_dir=tmp_path / "run", epochs=1, batch_size=4,
                      device="cpu", progress=False)
    assert Path(result.model_path).is_file()


def _fake_hub_repo(hub: Path, repo_id: str, file_name: str) -> None:
    """A model repository in a Hugging Face cache folder, laid out as huggingface_hub writes it."""
    repo = hub / f"models--{repo_id.replace('/', '--')}"
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "blobs" / "b1").write_text("{}")
    (repo / "snapshots" / "abc123" / file_name).symlink_to("../../blobs/b1")
    (repo / "refs" / "main").write_text("abc123")


def test_models_lists_bundled_cached_hub_and_architectures(manifest: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    hub = tmp_path / "hub"
    _fake_hub_repo(hub, "org/tiny-clip", "config.json")
    _fake_hub_repo(hub, "org/tiny-open-clip", "open_clip_config.json")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    gd.embed(manifest, "bundled:gap_closing", device="cpu", progress=False)
    code, out, err = gapdiag(capsys, "models", "--json")
    assert code == 0, err
    listing = json.loads(out)
    assert [(b["model"], b["present"], b["default"]) for b in listing["bundled"]] == [
        ("bundled:infonce", True, True), ("bundled:gap_closing", True, False)]
    assert listing["cached"] == {"gap_closing": 1}
    assert [h["model"] for h in listing["hub_cache"]] == ["hf:org/tiny-clip", "hf-hub:org/tiny-open-clip"]
    tags = {a["name"]: a["pretrained"] for a in listing["architectures"]}
    assert "openai" in tags["ViT-B-32"] and tags["gapdiag-tiny-vit"] == []
    code, out, err = gapdiag(capsys, "models", "--no-architectures")
    assert code == 0, err
    assert "bundled:gap_closing" in out and "hf:org/tiny-clip" in out and "ViT-B-32" not in out
