"""Tests of gapdiag.training.losses against hand-computed cases and brute-force numpy references written here."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gapdiag.errors import InputError
from gapdiag.training.losses import (
    LOSSES,
    LearnableTemperature,
    alignment_loss,
    atp_loss,
    centroid_uniformity_loss,
    clip_loss,
    cross_uniformity_loss,
    cua_loss,
    cuaxu_loss,
    gap_closing_loss,
    get_loss,
    infonce_loss,
    uniformity_loss,
)

SQRT2 = math.sqrt(2.0)


# ---------------------------------------------------------------- numpy references (independent of gapdiag)
def np_unit(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def np_clip(x: np.ndarray, y: np.ndarray, scale: float) -> float:
    logits = scale * np_unit(x) @ np_unit(y).T
    n = len(logits)
    rows = [-logits[i, i] + math.log(sum(math.exp(v) for v in logits[i])) for i in range(n)]
    cols = [-logits[j, j] + math.log(sum(math.exp(v) for v in logits[:, j])) for j in range(n)]
    return (sum(rows) / n + sum(cols) / n) / 2


def np_align(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.sum((np_unit(x) - np_unit(y)) ** 2, axis=1)))


def np_uniformity(z: np.ndarray, t: float = 2.0) -> float:
    u = np_unit(z)
    terms = [
        math.exp(-t * float(np.sum((u[i] - u[j]) ** 2))) for i, j in itertools.combinations(range(len(u)), 2)
    ]
    return math.log(sum(terms) / len(terms))


def np_cross_uniformity(x: np.ndarray, y: np.ndarray, t: float = 2.0) -> float:
    a, b = np_unit(x), np_unit(y)
    n = len(a)
    terms = [math.exp(-t * float(np.sum((a[i] - b[j]) ** 2))) for i in range(n) for j in range(n) if i != j]
    return math.log(sum(terms) / len(terms))


def np_centroid_uniformity(*mods: np.ndarray, t: float = 2.0) -> float:
    centroid = sum(np_unit(m) for m in mods) / len(mods)
    return np_uniformity(centroid, t)


def tensors(*arrays: np.ndarray) -> list[torch.Tensor]:
    return [torch.tensor(a, dtype=torch.float64) for a in arrays]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261125)


# ---------------------------------------------------------------- hand-computed 2-D cases
def test_clip_loss_identity_pairs_hand_computed() -> None:
    # x and y normalise to the standard basis: logits = 2·I, each row/column CE = log(1 + e^-2).
    x, y = tensors(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[2.0, 0.0], [0.0, 3.0]]))
    assert clip_loss(x, y, 2.0).item() == pytest.approx(math.log(1 + math.exp(-2)), rel=1e-12)


def test_clip_loss_rotated_pairs_hand_computed() -> None:
    # ŷ = (1,1)/√2, (-1,1)/√2: cosines [[1/√2, -1/√2], [1/√2, 1/√2]]. Row 0 and column 1 give
    # log(1 + e^{-√2}); row 1 and column 0 tie, giving log 2.
    x, y = tensors(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[1.0, 1.0], [-1.0, 1.0]]))
    expected = (math.log(1 + math.exp(-SQRT2)) + math.log(2)) / 2
    assert clip_loss(x, y, 1.0).item() == pytest.approx(expected, rel=1e-12)


def test_uniformity_three_vectors_hand_computed() -> None:
    # Unit vectors (1,0), (0,1), (-1,0): squared distances 2, 4, 2 -> log((2e^{-4} + e^{-8}) / 3).
    (z,) = tensors(np.array([[3.0, 0.0], [0.0, 0.5], [-2.0, 0.0]]))
    expected = math.log((2 * math.exp(-4) + math.exp(-8)) / 3)
    assert uniformity_loss(z).item() == pytest.approx(expected, rel=1e-12)
    assert uniformity_loss(z, t=1.0).item() == pytest.approx(math.log((2 * math.exp(-2) + math.exp(-4)) / 3))


def test_cross_uniformity_hand_computed() -> None:
    # Off-diagonal pairs: x0 vs y1 = (1,0) vs (-1,0) -> 4; x1 vs y0 = (0,1) vs (0,1) -> 0.
    x, y = tensors(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[0.0, 1.0], [-1.0, 0.0]]))
    assert cross_uniformity_loss(x, y).item() == pytest.approx(math.log((math.exp(-8) + 1) / 2), rel=1e-12)


def test_alignment_hand_computed() -> None:
    # Pair 0: (1,0) vs (1,1)/√2 -> squared distance 2 - √2; pair 1 identical -> 0.
    x, y = tensors(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[1.0, 1.0], [0.0, 5.0]]))
    assert alignment_loss(x, y).item() == pytest.approx((2 - SQRT2) / 2, rel=1e-12)
    assert alignment_loss(x, y, alpha=1.0).item() == pytest.approx(math.sqrt(2 - SQRT2) / 2, rel=1e-12)


def test_centroid_uniformity_hand_computed() -> None:
    # c_0 = Normalize((1,0) + (0,1)) = (1,1)/√2, c_1 = (0,1): one pair at squared distance 2 - √2.
    x, y = tensors(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[0.0, 1.0], [0.0, 2.0]]))
    assert centroid_uniformity_loss(x, y).item() == pytest.approx(-2 * (2 - SQRT2), rel=1e-12)


def test_atp_three_modalities_hand_computed() -> None:
    # Sample 0: a=(1,0), b=(1,0), c=(0,1) -> pair distances 0, 2, 2. Sample 1: all (0,1) -> 0.
    # Per pair mean over samples: (a,b) 0, (a,c) 1, (b,c) 1 -> mean 2/3.
    a, b, c = tensors(
        np.array([[1.0, 0.0], [0.0, 1.0]]),
        np.array([[4.0, 0.0], [0.0, 1.0]]),
        np.array([[0.0, 1.0], [0.0, 3.0]]),
    )
    assert atp_loss(a, b, c).item() == pytest.approx(2 / 3, rel=1e-12)


# ---------------------------------------------------------------- identities
def test_alignment_equals_two_minus_two_mean_cosine(rng: np.random.Generator) -> None:
    x, y = rng.normal(size=(9, 5)), rng.normal(size=(9, 5))
    mean_cos = float(np.mean(np.sum(np_unit(x) * np_unit(y), axis=1)))
    assert alignment_loss(*tensors(x, y)).item() == pytest.approx(2 - 2 * mean_cos, rel=1e-12)


def test_atp_of_identical_modalities_is_zero(rng: np.random.Generator) -> None:
    x = rng.normal(size=(6, 4))
    # Different lengths, same directions: ATP only sees directions.
    assert atp_loss(*tensors(x, 3 * x, 0.5 * x)).item() == pytest.approx(0.0, abs=1e-14)


def test_clip_loss_near_zero_for_aligned_well_separated_pairs() -> None:
    x = torch.eye(4, dtype=torch.float64)
    loss = clip_loss(x, 2 * x, 100.0).item()
    assert loss == pytest.approx(math.log(1 + 3 * math.exp(-100)), abs=1e-40)
    assert loss < 1e-40


def test_uniformity_of_identical_vectors_is_zero() -> None:
    z = torch.tensor([[0.3, -1.2, 2.0]] * 5, dtype=torch.float64)
    assert uniformity_loss(z).item() == pytest.approx(0.0, abs=1e-12)


def test_uniformity_of_antipodal_pair_is_minimum() -> None:
    z = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    assert uniformity_loss(z, t=2.0).item() == pytest.approx(-8.0, rel=1e-12)


# ---------------------------------------------------------------- agreement with numpy on random data
@pytest.mark.parametrize("n", [2, 7, 16])
def test_uniformity_losses_match_numpy_reference(rng: np.random.Generator, n: int) -> None:
    x, y = rng.normal(size=(n, 6)), rng.normal(size=(n, 6))
    tx, ty = tensors(x, y)
    for t in (0.5, 2.0, 5.0):
        assert uniformity_loss(tx, t=t).item() == pytest.approx(np_uniformity(x, t), rel=1e-10)
        assert cross_uniformity_loss(tx, ty, t=t).item() == pytest.approx(
            np_cross_uniformity(x, y, t), rel=1e-10
        )


def test_uniformity_stays_finite_where_naive_mean_underflows() -> None:
    # At t=200, exp(-t·4) underflows float64; the log-sum-exp form keeps the exact value -800.
    z = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    assert uniformity_loss(z, t=200.0).item() == pytest.approx(-800.0, rel=1e-12)


def test_clip_and_composite_losses_match_numpy_reference(rng: np.random.Generator) -> None:
    x, y = rng.normal(size=(8, 5)), rng.normal(size=(8, 5))
    tx, ty = tensors(x, y)
    scale = 14.0
    clip = np_clip(x, y, scale)
    align = np_align(x, y)
    unif = (np_uniformity(x) + np_uniformity(y)) / 2
    xunif = np_cross_uniformity(x, y)
    assert clip_loss(tx, ty, scale).item() == pytest.approx(clip, rel=1e-10)
    assert cua_loss(tx, ty, scale).item() == pytest.approx(clip + align + unif, rel=1e-10)
    assert cuaxu_loss(tx, ty, scale).item() == pytest.approx(clip + align + unif + xunif, rel=1e-10)
    weighted = cuaxu_loss(
        tx, ty, scale, clip_weight=0.5, align_weight=2.0, uniform_weight=0.0, cross_uniform_weight=3.0
    )
    assert weighted.item() == pytest.approx(0.5 * clip + 2.0 * align + 3.0 * xunif, rel=1e-10)


def test_three_modality_losses_match_numpy_reference(rng: np.random.Generator) -> None:
    mods = [rng.normal(size=(7, 4)) for _ in range(3)]
    t_mods = tensors(*mods)
    scale = 10.0
    pairs = list(itertools.combinations(range(3), 2))
    infonce = sum(np_clip(mods[a], mods[b], scale) for a, b in pairs) / 3
    atp = sum(np_align(mods[a], mods[b]) for a, b in pairs) / 3
    cu = np_centroid_uniformity(*mods)
    assert infonce_loss(*t_mods, logit_scale=scale).item() == pytest.approx(infonce, rel=1e-10)
    assert atp_loss(*t_mods).item() == pytest.approx(atp, rel=1e-10)
    assert centroid_uniformity_loss(*t_mods).item() == pytest.approx(cu, rel=1e-10)
    total = gap_closing_loss(*t_mods, logit_scale=scale, lambda_atp=0.5, lambda_cu=2.0).item()
    assert total == pytest.approx(infonce + 0.5 * atp + 2.0 * cu, rel=1e-10)


def test_two_modality_infonce_is_clip_loss(rng: np.random.Generator) -> None:
    tx, ty = tensors(rng.normal(size=(5, 3)), rng.normal(size=(5, 3)))
    assert infonce_loss(tx, ty, logit_scale=7.0).item() == pytest.approx(
        clip_loss(tx, ty, 7.0).item(), rel=1e-14
    )


# ---------------------------------------------------------------- gradients
def _inputs(rng: np.random.Generator, m: int, n: int = 4, d: int = 3) -> list[torch.Tensor]:
    return [torch.tensor(rng.normal(size=(n, d)), dtype=torch.float64, requires_grad=True) for _ in range(m)]


GRADCHECK_CASES = {
    "clip": (2, lambda x, y, s: clip_loss(x, y, s)),
    "alignment": (2, lambda x, y, s: alignment_loss(x, y)),
    "alignment_alpha3": (2, lambda x, y, s: alignment_loss(x, y, alpha=3.0)),
    "uniformity": (1, lambda z, s: uniformity_loss(z)),
    "cross_uniformity": (2, lambda x, y, s: cross_uniformity_loss(x, y)),
    "cua": (2, lambda x, y, s: cua_loss(x, y, s)),
    "cuaxu": (2, lambda x, y, s: cuaxu_loss(x, y, s)),
    "infonce3": (3, lambda a, b, c, s: infonce_loss(a, b, c, logit_scale=s)),
    "atp3": (3, lambda a, b, c, s: atp_loss(a, b, c)),
    "cu3": (3, lambda a, b, c, s: centroid_uniformity_loss(a, b, c)),
    "gap_closing2": (2, lambda x, y, s: gap_closing_loss(x, y, logit_scale=s)),
    "gap_closing3": (3, lambda a, b, c, s: gap_closing_loss(a, b, c, logit_scale=s, lambda_atp=0.7)),
}


@pytest.mark.parametrize("name", sorted(GRADCHECK_CASES))
def test_gradcheck(rng: np.random.Generator, name: str) -> None:
    m, fn = GRADCHECK_CASES[name]
    scale = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (*_inputs(rng, m), scale))


def test_registry_entries_have_gradients_through_learnable_temperature(rng: np.random.Generator) -> None:
    temperature = LearnableTemperature().double()
    for name, loss in LOSSES.items():
        temperature.zero_grad()
        loss(_inputs(rng, 2), temperature()).backward()
        assert temperature.log_scale.grad is not None and temperature.log_scale.grad != 0, name


# ---------------------------------------------------------------- gap closing behaviour
def _centroid_gap(x: torch.Tensor, y: torch.Tensor) -> float:
    return float((F.normalize(x.detach(), dim=-1).mean(0) - F.normalize(y.detach(), dim=-1).mean(0)).norm())


def _optimise(loss_fn, steps: int = 20) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    generator = torch.Generator().manual_seed(0)
    offset = torch.zeros(8)
    offset[0] = 2.0  # two modalities on opposite sides of the sphere: a large initial gap
    x = (torch.randn(16, 8, generator=generator) + offset).requires_grad_()
    y = (torch.randn(16, 8, generator=generator) - offset).requires_grad_()
    before = _centroid_gap(x, y)
    optimiser = torch.optim.SGD([x, y], lr=0.5)
    for _ in range(steps):
        optimiser.zero_grad()
        loss_fn(x, y).backward()
        optimiser.step()
    return before, _centroid_gap(x, y)


def test_gap_closing_loss_reduces_gap_more_than_infonce() -> None:
    before, closing = _optimise(lambda x, y: gap_closing_loss(x, y, logit_scale=10.0))
    same_before, infonce = _optimise(lambda x, y: infonce_loss(x, y, logit_scale=10.0))
    assert before == same_before
    assert closing < before - 0.05
    assert closing < infonce - 0.05


# ---------------------------------------------------------------- temperature module
def test_learnable_temperature_init_and_clamp() -> None:
    temperature = LearnableTemperature()
    assert temperature().item() == pytest.approx(1 / 0.07, rel=1e-6)
    assert temperature.temperature == pytest.approx(0.07, rel=1e-6)
    with torch.no_grad():
        temperature.log_scale.fill_(10.0)
    assert temperature().item() == pytest.approx(100.0, rel=1e-6)  # forward clamps
    temperature.clamp_()
    assert temperature.log_scale.item() == pytest.approx(math.log(100.0), rel=1e-6)  # and so does clamp_
    with torch.no_grad():
        temperature.log_scale.fill_(-3.0)
    temperature.clamp_()
    assert temperature().item() == pytest.approx(1.0)


@pytest.mark.parametrize("kwargs", [{"init_temperature": 0.0}, {"init_temperature": 2.0}, {"max_scale": 0.5}])
def test_learnable_temperature_rejects_bad_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(InputError):
        LearnableTemperature(**kwargs)


# ---------------------------------------------------------------- registry
def test_registry_names() -> None:
    assert set(LOSSES) == {"infonce", "cua", "cuaxu", "atp_cu"}


def test_registry_entries_match_functions(rng: np.random.Generator) -> None:
    x, y, z = _inputs(rng, 3)
    s = torch.tensor(5.0, dtype=torch.float64)
    assert get_loss("infonce")([x, y, z], s).item() == pytest.approx(
        infonce_loss(x, y, z, logit_scale=s).item()
    )
    assert get_loss("cua")([x, y], s, align_weight=0.0).item() == pytest.approx(
        cua_loss(x, y, s, align_weight=0.0).item()
    )
    assert get_loss("cuaxu")([x, y], s).item() == pytest.approx(cuaxu_loss(x, y, s).item())
    assert get_loss("atp_cu")([x, y, z], s, lambda_cu=0.0).item() == pytest.approx(
        gap_closing_loss(x, y, z, logit_scale=s, lambda_cu=0.0).item()
    )


def test_each_registry_entry_names_the_weights_its_function_takes() -> None:
    """The registry lists each loss's keyword weights by hand (nothing reads a signature at run time); they must
    be the function's own, or a weight would be refused or passed on blindly."""
    import inspect

    functions = {"infonce": infonce_loss, "cua": cua_loss, "cuaxu": cuaxu_loss, "atp_cu": gap_closing_loss}
    for name, fn in functions.items():
        weights = tuple(p.name for p in inspect.signature(fn).parameters.values()
                        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "logit_scale")
        assert LOSSES[name].weight_names == weights, name


def test_unknown_loss_lists_valid_names() -> None:
    with pytest.raises(InputError, match="unknown loss 'triplet'; valid losses: infonce, cua, cuaxu, atp_cu"):
        get_loss("triplet")


def test_registry_rejects_unknown_weight_and_wrong_modality_count(rng: np.random.Generator) -> None:
    x, y, z = _inputs(rng, 3)
    with pytest.raises(InputError, match="loss 'infonce' has no weight 'lambda_atp'; valid weights: none"):
        get_loss("infonce")([x, y], 10.0, lambda_atp=1.0)
    with pytest.raises(InputError, match="valid weights: lambda_atp, lambda_cu"):
        get_loss("atp_cu")([x, y], 10.0, align_weight=1.0)
    with pytest.raises(InputError, match="exactly 2 modalities, got 3"):
        get_loss("cuaxu")([x, y, z], 10.0)


# ---------------------------------------------------------------- bad input
def test_bad_shapes_raise_one_line_input_error() -> None:
    x = torch.zeros(4, 3)
    cases = [
        lambda: clip_loss(x, torch.zeros(5, 3), 1.0),
        lambda: clip_loss(torch.zeros(4), torch.zeros(4), 1.0),
        lambda: uniformity_loss(torch.ones(1, 3)),
        lambda: atp_loss(x),
        lambda: alignment_loss(x, x, alpha=0.0),
    ]
    for case in cases:
        with pytest.raises(InputError) as info:
            case()
        assert "\n" not in str(info.value)
