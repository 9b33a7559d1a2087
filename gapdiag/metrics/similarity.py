"""How similar two representations of the same items are: debiased linear CKA and mutual k-NN alignment.

Used by ``gapdiag compare -m A -m B`` and by ``check`` against a baseline whose vectors are still cached: item
``i`` of representation X and item ``i`` of representation Y are the same input embedded by two checkpoints.

**Debiased linear CKA** (Kornblith et al., ICML 2019, eq. 4 with the unbiased HSIC of Song et al., JMLR 2012,
Thm. 2). With ``K = XXᵀ``, ``L = YYᵀ`` and ``K̃``, ``L̃`` their copies with a zero diagonal,
``HSIC_u(K, L) = [tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1)/((N−1)(N−2)) − 2/(N−2)·1ᵀK̃L̃1] / (N(N−3))`` and
``CKA = HSIC_u(K, L) / √(HSIC_u(K, K)·HSIC_u(L, L))``. Never forming the N×N matrices: with ``a_i = ‖x_i‖²``,
``b_i = ‖y_i‖²``, ``s_x = Σx_i``, ``s_y = Σy_i``, ``C = XᵀY`` (p×q):

* ``tr(K̃L̃) = Σ_{i≠j} (x_i·x_j)(y_i·y_j) = ‖C‖²_F − Σ a_i b_i``
* ``1ᵀK̃1 = ‖s_x‖² − Σ a_i``
* ``(K̃1)_i = x_i·s_x − a_i``, so ``1ᵀK̃L̃1 = s_xᵀ C s_y − (Σ a_i y_i)·s_y − (Σ b_i x_i)·s_x + Σ a_i b_i``

All of these are sums over items, accumulated in one streamed pass (O(N·d²) time, O(d²) memory). HSIC_u is the
inner product of the U-centred kernels divided by ``N(N−3)`` (Székely & Rizzo, Ann. Stat. 2014, §2), so by
Cauchy–Schwarz the debiased CKA lies in [−1, 1].

**Biased linear CKA** (Kornblith et al. 2019, eq. 3–5, the form most papers report): the same ratio with the
biased HSIC of Gretton et al. (ALT 2005), ``HSIC_b(K, L) = tr(KHLH)/(N−1)²``, ``H = I − 11ᵀ/N``. For linear
kernels ``tr(KHLH) = ‖X_cᵀY_c‖²_F`` with centred features, and ``X_cᵀY_c = XᵀY − s_x s_yᵀ/N``: from the same sums.
In [0, 1]; at small N it is biased upward by the feature dimension, which the debiased form removes.

**Mutual k-NN alignment** (Huh et al., ICML 2024, "The Platonic Representation Hypothesis", §2): the mean over
items of ``|N_X(i) ∩ N_Y(i)| / k``, with ``N_X(i)`` the ``k`` nearest other items of ``i`` by cosine similarity in
representation X. Its per-item terms are the neighbour overlap@k that ``compare`` lists for the items that changed
most.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gapdiag.errors import InputError
from gapdiag.metrics.blocked import DEFAULT_BLOCK_SIZE, iter_unit_blocks, unit_rows
from gapdiag.metrics.bounds import keep_in_bounds
from gapdiag.metrics.retrieval import search_topk
from gapdiag.metrics.rounding import NO_VARIANCE
from gapdiag.metrics.validation import check_matrix
from gapdiag.vectors import EmbeddingSet

#: Neighbours compared by mutual k-NN alignment (Huh et al. use k = 10).
KNN_K = 10


@dataclass
class _HsicSums:
    """Item sums for the unbiased HSIC of two linear kernels (see the module docstring)."""

    n: int
    cross: NDArray[np.float64]  # XᵀY
    sx: NDArray[np.float64]
    sy: NDArray[np.float64]
    a_y: NDArray[np.float64]  # Σ a_i y_i
    b_x: NDArray[np.float64]  # Σ b_i x_i
    ab: float
    a: float
    b: float

    def hsic(self) -> float:
        n = self.n
        tr = float(np.sum(self.cross**2)) - self.ab
        one_k, one_l = float(self.sx @ self.sx) - self.a, float(self.sy @ self.sy) - self.b
        kl1 = (
            float(self.sx @ self.cross @ self.sy)
            - float(self.a_y @ self.sy)
            - float(self.b_x @ self.sx)
            + self.ab
        )
        return (tr + one_k * one_l / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * kl1) / (n * (n - 3))

    def hsic_biased(self) -> float:
        """``‖X_cᵀY_c‖²_F/(N−1)²`` with ``X_cᵀY_c = XᵀY − s_x s_yᵀ/N`` (Gretton et al. 2005, linear kernels)."""
        centred = self.cross - np.outer(self.sx, self.sy) / self.n
        return float(np.sum(centred**2)) / (self.n - 1) ** 2


def _accumulate(blocks: list[tuple[NDArray[np.float64], NDArray[np.float64]]], p: int, q: int) -> _HsicSums:
    s = _HsicSums(0, np.zeros((p, q)), np.zeros(p), np.zeros(q), np.zeros(q), np.zeros(p), 0.0, 0.0, 0.0)
    for x, y in blocks:
        a, b = np.einsum("ij,ij->i", x, x), np.einsum("ij,ij->i", y, y)
        s.n += x.shape[0]
        s.cross += x.T @ y
        s.sx += x.sum(axis=0)
        s.sy += y.sum(axis=0)
        s.a_y += a @ y
        s.b_x += b @ x
        s.ab += float(a @ b)
        s.a += float(a.sum())
        s.b += float(b.sum())
    return s


def _cka_sums(
    x: ArrayLike, y: ArrayLike, *, normalize: bool, block_size: int, form: str
) -> tuple[_HsicSums, _HsicSums, _HsicSums]:
    """The item sums of (X, Y), (X, X) and (Y, Y) for the CKA ``form`` of two representations of the same items."""
    xa, ya = check_matrix(x, "x"), check_matrix(y, "y")
    if xa.shape[0] != ya.shape[0]:
        raise InputError(
            f"CKA compares the same items: x has {xa.shape[0]} rows but y has {ya.shape[0]}; "
            "embed the same data with both models"
        )
    if xa.shape[0] < CKA_MIN_ITEMS[form]:
        raise InputError(f"{form} needs at least {CKA_MIN_ITEMS[form]} items, got {xa.shape[0]}")
    p, q = xa.shape[1], ya.shape[1]
    bx = [
        b.astype(np.float64) for _, b in iter_unit_blocks(xa, "x", block_size=block_size, normalize=normalize)
    ]
    by = [
        b.astype(np.float64) for _, b in iter_unit_blocks(ya, "y", block_size=block_size, normalize=normalize)
    ]
    return _accumulate(list(zip(bx, by)), p, q), _accumulate(list(zip(bx, bx)), p, p), _accumulate(
        list(zip(by, by)), q, q)


def _no_variance(own: _HsicSums) -> bool:
    """Whether a representation (its sums with itself) varies only by rounding: its centred total variance
    ``tr(XᵀX) − ‖s_x‖²/N`` is at most :data:`~gapdiag.metrics.rounding.NO_VARIANCE` of ``tr(XᵀX)``."""
    second = float(np.trace(own.cross))
    return second - float(own.sx @ own.sx) / own.n <= NO_VARIANCE * second


def _ratio(xy: float, xx: float, yy: float) -> float:
    return xy / math.sqrt(xx * yy)


def _cka_forms(xy: _HsicSums, xx: _HsicSums, yy: _HsicSums) -> dict[str, float]:
    """Both CKA forms from one pass of sums (the debiased one from 4 items); NaN for a representation without
    variance, whose HSICs are rounding noise (one vector repeated read ~1e-19, not "unrelated")."""
    if _no_variance(xx) or _no_variance(yy):
        return dict.fromkeys(CKA_MIN_ITEMS, math.nan)
    forms = {"linear_cka_biased": _ratio(xy.hsic_biased(), xx.hsic_biased(), yy.hsic_biased())}
    if xy.n >= CKA_MIN_ITEMS["linear_cka"]:
        forms["linear_cka"] = _ratio(xy.hsic(), xx.hsic(), yy.hsic())
    return forms


#: Items the two CKA forms need: the unbiased HSIC divides by N(N − 3), the biased one by (N − 1)².
CKA_MIN_ITEMS = {"linear_cka": 4, "linear_cka_biased": 2}


def linear_cka(
    x: ArrayLike, y: ArrayLike, *, normalize: bool = True, block_size: int = DEFAULT_BLOCK_SIZE
) -> float:
    """Debiased linear CKA between two representations of the same N items (Kornblith et al. 2019).

    ``CKA = HSIC_u(XXᵀ, YYᵀ) / √(HSIC_u(XXᵀ, XXᵀ)·HSIC_u(YYᵀ, YYᵀ))`` with Song et al.'s unbiased HSIC, computed
    from d×d cross-covariances in one streamed pass (module docstring). 1 = the same up to rotation and scale;
    near 0 = unrelated. In [−1, 1]; unlike the biased form it can dip below 0 when the two are unrelated.

    Args:
        x: ``(N, p)`` first representation.
        y: ``(N, q)`` second representation of the same items, in the same order (p and q may differ).
        normalize: L2-normalise rows first (as every other gapdiag metric compares embeddings).
        block_size: Rows per block.

    Returns:
        The CKA (NaN when a representation is constant).

    Raises:
        InputError: Different item counts or fewer than 4 items (the unbiased HSIC needs N ≥ 4).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(50, 8))
        >>> round(linear_cka(x, x @ np.linalg.qr(rng.normal(size=(8, 8)))[0], normalize=False), 6)
        1.0
    """
    sums = _cka_sums(x, y, normalize=normalize, block_size=block_size, form="linear_cka")
    return _cka_forms(*sums)["linear_cka"]


def linear_cka_biased(
    x: ArrayLike, y: ArrayLike, *, normalize: bool = True, block_size: int = DEFAULT_BLOCK_SIZE
) -> float:
    """Linear CKA with the biased HSIC (Kornblith et al., ICML 2019, eq. 5; Gretton et al., ALT 2005).

    ``CKA = ‖X_cᵀY_c‖²_F / (‖X_cᵀX_c‖_F·‖Y_cᵀY_c‖_F)`` with column-centred ``X_c``, ``Y_c``: the number most papers
    report beside (or instead of) the debiased one. In [0, 1]; at small N it reads higher than the debiased form
    (the estimate is biased upward). Same streamed sums as :func:`linear_cka`.

    Args, Raises: As :func:`linear_cka`, with N ≥ 2.

    Returns:
        The CKA (NaN when a representation is constant).

    Example:
        >>> x = np.array([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
        >>> round(linear_cka_biased(x, x[:, :1], normalize=False), 6)  # 1/√2
        0.707107
    """
    # ‖X_cᵀY_c‖²/(‖X_cᵀX_c‖·‖Y_cᵀY_c‖): the HSICs are squared norms, the denominator their square roots.
    sums = _cka_sums(x, y, normalize=normalize, block_size=block_size, form="linear_cka_biased")
    return _cka_forms(*sums)["linear_cka_biased"]


def knn_indices(
    x: ArrayLike, k: int = KNN_K, *, normalize: bool = True, device: str = "cpu"
) -> NDArray[np.int64]:
    """The ``k`` nearest *other* items of every item by cosine similarity (exact search; ties to the lower index)."""

    pts = unit_rows(x, "x", normalize=normalize)
    n = pts.shape[0]
    if not 1 <= k < n:
        raise InputError(f"k-NN needs 1 <= k < number of items ({n}), got k={k}")
    _, top = search_topk(pts, pts, k + 1, normalize=False, device=device)
    own = top == np.arange(n)[:, None]
    # Duplicates can push an item's own index out of its k + 1 list: then the last neighbour is dropped instead.
    own[~own.any(axis=1), -1] = True
    return top[~own].reshape(n, k)


def neighbour_overlap(nx: ArrayLike, ny: ArrayLike) -> NDArray[np.float64]:
    """Per-item overlap ``|N_X(i) ∩ N_Y(i)| / k`` of two k-NN index lists of the same items.

    Example:
        >>> neighbour_overlap([[1, 2], [0, 2]], [[2, 1], [2, 3]]).tolist()
        [1.0, 0.5]
    """
    a, b = np.asarray(nx, dtype=np.int64), np.asarray(ny, dtype=np.int64)
    if a.shape != b.shape or a.ndim != 2:
        raise InputError(f"k-NN lists must have the same (items, k) shape, got {a.shape} and {b.shape}")
    # One key per (row, neighbour): a neighbour is shared when its key is in both lists (rows hold no repeats).
    span = int(max(a.max(initial=0), b.max(initial=0))) + 1
    rows = np.arange(a.shape[0], dtype=np.int64)[:, None] * span
    return np.isin(a + rows, b + rows).sum(axis=1) / a.shape[1]


def mutual_knn(
    x: ArrayLike, y: ArrayLike, k: int = KNN_K, *, normalize: bool = True, device: str = "cpu"
) -> float:
    """Mutual k-NN alignment (Huh et al. 2024): mean over items of ``|N_X(i) ∩ N_Y(i)| / k``, in [0, 1]."""
    return float(
        neighbour_overlap(
            knn_indices(x, k, normalize=normalize, device=device),
            knn_indices(y, k, normalize=normalize, device=device),
        ).mean()
    )


def compare_embeddings(
    a: EmbeddingSet, b: EmbeddingSet, *, k: int = KNN_K, top: int = 10, device: str = "cpu"
) -> tuple[dict[str, float], dict[str, Any]]:
    """Linear CKA and mutual k-NN of two embeddings of the same data, per modality and on the joint set.

    Returns:
        ``(values, extras)``: ``linear_cka/<m>``, ``linear_cka_biased/<m>`` and ``mutual_knn/<m>`` for every
        modality and ``joint``; extras ``changed/<m>``: the ``top`` items whose k-NN changed most (lowest
        overlap@k, ties to the lower row) as ``{"item": row, "sample": id, "overlap": o}``,
        ``overlap_histogram/<m>`` (counts of overlap = 0/k, 1/k, ..., 1), ``variants`` and ``skipped`` (metric ->
        why it has no value: too few items, a representation without variance).

    Raises:
        InputError: Different modalities, item counts or item-to-sample alignment (not the same data).
    """
    names = a.modality_names
    if names != b.modality_names:
        raise InputError(
            f"the two embeddings have different modalities ({names} vs {b.modality_names}); "
            "embed the same data with both models"
        )
    for m in names:
        same = a.vectors[m].shape[0] == b.vectors[m].shape[0] and np.array_equal(
            a.sample_index[m], b.sample_index[m]
        )
        if not same:
            raise InputError(
                f"modality {m!r} holds different items in the two embeddings "
                f"({a.vectors[m].shape[0]} vs {b.vectors[m].shape[0]} items); embed the same data"
            )
    values: dict[str, float] = {}
    extras: dict[str, Any] = {}
    units = {m: (unit_rows(a.vectors[m], m), unit_rows(b.vectors[m], m)) for m in names}
    sets = [*((m, units[m]) for m in names)]
    if len(names) > 1:
        sets.append(
            (
                "joint",
                (np.concatenate([units[m][0] for m in names]), np.concatenate([units[m][1] for m in names])),
            )
        )
    offsets = dict(zip(names, np.cumsum([0, *(units[m][0].shape[0] for m in names)])))
    skipped: dict[str, str] = {}
    for q, (xa, xb) in sets:
        _cka_values(q, xa, xb, values, skipped)
        kk = min(k, xa.shape[0] - 1)
        if kk < 1:
            skipped[f"mutual_knn/{q}"] = f"needs at least 2 items, got {xa.shape[0]}"
            continue
        overlap = neighbour_overlap(
            knn_indices(xa, kk, normalize=False, device=device),
            knn_indices(xb, kk, normalize=False, device=device),
        )
        values[f"mutual_knn/{q}"] = float(overlap.mean())
        order = np.argsort(overlap, kind="stable")[:top]
        changed = []
        for i in order:
            m = q if q != "joint" else next(n for n in reversed(names) if offsets[n] <= i)
            row = int(i - offsets[m]) if q == "joint" else int(i)
            changed.append(
                {
                    "modality": m,
                    "item": row,
                    "sample": int(a.sample_index[m][row]),
                    "overlap": float(overlap[i]),
                }
            )
        extras[f"changed/{q}"] = changed
        extras[f"overlap_histogram/{q}"] = np.bincount(
            np.rint(overlap * kk).astype(int), minlength=kk + 1
        ).tolist()
    extras["variants"] = {
        "linear_cka": "debiased linear CKA (Song et al. unbiased HSIC) on L2-normalised vectors",
        "linear_cka_biased": "linear CKA with the biased HSIC (Kornblith et al. eq. 5) on L2-normalised vectors",
        "mutual_knn": f"mean |N_A(i) ∩ N_B(i)|/k, k = {k}, exact cosine k-NN",
    }
    keep_in_bounds(values, skipped, max(a.vectors[m].shape[1] for m in names))
    extras["skipped"] = skipped
    return values, extras


def _cka_values(q: str, xa: NDArray[np.float32], xb: NDArray[np.float32], values: dict[str, float],
                skipped: dict[str, str]) -> None:
    """Both CKA forms of one set from one pass of sums, or the reason each is missing."""
    n = xa.shape[0]
    for base, least in CKA_MIN_ITEMS.items():
        if n < least:
            skipped[f"{base}/{q}"] = f"needs at least {least} items, got {n}"
    if n < CKA_MIN_ITEMS["linear_cka_biased"]:
        return
    sums = _cka_sums(xa, xb, normalize=False, block_size=DEFAULT_BLOCK_SIZE, form="linear_cka_biased")
    for base, value in _cka_forms(*sums).items():
        if math.isnan(value):
            skipped[f"{base}/{q}"] = "a representation has no variance (every vector the same)"
        else:
            values[f"{base}/{q}"] = value
