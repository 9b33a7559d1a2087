"""Brute-force reference implementations of the metrics, written independently of gapdiag.

Everything here materialises full matrices in float64 and follows the papers' formulas literally (loops or
full N×N matrices, scipy/scikit-learn where they have the quantity). They are slow and only meant for the
small arrays of the tests.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.special
import scipy.stats
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


def conformity(x) -> np.ndarray:
    """Per item, the mean cosine to every other item of its set (Levi & Gilboa, ICML 2025), by a loop over the
    full N×N cosine matrix."""
    sims = unit(x) @ unit(x).T
    n = sims.shape[0]
    return np.array([np.mean([sims[i, j] for j in range(n) if j != i]) for i in range(n)])


def conformity_w1(x, y) -> float:
    """Wasserstein-1 distance of the two sets' conformity distributions (scipy's 1-D W1)."""
    return float(scipy.stats.wasserstein_distance(conformity(x), conformity(y)))


def raw_norms(x) -> dict[str, float]:
    """Mean, population standard deviation and their ratio (the thin-shell ratio) of the raw L2 norms, by numpy."""
    norms = np.linalg.norm(np.asarray(x, dtype=np.float64), axis=1)
    return {"mean": float(norms.mean()), "std": float(norms.std()), "ratio": float(norms.std() / norms.mean())}


def conformity_estimate(x) -> np.ndarray:
    """Per item, the cosine of the raw vector to the mean of the raw vectors of its set (Levi & Gilboa's
    estimator of conformity), item by item."""
    x = np.asarray(x, dtype=np.float64)
    mu = x.mean(0)
    return np.array([x[i] @ mu / (np.linalg.norm(x[i]) * np.linalg.norm(mu)) for i in range(x.shape[0])])


def conformity_estimate_r(x) -> float:
    """Pearson correlation (scipy) of the exact conformities with their mean-vector estimates."""
    return float(scipy.stats.pearsonr(conformity(x), conformity_estimate(x))[0])


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


# ---------------------------------------------------------------------------------------------- clustering


def v_measure(truth, predicted) -> float:
    """V = 2hc/(h+c), h = 1 − H(C|K)/H(C), c = 1 − H(K|C)/H(K) (Rosenberg & Hirschberg 2007), by counting."""
    truth, predicted = list(truth), list(predicted)
    n = len(truth)
    classes, clusters = sorted(set(truth), key=str), sorted(set(predicted), key=str)
    pairs = list(zip(truth, predicted))
    table = np.array([[sum(t == c and p == k for t, p in pairs) for k in clusters] for c in classes])

    def entropy(counts) -> float:
        p = np.asarray([c for c in counts if c > 0], dtype=np.float64) / n
        return float(-(p * np.log(p)).sum())

    def conditional(tab) -> float:  # H(rows | columns)
        cells = zip(*np.nonzero(tab))
        return float(-sum(tab[i, j] / n * np.log(tab[i, j] / tab[:, j].sum()) for i, j in cells))

    h_c, h_k = entropy(table.sum(1)), entropy(table.sum(0))
    h = 1.0 if h_c == 0 else 1.0 - conditional(table) / h_c
    c = 1.0 if h_k == 0 else 1.0 - conditional(table.T) / h_k
    return 0.0 if h + c == 0 else 2 * h * c / (h + c)


def kmeans_optimum(points, k: int) -> np.ndarray:
    """The exact k-means optimum: every assignment of the points to k clusters, least within-cluster SSE.

    SSE of an assignment = Σ‖x‖² − Σ_c ‖Σ_{x∈c} x‖² / |c| (empty clusters contribute nothing).
    """
    import itertools

    points = np.asarray(points, dtype=np.float64)
    # The first point sits in cluster 0: each partition is met fewer times.
    labels = np.array([(0, *rest) for rest in itertools.product(range(k), repeat=len(points) - 1)])
    onehot = labels[:, :, None] == np.arange(k)  # (assignments, points, clusters)
    counts = onehot.sum(1)
    sums = np.einsum("apc,pd->acd", onehot.astype(np.float64), points)
    between = ((sums**2).sum(2) / np.maximum(counts, 1)).sum(1)
    return labels[np.argmax(between)]  # least SSE = most between-cluster mass


def v_measure_modality(vectors_by_modality, *, normalize: bool = True) -> float:
    """V-Measure of the best k-means partition (k = number of modalities) of [X̂; Ŷ; ...] against modality.

    ``normalize=False`` skips the L2 normalisation: only to show that a test of it can tell the difference.
    """
    mats = [unit(v) if normalize else np.asarray(v, dtype=np.float64) for v in vectors_by_modality]
    truth = np.repeat(np.arange(len(mats)), [len(m) for m in mats])
    return v_measure(truth, kmeans_optimum(np.concatenate(mats), len(mats)))


def modality_separability(
    vectors_by_modality, *, seed: int = 0, max_samples: int = 20_000, test_fraction: float = 0.5,
    normalize: bool = True,
) -> float:
    """Held-out accuracy of an L2-penalised (C = 1) logistic regression on standardised unit vectors.

    The protocol of gapdiag (a seeded, sorted, equal-size subsample per modality; a seeded stratified split
    by ``sklearn.model_selection.train_test_split``); the classifier is fitted here by minimising its
    objective with scipy to high precision: binary Σ log(1 + exp(−y(w·x + b))) + ½‖w‖², multinomial
    Σ −log softmax(Wx + b)_y + ½‖W‖²; the intercept is not penalised.
    """
    import scipy.optimize
    from sklearn.model_selection import train_test_split

    mats = [unit(v) if normalize else np.asarray(v, dtype=np.float64) for v in vectors_by_modality]
    n = min(max_samples, min(len(m) for m in mats))
    rng = np.random.default_rng(seed)
    points = np.concatenate([m[np.sort(rng.choice(len(m), size=n, replace=False))] for m in mats])
    truth = np.repeat(np.arange(len(mats)), n)
    x_train, x_test, y_train, y_test = train_test_split(
        points, truth, test_size=test_fraction, stratify=truth, random_state=seed
    )
    mean, std = x_train.mean(0), x_train.std(0)
    std[std == 0] = 1.0
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    d, m = x_train.shape[1], len(mats)

    if m == 2:
        y = np.where(y_train == 1, 1.0, -1.0)

        def objective(theta):
            w, b = theta[:d], theta[d]
            margin = y * (x_train @ w + b)
            loss = np.logaddexp(0, -margin).sum() + 0.5 * w @ w
            g = -y * scipy.special.expit(-margin)
            return loss, np.concatenate([x_train.T @ g + w, [g.sum()]])

        theta = scipy.optimize.minimize(objective, np.zeros(d + 1), jac=True, method="L-BFGS-B",
                                        options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 10_000}).x
        predicted = (x_test @ theta[:d] + theta[d] > 0).astype(int)
    else:
        onehot = np.eye(m)[y_train]

        def objective(theta):
            w, b = theta[: d * m].reshape(d, m), theta[d * m:]
            logits = x_train @ w + b
            logp = logits - scipy.special.logsumexp(logits, axis=1, keepdims=True)
            loss = -(onehot * logp).sum() + 0.5 * (w * w).sum()
            g = np.exp(logp) - onehot
            return loss, np.concatenate([(x_train.T @ g + w).ravel(), g.sum(0)])

        theta = scipy.optimize.minimize(objective, np.zeros(d * m + m), jac=True, method="L-BFGS-B",
                                        options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 10_000}).x
        predicted = (x_test @ theta[: d * m].reshape(d, m) + theta[d * m:]).argmax(1)
    return float((predicted == y_test).mean())


# ------------------------------------------------------------------------------------------- diagnostics


def twonn(points) -> float:
    """TwoNN MLE (N − 1)/Σ log(r₂/r₁) over the distinct rows, distances from the full float64 matrix."""
    pts = np.unique(np.asarray(points, dtype=np.float64), axis=0)
    full = cdist(pts, pts)
    np.fill_diagonal(full, np.inf)
    srt = np.sort(full, axis=1)
    return float((len(pts) - 1) / np.log(srt[:, 1] / srt[:, 0]).sum())


def linear_cka_biased(x, y) -> float:
    """Linear CKA with the biased HSIC of Gretton et al. 2005: tr(KHLH)/√(tr(KHKH)·tr(LHLH)), H = I − 11ᵀ/N.

    Kornblith et al. 2019, eq. 3 with linear kernels K = XXᵀ, L = YYᵀ (the (N−1)⁻² of HSIC cancels), on N × N
    matrices.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l = h @ (x @ x.T) @ h, h @ (y @ y.T) @ h
    return float(np.trace(k @ l) / np.sqrt(np.trace(k @ k) * np.trace(l @ l)))


def mmd_permutation_pvalue(x, y, labels) -> tuple[float, float]:
    """Unbiased MMD² (RBF, σ² = half the median squared distance) of x vs y and its permutation p-value.

    ``labels``: one row per permutation, 1 for the items (of the pooled [x; y]) that play x. p = (1 + #{permuted
    MMD² ≥ observed})/(1 + P) (Gretton et al. 2012, §5), every statistic by double loops over the pooled set.
    """
    z = np.vstack([np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)])
    d2 = cdist(z, z, "sqeuclidean")
    sigma2 = np.median(pdist(z, "sqeuclidean")) / 2
    k = np.exp(-d2 / (2 * sigma2))

    def mmd2(is_x) -> float:
        a, b = np.flatnonzero(is_x), np.flatnonzero(~is_x)
        m, n = len(a), len(b)
        kxx = sum(k[i, j] for i in a for j in a if i != j) / (m * (m - 1))
        kyy = sum(k[i, j] for i in b for j in b if i != j) / (n * (n - 1))
        kxy = sum(k[i, j] for i in a for j in b) / (m * n)
        return kxx + kyy - 2 * kxy

    observed = mmd2(np.arange(len(z)) < len(x))
    permuted = [mmd2(np.asarray(row, dtype=bool)) for row in labels]
    return observed, (1 + sum(p >= observed for p in permuted)) / (1 + len(permuted))
