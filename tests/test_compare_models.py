"""What a new checkpoint changed: `gapdiag compare -m A -m B -d DATA`, the cache-entry form, and `check` rules on
CKA / mutual k-NN against a baseline whose vectors are cached."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from cli_helpers import gapdiag
from conftest import export_tiny
from test_metrics_diagnostics import _brute_hsic_u, _brute_topk, _unit

from gapdiag import api


@pytest.fixture(scope="module")
def second_checkpoint(tmp_path_factory):
    return export_tiny(tmp_path_factory.mktemp("ckpt2") / "tiny2.safetensors", seed=1)


def _brute_cka(x, y):
    k, l = x @ x.T, y @ y.T
    return _brute_hsic_u(k, l) / math.sqrt(_brute_hsic_u(k, k) * _brute_hsic_u(l, l))


def test_two_checkpoints_item_by_item_against_brute_force(
    capsys, manifest, tiny_checkpoint, second_checkpoint
):
    code, out, err = gapdiag(
        capsys,
        "compare",
        "-m",
        tiny_checkpoint,
        "-m",
        second_checkpoint,
        "-d",
        manifest,
        "--device",
        "cpu",
        "--json",
        "--quiet",
    )
    assert code == 0, err
    sim = json.loads(out)["similarity"]
    a = api.embed(manifest, tiny_checkpoint, device="cpu", progress=False)
    b = api.embed(manifest, second_checkpoint, device="cpu", progress=False)
    for m in ("image", "text"):
        xa, xb = _unit(np.asarray(a.vectors[m], np.float32)), _unit(np.asarray(b.vectors[m], np.float32))
        assert sim["metrics"][f"linear_cka/{m}"] == pytest.approx(_brute_cka(xa, xb), rel=1e-5)
        k = min(10, len(xa) - 1)
        na, nb = _brute_topk(xa, xa, k + 1)[:, 1:], _brute_topk(xb, xb, k + 1)[:, 1:]
        overlap = [len(set(na[i]) & set(nb[i])) / k for i in range(len(xa))]
        assert sim["metrics"][f"mutual_knn/{m}"] == pytest.approx(np.mean(overlap))
        changed = sim["extras"][f"changed/{m}"]
        assert changed[0]["overlap"] == pytest.approx(min(overlap))
        assert ("path" if m == "image" else "caption") in changed[0]
    assert "linear_cka/joint" in sim["metrics"]


def test_same_checkpoint_twice_changes_nothing_and_cache_entries_work(capsys, manifest, tiny_checkpoint):
    es = api.embed(manifest, tiny_checkpoint, device="cpu", progress=False)
    entry = es.provenance["path"]
    code, out, err = gapdiag(capsys, "compare", entry, entry, "--json", "--quiet")
    assert code == 0, err
    metrics = json.loads(out)["similarity"]["metrics"]
    assert metrics["linear_cka/image"] == pytest.approx(1.0, abs=1e-9)
    assert metrics["mutual_knn/text"] == pytest.approx(1.0)
    code, out, err = gapdiag(capsys, "compare", entry, entry, "--quiet")
    assert code == 0 and "what changed" in out and "mutual k-NN" in out


def _rules(tmp_path, text):
    path = tmp_path / "rules.toml"
    path.write_text(text)
    return path


def test_check_gates_on_cka_to_the_cached_baseline(
    capsys, tmp_path, manifest, tiny_checkpoint, second_checkpoint
):
    base = tmp_path / "base.json"
    cur = tmp_path / "cur.json"
    api.measure(manifest, tiny_checkpoint, device="cpu", progress=False, metrics=["modality_gap"]).save(base)
    api.measure(manifest, second_checkpoint, device="cpu", progress=False, metrics=["modality_gap"]).save(cur)
    cka = api.similarity_to_baseline(api.Report.load(base), api.Report.load(cur))[0]["linear_cka/image"]
    assert cka < 0.999
    strict = _rules(tmp_path, f"[check]\nonly_listed = true\n[check.rules.linear_cka]\nmin = {cka + 1e-3}\n")
    code, out, err = gapdiag(
        capsys, "check", "--baseline", base, "--report", cur, "--config", strict, "--json"
    )
    outcomes = {o["name"]: o for o in json.loads(out)["outcomes"]}
    assert code == 1 and outcomes["linear_cka/image"]["status"] == "fail"
    loose = _rules(tmp_path, f"[check]\nonly_listed = true\n[check.rules.linear_cka]\nmin = {cka - 1e-3}\n")
    code, out, err = gapdiag(
        capsys, "check", "--baseline", base, "--report", cur, "--config", loose, "--json"
    )
    outcomes = {o["name"]: o for o in json.loads(out)["outcomes"]}
    assert code == 0, out
    assert outcomes["linear_cka/image"]["status"] == "pass"

    # The baseline's vectors are gone: said plainly, not a silent pass of a rule nobody evaluated.
    key = api.Report.load(base).provenance["cache_key"]
    shutil.rmtree(api.embed(manifest, tiny_checkpoint, device="cpu", progress=False).provenance["path"])
    code, out, err = gapdiag(
        capsys, "check", "--baseline", base, "--report", cur, "--config", strict, "--json"
    )
    outcome = next(o for o in json.loads(out)["outcomes"] if o["name"] == "linear_cka")
    assert (
        outcome["status"] == "skip" and key in outcome["reason"] and "not in the cache" in outcome["reason"]
    )
    assert "linear_cka not checked" in err
