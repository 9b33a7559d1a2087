"""What a new checkpoint changed: `gapdiag compare -m A -m B -d DATA`, the cache-entry form, and `check` rules on
CKA / mutual k-NN against a baseline whose vectors are cached."""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, gapdiag
from conftest import export_tiny
from test_metrics_diagnostics import _brute_hsic_u, _brute_topk, _unit

from gapdiag import api
from gapdiag.report.presentation import format_value


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
    assert code == 0 and "what changed" in out and "mutual k-NN" in out and "linear CKA (biased)" in out


def markdown_tables(text: str) -> list[list[list[str]]]:
    """The tables of a Markdown text as rows of cells, after checking GitHub's table syntax: a blank line
    before, a header row, a delimiter row with one ``---`` per column, then rows with as many cells (a ``|``
    inside a cell escaped as ``\\|``)."""
    lines, tables = text.split("\n"), []
    for i, line in enumerate(lines):
        if line.startswith("|") and (i == 0 or not lines[i - 1].startswith("|")):
            assert i > 0 and lines[i - 1] == "", f"no blank line before the table at line {i + 1}"
            block = list(itertools.takewhile(lambda x: x.startswith("|"), lines[i:]))
            assert len(block) >= 2, block
            rows = [[c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", row)[1:-1]] for row in block]
            assert all(row.endswith("|") for row in block), block
            assert rows[1] and all(re.fullmatch(r":?-{3,}:?", c) for c in rows[1]), block[1]
            assert {len(r) for r in rows} == {len(rows[0])}, block
            tables.append([rows[0], *rows[2:]])
    return tables


def test_two_checkpoints_markdown_for_a_pr_comment(
    capsys, tmp_path, manifest, tiny_checkpoint, second_checkpoint
):
    md = tmp_path / "pr" / "compare.md"
    code, out, err = gapdiag(capsys, "compare", "-m", tiny_checkpoint, "-m", second_checkpoint, "-d", manifest,
                             "--device", "cpu", "--json", "--quiet", "--markdown", md)
    assert code == 0, err
    sim, text = json.loads(out)["similarity"], md.read_text(encoding="utf-8")
    metrics_table, similarity_table, *changed_tables = markdown_tables(text)
    assert metrics_table[0][:2] == ["Metric", "Better"]  # the side-by-side report table comes first
    assert f"### What changed: {tiny_checkpoint} → {second_checkpoint}" in text  # full labels, as in --json
    values = sim["metrics"]
    assert similarity_table == [["Set", "Linear CKA", "Linear CKA (biased)", "Mutual k-NN"]] + [
        [q, format_value(values[f"linear_cka/{q}"]), format_value(values[f"linear_cka_biased/{q}"]),
         format_value(values[f"mutual_knn/{q}"])]
        for q in ("image", "text", "joint")]
    assert "mutual k-NN = mean share of each item's 10 neighbours kept" in text
    assert len(changed_tables) == 2  # image and text; the joint set's items are theirs
    for modality, table in zip(("image", "text"), changed_tables):
        assert f"**{modality}**: items whose neighbours changed most" in text
        content = "path" if modality == "image" else "caption"
        assert table == [["Item", "Sample", "Overlap", "Path or caption"]] + [
            [f"#{it['item']}", str(it["sample"]), f"{it['overlap']:.2f}", it[content]]
            for it in sim["extras"][f"changed/{modality}"][:5]]


def test_two_checkpoints_markdown_is_written_atomically(
    capsys, tmp_path, monkeypatch, manifest, tiny_checkpoint, second_checkpoint
):
    """A failure before the rename keeps the old file whole and leaves no temporary file beside it."""
    md = tmp_path / "pr" / "compare.md"
    md.parent.mkdir()
    md.write_text("old comment\n")
    real_replace = os.replace

    def full_disk_for_the_markdown(src, dst, *args, **kwargs):
        if Path(dst) == md:
            raise OSError(28, "No space left on device")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", full_disk_for_the_markdown)
    code, out, err = gapdiag(capsys, "compare", "-m", tiny_checkpoint, "-m", second_checkpoint, "-d", manifest,
                             "--device", "cpu", "--quiet", "--markdown", md)
    assert_one_line_error(code, out, err, "--markdown", str(md))
    assert md.read_text() == "old comment\n"
    assert [p.name for p in md.parent.iterdir()] == ["compare.md"]


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

    # The baseline's vectors are gone: said plainly, not a silent pass of a rule nobody evaluated. With no
    # other rule (only_listed) the gate checked nothing: exit 3 (issue #23), the reason in the one line.
    key = api.Report.load(base).provenance["cache_key"]
    shutil.rmtree(api.embed(manifest, tiny_checkpoint, device="cpu", progress=False).provenance["path"])
    code, out, err = gapdiag(
        capsys, "check", "--baseline", base, "--report", cur, "--config", strict, "--json"
    )
    assert_one_line_error(code, out, err, "checked nothing", key, "not in the cache", exit_code=3)
    # Beside a rule that is checked, the unavailable one is a skip with its reason and a note.
    both = _rules(tmp_path, f"[check]\nonly_listed = true\n[check.rules.linear_cka]\nmin = {cka + 1e-3}\n"
                            "[check.rules.modality_gap]\nmax = 2\n")
    code, out, err = gapdiag(capsys, "check", "--baseline", base, "--report", cur, "--config", both, "--json")
    outcome = next(o for o in json.loads(out)["outcomes"] if o["name"] == "linear_cka")
    assert (
        code == 0 and outcome["status"] == "skip" and key in outcome["reason"]
        and "not in the cache" in outcome["reason"]
    )
    assert "linear_cka not checked" in err
