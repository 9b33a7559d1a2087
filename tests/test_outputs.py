"""Issue #23 items 10, 11 and 13: what a command writes never destroys what it reads, never replaces a device
or a FIFO, and stays where it was asked to write.

* 10: an output that is an input (same file after resolving links, hard links too) or another output is refused
  in one line (exit 2) before any work (:func:`gapdiag.outputs.check_outputs`, used by every command).
* 11: an existing path that is not a regular file (a FIFO, a character device) is written directly, never
  replaced by a rename.
* 13: ``--cache-dir ''`` is an error, not the current folder; numba's compile cache goes under the cache root;
  stale ``.NAME.PID.TID.tmp`` files left by a killed writer are removed on the next write of that target (and in
  ``derived/``); ``--out dir/`` or an existing folder given for a file is one line naming the fix.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, gapdiag

from gapdiag import api, fsutil, outputs
from gapdiag.errors import InputError
from gapdiag.report import Report

REPO = Path(__file__).resolve().parents[1]


def _report(path: Path, gap: float = 0.5) -> Path:
    Report(metrics={"modality_gap/image-text": gap, "cos_tp/image-text": 0.4},
           provenance={"dataset": {"fingerprint": "f" * 64}, "sample": {"size": None, "seed": 0}}).save(path)
    return path


@pytest.fixture
def files(tmp_path: Path, manifest: Path, tiny_checkpoint: Path) -> dict[str, Path]:
    ckpt = tmp_path / "model.safetensors"
    shutil.copy(tiny_checkpoint, ckpt)
    config = tmp_path / "gapdiag.toml"
    config.write_text("[check]\n")
    base, cand = _report(tmp_path / "base.json"), _report(tmp_path / "cand.json", 0.6)
    link = tmp_path / "link.json"
    link.symlink_to(base)
    hard = tmp_path / "hard.json"
    os.link(base, hard)
    return {"B": base, "R": cand, "M": manifest, "CKPT": ckpt, "C": config, "LINK": link, "HARD": hard}


# (command line with placeholders, the output option, the input option it would destroy, the input's key)
OVERWRITES = [
    (["check", "--baseline", "B", "--report", "R", "--markdown", "B"], "--markdown", "--baseline", "B"),
    (["check", "--baseline", "B", "--report", "R", "--junit", "B"], "--junit", "--baseline", "B"),
    (["check", "--baseline", "B", "--report", "R", "--out", "R"], "--out", "--report", "R"),
    (["check", "--baseline", "B", "--report", "R", "--config", "C", "--markdown", "C"], "--markdown", "--config",
     "C"),
    (["check", "--baseline", "B", "-d", "M", "--junit", "M"], "--junit", "--data", "M"),
    (["check", "--baseline", "B", "--report", "R", "--markdown", "LINK"], "--markdown", "--baseline", "B"),
    (["check", "--baseline", "B", "--report", "R", "--junit", "HARD"], "--junit", "--baseline", "B"),
    (["export", "-d", "M", "--out", "M"], "--out", "--data", "M"),
    (["report", "-r", "R", "--out", "R"], "--out", "--report", "R"),
    (["measure", "-d", "M", "--out", "M"], "--out", "--data", "M"),
    (["measure", "-m", "CKPT", "--out", "CKPT"], "--out", "--model", "CKPT"),
    (["shift", "-d", "M", "--out", "M"], "--out", "--data", "M"),
    (["compare", "R", "B", "--markdown", "R"], "--markdown", "REPORTS", "R"),
]


@pytest.mark.parametrize("args, output, source, key", OVERWRITES,
                         ids=[" ".join(a) for a, *_ in OVERWRITES])
def test_an_output_that_is_an_input_is_refused_before_any_work(files, isolated_cache, capsys, args, output, source,
                                                               key):
    before = {k: p.read_bytes() for k, p in files.items() if p.is_file()}
    code, out, err = gapdiag(capsys, *[files.get(a, a) for a in args], "-q" if args[0] != "compare" else "--json")
    line = assert_one_line_error(code, out, err, output, source, "same file")
    assert "Traceback" not in line
    assert {k: p.read_bytes() for k, p in files.items() if p.is_file()} == before  # nothing written over
    assert not isolated_cache.exists() or not any(isolated_cache.glob("*/meta.json"))  # nothing embedded


def test_two_outputs_naming_one_file_are_refused(files, tmp_path, capsys):
    same = tmp_path / "ci.txt"
    code, out, err = gapdiag(capsys, "check", "--baseline", files["B"], "--report", files["R"],
                             "--markdown", same, "--junit", same)
    assert_one_line_error(code, out, err, "--markdown", "--junit", "same file")
    assert not same.exists()


def test_plot_refuses_a_figure_that_would_replace_its_input(tmp_path, capsys):
    figs = tmp_path / "figs"
    figs.mkdir()
    shift = figs / "shift.png"  # a shift result saved under the name of the figure it draws
    shift.write_text(json.dumps({"lambdas": [0.0], "gap": [0.5], "loss": {"0.1": [1.0]},
                                 "recall_at_1": {"image_to_text": [0.5], "text_to_image": [0.5]}}))
    before = shift.read_bytes()
    code, out, err = gapdiag(capsys, "plot", "--kind", "shift", "--shift", shift, "--out", figs, "-q")
    assert_one_line_error(code, out, err, "--out", "--shift", "same file")
    assert shift.read_bytes() == before


def test_train_refuses_to_write_over_the_checkpoint_it_starts_from(tmp_path, tiny_checkpoint):
    run = tmp_path / "run"
    run.mkdir()
    start = run / "model.safetensors"
    shutil.copy(tiny_checkpoint, start)
    before = start.read_bytes()
    with pytest.raises(InputError, match="same file") as info:
        api.train(api.load_data(), start, out_dir=run, epochs=1, device="cpu", progress=False)
    assert "--out" in str(info.value) and "--model" in str(info.value)
    assert start.read_bytes() == before and sorted(p.name for p in run.iterdir()) == ["model.safetensors"]


def test_the_helper_compares_files_not_spellings(tmp_path):
    base = _report(tmp_path / "b.json")
    outputs.check_outputs({"--out": tmp_path / "new.json"}, {"--baseline": base})  # another file: fine
    outputs.check_outputs({"--out": tmp_path / "x" / ".." / "new.json"}, {"--data": "ViT-B-32"})  # not a path
    with pytest.raises(InputError, match="same file"):
        outputs.check_outputs({"--out": tmp_path / "sub" / ".." / "b.json"}, {"--baseline": base})
    (tmp_path / "sub").mkdir()
    with pytest.raises(InputError, match="same file"):
        outputs.check_outputs({"--out": tmp_path / "sub" / ".." / "b.json"}, {"--baseline": [tmp_path / "z", base]})


# ------------------------------------------------------------------ item 11: FIFOs and devices are written to


def _fifo_reader(path: Path) -> int:
    """A reader on the FIFO that never blocks: the writer may open it, and what it writes waits in the pipe."""
    os.mkfifo(path)
    return os.open(path, os.O_RDONLY | os.O_NONBLOCK)


def _drain(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def test_markdown_to_a_fifo_is_written_into_it_not_renamed_over_it(files, tmp_path, capsys):
    fifo = tmp_path / "summary.fifo"
    fd = _fifo_reader(fifo)
    code, _out, err = gapdiag(capsys, "check", "--baseline", files["B"], "--report", files["R"], "--markdown", fifo)
    assert code in (0, 1), err  # the gate's verdict; the point is the file
    assert stat.S_ISFIFO(os.stat(fifo).st_mode), "the FIFO was replaced by a regular file"
    assert b"modality_gap" in _drain(fd)
    assert [p.name for p in tmp_path.glob(".summary.fifo*")] == []


def test_a_report_to_a_fifo_is_written_into_it(tmp_path):
    fifo = tmp_path / "report.fifo"
    fd = _fifo_reader(fifo)
    _report(fifo)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert json.loads(_drain(fd))["metrics"]["modality_gap/image-text"] == 0.5


def test_measure_out_to_a_character_device_keeps_the_device(manifest, tmp_path, capsys):
    null = tmp_path / "null"
    try:
        os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # what /dev/null is; never the real one
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot make a device node here ({exc.strerror}): needs root")
    code, _out, err = gapdiag(capsys, "measure", "-d", manifest, "--device", "cpu", "-q", "--out", null,
                             "--metrics", "modality_gap")
    assert code == 0, err
    assert stat.S_ISCHR(os.stat(null).st_mode), "the device node was replaced by a regular file"
    assert os.stat(null).st_rdev == os.makedev(1, 3)


# ------------------------------------------------------------------------- item 13: writes stay where asked


@pytest.mark.parametrize("args", [["cache", "ls"], ["cache", "verify"], ["measure", "-q"], ["embed", "-q"]])
def test_an_empty_cache_dir_is_an_error_not_the_current_folder(tmp_path, monkeypatch, capsys, args):
    monkeypatch.chdir(tmp_path)
    code, out, err = gapdiag(capsys, *args, "--cache-dir", "")
    assert_one_line_error(code, out, err, "--cache-dir", "empty")
    assert list(tmp_path.iterdir()) == []


def test_an_empty_cache_dir_is_an_error_in_the_api_too(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for call in (lambda: api.cache_ls(cache_dir=""), lambda: api.embed(cache_dir="", progress=False)):
        with pytest.raises(InputError, match="empty"):
            call()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", [["measure", "-q", "--metrics", "modality_gap", "--out"], ["export", "-q", "--out"],
                                  ["report", "-q", "--no-interactive", "--out"]])
@pytest.mark.parametrize("how", ["trailing slash", "existing folder"])
def test_a_folder_given_for_a_file_output_is_one_line(manifest, tmp_path, capsys, args, how):
    folder = tmp_path / "reports"
    if how == "existing folder":
        folder.mkdir()
    target = f"{folder}/" if how == "trailing slash" else str(folder)
    code, out, err = gapdiag(capsys, *args[:1], "-d", manifest, "--device", "cpu", *args[1:], target)
    assert_one_line_error(code, out, err, "--out", "folder", "file name")
    assert not folder.exists() or list(folder.iterdir()) == []
    assert not (tmp_path / "reports").is_file()


def test_an_empty_out_is_one_line(manifest, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = gapdiag(capsys, "measure", "-d", manifest, "-q", "--out", "")
    assert_one_line_error(code, out, err, "--out", "empty")


def test_a_stale_temp_file_of_a_killed_writer_is_removed_on_the_next_write(tmp_path):
    dead = _dead_pid()
    target = tmp_path / "report.json"
    stale = tmp_path / f".report.json.{dead}.140000000000000.tmp"
    stale.write_text('{"half": ')
    alive = tmp_path / f".report.json.{os.getpid()}.1.tmp"  # a live writer's: left alone
    alive.write_text("busy")
    other = tmp_path / f".notes.txt.{dead}.1.tmp"  # another target's: not this write's business
    other.write_text("x")
    _report(target)
    assert not stale.exists() and alive.exists() and other.exists()
    assert json.loads(target.read_text())["metrics"]


def test_stale_temp_files_in_derived_are_removed(manifest, isolated_cache):
    api.measure(manifest, progress=False, device="cpu", metrics=["modality_gap"])
    (folder,) = (isolated_cache / "derived").iterdir()
    stale = folder / f".measure-0123.json.{_dead_pid()}.1.tmp"
    stale.write_text("{")
    api.measure(manifest, progress=False, device="cpu", metrics=["cos_tp"])  # another memo in the same folder
    assert not stale.exists()


def _dead_pid() -> int:
    """A pid that no process has now (a child that has exited and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_numba_compiles_into_the_cache_root_not_the_package(tmp_path):
    """NUMBA_CACHE_DIR is set from the resolved settings before numba is imported (gapdiag.settings)."""
    npz = tmp_path / "pairs.npz"
    rng = np.random.default_rng(0)
    np.savez(npz, image=rng.standard_normal((40, 8)).astype(np.float32),
             text=rng.standard_normal((40, 8)).astype(np.float32))
    cache = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "GAPDIAG_CACHE_DIR")}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    code = ("import sys; from gapdiag.cli import run; code = run(sys.argv[1:]); "
            "from gapdiag.metrics import strip_scan; print('CACHE', strip_scan._scan._cache.cache_path); "
            "sys.exit(code)")
    proc = subprocess.run([sys.executable, "-c", code, "measure", "-d", npz, "--cache-dir", cache, "-q",
                           "--metrics", "uniformity_wang_isola"], capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    compiled = Path(next(x for x in proc.stdout.splitlines() if x.startswith("CACHE")).split(" ", 1)[1])
    assert compiled.is_relative_to(cache / "numba"), compiled
    assert not compiled.is_relative_to(REPO / "gapdiag")


# ---------------------------------------------------------------------------------- item 17: disk full, outputs


def test_a_full_disk_while_writing_an_output_says_disk_full(files, tmp_path, capsys, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fsutil.os, "fsync", full)
    md = tmp_path / "summary.md"
    code, out, err = gapdiag(capsys, "check", "--baseline", files["B"], "--report", files["R"], "--markdown", md)
    assert_one_line_error(code, out, err, "disk full", str(md))
    assert not md.exists()
    with pytest.raises(InputError, match="disk full while writing report"):
        _report(tmp_path / "r.json")


@pytest.mark.parametrize("given", ["", "{tmp}", "{tmp}/", "{tmp}/new/"])
def test_report_save_refuses_an_empty_path_or_a_folder_in_one_line(tmp_path, given):
    """The API says what the CLI says: Report.save('') raised ValueError and Report.save('new/') wrote a file named
    new; both are one-line InputErrors now, and nothing is written."""
    path = given.format(tmp=tmp_path)
    with pytest.raises(InputError, match="is empty|is a folder, not a file") as exc:
        Report(metrics={"modality_gap/image-text": 0.5}, provenance={}).save(path)
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "new").exists()
