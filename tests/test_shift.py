"""Tests of gapdiag.training.shift against closed forms and brute-force numpy references written here."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from gapdiag.errors import InputError
from gapdiag.training.losses import clip_loss
from gapdiag.training.shift import DEFAULT_LAMBDAS, contrastive_loss, shift_embeddings, shift_experiment

# Float32 embeddings inside gapdiag; references here are float64.
TOL = 2e-6


# ---------------------------------------------------------------- references (independent of gapdiag)
def unit(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def reference_shift(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xh, yh = unit(x), unit(y)
    delta = xh.mean(axis=0) - yh.mean(axis=0)
    u = delta / np.linalg.norm(delta)
    return unit(xh - 0.5 * lam * u), unit(yh + 0.5 * lam * u), u


def reference_loss(x: np.ndarray, y: np.ndarray, sx: np.ndarray, sy: np.ndarray, tau: float) -> float:
    """Full-matrix loss, plain loops: −log(Σ_positives exp / Σ_all exp), averaged per direction."""
    s = unit(x) @ unit(y).T / tau
    image_terms = []
    for i in range(s.shape[0]):
        num = sum(math.exp(s[i, j]) for j in range(s.shape[1]) if sy[j] == sx[i])
        den = sum(math.exp(s[i, j]) for j in range(s.shape[1]))
        image_terms.append(-math.log(num / den))
    text_terms = []
    for j in range(s.shape[1]):
        num = sum(math.exp(s[i, j]) for i in range(s.shape[0]) if sx[i] == sy[j])
        den = sum(math.exp(s[i, j]) for i in range(s.shape[0]))
        text_terms.append(-math.log(num / den))
    return (np.mean(image_terms) + np.mean(text_terms)) / 2


def reference_r1(q: np.ndarray, g: np.ndarray, sq: np.ndarray, sg: np.ndarray) -> float:
    best = np.argmax(unit(q) @ unit(g).T, axis=1)  # argmax keeps the lowest index among ties
    return float(np.mean(sg[best] == sq))


@pytest.fixture
def one_to_many() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """5 images, 11 captions (1 to 3 per image), an offset between the modalities like a real gap."""
    rng = np.random.default_rng(7)
    sx = np.arange(5)
    sy = np.array([0, 0, 1, 1, 1, 2, 3, 3, 4, 4, 4])
    offset = np.array([1.5, 0, 0, 0, 0, 0])
    base = rng.normal(size=(5, 6))
    x = base + offset + 0.3 * rng.normal(size=(5, 6))
    y = base[sy] - offset + 0.3 * rng.normal(size=(11, 6))
    return x, y, sx, sy


def mirror_toy(h: float = 0.4, n: int = 6, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """x_i = (s·v_i, h), y_i = (s·v_i, −h): two clusters reflected through the plane e_4 = 0, s² + h² = 1."""
    v = unit(np.random.default_rng(seed).normal(size=(n, 3)))
    s = math.sqrt(1 - h * h)
    x = np.hstack([s * v, np.full((n, 1), h)])
    y = np.hstack([s * v, np.full((n, 1), -h)])
    return x, y


def closed_form_gap(lam: float, h: float) -> float:
    # x'_i = (s v_i, a)/r, y'_i = (s v_i, −a)/r with a = h − λ/2, r = sqrt(s² + a²): gap = 2|a|/r.
    a = h - lam / 2
    return 2 * abs(a) / math.sqrt(1 - h * h + a * a)


# ---------------------------------------------------------------- shift_embeddings
def test_lambda_zero_returns_normalised_inputs(one_to_many) -> None:  # type: ignore[no-untyped-def]
    x, y, _, _ = one_to_many
    xs, ys = shift_embeddings(x, y, 0.0)
    np.testing.assert_allclose(xs, unit(x), atol=TOL)
    np.testing.assert_allclose(ys, unit(y), atol=TOL)


@pytest.mark.parametrize("lam", [-1.3, 0.25, 0.9])
def test_shift_matches_reference_formula(one_to_many, lam: float) -> None:  # type: ignore[no-untyped-def]
    x, y, _, _ = one_to_many
    xs, ys = shift_embeddings(x, y, lam)
    ref_x, ref_y, _ = reference_shift(x, y, lam)
    np.testing.assert_allclose(xs, ref_x, atol=TOL)
    np.testing.assert_allclose(ys, ref_y, atol=TOL)
    np.testing.assert_allclose(np.linalg.norm(xs, axis=1), 1.0, atol=TOL)


def test_shift_by_the_gap_makes_mirror_images_coincide() -> None:
    x, y = mirror_toy(h=0.4)
    xs, ys = shift_embeddings(x, y, 0.8)  # ‖Δ‖ = 2h
    np.testing.assert_allclose(xs, ys, atol=TOL)
    np.testing.assert_allclose(xs[:, 3], 0.0, atol=TOL)


# ---------------------------------------------------------------- gap along the path
def test_experiment_gap_at_lambda_zero_is_measured_gap(one_to_many) -> None:  # type: ignore[no-untyped-def]
    x, y, sx, sy = one_to_many
    measured = float(np.linalg.norm(unit(x).mean(axis=0) - unit(y).mean(axis=0)))
    result = shift_experiment(
        x, y, x_sample=sx, y_sample=sy, lambdas=(0.0,), temperatures=(0.1,), device="cpu"
    )
    assert result["gap"][0] == pytest.approx(measured, abs=TOL)
    assert result["gap_signed"][0] == pytest.approx(measured, abs=TOL)
    assert result["gap_vector_norm"] == pytest.approx(measured, abs=TOL)


def test_gap_follows_closed_form_on_mirror_toy() -> None:
    h = 0.4
    x, y = mirror_toy(h)
    lambdas = np.arange(-1.0, 1.6001, 0.1)
    result = shift_experiment(
        x, y, x_sample=np.arange(6), y_sample=np.arange(6), lambdas=lambdas, temperatures=(1.0,), device="cpu"
    )
    expected = [closed_form_gap(lam, h) for lam in lambdas]
    np.testing.assert_allclose(result["gap"], expected, atol=TOL)
    assert result["gap_vector_norm"] == pytest.approx(2 * h, abs=TOL)
    # Decreases until the modalities meet at λ = 2h, increases after; the signed gap changes sign there.
    gaps = np.array(result["gap"])
    meet = int(np.argmin(gaps))
    assert lambdas[meet] == pytest.approx(2 * h)
    assert gaps[meet] == pytest.approx(0.0, abs=TOL)
    assert np.all(np.diff(gaps[: meet + 1]) < 0) and np.all(np.diff(gaps[meet:]) > 0)
    signed = np.array(result["gap_signed"])
    assert np.all(signed[:meet] > 0) and np.all(signed[meet + 1 :] < 0)
    # Where the mirror images coincide every item retrieves its own partner.
    assert result["recall_at_1"]["image_to_text"][meet] == 1.0
    assert result["recall_at_1"]["text_to_image"][meet] == 1.0


# ---------------------------------------------------------------- loss
@pytest.mark.parametrize("block_size", [None, 1, 3])
def test_loss_matches_brute_force_one_to_many(one_to_many, block_size: int | None) -> None:  # type: ignore[no-untyped-def]
    x, y, sx, sy = one_to_many
    temps = (0.01, 0.02, 0.1, 1.0)
    got = contrastive_loss(x, y, x_sample=sx, y_sample=sy, temperatures=temps, block_size=block_size)
    expected = [reference_loss(x, y, sx, sy, t) for t in temps]
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_experiment_loss_matches_brute_force_on_shifted_embeddings(one_to_many) -> None:  # type: ignore[no-untyped-def]
    x, y, sx, sy = one_to_many
    lambdas = (-0.5, 0.0, 0.7)
    temps = (0.01, 0.1, 1.0)
    result = shift_experiment(
        x, y, x_sample=sx, y_sample=sy, lambdas=lambdas, temperatures=temps, block_size=2, device="cpu"
    )
    for k, lam in enumerate(lambdas):
        ref_x, ref_y, _ = reference_shift(x, y, lam)
        for tau in temps:
            assert result["loss"][repr(tau)][k] == pytest.approx(
                reference_loss(ref_x, ref_y, sx, sy, tau), rel=1e-5
            )


def test_one_to_one_loss_is_clip_loss_over_the_whole_set() -> None:
    rng = np.random.default_rng(11)
    x, y = rng.normal(size=(9, 5)), rng.normal(size=(9, 5))
    got = contrastive_loss(x, y, temperatures=(0.05, 0.5))
    for value, tau in zip(got, (0.05, 0.5)):
        expected = clip_loss(torch.tensor(x), torch.tensor(y), 1 / tau).item()
        assert value == pytest.approx(expected, rel=1e-5)


def test_loss_stays_finite_at_low_temperature() -> None:
    # Cosines near ±1 at τ = 1/1000 give logits of ±1000: exp overflows without the log-sum-exp shift.
    x = np.array([[1.0, 0.0], [0.0, 1.0]])
    (value,) = contrastive_loss(x, x, temperatures=(0.001,))
    assert value == pytest.approx(math.log(1 + math.exp(-1000)), abs=1e-12)


# ---------------------------------------------------------------- retrieval and zero-shot plumbing
def test_recall_and_zero_shot_match_brute_force(one_to_many) -> None:  # type: ignore[no-untyped-def]
    x, y, sx, sy = one_to_many
    rng = np.random.default_rng(5)
    classes = rng.normal(size=(3, 6))
    labels = np.array([0, 2, 1, 1, 0])  # one per sample
    lambdas = (-1.0, 0.0, 0.5, 1.0)
    result = shift_experiment(
        x,
        y,
        x_sample=sx,
        y_sample=sy,
        lambdas=lambdas,
        temperatures=(0.01,),
        class_embeddings=classes,
        labels=labels,
        device="cpu",
    )
    for k, lam in enumerate(lambdas):
        ref_x, ref_y, u = reference_shift(x, y, lam)
        assert result["recall_at_1"]["image_to_text"][k] == pytest.approx(reference_r1(ref_x, ref_y, sx, sy))
        assert result["recall_at_1"]["text_to_image"][k] == pytest.approx(reference_r1(ref_y, ref_x, sy, sx))
        shifted_classes = unit(unit(classes) + 0.5 * lam * u)  # class embeddings move with the texts
        predicted = np.argmax(ref_x @ shifted_classes.T, axis=1)
        assert result["zero_shot_accuracy"][k] == pytest.approx(float(np.mean(predicted == labels[sx])))


def test_result_is_json_serialisable_with_documented_keys(one_to_many) -> None:  # type: ignore[no-untyped-def]
    x, y, sx, sy = one_to_many
    result = shift_experiment(x, y, x_sample=sx, y_sample=sy, device="cpu")
    decoded = json.loads(json.dumps(result))
    assert set(decoded) == {
        "lambdas",
        "temperatures",
        "gap",
        "gap_signed",
        "loss",
        "recall_at_1",
        "zero_shot_accuracy",
        "gap_vector_norm",
        "definition",
    }
    assert decoded["lambdas"] == [-1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0]
    assert list(decoded["loss"]) == ["0.01", "0.02", "0.1", "1.0"]
    assert all(len(v) == 9 for v in decoded["loss"].values())
    assert decoded["zero_shot_accuracy"] is None


def test_default_lambdas() -> None:
    assert DEFAULT_LAMBDAS == tuple(-1.0 + 0.25 * k for k in range(9))


# ---------------------------------------------------------------- bad input
def _bad_calls(x: np.ndarray, y: np.ndarray, sx: np.ndarray, sy: np.ndarray) -> dict[str, object]:
    nan_x = x.copy()
    nan_x[2, 1] = np.nan
    kw = {"device": "cpu"}
    return {
        "x_sample length": lambda: shift_experiment(x, y, x_sample=sx[:-1], y_sample=sy, **kw),
        "unpaired image": lambda: shift_experiment(
            x, y, x_sample=np.array([0, 1, 2, 3, 9]), y_sample=sy, **kw
        ),
        "1:1 length mismatch": lambda: contrastive_loss(x, y),
        "non-finite": lambda: shift_experiment(nan_x, y, x_sample=sx, y_sample=sy, **kw),
        "zero gap": lambda: shift_embeddings(x, x[::-1], 0.5),
        "dimension": lambda: shift_embeddings(x, y[:, :4], 0.5),
        "lambda nan": lambda: shift_embeddings(x, y, float("nan")),
        "temperature": lambda: shift_experiment(x, y, x_sample=sx, y_sample=sy, temperatures=(0.0,), **kw),
        "classes without labels": lambda: shift_experiment(
            x, y, x_sample=sx, y_sample=sy, class_embeddings=np.eye(6), **kw
        ),
        "short labels": lambda: shift_experiment(
            x, y, x_sample=sx, y_sample=sy, class_embeddings=np.eye(6), labels=[0, 1], **kw
        ),
        "class dimension": lambda: shift_experiment(
            x, y, x_sample=sx, y_sample=sy, class_embeddings=np.eye(4), labels=[0] * 5, **kw
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "x_sample length",
        "unpaired image",
        "1:1 length mismatch",
        "non-finite",
        "zero gap",
        "dimension",
        "lambda nan",
        "temperature",
        "classes without labels",
        "short labels",
        "class dimension",
    ],
)
def test_bad_input_raises_one_line_input_error(one_to_many, case: str) -> None:  # type: ignore[no-untyped-def]
    call = _bad_calls(*one_to_many)[case]
    with pytest.raises(InputError) as info:
        call()  # type: ignore[operator]
    assert "\n" not in str(info.value)


def test_zero_gap_message_names_the_problem(one_to_many) -> None:  # type: ignore[no-untyped-def]
    x, _, _, _ = one_to_many
    with pytest.raises(InputError, match="the gap vector is zero"):
        shift_embeddings(x, 2 * x, 0.5)
