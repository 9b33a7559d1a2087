"""Issue #23 item 2: results memoised under ``derived/`` (measured reports, 2-D maps) carry checksums exactly like
vectors. An edited memo is detected, never used: the result is computed again with one warning line; ``check``
never gates on it; ``gapdiag cache verify`` reports it (exit 2)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, gapdiag

from gapdiag import api
from gapdiag.cache import EmbeddingCache, derived

GAP = "modality_gap/image-text"


def _memos(root: Path, kind: str) -> list[Path]:
    return sorted(p for p in (root / "derived").rglob(f"{kind}-*") if p.suffix in (".json", ".npy"))


def _edit_one_digit(path: Path, metric: str = GAP) -> float:
    """What issue #23 did: change one digit of one value in a memoised report (valid JSON, same size)."""
    data = json.loads(path.read_text())
    value = data["metrics"][metric]
    text = path.read_text()
    shown = repr(value)
    digit = next(i for i, c in enumerate(shown) if c.isdigit() and c != "0" and i > shown.find("."))
    edited = shown[:digit] + str((int(shown[digit]) + 4) % 10) + shown[digit + 1:]
    assert text.count(shown) == 1
    path.write_text(text.replace(shown, edited))
    return float(edited)


def test_an_edited_memoised_report_is_computed_again_with_one_warning(manifest, isolated_cache, caplog):
    first = api.measure(manifest, progress=False, device="cpu")
    (memo,) = _memos(isolated_cache, "measure")
    edited = _edit_one_digit(memo)
    assert edited != first[GAP]
    with caplog.at_level(logging.WARNING):
        again = api.measure(manifest, progress=False, device="cpu")
    assert again.metrics == pytest.approx(first.metrics, nan_ok=True, abs=0, rel=0)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0], warnings
    assert str(memo) in warnings[0] and "checksum mismatch" in warnings[0] and "computing it again" in warnings[0]
    assert json.loads(memo.read_text())["metrics"][GAP] == first[GAP]  # rewritten with the true value
    caplog.clear()
    api.measure(manifest, progress=False, device="cpu")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_memoised_report_without_its_checksum_is_not_used(manifest, isolated_cache, monkeypatch):
    api.measure(manifest, progress=False, device="cpu")
    (memo,) = _memos(isolated_cache, "measure")
    Path(f"{memo}.sha256").unlink()
    import gapdiag.metrics as metrics_module

    calls = []
    real = metrics_module.compute_all
    monkeypatch.setattr(metrics_module, "compute_all", lambda *a, **k: calls.append(1) or real(*a, **k))
    api.measure(manifest, progress=False, device="cpu")
    assert calls == [1]


def test_check_never_gates_on_a_tampered_memo(manifest, isolated_cache, tmp_path, capsys):
    base = tmp_path / "base.json"
    code, _, err = gapdiag(capsys, "measure", "-d", manifest, "--device", "cpu", "-q", "--out", base)
    assert code == 0, err
    (memo,) = _memos(isolated_cache, "measure")
    data = json.loads(memo.read_text())
    data["metrics"][GAP] += 0.5  # a large regression of the gap, in the memo only
    memo.write_text(json.dumps(data))
    code, out, err = gapdiag(capsys, "check", "--baseline", base, "-d", manifest, "--device", "cpu", "-q")
    assert code == 0, out + err
    assert "FAIL" not in out


def test_cache_verify_reports_a_tampered_memo(manifest, isolated_cache, capsys):
    report = api.measure(manifest, progress=False, device="cpu")
    (memo,) = _memos(isolated_cache, "measure")
    key = report.provenance["cache_key"]
    code, _out, err = gapdiag(capsys, "cache", "verify", "--cache-dir", isolated_cache)
    assert code == 0 and err == "", err
    _edit_one_digit(memo)
    (result,) = EmbeddingCache(isolated_cache).verify(key)
    assert not result["ok"]
    assert result["problems"] == [{"file": f"derived/{memo.name}", "reason": result["problems"][0]["reason"]}]
    code, _out, err = gapdiag(capsys, "cache", "verify", "--cache-dir", isolated_cache)
    assert_one_line_error(code, "", err, f"{key}/derived/{memo.name}", "checksum mismatch")


def test_an_edited_2d_map_is_computed_again_with_one_warning(manifest, isolated_cache, monkeypatch, caplog):
    from gapdiag import figures as plot
    from gapdiag.figures import embedding_map

    es = api.embed(manifest, progress=False, device="cpu")
    first = plot.plot_map(es, method="pca")
    (memo,) = _memos(isolated_cache, "map")
    xy = np.load(memo)
    np.save(memo, xy[::-1].copy())  # a readable array of the right shape: only the checksum knows
    calls = []
    real = embedding_map.map_coordinates
    monkeypatch.setattr(embedding_map, "map_coordinates", lambda *a, **k: calls.append(1) or real(*a, **k))
    with caplog.at_level(logging.WARNING):
        second = plot.plot_map(es, method="pca")
    assert calls == [1]
    points = [np.asarray(f.axes[0].collections[1].get_offsets()) for f in (first, second)]
    np.testing.assert_array_equal(points[0], points[1])
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert str(memo) in warning and "computing it again" in warning
    np.testing.assert_array_equal(np.load(memo), xy)


def test_a_memo_belongs_to_the_bytes_of_its_entry(manifest, isolated_cache):
    """The memo's name covers the entry's ``meta_checksum``: the memos of another entry (a swapped
    ``derived/`` folder) or of an entry since rebuilt are never found under this one's names."""
    es = api.embed(manifest, progress=False, device="cpu")
    path = derived.memo_path(es, "measure", {"a": 1}, ".json")
    rebuilt = {**es.provenance, "meta_checksum": "sha256:" + "0" * 64}
    es.provenance = rebuilt
    assert derived.memo_path(es, "measure", {"a": 1}, ".json") != path
    es.provenance = {k: v for k, v in rebuilt.items() if k != "meta_checksum"}
    assert derived.memo_path(es, "measure", {"a": 1}, ".json") is None  # not a verified entry: no memo


def test_cache_rm_removes_the_entrys_derived_results(manifest, isolated_cache, capsys):
    report = api.measure(manifest, progress=False, device="cpu")
    key = report.provenance["cache_key"]
    assert (isolated_cache / "derived" / key).is_dir()
    assert EmbeddingCache(isolated_cache).rm(key) == [key]
    assert not (isolated_cache / "derived" / key).exists()


def test_a_memoised_report_keeps_the_metric_order_of_the_first_run(manifest, isolated_cache):
    """The memo was written with sorted keys, so a warm `measure --json` (and `track`'s table) listed the metrics
    alphabetically where the cold run listed them in the registry's order."""
    first = api.measure(manifest, progress=False, device="cpu")
    assert _memos(isolated_cache, "measure")
    again = api.measure(manifest, progress=False, device="cpu")
    assert list(again.metrics) == list(first.metrics)
    assert list(again.metrics) != sorted(first.metrics)


def test_a_checksummed_memo_this_version_cannot_read_is_a_miss_not_an_error(tmp_path):
    """A memo can pass its checksum and still be another gapdiag version's (a format this one refuses): it is
    computed again, not an error, and left in place for the version that wrote it."""
    from gapdiag.cache import integrity
    from gapdiag.errors import GapdiagError

    path = tmp_path / "report-0123.json"
    path.write_bytes(b'{"format": 99}')
    integrity.write_sidecar(path, integrity.checksum(path))

    def parse(data: bytes) -> dict:
        raise GapdiagError("report format 99 is newer than this gapdiag")

    assert derived._load(path, "report", parse) is None
    assert path.exists()
