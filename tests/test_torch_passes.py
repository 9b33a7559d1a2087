"""The torch uniformity passes (measure on CUDA) equal the numpy blocked passes; run here on CPU tensors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_metrics_engine import _es

from gapdiag.metrics import compute_all
from gapdiag.metrics.blocked import unit_rows, within_pass
from gapdiag.metrics.cross import cross_pass
from gapdiag.metrics.torch_passes import cross_uniformity_torch, pass_device, within_pass_torch


def _units(n: int, d: int, seed: int) -> np.ndarray:
    return unit_rows(np.random.default_rng(seed).normal(size=(n, d)), "x")


@pytest.mark.parametrize(("n", "block"), [(53, 7), (40, 4096), (1, 3), (2, 1)])
def test_within_pass_equals_numpy(n: int, block: int) -> None:
    z = _units(n, 16, seed=n)
    ticks: list[tuple[int, int]] = []
    got = within_pass_torch(z, device="cpu", block_size=block, on_tile=lambda d, t: ticks.append((d, t)))
    want = within_pass(z, block_size=block)
    if n < 2:
        assert got == want == -math.inf
    else:
        assert got == pytest.approx(want, abs=1e-5)
    assert ticks[-1][0] == ticks[-1][1]


@pytest.mark.parametrize("t", [2.0, 0.5])
def test_cross_uniformity_equals_numpy_with_repeated_unsorted_samples(t: float) -> None:
    rng = np.random.default_rng(3)
    a, b = _units(53, 16, seed=1), _units(41, 16, seed=2)
    b[5] = a[7]  # an exact duplicate pair
    sa, sb = rng.integers(0, 30, 53), rng.integers(0, 30, 41)
    want = cross_pass(a, b, sa, sb, t=t, block_size=6, retrieval=False)
    got = cross_uniformity_torch(a, b, sa, sb, device="cpu", t=t, block_size=6)
    assert (got.n_all, got.n_nonmatching) == (want.n_all, want.n_nonmatching)
    assert got.lse_all == pytest.approx(want.lse_all, abs=1e-5)
    assert got.lse_nonmatching == pytest.approx(want.lse_nonmatching, abs=1e-5)


def test_every_pair_of_one_sample_leaves_no_nonmatching_term() -> None:
    a = _units(3, 8, seed=4)
    same = np.zeros(3, np.int64)
    got = cross_uniformity_torch(a, a, same, same, device="cpu", block_size=2)
    assert got.n_nonmatching == 0 and got.lse_nonmatching == -math.inf and math.isfinite(got.lse_all)


def test_pass_device_is_torch_only_for_cuda() -> None:
    assert pass_device("cpu") is None and pass_device("mps") is None
    assert pass_device("cuda") == "cuda" and pass_device("cuda:1") == "cuda:1"


def test_measure_on_cuda_runs_the_torch_passes_and_equals_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from gapdiag.metrics import quadratic, search_index, torch_passes

    es = _es(37, 2, d=12, seed=5)
    on_cpu, _ = compute_all(es, device="cpu", block_size=8)
    calls: list[str] = []
    real_within, real_cross = torch_passes.within_pass_torch, torch_passes.cross_uniformity_torch

    def within(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append("within")
        return real_within(*args, **kwargs)

    def cross(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append("cross")
        return real_cross(*args, **kwargs)

    # "cuda" = the GPU code path with CPU tensors: torch passes and torch search, both on the CPU.
    # The quadratic step holds the torch passes by name (imported at its top).
    monkeypatch.setattr(quadratic, "pass_device", lambda device: "cpu" if device == "cuda" else None)
    monkeypatch.setattr(quadratic, "within_pass_torch", within)
    monkeypatch.setattr(quadratic, "cross_uniformity_torch", cross)
    monkeypatch.setattr(search_index, "_use_gpu", lambda device: (None, 0) if device == "cpu" else ("torch", 0))
    monkeypatch.setattr(search_index, "_torch_device", lambda gpu_id: "cpu")
    on_gpu, _ = compute_all(es, device="cuda", block_size=8)
    assert "within" in calls and "cross" in calls
    assert on_gpu.keys() == on_cpu.keys()
    for name in on_cpu:
        assert on_gpu[name] == pytest.approx(on_cpu[name], abs=1e-5), name


def test_cross_uniformity_reports_its_progress_tile_by_tile() -> None:
    """The progress display counts the tiles done: 1, 2, ... up to every tile (9 × 7 here), never stuck at 0."""
    a, b = _units(53, 16, seed=1), _units(41, 16, seed=2)
    ticks: list[tuple[int, int]] = []
    cross_uniformity_torch(a, b, np.arange(53), np.arange(41) % 30, device="cpu", block_size=6,
                           on_tile=lambda done, total: ticks.append((done, total)))
    assert ticks == [(done, 9 * 7) for done in range(1, 9 * 7 + 1)]
