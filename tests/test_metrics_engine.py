"""compute_all, the registry and the fused retrieval pass against brute-force references."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import reference as ref

from gapdiag.errors import InputError
from gapdiag.metrics import REGISTRY, compute_all
from gapdiag.metrics.blocked import hits_at_k, unit_rows
from gapdiag.metrics.cross import cross_pass
from gapdiag.metrics.engine import _draw
from gapdiag.vectors import EmbeddingSet

DOCS = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"


def _es(
    n: int, per: int, d: int = 12, seed: int = 0, *, labels: bool = False, shuffle: bool = False
) -> EmbeddingSet:
    """``n`` images with ``per`` noisy captions each (text items shuffled if asked), plus optional labels."""
    rng = np.random.default_rng(seed)
    img = rng.normal(size=(n, d)) + 0.7
    ts = np.repeat(np.arange(n), per)
    txt = img[ts] + 1.2 * rng.normal(size=(n * per, d)) - 0.7
    if shuffle:
        order = rng.permutation(ts.size)
        txt, ts = txt[order], ts[order]
    return EmbeddingSet(
        vectors={"image": img.astype(np.float32), "text": txt.astype(np.float32)},
        sample_index={"image": np.arange(n), "text": ts},
        n_samples=n,
        labels=rng.integers(0, 3, n) if labels else None,
    )


def _references(es: EmbeddingSet) -> dict[str, float]:
    x, y = es.vectors["image"], es.vectors["text"]
    xs, ys = es.sample_index["image"], es.sample_index["text"]
    out = {
        "modality_gap/image-text": ref.gap(x, y),
        "cos_tp/image-text": ref.cos_tp(x, y, xs, ys),
        "alignment/image-text": ref.alignment(x, y, xs, ys),
        "cos_nonmatching/image-text": ref.cos_nonmatching(x, y, xs, ys),
        "uniformity_cross/image-text": ref.uniformity_cross(x, y, xs, ys),
        "uniformity_wang_isola/joint": ref.uniformity(np.vstack([x, y])),
        "uniformity_w2/joint": ref.uniformity_w2(x, y),
    }
    for name, z in (("image", x), ("text", y), ("joint", np.vstack([x, y]))):
        out[f"effective_rank/{name}"] = ref.effective_rank(z)
        out[f"rankme/{name}"] = ref.rankme(z)
        if name != "joint":
            out[f"angular_value/{name}"] = ref.angular_value(z)
            out[f"uniformity_wang_isola/{name}"] = ref.uniformity(z)
    for k in (1, 5, 10):
        out[f"recall_at_{k}/image_to_text"] = ref.recall(x, y, xs, ys, k)
        out[f"recall_at_{k}/text_to_image"] = ref.recall(y, x, ys, xs, k)
    return out


@pytest.mark.parametrize("per, shuffle", [(1, False), (5, True)], ids=["1to1", "1to5-shuffled"])
def test_every_metric_matches_its_reference(per, shuffle):
    es = _es(29, per, labels=True, shuffle=shuffle)
    values, extras = compute_all(es, block_size=7, retrieval_engine="blocked", seed=3)
    expected = _references(es)
    for name, want in expected.items():
        assert values[name] == pytest.approx(want, abs=2e-6, rel=1e-6), name
    np.testing.assert_allclose(
        extras["gap_vector/image-text"],
        ref.unit(es.vectors["image"]).mean(0) - ref.unit(es.vectors["text"]).mean(0),
        atol=1e-6,
    )
    np.testing.assert_allclose(
        extras["spectrum/text"],
        np.linalg.svd(ref.unit(es.vectors["text"]), compute_uv=False),
        rtol=1e-6,
        atol=1e-9,
    )
    # Clustering is R's code: here only that the engine hands it the right (normalised) arrays and seed.
    from gapdiag.metrics.clustering import modality_separability, v_measure_class, v_measure_modality

    units = [ref.unit(es.vectors[m]) for m in ("image", "text")]
    labels = [es.labels[es.sample_index[m]] for m in ("image", "text")]
    assert values["v_measure_class/joint"] == pytest.approx(v_measure_class(units, labels, seed=3))
    assert values["v_measure_modality/joint"] == pytest.approx(v_measure_modality(units, seed=3))
    assert values["modality_separability/joint"] == pytest.approx(modality_separability(units, seed=3))


def test_blocked_engine_equals_full_matrix_when_block_does_not_divide_n():
    es = _es(11, 1, d=5, seed=2)
    small, _ = compute_all(es, block_size=3, retrieval_engine="blocked")
    whole, _ = compute_all(es, block_size=4096, retrieval_engine="blocked")
    assert small.keys() == whole.keys()
    for name in small:
        assert small[name] == pytest.approx(whole[name], abs=1e-6), name


# ---------------------------------------------------------------------------------------------------------
# The fused retrieval pass equals FAISS (R's recall_at_k) exactly
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("per", [1, 5])
def test_fused_recall_equals_faiss_recall(per):
    from gapdiag.metrics.retrieval import recall_at_k

    es = _es(203, per, d=16, seed=per, shuffle=True)
    x = unit_rows(es.vectors["image"], "image")
    y = unit_rows(es.vectors["text"], "text")
    xs, ys = es.sample_index["image"], es.sample_index["text"]
    fused = cross_pass(x, y, xs, ys, block_size=64, uniformity=False)
    assert hits_at_k(fused.rank_ab, (1, 5, 10)) == recall_at_k(
        x, y, xs, ys, normalize=False, engine="faiss", device="cpu"
    )
    assert hits_at_k(fused.rank_ba, (1, 5, 10)) == recall_at_k(
        y, x, ys, xs, normalize=False, engine="faiss", device="cpu"
    )
    blocked, _ = compute_all(
        es, ["recall_at_1", "recall_at_5", "recall_at_10"], block_size=64, retrieval_engine="blocked"
    )
    faiss, _ = compute_all(
        es, ["recall_at_1", "recall_at_5", "recall_at_10"], retrieval_engine="faiss", device="cpu"
    )
    assert blocked == faiss
    assert len(blocked) == 6


def test_fused_ranks_break_exact_ties_toward_the_lower_gallery_index():
    """Basis vectors: every score is exactly 0 or 1, so nearly everything ties."""
    eye = np.eye(3, dtype=np.float32)
    queries = eye[[0, 1, 2, 0]]
    gallery = eye[[1, 0, 0, 2, 1, 0]]
    qs, gs = np.array([0, 1, 2, 3]), np.array([9, 3, 0, 2, 1, 4])
    res = cross_pass(queries, gallery, qs, gs, block_size=2, uniformity=False)
    # Query 0 (e0): e0 at gallery 1 (sample 3), 2 (sample 0), 5 -> one tie ahead. Query 3: own item is first.
    np.testing.assert_array_equal(res.rank_ab, [1, 1, 0, 0])
    for k in (1, 2, 3):
        assert hits_at_k(res.rank_ab, [k])[k] == ref.recall(queries, gallery, qs, gs, k)
        assert hits_at_k(res.rank_ba, [k])[k] == ref.recall(gallery, queries, gs, qs, k)


# ---------------------------------------------------------------------------------------------------------
# Modalities, selection, optional metrics
# ---------------------------------------------------------------------------------------------------------
def test_three_modalities_give_every_pair_and_direction():
    es = _es(15, 1)
    es.vectors["audio"] = es.vectors["image"] + np.float32(0.3)
    es.sample_index["audio"] = np.arange(15)
    values, _ = compute_all(es, ["modality_gap", "recall_at_1", "angular_value", "uniformity_wang_isola"])
    assert {k for k in values if k.startswith("modality_gap/")} == {
        "modality_gap/image-text",
        "modality_gap/image-audio",
        "modality_gap/text-audio",
    }
    assert sum(k.startswith("recall_at_1/") for k in values) == 6
    assert "recall_at_1/audio_to_text" in values and "angular_value/audio" in values
    x, y, z = (es.vectors[m] for m in ("image", "text", "audio"))
    assert values["uniformity_wang_isola/joint"] == pytest.approx(
        ref.uniformity(np.vstack([x, y, z])), abs=2e-6
    )


def test_one_modality_is_rejected():
    es = _es(5, 1)
    del es.vectors["text"]
    with pytest.raises(InputError, match="at least 2 modalities"):
        compute_all(es)


def test_unknown_metric_lists_the_valid_names():
    with pytest.raises(InputError, match="unknown metric.*valid names: modality_gap, cos_tp"):
        compute_all(_es(5, 1), ["modality_gapp"])


def test_full_names_select_single_values():
    values, _ = compute_all(_es(9, 1), ["cos_tp/image-text", "angular_value/text", "modality_gap"])
    assert set(values) == {"cos_tp/image-text", "angular_value/text", "modality_gap/image-text"}
    with pytest.raises(InputError, match="not produced"):
        compute_all(_es(9, 1), ["cos_tp/text-image"])


def test_class_metrics_are_skipped_without_labels_and_computed_with_them():
    values, extras = compute_all(_es(12, 1))
    assert not any(k.split("/")[0] in {"v_measure_class", "zero_shot_accuracy", "arithmetic_accuracy"} for k in values)
    assert {"v_measure_class/joint", "zero_shot_accuracy/image", "arithmetic_accuracy/image"} <= set(extras["skipped"])
    values, _ = compute_all(_es(12, 1, labels=True), ["v_measure_class"])
    assert 0.0 <= values["v_measure_class/joint"] <= 1.0


def test_zero_shot_in_blocks_equals_one_call():
    from gapdiag.metrics.zeroshot import zero_shot_accuracy

    es = _es(40, 1, labels=True)
    es.class_embeddings = np.random.default_rng(1).normal(size=(3, 12)).astype(np.float32)
    values, _ = compute_all(es, ["zero_shot_accuracy"], block_size=2)  # blocks of 16 images
    want = zero_shot_accuracy(es.vectors["image"], es.class_embeddings, es.labels, device="cpu")
    assert values["zero_shot_accuracy/image"] == pytest.approx(want)


def test_arithmetic_gets_the_image_rows_with_their_attributes():
    from gapdiag.metrics.arithmetic import arithmetic_accuracy

    rng = np.random.default_rng(2)
    colours, shapes = np.array(["red", "blue", "green"]), np.array(["cube", "ball"])
    es = _es(30, 2)
    es.attributes = {"colour": colours[np.arange(30) % 3], "shape": shapes[np.arange(30) // 3 % 2]}
    es.attribute_embeddings = {w: rng.normal(size=12).astype(np.float32) for w in [*colours, *shapes]}
    values, _ = compute_all(es, ["arithmetic_accuracy"], seed=5)
    want = arithmetic_accuracy(es.vectors["image"], es.attributes, es.attribute_embeddings, seed=5)
    assert values["arithmetic_accuracy/image"] == pytest.approx(want)


def test_pair_metrics_need_one_side_with_one_item_per_sample():
    es = _es(6, 1)
    es.sample_index["image"] = np.array([0, 0, 1, 1, 2, 2])
    es.sample_index["text"] = np.array([0, 0, 1, 1, 2, 2])
    with pytest.raises(InputError, match="neither has exactly one item per sample"):
        compute_all(es, ["cos_tp"])
    values, _ = compute_all(es, ["modality_gap", "uniformity_cross"])  # these need no pairing
    assert set(values) == {"modality_gap/image-text", "uniformity_cross/image-text"}


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (lambda es: es.vectors.__setitem__("text", es.vectors["text"][:, :5]), "dimension mismatch"),
        (lambda es: es.sample_index.__setitem__("text", np.arange(3)), "sample_index has shape"),
        (lambda es: es.vectors["image"].__setitem__((2, 1), np.nan), "image: item 2 contains NaN"),
        (lambda es: es.vectors["text"].__setitem__(4, 0.0), "text: item 4 is a zero vector"),
        (lambda es: es.vectors.__setitem__("text", np.zeros((0, 12), np.float32)), "empty"),
    ],
)
def test_bad_embedding_sets_raise_one_line_input_errors(mutate, needle):
    es = _es(8, 1)
    mutate(es)
    with pytest.raises(InputError) as excinfo:
        compute_all(es)
    assert needle in str(excinfo.value) and "\n" not in str(excinfo.value)


def test_bad_options_raise_input_errors():
    with pytest.raises(InputError, match="retrieval_engine"):
        compute_all(_es(5, 1), retrieval_engine="annoy")
    with pytest.raises(InputError, match="sample must be"):
        compute_all(_es(5, 1), sample=0)


# ---------------------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------------------
def test_sampling_keeps_every_item_of_the_drawn_samples():
    es = _es(20, 5, shuffle=True)
    rows = _draw(20, es.sample_index, 7, seed=4)
    drawn = np.unique(es.sample_index["image"][rows["image"]])
    assert drawn.size == 7
    text_samples = es.sample_index["text"][rows["text"]]
    assert set(text_samples) == set(drawn) and np.all(np.bincount(text_samples)[drawn] == 5)
    assert np.all(np.diff(rows["text"]) > 0)  # original order kept


def test_sampling_is_deterministic_and_only_touches_quadratic_metrics():
    es = _es(40, 5, shuffle=True, labels=True)
    a, ea = compute_all(es, sample=12, seed=7)
    b, _ = compute_all(es, sample=12, seed=7)
    c, _ = compute_all(es, sample=12, seed=8)
    full, _ = compute_all(es)
    assert a == b
    assert ea["variants"]["sample"] == {"size": 12, "seed": 7}
    for name in a:
        if REGISTRY[name.split("/")[0]].quadratic:
            continue
        assert a[name] == full[name], name
    assert a["uniformity_wang_isola/text"] != c["uniformity_wang_isola/text"]
    # The sampled value is the exact value on the drawn samples' items.
    rows = _draw(40, es.sample_index, 12, seed=7)
    x, y = es.vectors["image"][rows["image"]], es.vectors["text"][rows["text"]]
    xs, ys = es.sample_index["image"][rows["image"]], es.sample_index["text"][rows["text"]]
    assert a["uniformity_cross/image-text"] == pytest.approx(ref.uniformity_cross(x, y, xs, ys), abs=2e-6)
    assert a["recall_at_1/text_to_image"] == pytest.approx(ref.recall(y, x, ys, xs, 1))


def test_memory_mapped_float16_cache_with_sampling(tmp_path):
    es = _es(30, 1)
    for m in ("image", "text"):
        np.save(tmp_path / f"{m}.npy", es.vectors[m].astype(np.float16))
    mm = EmbeddingSet(
        vectors={m: np.load(tmp_path / f"{m}.npy", mmap_mode="r") for m in ("image", "text")},
        sample_index=es.sample_index,
        n_samples=30,
    )
    as32 = EmbeddingSet(
        vectors={m: np.asarray(v, dtype=np.float32) for m, v in mm.vectors.items()},
        sample_index=es.sample_index,
        n_samples=30,
    )
    got, _ = compute_all(mm, sample=10, seed=1, block_size=4)
    want, _ = compute_all(as32, sample=10, seed=1, block_size=4)
    for name in want:
        assert got[name] == pytest.approx(want[name], abs=1e-6), name


# ---------------------------------------------------------------------------------------------------------
# Registry facts and docs
# ---------------------------------------------------------------------------------------------------------
def test_every_value_is_registered_and_within_its_bounds():
    es = _es(25, 5, labels=True)
    values, _ = compute_all(es)
    kinds = {
        "pair": {"image-text"},
        "modality": {"image", "text"},
        "joint": {"joint"},
        "image": {"image"},
        "direction": {"image_to_text", "text_to_image"},
    }
    for name, value in values.items():
        base, _, qualifier = name.partition("/")
        info = REGISTRY[base]
        allowed = kinds[info.qualifier] | ({"joint"} if info.also_joint else set())
        assert qualifier in allowed, name
        lo, hi = info.bounds
        assert math.isfinite(value), name
        assert (lo is None or value >= lo - 1e-9) and (hi is None or value <= hi + 1e-9), (name, value)
    produced = {n.split("/")[0] for n in values}
    two_models = {b for b, info in REGISTRY.items() if info.two_models}  # produced by compare, not compute_all
    assert produced == set(REGISTRY) - {"zero_shot_accuracy", "arithmetic_accuracy"} - two_models


def test_every_registered_metric_has_a_docs_section():
    headings = re.findall(r"^#{2,4} (.*)$", DOCS.read_text(encoding="utf-8"), flags=re.MULTILINE)
    documented = {name for line in headings for name in re.findall(r"`([a-z0-9_]+)`", line)}
    missing = set(REGISTRY) - documented
    assert not missing, f"docs/metrics.md lacks a section for {sorted(missing)}"


def test_a_modality_with_a_single_item_reports_no_nan():
    es = _es(6, 1)
    es.vectors["image"] = es.vectors["image"][:1]
    es.sample_index["image"] = np.array([0])
    values, extras = compute_all(es, ["uniformity_wang_isola"])
    assert "uniformity_wang_isola/image" not in values and "uniformity_wang_isola/image" in extras["skipped"]
    assert not any(math.isnan(v) for v in values.values())


@pytest.mark.parametrize("engine", ["hnsw", "ivf"])
def test_approximate_engines_report_their_agreement_with_exact_search(engine):
    es = _es(400, 2, d=16, seed=5)
    names = ["recall_at_1", "recall_at_10"]
    exact, exact_extras = compute_all(es, names, retrieval_engine="faiss", device="cpu")
    approx, extras = compute_all(es, names, retrieval_engine=engine, device="cpu")
    assert "retrieval_agreement" not in exact_extras
    assert set(extras["retrieval_agreement"]) == {"image_to_text", "text_to_image"}
    assert all(0.9 <= a <= 1.0 for a in extras["retrieval_agreement"].values())
    assert extras["variants"]["retrieval_engine"] == engine
    # An index that finds (nearly) all of the exact top-10 gives (nearly) the exact recalls.
    for name, value in exact.items():
        assert abs(approx[name] - value) <= 0.02, name


def test_quadratic_passes_report_their_tiles_for_a_progress_bar():
    es = _es(50, 2, d=8, seed=2)  # 50 images, 100 captions; block 16 -> 4 and 7 tiles per side
    calls: dict[str, list[tuple[int, int]]] = {}
    with_ticks, _ = compute_all(es, ["uniformity_wang_isola", "recall_at_1"], block_size=16,
                                retrieval_engine="blocked",
                                on_tile=lambda step, done, total: calls.setdefault(step, []).append((done, total)))
    without, _ = compute_all(es, ["uniformity_wang_isola", "recall_at_1"], block_size=16,
                             retrieval_engine="blocked")
    assert with_ticks == without
    # One tick per product: the 6 tiles right of the diagonal of 4 x 4, and each diagonal tile in 4 row bands
    # (the last one has 2 rows: 2 bands).
    assert calls["uniformity image"] == [(i, 20) for i in range(1, 21)]
    assert calls["uniformity text"][-1] == (49, 49)  # 7 x 7: 21 right of the diagonal, 6 x 4 + 4 bands
    # 4 row tiles x 19 column bands: 84 columns in bands of 8 (the last of 4), the last 16 in bands of 2.
    assert calls["cross pass image-text"] == [(i, 76) for i in range(1, 77)]


@pytest.mark.parametrize(("asked", "reason"), [
    (["zero_shot_accuracy"], "zero_shot_accuracy: needs class_embeddings and labels"),
    (["modality_gap", "v_measure_class"], "v_measure_class: needs class labels"),
    (["arithmetic_accuracy/image"], "arithmetic_accuracy/image: needs attributes"),
])
def test_a_metric_asked_for_by_name_that_cannot_be_computed_is_an_error_saying_why(asked, reason):
    with pytest.raises(InputError) as err:
        compute_all(_es(12, 1), asked)
    assert reason in str(err.value) and "\n" not in str(err.value)


def test_one_class_skips_class_v_measure_by_default_and_is_an_error_by_name():
    es = _es(12, 1, labels=True)
    es.labels = np.zeros(12, dtype=np.int64)
    values, extras = compute_all(es)  # the default set: every other metric still computed
    assert "v_measure_class/joint" not in values and "modality_gap/image-text" in values
    assert extras["skipped"]["v_measure_class/joint"] == "needs at least 2 classes (the data has 1)"
    with pytest.raises(InputError, match=r"v_measure_class: needs at least 2 classes \(the data has 1\)"):
        compute_all(es, ["v_measure_class"])


def test_a_base_name_partly_produced_keeps_its_values_and_the_reason_for_the_rest():
    values, extras = compute_all(_es(6, 2), ["recall_at_10"])  # 6 images: K=10 only fits the 12 texts
    assert set(values) == {"recall_at_10/image_to_text"}
    assert "exceeds the gallery" in extras["skipped"]["recall_at_10/text_to_image"]


# ---------------------------------------------------------------------------------------------- the measure command


def _one_class_manifest(root: Path) -> Path:
    from data_fixtures import digits_manifest, write_csv

    path, rows = digits_manifest(root, n=6)
    header = ["image", "caption_1", "caption_2", "label", "class_name", "split"]
    return write_csv(path, header, [[*row[:3], 0, "zero", row[5]] for row in rows])  # one class for every row


def test_measure_on_one_class_skips_class_v_measure_and_says_so(capsys, tiny_checkpoint, tmp_path):
    import json

    from cli_helpers import assert_one_line_error, gapdiag

    path = _one_class_manifest(tmp_path / "one-class")
    code, out, err = gapdiag(capsys, "measure", "-m", tiny_checkpoint, "-d", path, "--json", "-q")
    assert code == 0, err
    report = json.loads(out)
    assert "v_measure_class/joint" not in report["metrics"] and "modality_gap/image-text" in report["metrics"]
    reason = "needs at least 2 classes (the data has 1)"
    assert report["skipped"]["v_measure_class/joint"] == reason
    assert report["skipped"]["zero_shot_accuracy/image"] == reason  # one prompt class: every image is "right"
    assert f"skipped metric: v_measure_class/joint: {reason}" in err.splitlines()

    code, out, err = gapdiag(capsys, "measure", "-m", tiny_checkpoint, "-d", path, "--metrics", "v_measure_class",
                             "-q")
    assert_one_line_error(code, out, err, "v_measure_class", reason)


def test_measure_names_the_rows_skip_bad_dropped_on_stderr(capsys, tiny_checkpoint, tmp_path):
    import json

    from cli_helpers import gapdiag
    from data_fixtures import digits_manifest

    path, _ = digits_manifest(tmp_path / "broken", n=6)
    (path.parent / "images" / "digit_2.png").unlink()
    code, out, err = gapdiag(capsys, "measure", "-m", tiny_checkpoint, "-d", path, "--skip-bad", "--json",
                             "--metrics", "modality_gap")
    assert code == 0, err
    skipped = json.loads(out)["provenance"]["skipped"]
    assert len(skipped) == 1 and "digit_2.png" in skipped[0]
    assert [line for line in err.splitlines() if line.startswith("skipped:")] == [f"skipped: {skipped[0]}"]


def test_the_linear_pass_keeps_the_unit_vectors_the_quadratic_step_would_make():
    from gapdiag.metrics.blocked import linear_stats, paired_dot_sum
    from gapdiag.metrics.engine import true_pair_items

    es = _es(70, 3, d=7, seed=6, shuffle=True)
    x, y = es.vectors["image"], es.vectors["text"]
    kept = np.empty(y.shape, dtype=np.float32)
    stats = linear_stats(y, "text", block_size=16, units_out=kept)
    assert np.array_equal(kept, unit_rows(y, "text", block_size=16))
    assert np.array_equal(stats.total, linear_stats(y, "text", block_size=16).total)
    ia, ib = true_pair_items(es.sample_index["image"], es.sample_index["text"], "image", "text")
    # The paired pass on kept unit vectors gives the same float as on the raw vectors (gathered, shuffled pairs).
    assert paired_dot_sum(unit_rows(x, "image"), kept, ia, ib, block_size=16, checked_units=True) == paired_dot_sum(
        x, y, ia, ib, block_size=16)
    # compute_all: the quadratic metrics are the same whether their unit vectors were kept by the linear pass (all
    # metrics) or made by the quadratic step itself (no linear metric asked for, so no linear pass).
    quadratic = ["uniformity_wang_isola", "uniformity_cross", "recall_at_1", "recall_at_5", "hubness_skewness"]
    alone, _ = compute_all(es, quadratic, block_size=16, retrieval_engine="blocked")
    with_linear, _ = compute_all(es, block_size=16, retrieval_engine="blocked")
    assert alone and alone == {k: with_linear[k] for k in alone}



def test_the_search_backend_is_recorded_only_when_retrieval_searched():
    """``variants`` is the provenance of the values: a pair pass without retrieval names no engine and no search
    backend, whatever engine was asked for (docs/metrics-retrieval.md); a run with retrieval names both."""
    es = _es(30, 1)
    _, without = compute_all(es, ["uniformity_cross"], retrieval_engine="faiss", device="cpu")
    assert without["variants"].get("retrieval_engine") is None and "search_backend" not in without["variants"]
    _, with_recall = compute_all(es, ["uniformity_cross", "recall_at_1"], retrieval_engine="faiss", device="cpu")
    assert with_recall["variants"]["retrieval_engine"] == "faiss"
    assert with_recall["variants"]["search_backend"] == "faiss-cpu"
