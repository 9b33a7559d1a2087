"""Brute-force reference implementations of the metrics, written independently of gapdiag.

Everything here materialises full matrices in float64 and follows the papers' formulas literally (loops or
full N×N matrices, scipy/scikit-learn where they have the quantity). They are slow and only meant for the
small arrays of the tests.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
from scipy.spatial.distance import cdist, pdist


def unit(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def true_pairs(xs, ys) -> list[tuple[int, int]]:
    """(i, j) with x item i and y item j of the same sample, when one side has one item per sample."""
    xs, ys = list(xs), list(ys)
    assert len(set(xs)) == len(xs) or len(set(ys)) == len(ys), "no one-per-sample side"
    return [(i, j) for i, a in enumerate(xs) for j, b in enumerate(ys) if a == b]


def gap(x, y) -> float:
    return float(np.linalg.norm(unit(x).mean(0) - unit(y).mean(0)))


def cos_tp(x, y, xs, ys) -> float:
    sims = unit(x) @ unit(y).T
    return float(np.mean([sims[i, j] for i, j in true_pairs(xs, ys)]))


def alignment(x, y, xs, ys) -> float:
    ux, uy = unit(x), unit(y)
    return float(np.mean([np.sum((ux[i] - uy[j]) ** 2) for i, j in true_pairs(xs, ys)]))


def cos_nonmatching(x, y, xs, ys) -> float:
    sims = unit(x) @ unit(y).T
    different = np.asarray(xs)[:, None] != np.asarray(ys)[None, :]
    return float(sims[different].mean())


def angular_value(x) -> float:
    g = unit(x) @ unit(x).T
    n = g.shape[0]
    return float(g[~np.eye(n, dtype=bool)].mean())


def uniformity(x, t: float = 2.0) -> float:
    d2 = pdist(unit(x), "sqeuclidean")  # unordered pairs i < j
    return float(np.log(np.mean(np.exp(-t * d2))))


def uniformity_cross(x, y, xs, ys, t: float = 2.0) -> float:
    d2 = cdist(unit(x), unit(y), "sqeuclidean")
    different = np.asarray(xs)[:, None] != np.asarray(ys)[None, :]
    return float(np.log(np.mean(np.exp(-t * d2[different]))))


def uniformity_w2(*sets) -> float:
    z = np.vstack([unit(s) for s in sets])
    d = z.shape[1]
    mu = z.mean(0)
    cov = np.cov(z, rowvar=False, bias=True)
    root = np.real(scipy.linalg.sqrtm(cov))
    return -float(np.sqrt(max(mu @ mu + 1 + np.trace(cov) - 2 / np.sqrt(d) * np.trace(root), 0.0)))


def effective_rank(x, *, normalize: bool = True) -> float:
    s = np.linalg.svd(unit(x) if normalize else np.asarray(x, np.float64), compute_uv=False)
    p = s / s.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def rankme(x, *, normalize: bool = True) -> float:
    # Garrido et al.'s reference: p = s / ||s||_1 + eps; exp(-sum p log p).
    s = np.linalg.svd(unit(x) if normalize else np.asarray(x, np.float64), compute_uv=False)
    p = s / s.sum() + 1e-7
    return float(np.exp(-(p * np.log(p)).sum()))


def recall(queries, gallery, qs, gs, k: int) -> float:
    """Full score matrix, gallery sorted by (-score, index), hit if any same-sample item in the top k."""
    sims = unit(queries).astype(np.float32) @ unit(gallery).astype(np.float32).T
    hits = 0
    for r in range(sims.shape[0]):
        order = sorted(range(sims.shape[1]), key=lambda j: (-sims[r, j], j))[:k]
        hits += any(gs[j] == qs[r] for j in order)
    return hits / sims.shape[0]
