"""Post-hoc interventions on the modality gap: a transform fitted on some items, applied to others.

Each method is a pair of maps ``f_image``, ``f_text`` from unit vectors to unit vectors, fitted on the *fit*
items and applied to any vectors (the held-out evaluation items, new vectors, class embeddings, which move with
the texts). With x̂, ŷ the L2-normalised fit image and text vectors, ``μx``, ``μy`` their means and
``N(v) = v/‖v‖``:

* ``centering``: ``f_image(v) = N(v − μx)``, ``f_text(v) = N(v − μy)`` (the post-hoc gap removal of
  mixed-modality search).
* ``gap_shift`` (Liang et al., NeurIPS 2022, Sec. 4.2): ``f_image(v) = N(v − ½λu)``, ``f_text(v) = N(v + ½λu)``
  with ``u = Δ/‖Δ‖``, ``Δ = μx − μy``, and λ ∈ [0, 2) the shift that brings the centroids of the fit items
  closest, ``argmin_λ ‖mean f_image(x̂) − mean f_text(ŷ)‖`` (the shift experiment's own code moves them).
* ``ablation`` (Schrodi et al., ICLR 2025, "Two effects, one trigger", §5): zero the ``k`` coordinates with the
  largest ``Δ_j²`` in both modalities, then renormalise; ``k`` is the decomposition's ``gap_dims_50`` (fewest
  model dimensions carrying half of ``‖Δ‖²``).
* ``procrustes`` (Schönemann 1966): ``f_image(v) = v R`` with ``R = argmin_{RᵀR = I} ‖X R − Y‖_F`` over the true
  pairs of the fit items (each caption against its image), ``R = U Vᵀ`` for ``XᵀY = U S Vᵀ``; texts unchanged.
* ``whitening`` (spectral alignment: match the covariance spectra, after Role et al. 2025, "Fill the Gap"):
  ``f_image(v) = N((v − μx) Σx^{-½})``, ``f_text(v) = N((v − μy) Σy^{-½})``, ZCA with a ridge
  ``ε = 10⁻³ · mean eigenvalue`` added to each covariance: both fit clouds get the identity spectrum.
* ``ot`` (Role et al. 2025; Ferradans et al., SIAM J. Imaging Sci. 2014, for new points): the entropic optimal
  transport plan ``P`` between at most :data:`OT_MAX_ITEMS` fit images and texts (uniform weights, squared
  Euclidean cost, regularisation ``ε``), solved by POT (``ot.da.SinkhornTransport``; plain Sinkhorn, or in the
  log domain for ``ε < 4/600`` where the kernel would underflow), maps each fit image to its
  barycentric projection ``T(x_i) = Σ_j P_ij y_j / Σ_j P_ij``; a new image moves like its nearest fit image,
  ``f_image(v) = N(v + T(x_nn) − x_nn)`` (POT's ``out_of_sample_map="ferradans"``); texts unchanged.

Everything here is pure numpy/SciPy (POT only for fitting ``ot``); the held-out split, the evaluation and the
files live in :mod:`gapdiag.api.intervening` and :mod:`gapdiag.training.intervention_files`. Formulas and sources
in full: ``docs/interventions.md``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize_scalar

from gapdiag.errors import InputError
from gapdiag.metrics.blocked import unit_rows
from gapdiag.metrics.decomposition import contributions, dims_for_share
from gapdiag.metrics.gap import gap_vector
from gapdiag.metrics.linalg import eigh
from gapdiag.metrics.sampling import sorted_choice
from gapdiag.metrics.validation import check_same_dim, default_sample_index
from gapdiag.training.shift import gap_after_shift, gap_direction, shift_along

__all__ = [
    "DEFAULT_OT_REG",
    "METHODS",
    "OT_MAX_ITEMS",
    "SIDES",
    "Intervention",
    "fit_intervention",
]

#: Every method, in the order ``gapdiag intervene`` runs and prints them.
METHODS: tuple[str, ...] = ("centering", "gap_shift", "ablation", "procrustes", "whitening", "ot")
#: The two maps of a transform: ``image`` (the first modality) and ``text`` (the second, and class embeddings).
SIDES: tuple[str, ...] = ("image", "text")
#: Entropic regularisation of ``ot``, in units of the squared Euclidean cost between unit vectors (0..4): small
#: enough that the plan is close to a matching, large enough that Sinkhorn (log domain) converges in 1000 steps.
DEFAULT_OT_REG = 0.05
#: ``ot`` fits on at most this many items per modality: the plan is dense (n × n float64, 32 MB at 2,000).
OT_MAX_ITEMS = 2000
#: Ridge of the whitening, relative to the mean eigenvalue of the covariance: a rank-deficient covariance (fewer
#: fit items than dimensions, or unit vectors' near-null directions) would otherwise blow up noise by 1/√0.
WHITENING_RIDGE = 1e-3
# The gap shift looks for λ in [0, _MAX_LAMBDA): at λ = 2 a unit vector equal to u lands on the origin.
_MAX_LAMBDA = 1.999
# Below this ε the plain Sinkhorn kernel underflows (see _fit_ot); the log-domain solver takes over.
_PLAIN_SINKHORN_MIN_REG = 4.0 / 600.0
# Rows per block of the nearest-fit-image search of ``ot`` (a block × n_fit score tile, a few MB).
_NN_BLOCK = 1024


@dataclass(frozen=True)
class Intervention:
    """A fitted transform: its method, the arrays that define it and its scalar parameters.

    Attributes:
        method: One of :data:`METHODS`.
        arrays: Name -> array (``mean_image``, ``rotation``, ``dims``...), what the saved file holds.
        params: Name -> number (``lambda``, ``k``, ``reg``, ``n_fit_image``...), also saved.
    """

    method: str
    arrays: dict[str, NDArray[Any]]
    params: dict[str, float] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        """Embedding dimension the transform was fitted in."""
        return int(self.params["dim"])

    def apply(self, vectors: ArrayLike, side: str) -> NDArray[np.float32]:
        """Apply the ``side`` map (``image`` or ``text``) to ``(n, d)`` vectors (normalised first).

        Raises:
            InputError: Bad vectors (NaN/inf, zero rows), a dimension other than the fit's, an unknown side, or
                a vector the map sends to the origin.
        """
        if side not in SIDES:
            raise InputError(f"unknown side {side!r}", hint=f"choose {' or '.join(SIDES)}")
        v = unit_rows(vectors, f"{side} vectors")
        if v.shape[1] != self.dim:
            raise InputError(f"{side} vectors have {v.shape[1]} dimensions but the {self.method} transform was "
                             f"fitted on {self.dim}", hint="apply it to vectors of the model it was fitted on")
        return _APPLY[self.method](self, v, side)


def fit_intervention(
    method: str,
    x: ArrayLike,
    y: ArrayLike,
    *,
    x_sample: ArrayLike | None = None,
    y_sample: ArrayLike | None = None,
    seed: int = 0,
    ot_reg: float = DEFAULT_OT_REG,
) -> Intervention:
    """Fit ``method`` on the fit items: ``x`` images, ``y`` texts (any float dtype; normalised here).

    Args:
        method: One of :data:`METHODS` (formulas in the module docstring).
        x: ``(n_x, d)`` image vectors of the fit items.
        y: ``(n_y, d)`` text vectors of the fit items.
        x_sample: ``(n_x,)`` sample id of each image (pairs for ``procrustes``); with ``y_sample`` omitted too,
            row i pairs with row i.
        y_sample: ``(n_y,)`` sample id of each text.
        seed: Seed of the ``ot`` subsample (when there are more than :data:`OT_MAX_ITEMS` items).
        ot_reg: Entropic regularisation ``ε`` of ``ot``.

    Returns:
        The fitted :class:`Intervention`.

    Raises:
        InputError: An unknown method, bad arrays, a zero gap (``gap_shift``), no true pair (``procrustes``),
            a diverging OT solve, or POT missing for ``ot``.

    Example:
        >>> x, y = np.array([[0.6, 0.8], [-0.6, 0.8]]), np.array([[0.6, -0.8], [-0.6, -0.8]])
        >>> t = fit_intervention("centering", x, y)
        >>> np.round(t.apply(x, "image"), 6).tolist(), np.round(t.apply(y, "text"), 6).tolist()
        ([[1.0, 0.0], [-1.0, 0.0]], [[1.0, 0.0], [-1.0, 0.0]])
    """
    if method not in METHODS:
        raise InputError(f"unknown intervention method {method!r}", hint=f"choose from {', '.join(METHODS)}")
    x_unit, y_unit = unit_rows(x, "image vectors"), unit_rows(y, "text vectors")
    check_same_dim(x_unit, y_unit, "image vectors", "text vectors")
    sx, sy = default_sample_index(x_unit, y_unit, x_sample, y_sample, "image vectors", "text vectors")
    arrays, params = _FIT[method](x_unit, y_unit, sx=sx, sy=sy, seed=seed, ot_reg=ot_reg)
    base = {"dim": x_unit.shape[1], "n_fit_image": x_unit.shape[0], "n_fit_text": y_unit.shape[0]}
    return Intervention(method, arrays, {**base, **params})


def _normalise(v: NDArray[np.floating], side: str, method: str) -> NDArray[np.float32]:
    """``v / ‖v‖`` row by row; a row sent to the origin is named rather than turned into NaN."""
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    zero = np.flatnonzero(norms[:, 0] <= 1e-12)
    if zero.size:
        raise InputError(f"{side} vector {int(zero[0])} lands on the origin under {method}: nothing is left of it "
                         "to renormalise", hint="this vector lies entirely in what the transform removes")
    return (v / norms).astype(np.float32)


# --- centering --------------------------------------------------------------------------------------------------

def _fit_centering(x: NDArray[np.float32], y: NDArray[np.float32], **_: Any) -> tuple[dict, dict]:
    return {"mean_image": x.mean(axis=0, dtype=np.float64), "mean_text": y.mean(axis=0, dtype=np.float64)}, {}


def _apply_centering(t: Intervention, v: NDArray[np.float32], side: str) -> NDArray[np.float32]:
    return _normalise(v - t.arrays[f"mean_{side}"], side, t.method)


# --- gap shift --------------------------------------------------------------------------------------------------

def _fit_gap_shift(x: NDArray[np.float32], y: NDArray[np.float32], **_: Any) -> tuple[dict, dict]:
    u, norm = gap_direction(x, y)

    def gap(lam: float) -> float:
        return gap_after_shift(*shift_along(x, y, u, lam), u)[0]

    # ‖Δ'(λ)‖ falls from ‖Δ‖ at λ = 0 to its least near λ ≈ ‖Δ‖ (exactly ‖Δ‖ for a mirror-symmetric set), then
    # rises as the modalities cross. A coarse grid finds the valley (renormalisation can make the curve uneven),
    # a bounded Brent search refines it between the grid's neighbours.
    grid = np.linspace(0.0, _MAX_LAMBDA, 41)
    best = int(np.argmin([gap(v) for v in grid]))
    low, high = grid[max(best - 1, 0)], grid[min(best + 1, grid.size - 1)]
    lam = float(minimize_scalar(gap, bounds=(low, high), method="bounded", options={"xatol": 1e-10}).x)
    return {"direction": u}, {"lambda": lam, "gap_norm": norm}


def _apply_gap_shift(t: Intervention, v: NDArray[np.float32], side: str) -> NDArray[np.float32]:
    # shift_along moves a pair; the other modality is empty here, so only this side moves (by its own half).
    empty = np.empty((0, v.shape[1]), dtype=np.float32)
    pair = (v, empty) if side == "image" else (empty, v)
    return shift_along(*pair, t.arrays["direction"], t.params["lambda"])[0 if side == "image" else 1]


# --- dimension ablation -----------------------------------------------------------------------------------------

def _fit_ablation(x: NDArray[np.float32], y: NDArray[np.float32], **_: Any) -> tuple[dict, dict]:
    c = contributions(gap_vector(x, y, normalize=False).astype(np.float64))
    k = dims_for_share(c, 0.5)
    if k == 0:
        raise InputError("the fit items have no centroid gap: there is no dimension to ablate")
    # Largest contributions first; a stable sort breaks ties toward the lower dimension index.
    dims = np.argsort(-c, kind="stable")[:k].astype(np.int64)
    return {"dims": np.sort(dims)}, {"k": k}


def _apply_ablation(t: Intervention, v: NDArray[np.float32], side: str) -> NDArray[np.float32]:
    out = v.copy()
    out[:, t.arrays["dims"]] = 0.0
    return _normalise(out, side, t.method)


# --- orthogonal Procrustes --------------------------------------------------------------------------------------

def _fit_procrustes(x: NDArray[np.float32], y: NDArray[np.float32], *, sx: NDArray[np.int64],
                    sy: NDArray[np.int64], **_: Any) -> tuple[dict, dict]:
    # Each caption against the (first) image of its sample: five captions of an image are five true pairs.
    first_image = {}
    for row, s in enumerate(sx.tolist()):
        first_image.setdefault(s, row)
    texts = np.array([j for j, s in enumerate(sy.tolist()) if s in first_image], dtype=np.int64)
    if texts.size == 0:
        raise InputError("no text of the fit items shares a sample with an image: Procrustes needs true pairs",
                         hint="fit on paired items")
    images = np.array([first_image[s] for s in sy[texts].tolist()], dtype=np.int64)
    cross = x[images].astype(np.float64).T @ y[texts].astype(np.float64)
    u, _, vt = np.linalg.svd(cross)
    return {"rotation": u @ vt}, {"n_pairs": int(texts.size)}


def _apply_procrustes(t: Intervention, v: NDArray[np.float32], side: str) -> NDArray[np.float32]:
    if side == "text":
        return v
    return _normalise(v.astype(np.float64) @ t.arrays["rotation"], side, t.method)


# --- whitening (spectral alignment) -----------------------------------------------------------------------------

def _zca(v: NDArray[np.float32]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Mean and ``(Σ + εI)^{-½}`` of ``v`` (biased covariance; ``ε`` = :data:`WHITENING_RIDGE` × mean eigenvalue)."""
    v64 = v.astype(np.float64)
    mu = v64.mean(axis=0)
    centred = v64 - mu
    w, basis = eigh(centred.T @ centred / v64.shape[0])
    w = np.clip(w, 0.0, None)
    ridge = WHITENING_RIDGE * max(float(w.mean()), 1e-12)
    return mu, (basis / np.sqrt(w + ridge)) @ basis.T


def _fit_whitening(x: NDArray[np.float32], y: NDArray[np.float32], **_: Any) -> tuple[dict, dict]:
    arrays = {}
    for side, v in (("image", x), ("text", y)):
        arrays[f"mean_{side}"], arrays[f"whiten_{side}"] = _zca(v)
    return arrays, {"ridge": WHITENING_RIDGE}


def _apply_whitening(t: Intervention, v: NDArray[np.float32], side: str) -> NDArray[np.float32]:
    centred = v.astype(np.float64) - t.arrays[f"mean_{side}"]
    return _normalise(centred @ t.arrays[f"whiten_{side}"], side, t.method)


# --- optimal transport ------------------------------------------------------------------------------------------

def _fit_ot(x: NDArray[np.float32], y: NDArray[np.float32], *, seed: int, ot_reg: float,
            **_: Any) -> tuple[dict, dict]:
    try:
        import ot  # POT: the optimal transport library (optional extra gapdiag[ot])
    except ImportError:
        raise InputError("the ot intervention needs POT, the Python Optimal Transport library",
                         hint="pip install 'gapdiag[ot]' (or pip install pot), or leave out --method ot") from None
    if not (np.isfinite(ot_reg) and ot_reg > 0):
        raise InputError(f"--ot-reg must be a positive number, got {ot_reg!r}")
    rng = np.random.default_rng(seed)
    xs = x[sorted_choice(rng, x.shape[0], min(OT_MAX_ITEMS, x.shape[0]))].astype(np.float64)
    yt = y[sorted_choice(rng, y.shape[0], min(OT_MAX_ITEMS, y.shape[0]))].astype(np.float64)
    # Plain Sinkhorn (matrix-vector products) is ~50x faster than the log-domain one and exact enough while the
    # kernel exp(-M/ε) stays in float64 range: M ≤ 4 between unit vectors, so for ε ≥ 4/600 (e^-600 ≈ 1e-261).
    solver = "sinkhorn" if ot_reg >= _PLAIN_SINKHORN_MIN_REG else "sinkhorn_log"
    mapping = ot.da.SinkhornTransport(reg_e=ot_reg, method=solver, out_of_sample_map="ferradans", log=True)
    with warnings.catch_warnings():
        # POT warns when Sinkhorn stops at its iteration cap; the result states it instead (``ot_converged``).
        warnings.filterwarnings("ignore", message="Sinkhorn did not converge")
        mapping.fit(Xs=xs, Xt=yt)
    moved = mapping.transform(Xs=xs)
    if not np.isfinite(moved).all() or not np.isfinite(mapping.coupling_).all():
        raise InputError(f"entropic OT did not converge at --ot-reg {ot_reg:g}", hint="use a larger --ot-reg")
    errors = list(mapping.log_.get("err") or [np.inf])
    return {"source": xs, "moved": moved}, {
        "reg": float(ot_reg), "n_ot_image": xs.shape[0], "n_ot_text": yt.shape[0],
        # The log-domain solver stops at max_iter = 1000 unless the marginal error fell below its tol first.
        "ot_marginal_error": float(errors[-1]), "ot_converged": int(float(errors[-1]) <= mapping.tol),
        "ot_log_domain": int(solver == "sinkhorn_log")}


def nearest_rows(queries: NDArray[np.floating], points: NDArray[np.floating]) -> NDArray[np.int64]:
    """Index of the nearest row of ``points`` (squared Euclidean, lowest index on ties) for each query row."""
    points64 = points.astype(np.float64)
    half_sq = 0.5 * np.einsum("ij,ij->i", points64, points64)
    out = np.empty(queries.shape[0], dtype=np.int64)
    for start in range(0, queries.shape[0], _NN_BLOCK):
        # ‖q − p‖² = ‖q‖² − 2(q·p − ½‖p‖²): the argmax of q·p − ½‖p‖² is the nearest point.
        scores = queries[start : start + _NN_BLOCK].astype(np.float64) @ points64.T - half_sq
        out[start : start + scores.shape[0]] = np.argmax(scores, axis=1)
    return out


def _apply_ot(t: Intervention, v: NDArray[np.float32], side: str) -> NDArray[np.float32]:
    if side == "text":
        return v
    source, moved = t.arrays["source"], t.arrays["moved"]
    nn = nearest_rows(v, source)
    return _normalise(v.astype(np.float64) + (moved[nn] - source[nn]), side, t.method)


_FIT: dict[str, Callable[..., tuple[dict, dict]]] = {
    "centering": _fit_centering, "gap_shift": _fit_gap_shift, "ablation": _fit_ablation,
    "procrustes": _fit_procrustes, "whitening": _fit_whitening, "ot": _fit_ot,
}
_APPLY: dict[str, Callable[[Intervention, NDArray[np.float32], str], NDArray[np.float32]]] = {
    "centering": _apply_centering, "gap_shift": _apply_gap_shift, "ablation": _apply_ablation,
    "procrustes": _apply_procrustes, "whitening": _apply_whitening, "ot": _apply_ot,
}
