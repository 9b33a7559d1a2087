"""The edges of the command line (issue #23): values out of range, options that do not apply to the input,
deeply nested JSON, warnings. Each case is one ``error:`` line with exit 2 (or, for warnings, nothing at all),
and nothing is computed or written first."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import assert_one_line_error, gapdiag

from gapdiag.report import Report

# ------------------------------------------------------------------------------------- item 15: ranges


def _reports(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    for path in (a, b):
        Report(metrics={"modality_gap/image-text": 0.5},
               provenance={"dataset": {"fingerprint": "fp"}, "sample": {"size": None, "seed": 0}}).save(path)
    return a, b


#: Every command that takes --seed, as argv before the seed (files named here are made by the test).
SEEDED = {
    "measure": ["measure"],
    "export": ["export", "--out", "{tmp}/e.parquet"],
    "plot": ["plot", "--out", "{tmp}/figs"],
    "report": ["report", "--out", "{tmp}/r.html"],
    "check": ["check", "--baseline", "{tmp}/a.json"],
    "compare": ["compare", "{tmp}/a.json", "-m", "{tmp}/nosuch.safetensors"],
    "train": ["train", "--out", "{tmp}/run"],
}


@pytest.mark.parametrize("seed", ["-5", "4294967296", "99999999999999999999999"])
@pytest.mark.parametrize("command", sorted(SEEDED))
def test_a_seed_outside_0_to_2_to_the_32_is_one_line_in_every_command(capsys, tmp_path, monkeypatch, command,
                                                                       seed):
    """NumPy, scikit-learn and torch take seeds in 0..2**32-1; another one is refused before any work (the cache
    stays empty), not a traceback from k-means or the random generator after the embedding."""
    monkeypatch.chdir(tmp_path)
    _reports(tmp_path)
    argv = [a.format(tmp=tmp_path) for a in SEEDED[command]]
    cache = [] if command == "train" else ["--cache-dir", tmp_path / "cache"]  # train has no cache
    code, out, err = gapdiag(capsys, *argv, "--seed", seed, "-q", *cache)
    assert_one_line_error(code, out, err, "--seed", seed, "4294967295")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
    assert not (tmp_path / "run").exists() and not (tmp_path / "figs").exists()


def test_the_api_refuses_a_seed_out_of_range_too():
    import gapdiag
    from gapdiag.errors import InputError

    with pytest.raises(InputError, match="--seed -1 is outside 0..4294967295"):
        gapdiag.measure(seed=-1, progress=False)


#: Every option that names a file or folder to write, as (argv before it, the option).
OUTPUTS = [
    (["measure"], "--out"),
    (["shift"], "--out"),
    (["export"], "--out"),
    (["plot"], "--out"),
    (["report"], "--out"),
    (["check", "--baseline", "{tmp}/a.json"], "--out"),
    (["check", "--baseline", "{tmp}/a.json", "--report", "{tmp}/b.json"], "--markdown"),
    (["check", "--baseline", "{tmp}/a.json", "--report", "{tmp}/b.json"], "--junit"),
    (["compare", "{tmp}/a.json", "{tmp}/b.json"], "--markdown"),
    (["compare", "{tmp}/a.json", "{tmp}/b.json"], "--plot"),
    (["train"], "--out"),
]


@pytest.mark.parametrize(("argv", "option"), OUTPUTS, ids=[f"{a[0]} {o}" for a, o in OUTPUTS])
def test_an_empty_output_path_is_one_line(capsys, tmp_path, monkeypatch, argv, option):
    """``--out ''`` is not the current folder (Path('') is '.'): it is refused before anything is computed."""
    monkeypatch.chdir(tmp_path)
    _reports(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = [a.format(tmp=tmp_path) for a in argv]
    cache = [] if argv[0] == "train" else ["--cache-dir", tmp_path / "cache"]
    code, out, err = gapdiag(capsys, *argv, option, "", "-q", *cache)
    assert_one_line_error(code, out, err, option, "empty")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("command", ["plot", "report"])
@pytest.mark.parametrize("dpi", ["0", "1201", "100000"])
def test_dpi_outside_1_to_1200_is_one_line(capsys, tmp_path, monkeypatch, command, dpi):
    monkeypatch.chdir(tmp_path)
    code, out, err = gapdiag(capsys, command, "--dpi", dpi, "-q", "--cache-dir", tmp_path / "cache")
    assert_one_line_error(code, out, err, "--dpi", dpi, "1200")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_a_figure_too_large_at_its_dpi_is_refused_before_rendering_naming_a_dpi_that_fits():
    """A wide figure (many modality pairs, many compared reports) at a high --dpi would ask Agg for more than
    2**16 pixels a side or gigabytes of memory: one line with the --dpi that fits, nothing rendered."""
    from gapdiag.errors import InputError
    from gapdiag.figures.common import new_figure
    from gapdiag.figures.files import MAX_PIXELS, check_pixels

    check_pixels({"map": new_figure(7.5, 6.5)}, 1200)  # the largest bundled figure at the largest dpi fits
    with pytest.raises(InputError) as err:
        check_pixels({"hist": new_figure(60.0, 4.2)}, 1200)  # twelve modality pairs side by side
    line = str(err.value)
    assert "hist figure would be 72000 x 5040 pixels" in line and f"{MAX_PIXELS:,}" in line, line
    fits = int(line.rsplit("--dpi ", 1)[1].split()[0])
    check_pixels({"hist": new_figure(60.0, 4.2)}, fits)  # the dpi it names does fit


# ------------------------------------------------------------- item 6: options that do not apply are refused


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_checkpoint) -> dict[str, str]:
    """One input of each kind: a manifest, precomputed vectors, a cache entry, reports, a shift result."""
    import json

    import numpy as np
    from data_fixtures import digits_manifest

    from gapdiag import api

    root = tmp_path_factory.mktemp("inputs")
    manifest, _ = digits_manifest(root / "data", n=8)
    rng = np.random.default_rng(0)
    for name in ("emb", "emb2"):
        np.savez(root / f"{name}.npz", image=rng.normal(size=(12, 8)).astype("float32"),
                 text=rng.normal(size=(12, 8)).astype("float32"))
    np.savez(root / "other.npz", image=rng.normal(size=(10, 8)).astype("float32"),
             text=rng.normal(size=(10, 8)).astype("float32"))
    entry = api.embed(manifest, tiny_checkpoint, cache_dir=root / "cache", device="cpu", progress=False)
    a, b = _reports(root)
    (root / "shift.json").write_text(json.dumps({"lambdas": [0.0], "gap": [0.5], "loss": {"0.1": [1.0]},
                                                 "recall_at_1": {"image_to_text": [0.1], "text_to_image": [0.1]}}))
    return {"manifest": str(manifest), "npz": str(root / "emb.npz"), "npz2": str(root / "emb2.npz"),
            "other": str(root / "other.npz"), "entry": entry.provenance["path"], "a": str(a), "b": str(b),
            "shift": str(root / "shift.json"), "ckpt": str(tiny_checkpoint), "root": str(root)}


#: Model options: they only matter when a model embeds images and captions.
MODEL_OPTIONS = [("--model", "x.safetensors"), ("--pretrained", "openai"), ("--random-init", None),
                 ("--precision", "amp"), ("--preprocess", "pil"), ("--batch-size", "8"), ("--workers", "2"),
                 ("--dtype", "float16"), ("--skip-bad", None)]
#: Reader options: they only matter when a dataset file is read.
READER_OPTIONS = [("--split", "test"), ("--data-format", "manifest"), ("--image-column", "img"),
                  ("--text-column", "txt"), ("--label-column", "lab"), ("--class-name-column", "cls"),
                  ("--template", "a {{}}"), ("--image-root", "images")]


def _case(argv, option, value=None, fragment=None):
    return pytest.param(argv, [option, *([value] if value is not None else [])], fragment or option,
                        id=f"{' '.join(argv)} {option}")


APPLY_CASES = [
    # (command and input, the option, what the one line names)
    *[_case(["measure", "-d", "{npz}"], o, v) for o, v in MODEL_OPTIONS],
    *[_case([c, "-d", "{npz}"], "--model", "x.safetensors") for c in ("embed", "shift", "export", "plot", "report")],
    _case(["embed", "-d", "{npz}"], "--chunk-size", "10"),
    _case(["export", "-d", "{npz}", "--map", "pca"], "--seed", "3"),  # PCA is deterministic
    _case(["check", "--baseline", "{a}", "-d", "{npz}"], "--model", "x.safetensors"),
    _case(["compare", "-m", "{ckpt}", "-m", "{ckpt}", "-d", "{npz}"], "--batch-size", "8"),
    *[_case(["measure", "-d", "{entry}"], o, v) for o, v in MODEL_OPTIONS + READER_OPTIONS],
    _case(["embed", "-d", "{entry}"], "--chunk-size", "10"),
    _case(["measure"], "--pretrained", "openai", "--model"),  # a tag of which architecture?
    # check a saved report: nothing is measured now
    *[_case(["check", "--baseline", "{a}", "--report", "{b}"], o, v)
      for o, v in [("--data", "{manifest}"), ("--random-init", None), ("--sample", "10"), ("--seed", "3"),
                   ("--precision", "amp"), ("--batch-size", "8"), ("--device", "cpu"), ("--image-column", "x"),
                   ("--dtype", "float16")]],
    # compare saved reports: nothing is measured now
    *[_case(["compare", "{a}", "{b}"], o, v)
      for o, v in [("--data", "{manifest}"), ("--pretrained", "openai"), ("--random-init", None),
                   ("--sample", "10"), ("--seed", "1"), ("--split", "test"), ("--batch-size", "8")]],
    _case(["compare", "{npz}", "{npz2}"], "--data", "{manifest}"),  # vectors of their own
    # plot: each option to the figure that uses it
    _case(["plot", "--kind", "shift", "--shift", "{shift}"], "--data", "{manifest}"),
    _case(["plot", "--kind", "shift", "--shift", "{shift}"], "--model", "{ckpt}"),
    _case(["plot", "--kind", "compare", "--report", "{a}", "--report", "{b}"], "--seed", "3"),
    _case(["plot", "--kind", "hist", "-d", "{npz}"], "--method", "pca"),
    _case(["plot", "--kind", "hist", "-d", "{npz}"], "--color-by", "class"),
    _case(["plot", "--kind", "spectrum", "-d", "{npz}"], "--max-pairs", "10"),
    _case(["plot", "--kind", "spectrum", "-d", "{npz}"], "--seed", "3"),
    _case(["plot", "--kind", "hist", "-d", "{npz}"], "--report", "{a}"),
    _case(["plot", "--kind", "hist", "-d", "{npz}"], "--shift", "{shift}"),
    _case(["plot", "--kind", "hist", "-d", "{npz}"], "--label", "x"),
    # report -r reuses a measurement
    _case(["report", "-r", "{a}", "-d", "{npz}"], "--metrics", "modality_gap"),
    _case(["report", "-r", "{a}", "-d", "{npz}"], "--sample", "10"),
    _case(["report", "--kind", "hist", "-d", "{npz}"], "--method", "pca"),
    _case(["report", "--kind", "hist", "-d", "{npz}"], "--shift", "{shift}"),
]


@pytest.mark.parametrize(("argv", "extra", "fragment"), APPLY_CASES)
def test_an_option_that_does_not_apply_to_the_input_is_refused(capsys, tmp_path, monkeypatch, inputs, argv, extra,
                                                                fragment):
    """Ignored options lied: `compare -m nosuch_a -m nosuch_b -d EMB` printed CKA = 1.0, `measure -m X` on vectors
    measured the vectors. Each such option is one line naming it, exit 2, before any work."""
    monkeypatch.chdir(tmp_path)
    argv = [a.format(**inputs) for a in [*argv, *extra]]
    code, out, err = gapdiag(capsys, *argv, "-q", "--cache-dir", tmp_path / "cache")
    line = assert_one_line_error(code, out, err, fragment.format(**inputs))
    assert "does not apply" in line or "do not apply" in line or "needs" in line, line
    assert not (tmp_path / "cache").exists() or not [p for p in (tmp_path / "cache").iterdir()
                                                       if p.name != "fingerprints"]


@pytest.mark.parametrize("verb", ["measure", "shift", "export"])
def test_the_api_refuses_model_options_beside_vectors_in_memory(inputs, tmp_path, verb):
    from gapdiag import api
    from gapdiag.errors import InputError

    es = api.embed(inputs["npz"], progress=False)
    kwargs = {"out": tmp_path / "e.parquet"} if verb == "export" else {}
    with pytest.raises(InputError, match="--model does not apply"):
        getattr(api, verb)(es, "ViT-B-32", progress=False, **kwargs)
    with pytest.raises(InputError, match="--split does not apply"):
        getattr(api, verb)(es, split="test", progress=False, **kwargs)
    assert not (tmp_path / "e.parquet").exists()


def test_options_that_apply_are_still_accepted(capsys, tmp_path, inputs):
    """The refusals are exact: what an input uses goes through."""
    code, _, err = gapdiag(capsys, "measure", "-d", inputs["npz"], "--device", "cpu", "--sample", "5", "--seed", "2",
                           "--metrics", "modality_gap", "-q", "--cache-dir", tmp_path / "cache")
    assert code == 0, err
    code, _, err = gapdiag(capsys, "plot", "--kind", "map", "-d", inputs["npz"], "--method", "pca", "--color-by",
                           "modality", "--max-pairs", "5", "--seed", "1", "-q", "--out", tmp_path / "figs")
    assert code == 0, err


def test_plot_and_report_read_data_in_the_format_given(capsys, tmp_path, inputs):
    """``--data-format`` beside the figures' own ``--format``: plot and report handed both to the api under one
    keyword, and crashed with exit 70 (issue #26: typed verbs give the data format a name of its own)."""
    code, _, err = gapdiag(capsys, "plot", "--kind", "spectrum", "-d", inputs["npz"], "--data-format", "precomputed",
                           "--format", "svg", "-q", "--out", tmp_path / "figs", "--cache-dir", tmp_path / "cache")
    assert code == 0, err
    assert (tmp_path / "figs" / "spectrum.svg").is_file()
    code, _, err = gapdiag(capsys, "report", "--kind", "spectrum", "-d", inputs["npz"], "--data-format", "npz",
                           "--metrics", "modality_gap", "-q", "--out", tmp_path / "r.html",
                           "--cache-dir", tmp_path / "cache")
    assert code == 0, err


# ------------------------------------------------------ item 6: compare two precomputed sets of the same items


def test_compare_two_precomputed_sets_of_the_same_items(capsys, inputs):
    """What api.compare_models does with two embedding sets, on the command line: the metric table and the
    item-by-item view (CKA, mutual k-NN), with a warning that the items cannot be verified beyond their shape."""
    import json

    code, out, err = gapdiag(capsys, "compare", inputs["npz"], inputs["npz2"], "--json", "-q")
    assert code == 0, err
    result = json.loads(out)
    assert {"linear_cka/image", "mutual_knn/text"} <= set(result["similarity"]["metrics"])
    assert 0 < result["similarity"]["metrics"]["linear_cka/image"] < 0.99  # two independent random sets
    assert any("precomputed" in w for w in result["warnings"]), result["warnings"]
    code, out, err = gapdiag(capsys, "compare", inputs["npz"], inputs["npz"], "--json", "-q")
    assert code == 0 and json.loads(out)["similarity"]["metrics"]["linear_cka/image"] == pytest.approx(1.0)


def test_compare_precomputed_sets_of_other_items_is_one_line(capsys, inputs):
    code, out, err = gapdiag(capsys, "compare", inputs["npz"], inputs["other"], "-q")
    assert_one_line_error(code, out, err, "12", "10")


def test_compare_a_dataset_file_is_refused_naming_the_way_to_compare_models_on_it(capsys, inputs):
    code, out, err = gapdiag(capsys, "compare", inputs["a"], inputs["manifest"], "-q")
    assert_one_line_error(code, out, err, inputs["manifest"], "-d")


def test_the_embed_defaults_that_options_compare_with_are_every_verb_s():
    """gapdiag.api.options.EMBED_DEFAULTS says what "not given" is; it must not drift from the signature of any
    verb that embeds (each lists the shared keywords explicitly, with the same defaults)."""
    import inspect

    from gapdiag import api
    from gapdiag.api.options import EMBED_DEFAULTS

    renamed = {"format": "data_format"}  # plot and report: their own `format` is the figures'
    for verb in (api.embed, api.measure, api.export, api.shift, api.compare_models, api.plot, api.report,
                 api.check, api.compare):
        signature = inspect.signature(verb).parameters
        named = {k: renamed[k] if renamed.get(k) in signature else k for k in EMBED_DEFAULTS}
        shared = {k: signature[name].default for k, name in named.items()}
        assert shared == EMBED_DEFAULTS, verb.__name__
        assert all(p.kind is not inspect.Parameter.VAR_KEYWORD for p in signature.values()), verb.__name__


# ------------------------------------------------------------------ item 14: JSON nested too deeply to parse


DEEP = "[" * 100_000


@pytest.mark.parametrize("where", ["coco", "coco-detected", "jsonl", "check-baseline", "compare", "plot-report",
                                   "plot-shift", "report-report", "model-config", "train-run-json"])
def test_json_nested_too_deeply_is_one_line_everywhere_a_user_hands_us_json(capsys, tmp_path, monkeypatch, where):
    """`'[' * 100000` raised RecursionError (a traceback, exit 1) in the readers and report loaders."""
    monkeypatch.chdir(tmp_path)
    good, _ = _reports(tmp_path)
    deep = tmp_path / ("manifest.jsonl" if where == "jsonl" else "deep.json")
    deep.write_text(DEEP if where != "jsonl" else '{"image": "a.png", "caption": "x"}\n' + DEEP + "\n")
    argv = {
        "coco": ["measure", "-d", deep, "--data-format", "coco"],
        "coco-detected": ["measure", "-d", deep],
        "report-report": ["report", "-r", deep, "--kind", "shift", "--shift", deep, "--out", tmp_path / "r.html"],
        "model-config": ["measure", "-m", deep, "--random-init"],
        "train-run-json": ["train", "--out", tmp_path],  # a folder whose run.json is the deep file
        "jsonl": ["measure", "-d", deep],
        "check-baseline": ["check", "--baseline", deep, "--report", good],
        "compare": ["compare", good, deep],
        "plot-report": ["plot", "--kind", "compare", "--report", good, "--report", deep, "--out", tmp_path / "f"],
        "plot-shift": ["plot", "--kind", "shift", "--shift", deep, "--out", tmp_path / "f"],
    }[where]
    if where == "train-run-json":
        deep.rename(tmp_path / "run.json")
        deep = tmp_path / "run.json"
    code, out, err = gapdiag(capsys, *argv, "-q")
    assert_one_line_error(code, out, err, deep.name)


# ------------------------------------------------------- item 18: no Python warning reaches stderr as Python prints it


def _no_python_warning(err: str) -> None:
    """Python prints ``path:line: SomeWarning: message`` and the source line below it."""
    assert "Warning:" not in err and ".py:" not in err, err


def test_values_beyond_float32_are_one_error_line_without_numpy_s_overflow_warning(tmp_path):
    """In a real process (pytest would catch the warning in-process): numpy's overflow warning printed two lines
    of source before the error."""
    import os
    import subprocess
    import sys

    import numpy as np

    path = tmp_path / "huge.npz"
    np.savez(path, image=np.full((6, 4), 1e300), text=np.ones((6, 4)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "GAPDIAG_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "gapdiag", "measure", "-d", str(path), "--metrics", "modality_gap",
                           "-q"], capture_output=True, text=True, env=env, check=False)
    assert_one_line_error(proc.returncode, proc.stdout, proc.stderr, "row 0: the value 1e+300 is beyond float32")
    _no_python_warning(proc.stderr)


def test_a_library_warning_on_a_successful_run_is_one_clean_line(capsys, tmp_path):
    """scikit-learn's k-means on identical points warns; the user sees one `warning:` line, not a source dump."""
    import numpy as np

    path = tmp_path / "same.npz"
    point = np.random.default_rng(0).normal(size=(1, 8)).astype("float32")
    np.savez(path, image=np.repeat(point, 30, 0), text=np.repeat(point, 30, 0))
    code, _, err = gapdiag(capsys, "measure", "-d", path, "--metrics", "v_measure_modality", "-q")
    assert code == 0, err
    _no_python_warning(err)
    lines = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(lines) == 1 and "distinct clusters" in lines[0] and "from sklearn" in lines[0], err


@pytest.mark.parametrize("command", ["embed", "train"])
def test_more_workers_than_cores_is_one_clean_line(capsys, tmp_path, tiny_checkpoint, command):
    """torch's DataLoader advice about worker counts came as two multi-line UserWarnings."""
    import os

    from data_fixtures import digits_manifest

    manifest, _ = digits_manifest(tmp_path / "data", n=8)
    workers = str((os.cpu_count() or 1) + 2)
    argv = (["embed", "-m", tiny_checkpoint, "--cache-dir", tmp_path / "cache"] if command == "embed" else
            ["train", "--epochs", "1", "--batch-size", "8", "--split", "train", "--eval-split", "train",
             "--out", tmp_path / "run"])
    code, _, err = gapdiag(capsys, *argv, "-d", manifest, "--workers", workers, "-q")
    assert code == 0, err
    _no_python_warning(err)
    lines = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(lines) == 1 and "DataLoader will create" in lines[0] and "from torch" in lines[0], err


def test_debug_shows_python_warnings_as_python_prints_them(capsys, tmp_path):
    import numpy as np

    from gapdiag.cli import run

    path = tmp_path / "same.npz"
    point = np.ones((1, 8), dtype="float32")
    np.savez(path, image=np.repeat(point, 30, 0), text=np.repeat(point, 30, 0))
    with pytest.warns(Warning, match="distinct clusters"):
        assert run(["measure", "-d", str(path), "--metrics", "v_measure_modality", "-q", "--debug"]) == 0
