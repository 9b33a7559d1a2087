"""Issue #25, run 8: what the survivors of the fresh samples (seeds 32 and 33) in gapdiag/metrics showed no test
asserted (those of the search modules are in tests/test_run8_search.py, those of the cache and the gate in
tests/test_run8_store_gate.py).

Each test fails with its survivor applied and passes without (docs/reliability.md, "Run 8").
"""

from __future__ import annotations

import numpy as np
import pytest

from gapdiag.errors import InputError
from gapdiag.metrics import compute_all
from gapdiag.metrics.arithmetic import _encode_attributes
from gapdiag.metrics.similarity import compare_embeddings
from gapdiag.metrics.zeroshot import zero_shot_accuracy
from gapdiag.vectors import EmbeddingSet


def _pairs(image: np.ndarray, text: np.ndarray) -> EmbeddingSet:
    n = image.shape[0]
    return EmbeddingSet({"image": image, "text": text}, {"image": np.arange(n), "text": np.arange(n)}, n)


def test_the_conformity_estimate_of_normalised_vectors_is_skipped_as_already_unit():
    """A modality given already L2-normalised has no raw geometry: ``conformity_estimate_r`` is skipped with the
    raw metrics' reason (it names the modality and asks for the raw embeddings) and why r would be 1. Survivors:
    the reason's ``+`` → ``*`` and → ``|`` (a TypeError where the reason was due)."""
    rng = np.random.default_rng(1)
    image = rng.normal(size=(12, 5)).astype(np.float32)
    image /= np.linalg.norm(image, axis=1, keepdims=True)
    text = (rng.normal(size=(12, 5)) * rng.uniform(0.5, 2.0, size=(12, 1))).astype(np.float32)
    values, extras = compute_all(_pairs(image, text), ["conformity_estimate_r"])
    assert "conformity_estimate_r/text" in values and "conformity_estimate_r/image" not in values
    reason = extras["skipped"]["conformity_estimate_r/image"]
    assert reason.startswith("the image vectors are already L2-normalised")
    assert "give the raw embeddings" in reason and reason.endswith("(the estimate is then exact by construction, r = 1)")


def test_a_gap_with_no_direction_and_no_whole_skips_each_share_with_its_own_reason():
    """Two modalities holding the same vectors: W₂ = 0, so ``gap_centroid_share`` (‖Δ‖²/W₂²) has no whole, and
    Δ = 0, so ``gap_dims_50`` (dimensions carrying half of ‖Δ‖²) has no direction; each is named with its reason.
    Survivor: the two reasons swapped (``key == "centroid_share"`` → ``!=``)."""
    x = np.random.default_rng(2).normal(size=(20, 6)).astype(np.float32)
    with pytest.raises(InputError) as caught:
        compute_all(_pairs(x, x.copy()), ["gap_centroid_share", "gap_dims_50"])
    message = caught.value.one_line()
    assert "gap_centroid_share: the two modalities' Gaussian fits coincide (W2 = 0)" in message
    assert "gap_dims_50: the two centroids coincide: the gap has no direction" in message


def test_mutual_knn_of_two_items_is_their_one_neighbour_and_of_one_item_is_skipped():
    """``mutual_knn`` needs at least 2 items (k is capped at n − 1): with 2 items each has the other as its one
    neighbour in both models (overlap 1); with 1 item it is skipped with that reason (the joint set of 1 image and
    1 caption still has 2 items). Survivor: ``kk < 1`` → ``kk == 1`` (2 items skipped; 1 item an error)."""
    rng = np.random.default_rng(3)
    two = [rng.normal(size=(2, 4)).astype(np.float32) for _ in range(4)]
    values, extras = compare_embeddings(_pairs(two[0], two[1]), _pairs(two[2], two[3]))
    assert values["mutual_knn/image"] == values["mutual_knn/text"] == values["mutual_knn/joint"] == 1.0
    one = [rng.normal(size=(1, 4)).astype(np.float32) for _ in range(4)]
    values, extras = compare_embeddings(_pairs(one[0], one[1]), _pairs(one[2], one[3]))
    assert extras["skipped"]["mutual_knn/image"] == extras["skipped"]["mutual_knn/text"] == "needs at least 2 items, got 1"
    assert values["mutual_knn/joint"] == 1.0


def test_zero_shot_accuracy_of_more_images_than_python_caches_small_integers_for():
    """Zero-shot accuracy over 300 images (past the 256 small ints CPython shares) is the brute-force argmax,
    ties to the lower class. Survivor: the length check ``!=`` → ``is not``, which refused every set of more than
    256 images as "labels of the wrong length"."""
    rng = np.random.default_rng(4)
    images, classes = rng.normal(size=(300, 8)), rng.normal(size=(5, 8))
    labels = rng.integers(0, 5, size=300)
    unit = classes / np.linalg.norm(classes, axis=1, keepdims=True)
    predicted = np.argmax((images / np.linalg.norm(images, axis=1, keepdims=True)) @ unit.T, axis=1)
    assert zero_shot_accuracy(images, classes, labels, device="cpu") == pytest.approx(np.mean(predicted == labels))


@pytest.mark.parametrize("n_attributes, refused", [(61, False), (62, True)])
def test_attribute_combinations_are_indexed_up_to_2_62(n_attributes, refused):
    """The attribute arithmetic indexes each combination of attribute values as one int64 (a mixed-radix code):
    up to 2⁶² combinations are accepted, more are a one-line error. 61 two-valued attributes make 2⁶¹. Survivor:
    the bound ``2**62`` → ``2**61``."""
    attributes = {f"a{i:02d}": np.array([0, 1]) for i in range(n_attributes)}
    if refused:
        with pytest.raises(InputError, match=r"too many attribute-value combinations to index \(over 2\^62\)"):
            _encode_attributes(attributes, 2)
        return
    names, _, codes, strides = _encode_attributes(attributes, 2)
    assert len(names) == 61 and strides[-1] == 2**60
    combined = sum(c * s for c, s in zip(codes, strides))
    assert combined.tolist() == [0, 2**61 - 1]  # the two images: every attribute 0, every attribute 1


def test_the_thread_pool_controller_is_built_once_for_every_blas_limit(monkeypatch):
    """``one_blas_thread`` limits BLAS through one threadpoolctl controller, built once: building it scans every
    loaded library (about 7 ms), which a bootstrap of small sets would otherwise pay at every resample. Survivor
    (run 2's #3, called equivalent then, and run 8's): ``@cache`` removed from ``linalg._controller``."""
    from threadpoolctl import ThreadpoolController

    from gapdiag.metrics import linalg

    built = []

    class CountedController(ThreadpoolController):
        def __init__(self) -> None:
            built.append(1)
            super().__init__()

    monkeypatch.setattr(linalg, "ThreadpoolController", CountedController)
    for _ in range(3):
        with linalg.one_blas_thread():
            pass
        linalg.eigvalsh(np.eye(3))
    assert len(built) <= 1  # 0 when an earlier test built it already
