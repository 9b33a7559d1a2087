"""gapdiag.device: one parser and resolver for --device; "auto" needs no torch where no GPU can exist."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gapdiag import device as devices
from gapdiag.errors import ModelError


def test_parse_accepts_the_documented_spellings_and_nothing_else():
    assert [str(devices.parse(d)) for d in ("auto", "CPU", "cuda", "cuda:3", "mps")] == [
        "auto", "cpu", "cuda", "cuda:3", "mps"]
    for bad in ("gpu", "cuda:x", "cpu:0", "", "cuda:"):
        with pytest.raises(ModelError, match="unknown device"):
            devices.parse(bad)


def test_auto_is_cpu_without_a_gpu_and_the_first_gpu_with_one(monkeypatch):
    monkeypatch.setattr(devices, "cuda_count", lambda: 0)
    monkeypatch.setattr(devices, "mps_available", lambda: False)
    assert str(devices.resolve("auto")) == "cpu"
    with pytest.raises(ModelError, match="no CUDA GPU"):
        devices.resolve("cuda")
    monkeypatch.setattr(devices, "cuda_count", lambda: 2)
    assert str(devices.resolve("auto")) == "cuda"
    assert str(devices.resolve("cuda:1")) == "cuda:1"
    with pytest.raises(ModelError, match=r"only 2 GPU\(s\)"):
        devices.resolve("cuda:2")


def test_each_rank_gets_its_own_gpu_only_under_torchrun(monkeypatch):
    monkeypatch.setattr(devices, "cuda_count", lambda: 2)
    cuda = devices.resolve("auto")  # resolved once, at the edge: what the ranks receive
    assert [str(devices.for_rank(cuda, r, True)) for r in range(3)] == ["cuda:0", "cuda:1", "cuda:0"]
    assert str(devices.for_rank(devices.resolve("cuda:1"), 0, True)) == "cuda:1"
    assert str(devices.for_rank(cuda, 1, False)) == "cuda"  # outside torchrun: the device as resolved
    assert str(devices.for_rank(devices.Device("cpu"), 1, True)) == "cpu"


@pytest.mark.skipif(devices.gpu_possible(), reason="needs a machine without any GPU device node")
def test_auto_on_a_machine_without_gpu_imports_neither_torch_nor_faiss():
    code = ("import sys; from gapdiag import device; from gapdiag.metrics.search_index import search_backend; "
            "print(device.resolve('auto'), search_backend('auto'), "
            "sorted(m for m in ('torch', 'faiss') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["cpu", "faiss-cpu", "[]"]
