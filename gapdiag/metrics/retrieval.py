"""Cross-modal retrieval: Recall@K with exact FAISS search and deterministic tie breaking.

Conventions follow CLIP_benchmark (``clip_benchmark/metrics/zeroshot_retrieval.py``) and open_clip: scores
are cosine similarities of L2-normalised embeddings; a query hits at K if ANY gallery item of its own sample
is among its K best (image→text: any of the image's captions; text→image: the caption's image).

Determinism: FAISS returns tied scores in an unspecified order, and its float32 scores depend on the BLAS
kernel and the device. :func:`search_topk` therefore asks FAISS for a few more candidates than needed,
widens the search while the last candidate is still within rounding distance of the K-th score (so no tied
item beyond the cut-off can be missed), rescores the candidates exactly (float64 sums of the float32
products, which are exact) and orders them by (−score, gallery index). Equal vectors therefore tie exactly,
and ties go to the lower gallery index on every device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gapdiag.errors import InputError
from gapdiag.metrics.blocked import unit_rows
from gapdiag.metrics.passes import Passes, Skip, Value
from gapdiag.metrics.rounding import score_tolerance
from gapdiag.metrics.sampling import sorted_choice
from gapdiag.metrics.search_index import IndexKind, IndexSettings, Searcher, exact_scores, rows_per_chunk
from gapdiag.metrics.validation import check_same_dim, check_sample_index

#: Engines of :func:`recall_at_k`: exact FAISS search, or an approximate FAISS index.
RECALL_ENGINES = ("faiss", "hnsw", "ivf")
def _check_k(k: int, n_gallery: int, name: str = "k") -> int:
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"{name} must be a positive integer, got {k!r}")
    if k > n_gallery:
        raise InputError(
            f"{name}={k} is larger than the gallery ({n_gallery} items); choose {name} <= {n_gallery}"
        )
    return int(k)


def _rank(
    scores: NDArray[np.float64], cand: NDArray[np.int64], k: int
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Keep the k best per row ordered by (−score, index); -1 candidates (missing) sort last."""
    key_index = np.where(cand >= 0, cand, np.iinfo(np.int64).max)
    order = np.lexsort((key_index, -scores), axis=-1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(cand, order, axis=1)


def _search_batch(
    searcher: Searcher, q: NDArray[np.float32], k: int, first_k: int, tol: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    n_gallery = searcher.gallery.shape[0]
    out_s = np.empty((q.shape[0], k), dtype=np.float64)
    out_i = np.empty((q.shape[0], k), dtype=np.int64)
    todo = np.arange(q.shape[0])
    kk = min(first_k, searcher.max_k)
    while todo.size:
        dist, cand = searcher.raw_search(q[todo], kk)
        cand = cand.astype(np.int64, copy=False)
        # Something beyond the kk-th candidate may still tie with (or, after exact rescoring, beat) the k-th.
        widen = (kk < n_gallery) & (cand[:, -1] >= 0) & (dist[:, -1] >= dist[:, k - 1] - tol[todo])
        done = todo[~widen]
        out_s[done], out_i[done] = _rank(searcher.exact_scores(q[done], cand[~widen]), cand[~widen], k)
        todo = todo[widen]
        if todo.size and kk >= searcher.max_k:
            # GPU selection cannot widen further: score these (rare) queries against the whole gallery.
            for row in todo:
                out_s[row], out_i[row] = _full_row_topk(q[row], searcher.gallery, k, float(tol[row]))
            break
        kk = min(kk * 4, searcher.max_k)
    return out_s, out_i


def _full_row_topk(
    q: NDArray[np.float32], gallery: NDArray[np.float32], k: int, tol: float
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    approx = gallery @ q
    kth = np.partition(approx, approx.shape[0] - k)[approx.shape[0] - k]
    cand = np.nonzero(approx >= kth - tol)[0][None, :].astype(np.int64)
    s, i = _rank(exact_scores(q[None, :], gallery, cand), cand, k)
    return s[0], i[0]


# ----------------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------------
# Over 80 lines only by its docstring (every search option); ~35 lines of code.
def search_topk(
    queries: ArrayLike,
    gallery: ArrayLike,
    k: int,
    *,
    normalize: bool = True,
    device: str = IndexSettings.device,
    index: IndexKind = IndexSettings.index,
    nlist: int | None = IndexSettings.nlist,
    nprobe: int = IndexSettings.nprobe,
    hnsw_m: int = IndexSettings.hnsw_m,
    ef_search: int = IndexSettings.ef_search,
    ef_construction: int = IndexSettings.ef_construction,
    candidates: int | None = None,
    batch_size: int = 1024,
    seed: int = IndexSettings.seed,
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Top-k gallery items per query by cosine similarity, ties broken toward the lower gallery index.

    Score s(q, g) = q̂·ĝ (inner product of L2-normalised vectors). Row ``r`` of the result lists the k gallery
    indices with the highest s(q_r, ·), ordered by (−score, index).

    ``index="flat"`` (FAISS ``IndexFlatIP``) is exact: the result equals a stable sort of the full similarity
    matrix. ``"ivf"`` (``IndexIVFFlat``, inner product, ``nlist`` lists, ``nprobe`` probed) and ``"hnsw"``
    (``IndexHNSWFlat``, ``METRIC_INNER_PRODUCT``) are approximate, for galleries beyond exact reach; measure
    how far they are from exact with :func:`approximate_recall_agreement`. Where an approximate index finds
    fewer than k items, the missing entries are index -1 with score -inf.

    Memory: the normalised gallery is held as float32 on the host (plus FAISS's own copy; on a GPU that copy
    lives in GPU memory); queries are searched ``batch_size`` at a time. Cost: one FAISS search per batch
    in the usual case; a query whose K-th score is shared by many items (a collapsed space) widens its
    search up to the whole gallery, i.e. up to a full pass for that query.

    Args:
        queries: ``(n_queries, d)`` float array.
        gallery: ``(n_gallery, d)`` float array.
        k: Number of results per query, 1 <= k <= n_gallery.
        normalize: L2-normalise both inputs (in float32). Pass False only for already normalised input.
        device: "auto" (a GPU if there is one), "cpu", "cuda" or "cuda:N". On a GPU, flat search uses a FAISS
            GPU index where the FAISS build has GPU support and torch on CUDA otherwise; IVF needs a FAISS GPU
            build to leave the CPU; HNSW always runs on the CPU.
        index: "flat" (exact), "ivf" or "hnsw" (approximate).
        nlist: IVF lists (default min(4·sqrt(n), n/39), at least 1).
        nprobe: IVF lists probed per query (capped at nlist).
        hnsw_m: HNSW graph degree.
        ef_search: HNSW search beam (raised to the number of candidates asked for).
        ef_construction: HNSW construction beam.
        candidates: Candidates asked from FAISS in the first pass (default max(2k, k+16)); the search widens
            by itself while ties or rounding could reach past the cut-off.
        batch_size: Queries per FAISS call.
        seed: Seed of the IVF k-means training.

    Returns:
        ``(scores, indices)``: float64 and int64 arrays of shape ``(n_queries, k)``.

    Raises:
        InputError: Non-2-D, empty, non-finite or zero-norm input, mismatched dimensions, k out of range,
            unknown index or device.

    Example:
        >>> import numpy as np
        >>> g = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], dtype=np.float32)
        >>> search_topk(np.array([[1.0, 0.1]], dtype=np.float32), g, 2, device="cpu")[1]
        array([[0, 2]])
    """
    q = unit_rows(queries, "queries", normalize=normalize)
    g = unit_rows(gallery, "gallery", normalize=normalize)
    return _topk(
        q,
        g,
        k,
        device=device,
        index=index,
        nlist=nlist,
        nprobe=nprobe,
        hnsw_m=hnsw_m,
        ef_search=ef_search,
        ef_construction=ef_construction,
        candidates=candidates,
        batch_size=batch_size,
        seed=seed,
    )


def _topk(
    q: NDArray[np.float32],
    g: NDArray[np.float32],
    k: int,
    *,
    candidates: int | None = None,
    batch_size: int = 1024,
    **searcher_options: Any,
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """:func:`search_topk` on arrays that are already checked float32 (so callers make no second copy)."""
    check_same_dim(q, g, "queries", "gallery")
    k = _check_k(k, g.shape[0])
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    # The options set here, IndexSettings' defaults (search_topk's) for the rest.
    searcher = Searcher(g, **asdict(IndexSettings.of(searcher_options)))
    first_k = max(k, candidates if candidates is not None else max(2 * k, k + 16))
    # |float32 FAISS score − exact score| <= score_tolerance(d)·‖q‖·‖g‖ (d·2⁻²⁴ with slack); twice that, since
    # both the k-th score and an unseen item's score can be off, is the window of possible ties.
    g, step = searcher.gallery, rows_per_chunk(q.shape[1])
    gallery_norm = max(
        float(np.linalg.norm(g[s : s + step], axis=1).max()) for s in range(0, g.shape[0], step)
    )
    tol = 2.0 * score_tolerance(q.shape[1]) * gallery_norm * np.linalg.norm(q, axis=1).astype(np.float64)
    scores = np.empty((q.shape[0], k), dtype=np.float64)
    indices = np.empty((q.shape[0], k), dtype=np.int64)
    for start in range(0, q.shape[0], batch_size):
        stop = start + batch_size
        scores[start:stop], indices[start:stop] = _search_batch(
            searcher, q[start:stop], k, first_k, tol[start:stop]
        )
    return scores, indices


def recall_at_k(
    queries: ArrayLike,
    gallery: ArrayLike,
    query_sample: ArrayLike,
    gallery_sample: ArrayLike,
    ks: Sequence[int] = (1, 5, 10),
    *,
    normalize: bool = True,
    engine: str = "faiss",
    device: str = "auto",
    batch_size: int = 1024,
) -> dict[int, float]:
    """Recall@K of cross-modal retrieval, CLIP_benchmark semantics, exact search.

    R@K = (1/|Q|) Σ_q 1[∃ j ∈ topK(q) : sample(j) = sample(q)], with topK(q) the K gallery items of highest
    cosine similarity q̂·ĝ_j, ties broken toward the lower gallery index. With one image and five captions
    per sample, image→text hits if ANY of its captions is in the top K; text→image hits if its image is
    (CLIP_benchmark, ``zeroshot_retrieval.py``, recall thresholded at > 0). A query whose sample has no
    gallery item counts as a miss.

    Args:
        queries: ``(n_queries, d)`` embeddings of the query modality.
        gallery: ``(n_gallery, d)`` embeddings of the searched modality.
        query_sample: ``(n_queries,)`` sample id of each query.
        gallery_sample: ``(n_gallery,)`` sample id of each gallery item.
        ks: The K values, each in [1, n_gallery].
        normalize: L2-normalise both inputs (float32).
        engine: "faiss" (exact ``IndexFlatIP``), or "hnsw" / "ivf" (approximate FAISS indexes, for galleries
            beyond exact reach; check them with :func:`approximate_recall_agreement`). The fused "blocked"
            engine lives in :mod:`gapdiag.metrics.engine`.
        device: "auto", "cpu", "cuda" or "cuda:N" (see :func:`search_topk`).
        batch_size: Queries per FAISS call.

    Returns:
        ``{K: recall}`` with recall in [0, 1], one entry per K.

    Raises:
        InputError: Bad arrays, ids that do not match the rows, K out of range, unknown engine.

    Example:
        >>> import numpy as np
        >>> img = np.eye(2, dtype=np.float32)
        >>> txt = np.array([[1, 0], [0.9, 0.1], [1, 0.2]], dtype=np.float32)  # all three point at image 0
        >>> recall_at_k(txt, img, [0, 1, 1], [0, 1], ks=(1, 2), device="cpu")
        {1: 0.3333333333333333, 2: 1.0}
    """
    return recall_and_topk(queries, gallery, query_sample, gallery_sample, ks, normalize=normalize, engine=engine,
                           device=device, batch_size=batch_size)[0]


def recall_and_topk(
    queries: ArrayLike,
    gallery: ArrayLike,
    query_sample: ArrayLike,
    gallery_sample: ArrayLike,
    ks: Sequence[int] = (1, 5, 10),
    *,
    depth: int = 0,
    normalize: bool = True,
    engine: str = "faiss",
    device: str = "auto",
    batch_size: int = 1024,
) -> tuple[dict[int, float], NDArray[np.int64]]:
    """:func:`recall_at_k` plus the top lists it searched, at least ``depth`` deep (capped at the gallery size),
    so that hubness reuses the retrieval search instead of searching again."""
    if engine not in RECALL_ENGINES:
        raise InputError(
            f"engine must be one of {', '.join(RECALL_ENGINES)} for recall_at_k, got {engine!r} "
            "(the blocked engine is separate)"
        )
    ks = [ks] if isinstance(ks, (int, np.integer)) else list(ks)
    if not ks:
        raise InputError("ks is empty; give at least one K, e.g. ks=(1, 5, 10)")
    q = unit_rows(queries, "queries", normalize=normalize)
    g = unit_rows(gallery, "gallery", normalize=normalize)
    check_same_dim(q, g, "queries", "gallery")
    q_ids = check_sample_index(query_sample, q.shape[0], "queries")
    g_ids = check_sample_index(gallery_sample, g.shape[0], "gallery")
    ks = [_check_k(k, g.shape[0], "K") for k in ks]
    # "faiss" = exact IndexFlatIP; "hnsw"/"ivf" = approximate indexes for sets beyond exact reach.
    index = "flat" if engine == "faiss" else engine
    _, top = _topk(q, g, max(*ks, min(depth, g.shape[0])), device=device, batch_size=batch_size, index=index)
    # Rank of the first hit per query (max(ks) when there is none): one pass serves every K.
    hits = g_ids[top[:, : max(ks)]] == q_ids[:, None]
    first_hit = np.where(hits.any(axis=1), hits.argmax(axis=1), max(ks))
    return {k: float(np.mean(first_hit < k)) for k in ks}, top


def approximate_recall_agreement(
    queries: ArrayLike,
    gallery: ArrayLike,
    k: int = 10,
    *,
    index: IndexKind = "hnsw",
    sample: int = 1000,
    seed: int = 0,
    normalize: bool = True,
    device: str = "auto",
    **index_options: Any,
) -> float:
    """Fraction of the exact top-k that the approximate index also returns (k-recall@k of the ANN search).

    agreement = (1/|S|) Σ_{q∈S} |{j ∈ approx_k(q) : s(q, j) >= s_k(q)}| / k, over a seeded sample S of
    ``sample`` queries, where s_k(q) is the exact k-th best score. Counting by score rather than by index
    treats a tied item as found whichever of the tied indices the index returned (as faiss contrib compares
    tied results as sets). 1.0 = the approximate search returned an exact top-k for every sampled query.

    Args:
        queries, gallery: As in :func:`search_topk`.
        k: Depth compared (default 10: k-recall@10), 1 <= k <= n_gallery.
        index: "hnsw", "ivf" (approximate) or "flat" (exact; gives 1.0, a sanity check).
        sample: Number of queries drawn (without replacement, seeded); all if fewer.
        seed: Seed of the query sample (and of IVF training).
        normalize, device: As in :func:`search_topk`.
        **index_options: Passed to :func:`search_topk` (``nlist``, ``nprobe``, ``hnsw_m``, ``ef_search``...).

    Returns:
        Agreement in [0, 1].
    """
    q = unit_rows(queries, "queries", normalize=normalize)
    g = unit_rows(gallery, "gallery", normalize=normalize)
    if sample < 1:
        raise InputError(f"sample must be >= 1, got {sample}")
    rng = np.random.default_rng(seed)
    picked = sorted_choice(rng, q.shape[0], sample)
    q = q[picked]
    exact_top, _ = _topk(q, g, k, device=device, index="flat")
    _, approx_idx = _topk(q, g, k, device=device, index=index, seed=seed, **index_options)
    approx_scores = exact_scores(q, g, approx_idx)
    found = approx_scores >= exact_top[:, -1:]
    return float(found.sum() / found.size)


def recall_value(p: Passes, direction: str, *, k: int) -> Value:
    """``recall_at_<k>/<q_to_g>`` from the ranks of the cross pass or the search (compute_all's value function);
    skipped when K exceeds the gallery."""
    n_gallery = p.units[p.direction(direction)[1]].shape[0]
    if k > n_gallery:
        return Skip(f"K={k} exceeds the gallery ({n_gallery} items)")
    return p.recall[direction][k]
