"""Issue #25, run 6: what the survivors of the fresh sample (seed 30) showed no test asserted.

Each test fails with its survivor applied and passes without (docs/reliability.md, "Run 6").
"""

from __future__ import annotations

import numpy as np
import pytest

from gapdiag.errors import InputError
from gapdiag.metrics import search_index
from gapdiag.metrics.clustering import modality_separability
from gapdiag.metrics.retrieval import search_topk
from gapdiag.metrics.sampling import priority_keys

_MASK = (1 << 64) - 1


def _splitmix64(state: int) -> int:
    """SplitMix64's output for ``state`` (Steele, Lea & Flood, OOPSLA 2014), in Python integers mod 2**64."""
    z = (state + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


@pytest.mark.parametrize("fraction", [0.0, -0.25, 1.0, 1.5])
def test_a_held_out_fraction_outside_0_1_is_a_one_line_error_naming_it(fraction):
    """``test_fraction`` must lie strictly inside (0, 1): 0 and below hold out nothing (survivor: ``0.0 <`` →
    ``0.0 is not``, which let 0 and negative fractions through)."""
    rng = np.random.default_rng(0)
    with pytest.raises(InputError, match=rf"test_fraction must be in \(0, 1\), got {fraction}"):
        modality_separability([rng.normal(size=(8, 3)), rng.normal(size=(8, 3))], test_fraction=fraction)


def test_the_monitors_sample_keys_are_splitmix64_of_the_salted_ids():
    """The bottom-k keys are SplitMix64 of ``id + salt`` (docstring): the known first output for state 0
    (0xE220A8397B1DCDAF) and a pure-Python reference for other ids. Survivor: ``z ^ (z >> 30)`` →
    ``z // (z >> 30)``, keys that still look random but are not SplitMix64's (nor as uniform)."""
    seed = 11
    salt = int(np.random.SeedSequence(seed).generate_state(1, dtype=np.uint64)[0])
    at_zero = priority_keys(np.array([(-salt) & _MASK], dtype=np.uint64), seed)
    assert int(at_zero[0]) == 0xE220A8397B1DCDAF
    ids = np.array([0, 1, 2, 7, 1000, 123456789], dtype=np.int64)
    keys = priority_keys(ids, seed)
    assert [int(k) for k in keys] == [_splitmix64((int(i) + salt) & _MASK) for i in ids]


@pytest.mark.parametrize("k, candidates", [(5, 21), (16, 32), (20, 40)])
def test_an_exact_search_without_near_ties_takes_its_first_candidates_once(monkeypatch, k, candidates):
    """The tie window is twice the float32 rounding bound (about d·2⁻²⁴): queries whose k-th and last
    candidates are far apart are answered from the first FAISS call of max(2k, k + 16) candidates (the
    documented default), never widened to the whole gallery. Survivors: the window ``2.0 * tolerance`` →
    ``2.0 // tolerance`` (about 10⁶), which kept the values (exact rescoring) but widened every query to the
    whole gallery; run 7's ``2 * k`` → ``2 - k`` (k + 16 candidates past k = 16)."""
    calls: list[int] = []
    real = search_index.Searcher.raw_search

    def recording(self, q, k):
        calls.append(k)
        return real(self, q, k)

    monkeypatch.setattr(search_index.Searcher, "raw_search", recording)
    rng = np.random.default_rng(4)
    q, g = rng.normal(size=(20, 16)), rng.normal(size=(500, 16))
    _, idx = search_topk(q, g, k, device="cpu")
    exact = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (g / np.linalg.norm(g, axis=1, keepdims=True)).T
    np.testing.assert_array_equal(idx, np.argsort(-exact, axis=1, kind="stable")[:, :k])
    assert calls == [candidates]  # one call


def test_the_torch_index_scores_a_small_search_in_one_slice(monkeypatch):
    """The CUDA-only torch index (run here on the CPU) holds up to 2²⁸ float32 scores (1 GiB) on the device at
    once: 7 queries against 10 gallery rows are one slice, one top-k. Survivor: ``1 << 28`` → ``1 + 28``, slices
    of 2 queries (a kernel launch and a host copy for every other query on a real gallery)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    g, q = rng.normal(size=(10, 4)).astype(np.float32), rng.normal(size=(7, 4)).astype(np.float32)
    index = search_index._TorchFlatIndex(g, "cpu")
    calls = []
    real_topk = torch.topk
    monkeypatch.setattr(torch, "topk", lambda *a, **kw: calls.append(a[0].shape) or real_topk(*a, **kw))
    _, idx = index.search(q, 3)
    assert calls == [(7, 10)]
    np.testing.assert_array_equal(idx, np.argsort(-(q @ g.T), axis=1, kind="stable")[:, :3])


@pytest.mark.parametrize("possible, count, want", [(True, 1, "cuda"), (True, 0, None), (False, 1, None)])
def test_auto_runs_the_pair_passes_on_cuda_exactly_when_a_cuda_device_is_there(monkeypatch, possible, count, want):
    """``device="auto"``: the torch passes run on CUDA when a GPU is possible and CUDA counts a device, else
    numpy. Survivor: ``not devices.cuda_count()`` → ``devices.cuda_count()``, which left a GPU machine on numpy
    (no test machine has CUDA, so every test took the first branch)."""
    from gapdiag import device as devices
    from gapdiag.metrics.torch_passes import pass_device

    monkeypatch.setattr(devices, "gpu_possible", lambda: possible)
    monkeypatch.setattr(devices, "cuda_count", lambda: count)
    assert pass_device("auto") == want


def test_reports_compared_without_labels_are_numbered_from_1():
    """``gapdiag compare`` without labels names the reports #1, #2, #3 in the table. Survivor: ``i + 1`` →
    ``i << 1`` (#0, #2, #4)."""
    from test_check import FAKE, make_report

    from gapdiag.check import compare_reports

    reports = [make_report({"recall_at_1/image_to_text": v}) for v in (0.5, 0.6, 0.7)]
    assert compare_reports(reports, registry=FAKE).labels == ["#1", "#2", "#3"]
