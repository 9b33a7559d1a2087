"""The warm path: a cache hit imports no model library, --cache-dir keeps every write under it, and measured
reports and 2-D maps are reused from the cache (gapdiag/cache/derived.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import digits_manifest

from gapdiag import api
from gapdiag.cache import derived

MODEL_LIBRARIES = ("open_clip", "timm", "torchvision", "torch._dynamo")
#: Runs the CLI in a fresh interpreter, then prints which model libraries the command imported.
_RUN_AND_REPORT = (
    "import sys; from gapdiag.cli import run; code = run(sys.argv[1:]); "
    f"print('IMPORTED', [m for m in {MODEL_LIBRARIES!r} if m in sys.modules]); sys.exit(code)"
)


#: Files changed within RACY_SECONDS of hashing are not memoised (fsutil's racily-clean rule); the cold run treats
#: the data it was just given as settled, so that it writes its fingerprint memo without a wait on the clock.
_SETTLED = "import gapdiag.fsutil as f; f.RACY_SECONDS = 0; "


def _cli(args: list[object], env: dict[str, str], *, settled: bool = False) -> tuple[list[str], str]:
    code = (_SETTLED if settled else "") + _RUN_AND_REPORT
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("IMPORTED"))
    return json.loads(line.split(" ", 1)[1].replace("'", '"')), proc.stdout


@pytest.fixture(scope="module")
def cold_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | dict[str, str]]:
    """One cold `gapdiag embed --cache-dir X` with HOME and the XDG dirs pointing at an empty folder.

    The model is a config JSON that no registry knows, so gapdiag must write its config for open_clip.
    """
    from gapdiag.models.loading import CONFIG_DIR

    tmp = tmp_path_factory.mktemp("warm")
    data, _ = digits_manifest(tmp / "data", n=8)
    model = tmp / "my-tiny.json"
    model.write_text((CONFIG_DIR / "gapdiag-tiny-vit.json").read_text())
    home, cache = tmp / "home", tmp / "cache"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "GAPDIAG_CACHE_DIR"}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_DATA_HOME=str(home / ".local/share"), PYTHONPATH=os.pathsep.join(sys.path))
    imported, _ = _cli(["embed", "--data", data, "--model", model, "--random-init", "--cache-dir", cache, "-q"], env,
                       settled=True)
    return {"model": model, "data": data, "home": home, "cache": cache, "env": env, "cold_imports": imported}


def test_cache_dir_keeps_every_write_under_it(cold_run):
    assert "open_clip" in cold_run["cold_imports"]  # the cold run really built the model
    assert [p for p in Path(cold_run["home"]).rglob("*")] == []
    cache = Path(cold_run["cache"])
    # The memos that used to go to the user's cache dir whatever --cache-dir said:
    assert list((cache / "fingerprints").glob("*.txt")), "dataset fingerprint memo not under --cache-dir"
    assert list((cache / "model_configs").glob("*.json")), "checkpoint's model config not under --cache-dir"


def test_warm_measure_embed_check_import_no_model_library(cold_run, tmp_path):
    common = ["--data", cold_run["data"], "--model", cold_run["model"], "--random-init", "--cache-dir",
              cold_run["cache"], "-q"]
    env, base = cold_run["env"], tmp_path / "base.json"
    for args in (["measure", *common, "--out", base], ["embed", *common], ["check", "--baseline", base, *common]):
        imported, _ = _cli(args, env)
        assert imported == [], (args[0], imported)
    assert [p for p in Path(cold_run["home"]).rglob("*")] == []


def test_a_measured_report_is_reused_until_something_that_changes_it_changes(manifest, monkeypatch):
    first = api.measure(manifest, progress=False, device="cpu")
    import gapdiag.metrics as metrics_module

    calls = []
    real = metrics_module.compute_all
    monkeypatch.setattr(metrics_module, "compute_all", lambda *a, **k: calls.append(k) or real(*a, **k))
    again = api.measure(manifest, progress=False, device="cpu")
    assert calls == [] and again.metrics == pytest.approx(first.metrics, nan_ok=True, abs=0, rel=0)
    other_seed = api.measure(manifest, progress=False, device="cpu", seed=1)
    assert len(calls) == 1 and calls[0]["seed"] == 1
    assert other_seed.provenance["sample"]["seed"] == 1
    monkeypatch.setattr(derived, "code_stamp", lambda *modules: "edited")  # e.g. a metric was changed
    api.measure(manifest, progress=False, device="cpu")
    assert len(calls) == 2


def test_vectors_without_a_cache_entry_are_never_memoised(manifest, monkeypatch):
    es = api.embed(manifest, progress=False, device="cpu")
    es.provenance.pop("key")
    assert derived.memo_path(es, "measure", {}, ".json") is None


def test_the_2d_map_is_read_back_for_the_same_points(manifest, monkeypatch):
    from gapdiag import figures as plot
    from gapdiag.figures import embedding_map

    es = api.embed(manifest, progress=False, device="cpu")
    first = plot.plot_map(es, method="pca")
    monkeypatch.setattr(embedding_map, "map_coordinates", lambda *a, **k: pytest.fail("the map was recomputed"))
    second = plot.plot_map(es, method="pca")
    points = [np.asarray(f.axes[0].collections[1].get_offsets()) for f in (first, second)]
    np.testing.assert_array_equal(points[0], points[1])
    with pytest.raises(pytest.fail.Exception):
        plot.plot_map(es, method="pca", seed=3)  # another subsample: another map


def test_version_and_help_import_no_heavy_library():
    heavy = ("torch", "sklearn", "faiss", "open_clip", "matplotlib", "umap", "scipy", "numba")
    for flag in ("--version", "--help"):
        code = ("import sys; from gapdiag.cli import run; run([%r]); "
                "print('IMPORTED', [m for m in %r if m in sys.modules])" % (flag, heavy))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
        assert out.splitlines()[-1] == "IMPORTED []", (flag, out[-300:])
