"""Issue #25, run 11: what the survivors of the fresh samples (seeds 38 and 39) showed no test asserted.

Each test fails with its survivor applied and passes without (docs/reliability.md, "Run 11").
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import reference as ref

from gapdiag.errors import InputError
from gapdiag.metrics import compute_all
from gapdiag.metrics.arithmetic import arithmetic_accuracy
from gapdiag.metrics.blocked import strip_uniformity
from gapdiag.metrics.intrinsic import twonn_dimension
from gapdiag.metrics.strip_scan import MAX_TWO_T
from gapdiag.vectors import EmbeddingSet


def test_an_attribute_given_as_one_value_instead_of_one_per_image_is_a_one_line_error():
    """Attributes are one value per image: a single value (a 0-d array) is refused naming the attribute, its
    shape and the fix. Survivor: ``column.ndim != 1`` → ``> 1`` (an ``IndexError`` on the 0-d column)."""
    images = np.eye(3, dtype=np.float32)
    text = {"red": np.array([1.0, 0.0, 0.0]), "green": np.array([0.0, 1.0, 0.0])}
    with pytest.raises(InputError, match=r"attribute 'color' has shape \(\) but there are 3 images; give one value"):
        arithmetic_accuracy(images, {"color": np.array("red")}, text, device="cpu")


def test_uniformity_of_a_strip_without_same_sample_pairs_at_a_high_temperature():
    """Past the compiled exp's range (2t > 8) a strip is summed with numpy; a strip none of whose entries is a
    same-sample pair has an empty same-sample sum, −inf (its docstring), and the other sum is the reference.
    Survivor: the empty maximum ``-math.inf`` → ``~math.inf`` (a ``TypeError``)."""
    rng = np.random.default_rng(11)
    a, b = (rng.normal(size=(5, 4)) for _ in range(2))
    s = ((a / np.linalg.norm(a, axis=1, keepdims=True)) @ (b / np.linalg.norm(b, axis=1, keepdims=True)).T)
    s = s.astype(np.float32)
    t = MAX_TWO_T  # 2t = 16, past the compiled range
    other, same = strip_uniformity(s.copy(), t, np.zeros(s.shape, dtype=bool))
    assert same == -math.inf
    assert other == pytest.approx(math.log(np.exp(2 * t * (s.astype(np.float64) - 1)).sum()), abs=1e-6)


def test_twonn_of_exactly_three_points_is_measured():
    """TwoNN needs 3 points (each point's two nearest others): with exactly 3 distinct points it is the
    brute-force MLE, and with 2 it is skipped with that reason. Survivor: the minimum ``< 3`` → ``< 4``."""
    x = np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.28, 0.96]], dtype=np.float32)
    assert twonn_dimension(x, sample=None) == pytest.approx(ref.twonn(x), rel=1e-6)  # float32 points
    with pytest.raises(InputError, match="needs at least 3 points, got 2"):
        twonn_dimension(x[:2], sample=None)


@pytest.mark.parametrize("n", [4, 5, 6])
def test_recall_at_k_on_a_gallery_of_k_items_is_measured_and_on_fewer_skipped(n):
    """R@5 needs a gallery of at least 5 items: with 5 or 6 it is the brute-force recall (every true item is in
    the top 5 of a gallery of 5), with 4 it is skipped naming both numbers. Survivor: ``k > n_gallery`` → ``k is
    n_gallery`` (a gallery of exactly K skipped, a smaller one not)."""
    rng = np.random.default_rng(n)
    image, text = rng.normal(size=(n, 3)).astype(np.float32), rng.normal(size=(n, 3)).astype(np.float32)
    es = EmbeddingSet({"image": image, "text": text}, {"image": np.arange(n), "text": np.arange(n)}, n)
    values, extras = compute_all(es, device="cpu")  # every metric: the ones that cannot apply are skipped
    if n < 5:
        assert extras["skipped"]["recall_at_5/image_to_text"] == f"K=5 exceeds the gallery ({n} items)"
        assert "recall_at_5/image_to_text" not in values
        return
    scores = ref.unit(image).astype(np.float64) @ ref.unit(text).astype(np.float64).T
    rank = [int(np.sum((scores[i] > scores[i, i]) | ((scores[i] == scores[i, i]) & (np.arange(n) < i))))
            for i in range(n)]
    assert values["recall_at_5/image_to_text"] == pytest.approx(np.mean(np.array(rank) < 5))
    assert n == 6 or values["recall_at_5/image_to_text"] == 1.0


@pytest.mark.parametrize("edit, reason", [
    (lambda meta: meta.pop("modalities"), "field 'modalities' missing"),
    (lambda meta: meta.__setitem__("modalities", 5), "a field of wrong type ('int' object is not iterable): "
                                                     "modalities must be a list"),
])
def test_a_meta_json_whose_checksum_holds_but_whose_modalities_are_wrong_is_named_by_get_and_verify(
        tmp_path, edit, reason):
    """A ``meta.json`` rewritten by a tool (its own checksum recomputed) without ``modalities``, or with a number
    there: reading the entry names the field (one line, the entry's file), and ``cache verify`` reports the
    entry's ``modalities`` and goes on. Survivor: in ``integrity.verify_entry_files`` ``except (KeyError,
    TypeError)`` → the TypeError not caught; and before, ``get`` said "field 'int' object is not iterable missing
    or malformed"."""
    from test_run10_gaps import _entry_with_meta

    from gapdiag.cache import integrity
    from gapdiag.errors import CacheError

    cache = _entry_with_meta(tmp_path, edit)
    with pytest.raises(CacheError, match="meta.json") as info:
        cache.get("e")
    assert reason in info.value.message
    (check,) = cache.verify()
    assert check["problems"] == [{"file": "meta.json", "reason": "field 'modalities' missing or malformed"}]
    meta = json.loads((cache.path("e") / "meta.json").read_text())
    assert integrity.verify_entry_files(cache.path("e"), meta, memo=False) == [
        ("meta.json", "field 'modalities' missing or malformed")]
