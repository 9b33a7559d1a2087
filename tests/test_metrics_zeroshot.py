"""Zero-shot classification and multimodal arithmetic against hand-built cases and brute-force loops."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from gapdiag.errors import InputError
from gapdiag.metrics.arithmetic import arithmetic_accuracy
from gapdiag.metrics.zeroshot import build_classifier, zero_shot_accuracy


def _unit(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# ---------------------------------------------------------------------------------------------- zero-shot
def test_build_classifier_matches_a_per_class_loop():
    rng = np.random.default_rng(0)
    n_classes, n_templates, d = 4, 3, 6
    prompts = rng.normal(size=(n_classes * n_templates, d)) * rng.uniform(
        0.5, 4, size=(n_classes * n_templates, 1)
    )
    expected = np.stack(
        [
            _unit(sum(_unit(prompts[c * n_templates + t]) for t in range(n_templates)))
            for c in range(n_classes)
        ]
    )
    got = build_classifier(prompts.astype(np.float32), n_classes, n_templates)
    assert got.shape == (n_classes, d) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_single_template_classifier_is_the_normalised_prompt():
    prompts = np.array([[3.0, 4.0], [0.0, -2.0]])
    np.testing.assert_allclose(build_classifier(prompts, 2, 1), [[0.6, 0.8], [0.0, -1.0]], atol=1e-7)


def test_zero_shot_hand_built_case():
    classes = np.eye(3)
    images = np.array([[1, 0.1, 0], [0.2, 1, 0], [0, 0, 5], [0.9, 1, 0], [0, 0.1, 0.2]])
    # predictions: 0, 1, 2, 1, 2
    labels = np.array([0, 1, 2, 0, 1])
    assert zero_shot_accuracy(images, classes, labels, device="cpu") == pytest.approx(3 / 5)


def test_zero_shot_ties_go_to_the_lower_class():
    classes = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    image = np.array([[1.0, 0.0]])
    assert zero_shot_accuracy(image, classes, [1], device="cpu") == 1.0
    assert zero_shot_accuracy(image, classes, [2], device="cpu") == 0.0


def test_zero_shot_matches_argmax_reference_and_normalisation_flag():
    rng = np.random.default_rng(1)
    classes = rng.normal(size=(7, 12)) * rng.uniform(0.2, 5, size=(7, 1))
    images = rng.normal(size=(60, 12))
    labels = rng.integers(0, 7, size=60)
    cosine = _unit(images) @ _unit(classes).T
    assert zero_shot_accuracy(images, classes, labels, device="cpu") == pytest.approx(
        np.mean(cosine.argmax(1) == labels)
    )
    raw = images @ classes.T
    got_raw = zero_shot_accuracy(
        images.astype(np.float32), classes.astype(np.float32), labels, normalize=False, device="cpu"
    )
    assert got_raw == pytest.approx(np.mean(raw.argmax(1) == labels))
    assert not np.array_equal(cosine.argmax(1), raw.argmax(1))  # the flag is really tested


@pytest.mark.parametrize(
    "call, fragment",
    [
        (lambda: build_classifier(np.ones((5, 3)), 2, 3), "6"),
        (lambda: build_classifier(np.array([[1.0, 0.0], [-1.0, 0.0]]), 1, 2), "average to zero"),
        (lambda: zero_shot_accuracy(np.ones((3, 2)), np.eye(2), [0, 1], device="cpu"), "one label per image"),
        (lambda: zero_shot_accuracy(np.ones((2, 2)), np.eye(2), [0, 2], device="cpu"), "[0, 2)"),
        (lambda: zero_shot_accuracy(np.ones((2, 3)), np.eye(2), [0, 1], device="cpu"), "dim"),
        (lambda: zero_shot_accuracy(np.full((2, 2), np.nan), np.eye(2), [0, 1], device="cpu"), "NaN"),
    ],
)
def test_zero_shot_bad_input(call, fragment):
    with pytest.raises(InputError) as info:
        call()
    assert fragment in str(info.value) and "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------- arithmetic
def composed_dataset(values: dict[str, list[str]], combos, copies: int, noise: float, seed: int):
    """Images = sum of one orthonormal direction per attribute value (+ noise); text(v) = v's direction."""
    rng = np.random.default_rng(seed)
    words = [w for ws in values.values() for w in ws]
    dim = len(words) + 4
    direction = dict(zip(words, np.eye(dim)))
    rows = [combo for combo in combos for _ in range(copies)]
    attributes = {name: np.array([combo[a] for combo in rows]) for a, name in enumerate(values)}
    images = np.stack([sum(direction[w] for w in combo) for combo in rows])
    images = images + noise * rng.normal(size=images.shape)
    return images, attributes, direction


def ref_arithmetic_all_pairs(images, attributes, embeddings):
    """Every valid (image, attribute) query; each attribute has two values, so the target value is fixed."""
    x = _unit(images)
    names = sorted(attributes)
    rows = list(zip(*(attributes[n] for n in names)))
    hits = total = 0
    for i, combo in enumerate(rows):
        for a, name in enumerate(names):
            other = [v for v in set(attributes[name]) if v != combo[a]]
            assert len(other) == 1
            target = combo[:a] + (other[0],) + combo[a + 1 :]
            if target not in rows:
                continue
            q = _unit(x[i] - _unit(embeddings[combo[a]]) + _unit(embeddings[other[0]]))
            scores = x @ q
            scores[i] = -np.inf
            answer = int(np.argmax(scores))
            total += 1
            hits += rows[answer] == target
    return hits / total


def test_arithmetic_is_exact_when_attributes_add_up():
    values = {"color": ["red", "green", "blue"], "shape": ["cube", "ball", "cone"]}
    combos = list(itertools.product(*values.values()))
    images, attributes, text = composed_dataset(values, combos, copies=2, noise=0.0, seed=0)
    assert arithmetic_accuracy(images, attributes, text, device="cpu") == 1.0


def test_arithmetic_on_random_vectors_is_near_chance():
    values = {"color": ["red", "green", "blue"], "shape": ["cube", "ball", "cone"]}
    combos = list(itertools.product(*values.values()))
    _, attributes, _ = composed_dataset(values, combos, copies=4, noise=0.0, seed=1)
    rng = np.random.default_rng(1)
    images = rng.normal(size=(36, 16))
    text = {w: rng.normal(size=16) for ws in values.values() for w in ws}
    assert arithmetic_accuracy(images, attributes, text, device="cpu") < 0.4  # chance is 4/35


@pytest.mark.parametrize("noise", [0.45, 1.0])  # at 1.0 the query image is often its own nearest neighbour
def test_arithmetic_matches_brute_force_on_an_incomplete_noisy_grid(noise):
    values = {"color": ["red", "blue"], "shape": ["cube", "ball"], "size": ["big", "small"]}
    combos = [c for c in itertools.product(*values.values()) if c != ("blue", "ball", "small")]
    images, attributes, text = composed_dataset(values, combos, copies=3, noise=noise, seed=2)
    got = arithmetic_accuracy(images, attributes, text, max_queries=10**6, device="cpu")
    assert got == pytest.approx(ref_arithmetic_all_pairs(images, attributes, text), abs=1e-12)
    assert 0.0 < got < 1.0


def test_arithmetic_draws_are_seeded_and_capped():
    values = {"color": ["red", "green", "blue", "pink"], "shape": ["cube", "ball", "cone"]}
    combos = list(itertools.product(*values.values()))
    images, attributes, text = composed_dataset(values, combos, copies=2, noise=0.5, seed=3)
    a = arithmetic_accuracy(images, attributes, text, seed=4, max_queries=25, device="cpu")
    assert a == arithmetic_accuracy(images, attributes, text, seed=4, max_queries=25, device="cpu")
    assert (a * 25) == pytest.approx(round(a * 25))  # a hit count over exactly 25 queries


@pytest.mark.parametrize(
    "change, fragment",
    [
        (lambda img, att, txt: (img, att, {k: v for k, v in txt.items() if k != "blue"}), "'blue'"),
        (lambda img, att, txt: (img, {**att, "color": att["color"][:-1]}, txt), "color"),
        (lambda img, att, txt: (img, {}, txt), "attributes is empty"),
        (lambda img, att, txt: (img, {"color": np.full(len(img), "red")}, txt), "differs in exactly one"),
        (lambda img, att, txt: (img, att, {k: np.append(v, 0.0) for k, v in txt.items()}), "dim"),
        (lambda img, att, txt: (np.full_like(img, np.nan), att, txt), "NaN"),
    ],
)
def test_arithmetic_bad_input(change, fragment):
    values = {"color": ["red", "blue"], "shape": ["cube", "ball"]}
    images, attributes, text = composed_dataset(values, list(itertools.product(*values.values())), 1, 0.0, 0)
    with pytest.raises(InputError) as info:
        arithmetic_accuracy(*change(images, attributes, text), device="cpu")
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_a_class_whose_prompts_average_to_zero_is_named():
    """Two templates of class 2 that cancel (opposite unit vectors) leave it no direction: the error names it."""
    from gapdiag.metrics.zeroshot import build_classifier

    prompts = np.tile(np.eye(4, dtype=np.float32), (1, 2)).reshape(8, 4)  # class c: e_c twice
    prompts[5] = -prompts[4]  # class 2: e_2 and -e_2
    with pytest.raises(InputError, match="the prompt embeddings of class 2 average to zero"):
        build_classifier(prompts, n_classes=4, n_templates=2)
