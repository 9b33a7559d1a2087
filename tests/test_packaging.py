"""The built wheel carries what `gapdiag measure` with no arguments needs, and runs it outside the checkout.

The wheel is built from a copy of the packaging inputs (what a clean clone has), with the test venv's
setuptools and no network (``--no-build-isolation``); the install goes into a fresh virtual environment that
sees the test venv's dependencies through a ``.pth`` line but neither the checkout nor an editable install.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
#: What a build reads: pyproject.toml declares the package, setup.py adds sample_data/ (see its docstring).
BUILD_INPUTS = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "gapdiag", "sample_data")
PACKAGED = "gapdiag/bundled/sample_data"
MAX_WHEEL_BYTES = 15 * 1024 * 1024


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("src")
    for name in BUILD_INPUTS:
        if (REPO / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "bundled")
            shutil.copytree(REPO / name, source / name, ignore=ignore)
        else:
            shutil.copy2(REPO / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "-q", str(source), "-w", str(out)], check=True, capture_output=True, text=True)
    (built,) = out.glob("gapdiag-*.whl")
    return built


def _test_split_images() -> list[str]:
    with open(REPO / "sample_data" / "digits" / "manifest.csv", newline="") as f:
        return [row["image"] for row in csv.DictReader(f) if row["split"] == "test"]


def test_wheel_ships_the_defaults_model_and_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    needed = {f"{PACKAGED}/checkpoints/infonce.safetensors",
              f"{PACKAGED}/checkpoints/gap_closing.safetensors",
              f"{PACKAGED}/digits/manifest.csv", "gapdiag/models/configs/gapdiag-tiny-vit.json"}
    needed |= {f"{PACKAGED}/digits/{image}" for image in _test_split_images()}
    assert len(needed) > 300
    assert sorted(needed - names) == []
    assert not any(n.startswith(("tests/", "scripts/", "sample_data/")) for n in names)
    assert wheel.stat().st_size <= MAX_WHEEL_BYTES


@pytest.mark.slow
def test_installed_wheel_measures_its_default_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    # No PYTHONPATH anywhere: with the checkout on it, pip would take gapdiag as installed already.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GAPDIAG_SAMPLE_DATA")}
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, env=env)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                    "--no-index", "-q", str(wheel)], check=True, capture_output=True, text=True, env=env)
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True, env=env).stdout.strip()
    # The dependencies (torch, open_clip, ...) come from the test venv: nothing downloads. A plain path line
    # does not run that venv's own .pth files, so an editable gapdiag there stays invisible.
    (Path(purelib) / "_gapdiag_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    script = venv / ("Scripts/gapdiag.exe" if os.name == "nt" else "bin/gapdiag")
    run = subprocess.run([str(script), "measure", "--json"], cwd=workdir, env=env, capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    installed = Path(purelib).resolve() / PACKAGED
    assert Path(report["provenance"]["dataset"]["source"]).resolve() == installed / "digits" / "manifest.csv"
    checkpoint = Path(report["provenance"]["model"]["checkpoint"]).resolve()
    assert checkpoint == installed / "checkpoints" / "infonce.safetensors"
    assert report["provenance"]["dataset"]["n_samples"] == len(_test_split_images())
    assert 0 < report["metrics"]["modality_gap/image-text"] < 2
    # A bundled checkpoint by name works from the wheel too (no checkout, no sample_data/ folder beside it).
    run = subprocess.run([str(script), "measure", "-m", "bundled:gap_closing", "--json"], cwd=workdir, env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    checkpoint = Path(json.loads(run.stdout)["provenance"]["model"]["checkpoint"]).resolve()
    assert checkpoint == installed / "checkpoints" / "gap_closing.safetensors"
