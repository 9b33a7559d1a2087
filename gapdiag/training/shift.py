"""Liang et al.'s embedding-shift experiment: move both modalities along the gap and watch what changes.

Liang, Zhang, Kwon, Yeung & Zou, "Mind the Gap: Understanding the Modality Gap in Multi-modal Contrastive
Representation Learning", NeurIPS 2022, Sec. 4.2 and Table 1; their code (``Figure_3_Contrastive_Learning/
get_gap_stats.ipynb``, ``Table_1_Implications_CLIP_Zero_Shot/shifting/shift_features.ipynb``).

With x̂, ŷ the L2-normalised image and text embeddings, the gap vector is Δ = mean_i x̂_i − mean_j ŷ_j and
u = Δ/‖Δ‖. A shift by λ moves both modalities towards each other by half of λ each and returns them to the
sphere:

    x'_i = Normalize(x̂_i − ½λu),    y'_j = Normalize(ŷ_j + ½λu).

λ = 0 leaves the embeddings as they are; λ ≈ ‖Δ‖ closes the gap (exactly so for a mirror-symmetric set);
λ < 0 widens it. After each shift, :func:`shift_experiment` measures the gap, the contrastive loss at
several temperatures, Recall@1 both ways and (optionally) zero-shot accuracy. Liang et al. find that at CLIP's
τ = 1/100 the loss is lowest near λ = 0 (the existing gap), while at higher τ it is not; gapdiag measures
that rather than assuming it. The full definitions and how to read the output: ``docs/shift.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import logsumexp

from gapdiag.errors import InputError
from gapdiag.metrics.blocked import unit_rows
from gapdiag.metrics.gap import gap_vector
from gapdiag.metrics.retrieval import recall_at_k
from gapdiag.metrics.validation import check_same_dim, default_sample_index
from gapdiag.metrics.zeroshot import zero_shot_accuracy

__all__ = [
    "DEFAULT_LAMBDAS",
    "DEFAULT_TEMPERATURES",
    "DEFINITION",
    "contrastive_loss",
    "gap_after_shift",
    "gap_direction",
    "shift_along",
    "shift_embeddings",
    "shift_experiment",
]

# Liang et al.'s loss-landscape grid (get_gap_stats.ipynb: -1 ... 1, step 0.25), here with +1 included.
# Their zero-shot notebook sweeps -5 ... 5, but for |λ| > 2 the shift ½λu is longer than the unit vectors it
# moves, so every embedding ends near ±u and all modalities collapse onto two points: nothing is left to
# measure. With CLIP's gap of ≈ 0.82 the default grid passes through the closed gap (λ ≈ ‖Δ‖) and reaches
# about twice the gap the other way; widen it (up to ±2) for larger gaps.
DEFAULT_LAMBDAS: tuple[float, ...] = tuple(float(v) for v in np.arange(-1.0, 1.0001, 0.25))
# CLIP's learned τ = 1/100 and the coarser temperatures Liang et al. compare it with (Sec. 4.2).
DEFAULT_TEMPERATURES: tuple[float, ...] = (1 / 100, 1 / 50, 1 / 10, 1.0)
# A centroid difference below this is rounding noise, not a direction to shift along.
_MIN_GAP_NORM = 1e-9
# Float64 logits per loss block: bounds the temporaries of one block to a few tens of MB.
_BLOCK_ELEMENTS = 1 << 21

DEFINITION = (
    "Liang et al. 2022 (Mind the Gap, Sec. 4.2) embedding shift: Delta = mean_i x^_i - mean_j y^_j "
    "(unit-norm rows, centroids not renormalised), u = Delta/||Delta||; x'_i = Normalize(x^_i - lambda/2 u), "
    "y'_j = Normalize(y^_j + lambda/2 u), class embeddings shifted like y^. gap = ||mean x' - mean y'||, "
    "gap_signed = gap * sign(<mean x' - mean y', u>). loss[tau] = 1/2 (mean over images of "
    "-log sum_{captions of the image} softmax_j(x'.y'_j/tau) + mean over captions of "
    "-log sum_{images of the caption} softmax_i(y'.x'_i/tau)), softmax over the whole evaluation set. "
    "recall_at_1 and zero_shot_accuracy by cosine on the shifted embeddings."
)


def _renormalize(v: NDArray[np.float32], name: str, lam: float) -> NDArray[np.float32]:
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    if (norms == 0).any():
        k = int(np.flatnonzero(norms[:, 0] == 0)[0])
        raise InputError(f"{name} item {k} lands on the origin at lambda={lam:g}; use |lambda| < 2")
    return v / norms


def _check_lambda(lam: float) -> float:
    if not isinstance(lam, (int, float, np.integer, np.floating)) or not math.isfinite(lam):
        raise InputError(f"lambda must be a finite number, got {lam!r}")
    return float(lam)


def gap_direction(
    x_unit: NDArray[np.floating], y_unit: NDArray[np.floating]
) -> tuple[NDArray[np.float64], float]:
    """Unit gap direction ``u = Δ/‖Δ‖`` and ``‖Δ‖`` for ``Δ = mean_i x̂_i − mean_j ŷ_j`` (Liang et al. 2022).

    Args:
        x_unit: ``(n_x, d)`` L2-normalised image embeddings.
        y_unit: ``(n_y, d)`` L2-normalised text embeddings.

    Returns:
        ``(u, ‖Δ‖)``: float64 ``(d,)`` unit vector and the gap.

    Raises:
        InputError: ``‖Δ‖`` is (numerically) zero, so there is no direction to shift along.
    """
    delta = gap_vector(x_unit, y_unit, normalize=False)
    norm = float(np.linalg.norm(delta))
    if norm <= _MIN_GAP_NORM:
        raise InputError(
            f"the gap vector is zero (||Delta|| = {norm:.3g}): the image and text centroids coincide, "
            "so there is no direction to shift along"
        )
    return delta / norm, norm


def _translate(
    unit: NDArray[np.float32], step: NDArray[np.float64], name: str, lam: float
) -> NDArray[np.float32]:
    return _renormalize(unit + step.astype(np.float32), name, lam)


def shift_embeddings(
    x: ArrayLike, y: ArrayLike, lam: float
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Shift images and texts towards each other along the gap by ``λ`` (Liang et al. 2022, Sec. 4.2).

    ``x'_i = Normalize(x̂_i − ½λu)``, ``y'_j = Normalize(ŷ_j + ½λu)`` with ``u = Δ/‖Δ‖`` and
    ``Δ = mean_i x̂_i − mean_j ŷ_j`` computed from ``x`` and ``y`` themselves (over items, so with five
    captions per image every caption counts once).

    Args:
        x: ``(n_x, d)`` image embeddings (any float dtype; normalised here).
        y: ``(n_y, d)`` text embeddings.
        lam: Shift ``λ``; 0 returns the normalised inputs, ``λ ≈ ‖Δ‖`` closes the gap, ``λ < 0`` widens it.

    Returns:
        ``(x', y')`` float32 arrays of unit rows.

    Raises:
        InputError: Bad arrays (NaN/inf, zero rows, dimension mismatch), a zero gap vector or a non-finite λ.

    Example:
        >>> x, y = np.array([[0.6, 0.8], [-0.6, 0.8]]), np.array([[0.6, -0.8], [-0.6, -0.8]])
        >>> xs, ys = shift_embeddings(x, y, 1.6)  # ‖Δ‖ = 1.6: the two modalities meet at the equator
        >>> np.round(xs, 6).tolist(), np.round(ys, 6).tolist()
        ([[1.0, 0.0], [-1.0, 0.0]], [[1.0, 0.0], [-1.0, 0.0]])
    """
    lam = _check_lambda(lam)
    x_unit, y_unit = unit_rows(x, "x"), unit_rows(y, "y")
    check_same_dim(x_unit, y_unit, "x", "y")
    u, _ = gap_direction(x_unit, y_unit)
    return shift_along(x_unit, y_unit, u, lam)


def shift_along(
    x_unit: NDArray[np.float32], y_unit: NDArray[np.float32], u: NDArray[np.float64], lam: float
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """``(Normalize(x̂ − ½λu), Normalize(ŷ + ½λu))`` for a given unit direction ``u`` (fitted elsewhere).

    The step of :func:`shift_embeddings` with ``u`` passed in, so that a direction fitted on some items can move
    others (the held-out gap shift of :mod:`gapdiag.training.interventions`).

    Raises:
        InputError: An item lands on the origin.
    """
    half = 0.5 * lam * np.asarray(u, dtype=np.float64)
    return _translate(x_unit, -half, "x", lam), _translate(y_unit, half, "y", lam)


def _check_temperatures(temperatures: Sequence[float]) -> list[float]:
    temps = [float(t) for t in np.atleast_1d(np.asarray(temperatures, dtype=np.float64))]
    if not temps:
        raise InputError("temperatures is empty; give at least one, e.g. (0.01, 0.02, 0.1, 1.0)")
    bad = [t for t in temps if not (math.isfinite(t) and t > 0)]
    if bad:
        raise InputError(f"temperature {bad[0]!r} must be a positive finite number (tau = 1/logit_scale)")
    if len(set(temps)) != len(temps):
        raise InputError(f"temperatures {temps} contain duplicates; give each once")
    return temps


def _check_positives(q_ids: NDArray[np.int64], g_ids: NDArray[np.int64], q_name: str, g_name: str) -> None:
    missing = ~np.isin(q_ids, g_ids)
    if missing.any():
        k = int(np.flatnonzero(missing)[0])
        raise InputError(
            f"{q_name} item {k} (sample {int(q_ids[k])}) has no {g_name} item of the same sample; "
            "the contrastive loss needs a true partner for every item (drop unpaired items)"
        )


def _paired_units(
    x: ArrayLike,
    y: ArrayLike,
    x_sample: ArrayLike | None,
    y_sample: ArrayLike | None,
    *,
    normalize: bool = True,
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.int64], NDArray[np.int64]]:
    """Checked float32 (unit) copies of both modalities and their sample ids; every item needs a partner."""
    x_unit = unit_rows(x, "x", normalize=normalize)
    y_unit = unit_rows(y, "y", normalize=normalize)
    check_same_dim(x_unit, y_unit, "x", "y")
    sx, sy = default_sample_index(x_unit, y_unit, x_sample, y_sample, "x", "y")
    _check_positives(sx, sy, "x", "y")
    _check_positives(sy, sx, "y", "x")
    return x_unit, y_unit, sx, sy


def _directional_loss(
    q: NDArray[np.float32],
    g: NDArray[np.float32],
    q_ids: NDArray[np.int64],
    g_ids: NDArray[np.int64],
    temperatures: list[float],
    block_size: int,
) -> NDArray[np.float64]:
    """Mean over queries of ``−log Σ_{j ∈ P(q)} softmax_j(q·g_j/τ)``, one value per temperature."""
    totals = np.zeros(len(temperatures), dtype=np.float64)
    for start in range(0, q.shape[0], block_size):
        # One similarity tile serves every temperature; float64 keeps log-sum-exp at τ = 1/100 exact enough.
        sims = (q[start : start + block_size] @ g.T).astype(np.float64)
        positive = q_ids[start : start + block_size, None] == g_ids[None, :]
        for k, tau in enumerate(temperatures):
            logits = sims / tau
            # log Σ_all − log Σ_positives: scipy shifts by the row maximum, so nothing overflows.
            totals[k] += float(np.sum(logsumexp(logits, axis=1) - logsumexp(logits, axis=1, b=positive)))
    return totals / q.shape[0]


def contrastive_loss(
    x: ArrayLike,
    y: ArrayLike,
    *,
    x_sample: ArrayLike | None = None,
    y_sample: ArrayLike | None = None,
    temperatures: Sequence[float] = DEFAULT_TEMPERATURES,
    normalize: bool = True,
    block_size: int | None = None,
) -> list[float]:
    """Bidirectional contrastive (InfoNCE) loss of the true pairs over a whole evaluation set, in numpy.

    With ``s_ij = x̂_i·ŷ_j / τ`` and ``P(i)`` the items of the other modality that share sample ``i``::

        L_x→y = mean_i −log( Σ_{j∈P(i)} exp s_ij / Σ_j exp s_ij )
        L_y→x = mean_j −log( Σ_{i∈P(j)} exp s_ij / Σ_i exp s_ij )
        L     = ½ (L_x→y + L_y→x)

    With one caption per image this is CLIP's loss (Radford et al. 2021, Fig. 3) with the whole set as the
    batch. With several captions per image, the image→text term counts the probability of retrieving *any*
    of the image's captions (the union of its positives, the convention of CLIP_benchmark's R@K), rather
    than averaging −log p over each caption; the text→image term has a single positive per caption. The
    softmax runs over the whole set, so the value grows with ``log`` of its size; compare values across
    λ or models on the same set, not with training-batch losses.

    Computed in row blocks of the ``n_x × n_y`` score matrix with a stable log-sum-exp (scipy), so memory is
    ``O(block · n)``.

    Args:
        x: ``(n_x, d)`` image embeddings.
        y: ``(n_y, d)`` text embeddings.
        x_sample: ``(n_x,)`` sample id per image item; with ``y_sample`` omitted too, row i pairs with row i.
        y_sample: ``(n_y,)`` sample id per text item.
        temperatures: Temperatures ``τ > 0`` (logit scale ``1/τ``).
        normalize: L2-normalise the inputs first (cosine scores).
        block_size: Query rows per block; default chosen to keep a block near 2M scores.

    Returns:
        One loss per temperature, in order.

    Raises:
        InputError: Bad arrays, sample ids that do not fit, an item without a partner, bad temperatures.
    """
    temps = _check_temperatures(temperatures)
    x_unit, y_unit, sx, sy = _paired_units(x, y, x_sample, y_sample, normalize=normalize)
    return _loss(x_unit, y_unit, sx, sy, temps, block_size)


def _loss(
    x_unit: NDArray[np.float32],
    y_unit: NDArray[np.float32],
    sx: NDArray[np.int64],
    sy: NDArray[np.int64],
    temps: list[float],
    block_size: int | None,
) -> list[float]:
    if block_size is not None and block_size < 1:
        raise InputError(f"block_size must be a positive integer, got {block_size}")
    rows_xy = block_size or max(1, _BLOCK_ELEMENTS // y_unit.shape[0])
    rows_yx = block_size or max(1, _BLOCK_ELEMENTS // x_unit.shape[0])
    image_to_text = _directional_loss(x_unit, y_unit, sx, sy, temps, rows_xy)
    text_to_image = _directional_loss(y_unit, x_unit, sy, sx, temps, rows_yx)
    return [float(v) for v in (image_to_text + text_to_image) / 2]


def gap_after_shift(
    x_shift: NDArray[np.float32], y_shift: NDArray[np.float32], u: NDArray[np.float64]
) -> tuple[float, float]:
    """``(‖Δ'‖, ‖Δ'‖ · sign(⟨Δ', u⟩))`` of shifted modalities: the gap and the gap signed by the side of ``u``."""
    delta = gap_vector(x_shift, y_shift, normalize=False)
    gap = float(np.linalg.norm(delta))
    # Liang et al. sign the distance by the side of the original gap, so a plot shows the crossing.
    return gap, gap * float(np.sign(delta @ u))


# Over 80 lines only by its documentation (the formulas, every output key); the code is about 30 lines.
def shift_experiment(
    x: ArrayLike,
    y: ArrayLike,
    *,
    x_sample: ArrayLike,
    y_sample: ArrayLike,
    lambdas: Sequence[float] | NDArray[np.floating] = DEFAULT_LAMBDAS,
    temperatures: Sequence[float] = DEFAULT_TEMPERATURES,
    class_embeddings: ArrayLike | None = None,
    labels: ArrayLike | None = None,
    device: str = "auto",
    block_size: int | None = None,
) -> dict[str, Any]:
    """Liang et al.'s embedding-shift experiment (Mind the Gap, NeurIPS 2022, Sec. 4.2, Table 1).

    For every λ: ``x'_i = Normalize(x̂_i − ½λu)``, ``y'_j = Normalize(ŷ_j + ½λu)`` (``u = Δ/‖Δ‖`` from the
    unshifted data, :func:`shift_embeddings`), then

    * ``gap = ‖mean x' − mean y'‖`` and ``gap_signed`` (negative once the modalities have crossed);
    * ``loss[τ]``: :func:`contrastive_loss` of the true pairs at each temperature;
    * ``recall_at_1``: R@1 image→text (any caption of the image counts) and text→image, via
      :func:`gapdiag.metrics.retrieval.recall_at_k`;
    * ``zero_shot_accuracy`` when ``class_embeddings`` and ``labels`` are given, via
      :func:`gapdiag.metrics.zeroshot.zero_shot_accuracy`. Class embeddings are text embeddings, so they move
      with the texts: ``w'_c = Normalize(ŵ_c + ½λu)``, the same u (as in Liang et al.'s zero-shot notebook).

    Args:
        x: ``(n_x, d)`` image embeddings (any float dtype; normalised here).
        y: ``(n_y, d)`` text embeddings.
        x_sample: ``(n_x,)`` sample id of each image item.
        y_sample: ``(n_y,)`` sample id of each text item (five captions of one image share its id).
        lambdas: Shifts λ (finite); default ``-1, -0.75, ..., 1`` (see ``DEFAULT_LAMBDAS``; |λ| > 2 collapses
            everything onto ±u).
        temperatures: Temperatures τ of the loss; default CLIP's 1/100 and 1/50, 1/10, 1.
        class_embeddings: Optional ``(C, d)`` zero-shot classifier (text space).
        labels: Class label per *sample* (as ``EmbeddingSet.labels``); image item i is scored against
            ``labels[x_sample[i]]``. Required with ``class_embeddings``.
        device: FAISS device for retrieval and zero-shot ("auto", "cpu", "cuda", "cuda:N").
        block_size: Rows per loss block (default: automatic, about 2M scores per block).

    Returns:
        JSON-serialisable dict with keys ``lambdas``, ``temperatures``, ``gap``, ``gap_signed`` (lists, one
        entry per λ), ``loss`` (``repr(τ)`` -> list per λ, e.g. ``"0.01"``), ``recall_at_1``
        (``image_to_text`` / ``text_to_image`` -> list per λ), ``zero_shot_accuracy`` (list per λ or None),
        ``gap_vector_norm`` (‖Δ‖ before shifting) and ``definition`` (the formulas, as text).

    Raises:
        InputError: Bad arrays or ids, an item without a partner, a zero gap vector, bad λ or τ, class
            embeddings without labels (or the reverse), labels that do not cover the samples.
    """
    lams = [_check_lambda(v) for v in np.atleast_1d(np.asarray(lambdas, dtype=np.float64))]
    if not lams:
        raise InputError("lambdas is empty; give at least one shift, e.g. lambdas=(-1, 0, 1)")
    temps = _check_temperatures(temperatures)
    x_unit, y_unit, sx, sy = _paired_units(x, y, x_sample, y_sample)
    classes, image_labels = _zero_shot_inputs(class_embeddings, labels, sx, y_unit)
    u, gap_norm = gap_direction(x_unit, y_unit)

    out: dict[str, Any] = {
        "lambdas": lams,
        "temperatures": temps,
        "gap": [],
        "gap_signed": [],
        "loss": {repr(t): [] for t in temps},
        "recall_at_1": {"image_to_text": [], "text_to_image": []},
        "zero_shot_accuracy": None if classes is None else [],
        "gap_vector_norm": gap_norm,
        "definition": DEFINITION,
    }
    for lam in lams:
        half = 0.5 * lam * u
        xs, ys = _translate(x_unit, -half, "x", lam), _translate(y_unit, half, "y", lam)
        gap, signed = gap_after_shift(xs, ys, u)
        out["gap"].append(gap)
        out["gap_signed"].append(signed)
        for t, value in zip(temps, _loss(xs, ys, sx, sy, temps, block_size)):
            out["loss"][repr(t)].append(value)
        i2t = recall_at_k(xs, ys, sx, sy, ks=(1,), normalize=True, engine="faiss", device=device)
        t2i = recall_at_k(ys, xs, sy, sx, ks=(1,), normalize=True, engine="faiss", device=device)
        out["recall_at_1"]["image_to_text"].append(float(i2t[1]))
        out["recall_at_1"]["text_to_image"].append(float(t2i[1]))
        if classes is not None:
            shifted_classes = _translate(classes, half, "class_embeddings", lam)
            out["zero_shot_accuracy"].append(
                float(zero_shot_accuracy(xs, shifted_classes, image_labels, normalize=True, device=device))
            )
    return out


def _zero_shot_inputs(
    class_embeddings: ArrayLike | None,
    labels: ArrayLike | None,
    sx: NDArray[np.int64],
    y_unit: NDArray[np.float32],
) -> tuple[NDArray[np.float32] | None, NDArray[Any] | None]:
    """Normalised class embeddings and one label per image item, or ``(None, None)`` without zero-shot."""
    if class_embeddings is None and labels is None:
        return None, None
    if class_embeddings is None or labels is None:
        raise InputError(
            "give class_embeddings and labels together (zero-shot accuracy needs both), or neither"
        )
    classes = unit_rows(class_embeddings, "class_embeddings")
    check_same_dim(classes, y_unit, "class_embeddings", "y")
    per_sample = np.asarray(labels)
    if per_sample.ndim != 1 or per_sample.shape[0] <= int(sx.max()):
        raise InputError(
            f"labels has shape {per_sample.shape} but image sample ids go up to {int(sx.max())}; "
            "give one label per sample"
        )
    return classes, per_sample[sx]
