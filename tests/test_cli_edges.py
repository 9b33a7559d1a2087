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
    from gapdiag.draw import MAX_PIXELS, check_pixels
    from gapdiag.errors import InputError
    from gapdiag.figures.common import new_figure

    check_pixels({"map": new_figure(7.5, 6.5)}, 1200)  # the largest bundled figure at the largest dpi fits
    with pytest.raises(InputError) as err:
        check_pixels({"hist": new_figure(60.0, 4.2)}, 1200)  # twelve modality pairs side by side
    line = str(err.value)
    assert "hist figure would be 72000 x 5040 pixels" in line and f"{MAX_PIXELS:,}" in line, line
    fits = int(line.rsplit("--dpi ", 1)[1].split()[0])
    check_pixels({"hist": new_figure(60.0, 4.2)}, fits)  # the dpi it names does fit
