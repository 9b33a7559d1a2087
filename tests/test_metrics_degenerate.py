"""Every registered metric on degenerate inputs, through ``compute_all`` (the entry point ``measure`` uses).

The property: every value ``compute_all`` returns lies inside its registry bounds *and* its documented range
(docs/metrics.md, "Degenerate inputs"), with no tolerance; a value that cannot be computed is absent from the
values and present in ``extras["skipped"]`` with a reason that names its real cause. The inputs are the ones
that broke this before: duplicated items, a modality whose vectors are all identical, two samples, two
dimensions, a closed gap (each text vector equal to its image's) and everything identical at once.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from gapdiag.metrics import REGISTRY, compute_all
from gapdiag.metrics.bounds import keep_in_bounds, rounding_slack
from gapdiag.metrics.similarity import compare_embeddings
from gapdiag.vectors import EmbeddingSet


def _es(img: np.ndarray, txt: np.ndarray, per: int = 1, labels: bool = True) -> EmbeddingSet:
    """Image and text vectors, with (``labels``) three classes, a zero-shot classifier and two attributes."""
    n, d = img.shape
    rng = np.random.default_rng(99)
    colours, shapes = np.array(["red", "blue", "green"]), np.array(["cube", "ball"])
    return EmbeddingSet(
        vectors={"image": img.astype(np.float32), "text": txt.astype(np.float32)},
        sample_index={"image": np.arange(n), "text": np.repeat(np.arange(n), per)},
        n_samples=n,
        labels=np.arange(n) % 3 if labels else None,
        class_embeddings=rng.normal(size=(3, d)).astype(np.float32) if labels else None,
        attributes={"colour": colours[np.arange(n) % 3], "shape": shapes[np.arange(n) // 3 % 2]} if labels else None,
        attribute_embeddings={w: rng.normal(size=d).astype(np.float32) for w in [*colours, *shapes]},
    )


def _random(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    img = rng.normal(size=(n, d)) + 0.5
    return img, img + rng.normal(size=(n, d)) - 0.5


def _duplicates() -> EmbeddingSet:
    img, txt = _random(40, 16, 0)
    img[30:] = img[:10]  # ten images repeat earlier ones exactly (a repeated file)
    txt[20:] = txt[0]  # half the captions are one template caption
    return _es(img, txt)


def _identical_image() -> EmbeddingSet:
    img, txt = _random(30, 16, 1)
    img[:] = img[0]
    return _es(img, txt)


def _two_samples() -> EmbeddingSet:
    return _es(*_random(2, 16, 2), labels=False)


def _two_dims() -> EmbeddingSet:
    return _es(*_random(40, 2, 3))


def _gap_closed() -> EmbeddingSet:
    img, _ = _random(60, 24, 4)
    return _es(img, img.copy())  # every caption vector equals its image's: no gap at all


def _gap_closed_one_to_three() -> EmbeddingSet:
    img, _ = _random(50, 24, 5)
    rng = np.random.default_rng(5)
    txt = np.repeat(img, 3, axis=0) + 1e-3 * rng.normal(size=(150, 24))
    return _es(img, txt, per=3)


def _all_identical() -> EmbeddingSet:
    v = np.ones((20, 8))
    return _es(v, v.copy())


CASES = {
    "duplicates": _duplicates,
    "identical image vectors": _identical_image,
    "N=2": _two_samples,
    "d=2": _two_dims,
    "gap closed": _gap_closed,
    "gap closed 1:3": _gap_closed_one_to_three,
    "all identical": _all_identical,
}


def _documented_low(base: str, es: EmbeddingSet, qualifier: str) -> float | None:
    """Lower ends of the docs table that depend on the data; None where the registry bound is the range."""
    if base in ("modality_separability", "raw_separability"):
        return 1.0 / len(es.modality_names)  # chance for M balanced modalities
    if base == "angular_value":
        n = es.vectors[qualifier].shape[0]
        return -1.0 / (n - 1)
    return None


@pytest.fixture(scope="module", params=list(CASES))
def measured(request):
    es = CASES[request.param]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # k-means on identical points warns that it found fewer clusters
        values, extras = compute_all(es, seed=0, device="cpu")
    return request.param, es, values, extras


def test_every_value_lies_in_its_registry_bounds_and_documented_range(measured):
    case, es, values, _ = measured
    outside = []
    for name, value in values.items():
        base, _, qualifier = name.partition("/")
        lo, hi = REGISTRY[base].bounds
        doc_lo = _documented_low(base, es, qualifier)
        ok = math.isfinite(value) and (lo is None or value >= lo) and (hi is None or value <= hi)
        ok = ok and (doc_lo is None or value >= doc_lo)
        if not ok:
            outside.append(f"{name}={value!r} (bounds {lo}, {hi}{'' if doc_lo is None else f'; >= {doc_lo}'})")
    assert not outside, f"{case}: {outside}"


def test_every_skipped_value_says_why_and_is_not_reported(measured):
    _, _, values, extras = measured
    skipped = extras["skipped"]
    assert not set(skipped) & set(values)
    assert all(isinstance(why, str) and why.strip() for why in skipped.values())
    bugs = {name: why for name, why in skipped.items() if "bug" in why}  # keep_in_bounds found a value far out
    assert not bugs


def test_each_skip_names_its_real_cause():
    two = compute_all(_two_samples(), ["twonn_dimension"], device="cpu")[1]["skipped"]
    for q in ("image", "text"):
        assert "at least 3 points" in two[f"twonn_dimension/{q}"], two
        assert "duplicate" not in two[f"twonn_dimension/{q}"]


def test_identical_vectors_give_the_closed_forms_or_no_value():
    # 1000 copies of one vector: the streamed covariance holds ~5e-15 of rounding, on which IsoScore read 0.0057,
    # and the float32 scores put the uniformity above 0 and the angular value above 1.
    d = 64
    rng = np.random.default_rng(0)
    img = np.repeat(rng.normal(size=(1, d)), 1000, axis=0)
    es = _es(img, rng.normal(size=(1000, d)), labels=False)
    values, extras = compute_all(es, ["twonn_dimension", "isoscore", "uniformity_wang_isola", "angular_value"],
                                 device="cpu")
    skipped = extras["skipped"]
    assert "1 distinct" in skipped["twonn_dimension/image"] and "1000" in skipped["twonn_dimension/image"]
    assert "no variance" in skipped["isoscore/image"] and "isoscore/text" in values
    slack = rounding_slack(d)
    assert -slack <= values["uniformity_wang_isola/image"] <= 0.0  # closed form: log 1 = 0
    assert 1.0 - slack <= values["angular_value/image"] <= 1.0  # closed form: 1


def test_a_value_past_its_bound_by_rounding_is_the_bound_and_further_out_is_skipped_as_a_bug():
    values = {"uniformity_wang_isola/image": 8.7e-7, "isoscore/text": -1e-17, "cos_tp/image-text": 1.5,
              "angular_value/text": 0.25}
    skipped: dict[str, str] = {}
    keep_in_bounds(values, skipped, 512)
    assert values == {"uniformity_wang_isola/image": 0.0, "isoscore/text": 0.0, "angular_value/text": 0.25}
    assert "1.5" in skipped["cos_tp/image-text"] and "bug" in skipped["cos_tp/image-text"]
    assert "[-1.0, 1.0]" in skipped["cos_tp/image-text"]
    edge = {"uniformity_wang_isola/image": rounding_slack(512), "uniformity_w2/joint": 1.0}
    keep_in_bounds(edge, skipped, 512)  # exactly the slack past the bound still counts as rounding
    assert edge == {"uniformity_wang_isola/image": 0.0}
    assert "[-inf, 0.0]" in skipped["uniformity_w2/joint"]
    assert rounding_slack(512) == pytest.approx(2.44e-4, rel=1e-3)
    small = {"uniformity_wang_isola/image": 1e-5}
    keep_in_bounds(small, skipped, 2)  # 2 dimensions: rounding reaches only ~1e-6
    assert not small and "1e-05" in skipped["uniformity_wang_isola/image"]


def test_closed_gap_reads_as_inseparable_not_as_better_than_chance():
    values, extras = compute_all(_gap_closed(), ["modality_separability", "modality_gap", "v_measure_modality"],
                                 device="cpu")
    assert values["modality_gap/image-text"] == 0.0
    assert values["modality_separability/joint"] == 0.5
    (note,) = [n for n in extras.get("notes", []) if "modality_separability/joint" in n]
    assert "below chance" in note


def test_an_open_gap_is_separable_with_no_below_chance_note():
    """The "below chance" note is for a held-out accuracy under 1/M only: an open gap (separable, accuracy well
    above chance) reports its accuracy and no such note."""
    img, txt = _random(60, 24, 4)
    values, extras = compute_all(_es(img + 3.0, txt - 3.0), ["modality_separability"], device="cpu")
    assert values["modality_separability/joint"] > 0.9
    assert not [n for n in extras.get("notes", []) if "modality_separability" in n], extras.get("notes")


def test_the_cases_exercise_every_metric_compute_all_produces():
    produced: set[str] = set()
    for make in CASES.values():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            produced |= {name.split("/")[0] for name in compute_all(make(), device="cpu")[0]}
    assert produced == {base for base, info in REGISTRY.items() if not info.two_models}


# Two models (compare, and check against a cached baseline): compare_embeddings is their entry point.
def _pair(x: np.ndarray, y: np.ndarray) -> tuple[EmbeddingSet, EmbeddingSet]:
    return _es(x, x[::-1].copy(), labels=False), _es(y, y[::-1].copy(), labels=False)


TWO_MODEL_CASES = {
    "the same vectors": lambda: _pair(*[_random(30, 8, 6)[0]] * 2),
    "duplicates": lambda: _pair(np.repeat(_random(10, 8, 7)[0], 3, axis=0), _random(30, 8, 8)[0]),
    "one model constant": lambda: _pair(np.repeat(_random(1, 8, 14)[0], 300, axis=0), _random(300, 8, 9)[0]),
    "three items": lambda: _pair(_random(3, 8, 10)[0], _random(3, 8, 11)[0]),
    "d=2": lambda: _pair(_random(30, 2, 12)[0], _random(30, 2, 13)[0]),
}


@pytest.mark.parametrize("case", list(TWO_MODEL_CASES))
def test_two_model_metrics_stay_in_their_bounds_or_say_why_not(case):
    values, extras = compare_embeddings(*TWO_MODEL_CASES[case]())
    for name, value in values.items():
        info = REGISTRY[name.split("/")[0]]
        lo, hi = info.bounds
        assert info.two_models and (lo is None or value >= lo) and (hi is None or value <= hi), (name, value)
    skipped = extras["skipped"]
    assert not set(skipped) & set(values) and not any("bug" in why for why in skipped.values())
    for q in ("image", "text", "joint"):  # every two-model metric of every set has a value or a reason
        assert {f"{b}/{q}" for b, info in REGISTRY.items() if info.two_models} <= set(values) | set(skipped)
    if case == "one model constant":
        assert "no variance" in skipped["linear_cka/image"] and "no variance" in skipped["linear_cka_biased/image"]
    if case == "three items":
        assert "at least 4 items" in skipped["linear_cka/image"] and "linear_cka_biased/image" in values
    if case == "the same vectors":
        assert all(1 - 1e-12 <= values[f"{b}/image"] <= 1 for b in ("linear_cka", "linear_cka_biased"))
