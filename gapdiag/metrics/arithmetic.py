"""Multimodal arithmetic: edit an image embedding with text embeddings and retrieve the edited image.

After Fahim et al. 2024, "It's Not a Modality Gap: Characterizing and Addressing the Contrastive Gap"
(multimodal-arithmetic evaluation): in a well-aligned space, image − text("red") + text("blue") lands near
the images that differ from the query only in being blue.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gapdiag.errors import InputError
from gapdiag.metrics.blocked import unit_rows
from gapdiag.metrics.passes import Passes, Skip, Value
from gapdiag.metrics.retrieval import search_topk
from gapdiag.metrics.sampling import sorted_choice
from gapdiag.metrics.validation import check_same_dim


def _encode_attributes(
    attributes: Mapping[str, ArrayLike], n: int
) -> tuple[list[str], list[NDArray[Any]], list[NDArray[np.int64]], list[int]]:
    """Per attribute (sorted by name): distinct values, each image's value code, and a mixed-radix stride.

    ``Σ_a code_a[i] · stride_a`` is then one integer per attribute combination, so "same values on every
    other attribute" becomes an integer comparison.
    """
    names = sorted(attributes)
    if not names:
        raise InputError("attributes is empty; give at least one per-sample attribute (e.g. color)")
    values, codes, strides, stride = [], [], [], 1
    for name in names:
        column = np.asarray(attributes[name])
        if column.ndim != 1 or column.shape[0] != n:
            raise InputError(
                f"attribute {name!r} has shape {column.shape} but there are {n} images; "
                "give one value per image"
            )
        uniq, inv = np.unique(column, return_inverse=True)
        values.append(uniq)
        codes.append(inv.astype(np.int64))
        strides.append(stride)
        stride *= len(uniq)
    if stride >= 2**62:
        raise InputError("too many attribute-value combinations to index (over 2^62); use fewer attributes")
    return names, values, codes, strides


# Over 80 lines by its docstring (the protocol of the paper, step by step); ~65 lines of code.
def arithmetic_accuracy(
    image_vectors: ArrayLike,
    attributes: Mapping[str, ArrayLike],
    attribute_embeddings: Mapping[str, ArrayLike],
    *,
    seed: int = 0,
    max_queries: int = 2000,
    device: str = "auto",
) -> float:
    """Top-1 hit rate of multimodal arithmetic queries (after Fahim et al. 2024).

    Protocol (exactly what is computed):

    1. Row i of ``image_vectors`` is the image of sample i; ``attributes[A][i]`` is its value of attribute A.
       x̂_i and ê(v) (the text embedding of value v, ``attribute_embeddings[str(v)]``) are L2-normalised.
    2. A triple (i, A, b) is *valid* when b ≠ a = value of A on image i and at least one image j has value b
       on A and the same values as i on every other attribute (a *target* of i; j ≠ i since b ≠ a).
    3. Pairs (i, A) with at least one valid b are listed attribute by attribute (attributes sorted by name),
       images in row order. A seeded generator (``numpy.random.default_rng(seed)``) draws
       m = min(max_queries, #pairs) of them without replacement, then for each drawn pair one valid b
       uniformly.
    4. Query q = normalize(x̂_i − ê(a) + ê(b)). Its answer is the image with the highest q·x̂_j over all
       j ≠ i (ties toward the lower row).
    5. A hit when the answer is a target of i: value b on A and i's values on all other attributes.

    accuracy = hits / m. Range [0, 1]; chance is about (#targets) / (#images). Higher = text directions
    transfer to the image modality (a gap alone does not break it; a misaligned space does).

    Args:
        image_vectors: ``(n_samples, d)`` image embeddings, one per sample.
        attributes: Attribute name -> ``(n_samples,)`` values (strings or any values whose ``str`` is a key
            of ``attribute_embeddings``).
        attribute_embeddings: Value -> ``(d,)`` text embedding of that value word.
        seed: Seed of the query draw.
        max_queries: Number of (image, attribute, value) triples evaluated at most.
        device: FAISS device for the retrieval ("auto", "cpu", "cuda", "cuda:N").

    Returns:
        Hit rate in [0, 1].

    Raises:
        InputError: Bad arrays, attribute columns of the wrong length, a value without an embedding,
            dimension mismatch, or no valid triple at all (the attribute grid has no two images that differ
            in exactly one attribute).
    """
    x = unit_rows(image_vectors, "image_vectors")
    n = x.shape[0]
    if max_queries < 1:
        raise InputError(f"max_queries must be >= 1, got {max_queries}")
    names, values, codes, strides = _encode_attributes(attributes, n)
    combo = sum(c * s for c, s in zip(codes, strides))
    existing = np.unique(combo)

    text = []  # per attribute: (n_values, d) normalised embeddings in the order of ``values``
    for name, vals in zip(names, values):
        missing = [str(v) for v in vals if str(v) not in attribute_embeddings]
        if missing:
            raise InputError(
                f"attribute {name!r} value {missing[0]!r} has no entry in attribute_embeddings; embed it"
            )
        emb = unit_rows(
            np.stack([np.asarray(attribute_embeddings[str(v)], dtype=np.float32).reshape(-1) for v in vals]),
            f"attribute_embeddings of {name!r}",
        )
        check_same_dim(x, emb, "image_vectors", f"attribute_embeddings of {name!r}")
        text.append(emb)

    # valid[a][i, b]: value b of attribute a is a valid edit target for image i.
    valid = []
    for code, stride, vals in zip(codes, strides, values):
        b = np.arange(len(vals))
        target = combo[:, None] + (b[None, :] - code[:, None]) * stride
        valid.append((b[None, :] != code[:, None]) & np.isin(target, existing))
    pair_attr = np.concatenate([np.full(int(v.any(axis=1).sum()), a) for a, v in enumerate(valid)])
    pair_img = np.concatenate([np.flatnonzero(v.any(axis=1)) for v in valid])
    if pair_img.size == 0:
        raise InputError(
            "no image has a counterpart that differs in exactly one attribute; "
            "multimodal arithmetic needs such pairs"
        )

    rng = np.random.default_rng(seed)
    drawn = sorted_choice(rng, pair_img.size, max_queries)
    q_attr, q_img = pair_attr[drawn], pair_img[drawn]
    pick = rng.random(drawn.size)
    q_target = np.empty(drawn.size, dtype=np.int64)
    queries = np.empty((drawn.size, x.shape[1]), dtype=np.float32)
    for a in np.unique(q_attr):
        rows = np.flatnonzero(q_attr == a)
        imgs = q_img[rows]
        ok = valid[a][imgs]
        # The floor(u · count)-th valid value, in value order.
        nth = np.floor(pick[rows] * ok.sum(axis=1)).astype(np.int64)
        b = np.argmax(np.cumsum(ok, axis=1) > nth[:, None], axis=1)
        cur = codes[a][imgs]
        q_target[rows] = combo[imgs] + (b - cur) * strides[a]
        queries[rows] = x[imgs] - text[a][cur] + text[a][b]
    queries = unit_rows(queries, "arithmetic queries (image − text(a) + text(b))")

    # Top-2 so the query image itself can be skipped (it is usually its own nearest neighbour).
    _, top = search_topk(queries, x, 2, normalize=False, device=device)
    answer = np.where(top[:, 0] == q_img, top[:, 1], top[:, 0])
    return float(np.mean(combo[answer] == q_target))


def arithmetic_accuracy_value(p: Passes, image: str) -> Value:
    """``arithmetic_accuracy/<image>`` on the image items in play, with their samples' attributes (compute_all's
    value function); skipped without attributes and their word embeddings."""
    es = p.es
    if not es.attributes or not es.attribute_embeddings:
        return Skip("needs attributes and attribute_embeddings")
    p.say("multimodal arithmetic")
    attrs = {k: np.asarray(v)[p.sub[image]] for k, v in es.attributes.items()}
    return arithmetic_accuracy(p.units[image], attrs, es.attribute_embeddings, seed=p.seed)
