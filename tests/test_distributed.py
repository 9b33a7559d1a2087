"""Distributed embedding under torchrun (2 CPU processes, gloo) writes the single-process entry."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gapdiag import api
from gapdiag.embedding.distributed import DistributedContext
from tests.data_fixtures import digits_manifest

pytestmark = pytest.mark.slow


def test_ranks_own_disjoint_chunks_that_cover_everything():
    owners = [[k for k in range(11) if DistributedContext(rank=r, world_size=3).owns(k)] for r in range(3)]
    assert sorted(k for o in owners for k in o) == list(range(11))
    assert all(set(a).isdisjoint(b) for i, a in enumerate(owners) for b in owners[i + 1:])


def test_backend_is_nccl_only_where_every_local_rank_has_its_own_gpu(monkeypatch):
    from gapdiag import device as devices
    from gapdiag.embedding.distributed import process_group_backend

    cpu, cuda, cuda1 = devices.Device("cpu"), devices.Device("cuda"), devices.Device("cuda", 1)
    assert process_group_backend(cpu, 2) == "gloo"
    monkeypatch.setattr(devices, "cuda_count", lambda: 2)
    assert process_group_backend(devices.resolve("auto"), 2) == "nccl"  # auto, resolved at the edge: cuda
    assert process_group_backend(cuda, 2) == "nccl"
    assert process_group_backend(cuda1, 1) == "nccl"
    assert process_group_backend(cpu, 2) == "gloo"  # --device cpu on a GPU machine: NCCL cannot carry it
    assert process_group_backend(cuda, 3) == "gloo"  # NCCL refuses two ranks on one GPU
    monkeypatch.setattr(devices, "cuda_count", lambda: 0)
    monkeypatch.setattr(devices, "mps_available", lambda: False)
    assert process_group_backend(devices.resolve("auto"), 2) == "gloo"  # auto without a GPU: the CPU


def test_auto_and_cuda_give_each_rank_its_own_gpu(monkeypatch):
    from gapdiag import device as devices

    monkeypatch.setattr(devices, "cuda_count", lambda: 2)
    ranks = [DistributedContext(rank=r, world_size=3, local_rank=r) for r in range(3)]
    auto = devices.resolve("auto")  # what the api hands down: cuda
    assert [str(c.device(auto)) for c in ranks] == ["cuda:0", "cuda:1", "cuda:0"]
    assert [str(c.device(devices.Device("cuda"))) for c in ranks] == ["cuda:0", "cuda:1", "cuda:0"]
    assert str(ranks[1].device(devices.Device("cpu"))) == "cpu"
    assert str(ranks[1].device(devices.Device("cuda", 0))) == "cuda:0"
    assert str(DistributedContext().device(auto)) == "cuda"  # not distributed: the device as resolved


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun is not installed beside this Python")
@pytest.mark.parametrize("device", ["cpu", pytest.param("auto", marks=pytest.mark.skipif(
    not _cuda_available(), reason="needs a CUDA GPU (ranks on GPUs: NCCL, or gloo when they share one)"))])
def test_two_ranks_write_the_same_vectors_as_one_process(tmp_path, device):
    manifest, _ = digits_manifest(tmp_path / "data", n=40)
    single = api.embed(manifest, "gapdiag-tiny-vit", random_init=True, cache_dir=tmp_path / "single", chunk_size=8,
                       progress=False, device=device)

    env = {**os.environ, "GAPDIAG_CACHE_DIR": str(tmp_path / "multi"), "OMP_NUM_THREADS": "1"}
    torchrun = str(Path(sys.executable).parent / "torchrun")
    proc = subprocess.run(
        [torchrun, "--standalone", "--nproc-per-node", "2", "-m", "gapdiag", "embed", "--data", str(manifest),
         "--model", "gapdiag-tiny-vit", "--random-init", "--device", device, "--chunk-size", "8", "--quiet", "--json"],
        env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count('"key"') == 1  # only rank 0 reports

    key = single.provenance["key"]
    entry = tmp_path / "multi" / key
    assert (entry / "meta.json").is_file(), f"no entry {key} in {list((tmp_path / 'multi').iterdir())}"
    for modality, vectors in single.vectors.items():
        multi = np.load(entry / f"{modality}.npy")
        assert multi.shape == vectors.shape and multi.dtype == vectors.dtype
        assert np.abs(multi - np.asarray(vectors)).max() <= 1e-5
        np.testing.assert_array_equal(np.load(entry / f"{modality}.sample_index.npy"), single.sample_index[modality])
    assert not (entry / "chunks").exists()  # rank 0 finalised and cleaned up
