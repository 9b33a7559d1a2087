"""Zero-shot classification with a text-built classifier (Radford et al. 2021, CLIP, Sec. 3.1.4)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gapdiag.errors import InputError
from gapdiag.metrics.blocked import unit_rows
from gapdiag.metrics.passes import Passes, Skip, Value
from gapdiag.metrics.retrieval import search_topk


def build_classifier(prompt_embeddings: ArrayLike, n_classes: int, n_templates: int) -> NDArray[np.float32]:
    """CLIP's zero-shot classifier: per class, the renormalised mean of its normalised prompt embeddings.

    w_c = normalize( (1/T) Σ_t normalize(e_{c,t}) ), with e_{c,t} the text embedding of template t filled
    with class c (Radford et al. 2021, Sec. 3.1.4 "prompt ensembling"; open_clip
    ``zero_shot_classifier``).

    Args:
        prompt_embeddings: ``(n_classes · n_templates, d)`` embeddings, class-major: class c with template t
            at row ``c * n_templates + t``.
        n_classes: Number of classes C.
        n_templates: Number of templates T.

    Returns:
        ``(n_classes, d)`` float32 array of unit vectors.

    Raises:
        InputError: Row count other than C·T, non-finite or zero rows, or a class whose prompts cancel out.

    Example:
        >>> build_classifier(np.array([[2.0, 0], [0, 3.0], [0, 1.0], [0, 5.0]]), 2, 2).round(3)
        array([[0.707, 0.707],
               [0.   , 1.   ]], dtype=float32)
    """
    if n_classes < 1 or n_templates < 1:
        raise InputError(f"n_classes and n_templates must be >= 1, got {n_classes} and {n_templates}")
    prompts = unit_rows(prompt_embeddings, "prompt_embeddings")
    if prompts.shape[0] != n_classes * n_templates:
        raise InputError(
            f"prompt_embeddings has {prompts.shape[0]} rows but {n_classes} classes × {n_templates} "
            f"templates need {n_classes * n_templates}; order them class-major"
        )
    means = prompts.reshape(n_classes, n_templates, -1).mean(axis=1)
    norms = np.linalg.norm(means, axis=1)
    if (norms == 0).any():
        c = int(np.argmax(norms == 0))
        raise InputError(f"the prompt embeddings of class {c} average to zero; check its templates")
    return (means / norms[:, None]).astype(np.float32)


def zero_shot_accuracy(
    image_vectors: ArrayLike,
    class_embeddings: ArrayLike,
    labels: ArrayLike,
    *,
    normalize: bool = True,
    device: str = "auto",
) -> float:
    """Top-1 zero-shot accuracy: the predicted class of an image is its most similar class embedding.

    ŷ_i = argmax_c x̂_i·ŵ_c (ties toward the lower class index); accuracy = (1/N) Σ_i 1[ŷ_i = label_i]
    (Radford et al. 2021, Sec. 3.1). Range [0, 1]; chance is 1/C for balanced classes.

    Args:
        image_vectors: ``(n, d)`` image embeddings.
        class_embeddings: ``(C, d)`` classifier rows, e.g. from :func:`build_classifier`.
        labels: ``(n,)`` integer class per image, in [0, C).
        normalize: L2-normalise both inputs (cosine scores); argmax is unchanged by the image norms but not
            by the class norms.
        device: FAISS device for the search ("auto", "cpu", "cuda", "cuda:N").

    Returns:
        Accuracy in [0, 1].

    Raises:
        InputError: Bad arrays, dimension mismatch, labels of the wrong length or outside [0, C).

    Example:
        >>> zero_shot_accuracy(np.eye(2), np.eye(2), [0, 0], device="cpu")
        0.5
    """
    x = unit_rows(image_vectors, "image_vectors", normalize=normalize)
    w = unit_rows(class_embeddings, "class_embeddings", normalize=normalize)
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise InputError(
            f"labels has shape {y.shape} but there are {x.shape[0]} images; give one label per image"
        )
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= w.shape[0]:
        raise InputError(f"labels must be integers in [0, {w.shape[0]}) (one per class embedding)")
    # Top-1 search over the classes gives the lower-index tie rule for free.
    _, predicted = search_topk(x, w, 1, normalize=False, device=device)
    return float(np.mean(predicted[:, 0] == y))


def zero_shot_accuracy_value(p: Passes, image: str) -> Value:
    """``zero_shot_accuracy/<image>`` on every image item, read again block by block (compute_all's value
    function); skipped without class embeddings and labels, or with one class (every image "right")."""
    es = p.es
    if es.class_embeddings is None or es.labels is None:
        return Skip("needs class_embeddings and labels")
    if len(es.class_embeddings) < 2:  # one class: every image is "right", 1.0 says nothing
        return Skip(f"needs at least 2 classes (the data has {len(es.class_embeddings)})")
    p.say(f"zero-shot accuracy: {image}")
    classes = unit_rows(es.class_embeddings, "class_embeddings")
    labels = np.asarray(es.labels)[p.samples[image]]
    correct = 0.0
    # Accuracy is a mean over images, so blocks weighted by their size give it exactly, in bounded memory.
    for start, block in p.unit_blocks(image, block_size=8 * p.block_size):
        stop = start + block.shape[0]
        acc = zero_shot_accuracy(block, classes, labels[start:stop], normalize=False, device=p.device)
        correct += acc * block.shape[0]
    return correct / p.vecs[image].shape[0]
