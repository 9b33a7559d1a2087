"""What gapdiag's install brings and how FAISS is found (issue #30 §1).

faiss-cpu is the one FAISS dependency on every platform. faiss-gpu replaces it by hand (docs/install.md):
both wheels write the same ``faiss/`` folder, so having both, or uninstalling one of two, leaves a ``faiss``
that pip still lists but Python cannot import (proven in scratch venvs, docs/install.md). gapdiag names that
state and its fix in one line instead of a traceback.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, gapdiag

from gapdiag.errors import GapdiagError
from gapdiag.metrics import search_index
from gapdiag.metrics.retrieval import search_topk

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10: the backport gapdiag itself depends on there
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]


def _requirements() -> dict[str, list[str]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {"": project["dependencies"], **project["optional-dependencies"]}


def test_faiss_cpu_is_the_one_faiss_requirement_on_every_platform():
    faiss = {group: [r for r in reqs if r.lower().startswith("faiss")] for group, reqs in _requirements().items()}
    assert faiss[""] == ["faiss-cpu>=1.8"]  # no platform marker: the same on Linux, macOS and Windows
    assert all(reqs == [] for group, reqs in faiss.items() if group), faiss  # no extra adds a second FAISS


@pytest.fixture
def broken_faiss(monkeypatch):
    """``import faiss`` as after `pip uninstall faiss-gpu` in an environment that also had faiss-cpu."""
    monkeypatch.setitem(sys.modules, "faiss", None)  # import raises ModuleNotFoundError


def test_a_missing_faiss_is_one_line_naming_the_reinstall(broken_faiss):
    with pytest.raises(GapdiagError) as caught:
        search_topk(np.eye(4, dtype=np.float32), np.eye(4, dtype=np.float32), 2, device="cpu")
    line = caught.value.one_line()
    assert "\n" not in line and "FAISS" in line
    assert "pip uninstall -y faiss-cpu faiss-gpu && pip install faiss-cpu" in line and "docs/install.md" in line


def test_a_half_removed_faiss_is_named_too(monkeypatch):
    # What `pip uninstall faiss-cpu` leaves of a faiss-gpu installed before it: a package without its library.
    monkeypatch.setitem(sys.modules, "faiss", types.ModuleType("faiss"))
    with pytest.raises(GapdiagError, match="pip uninstall -y faiss-cpu faiss-gpu"):
        search_index.load_faiss()


def test_the_gpu_guard_still_reads_the_build(monkeypatch):
    cpu_build = types.SimpleNamespace(IndexFlatIP=object)
    monkeypatch.setitem(sys.modules, "faiss", cpu_build)
    assert search_index._faiss_gpus() == 0  # faiss-cpu: no StandardGpuResources, never asked for GPUs
    gpu_build = types.SimpleNamespace(IndexFlatIP=object, StandardGpuResources=object, get_num_gpus=lambda: 2)
    monkeypatch.setitem(sys.modules, "faiss", gpu_build)
    assert search_index._faiss_gpus() == 2


def test_the_cli_prints_the_broken_faiss_as_one_line(broken_faiss, capsys, tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "v.npz", image=rng.normal(size=(20, 8)).astype(np.float32),
             text=rng.normal(size=(20, 8)).astype(np.float32))
    code, out, err = gapdiag(capsys, "measure", "-d", tmp_path / "v.npz", "--metrics", "recall_at_1",
                             "--retrieval-engine", "faiss", "--quiet")
    assert_one_line_error(code, out, err, "FAISS", "pip install faiss-cpu")
