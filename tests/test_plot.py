"""Tests of gapdiag.figures and the `gapdiag plot` command on small synthetic embeddings (two cones).

Figures are checked through their artists (scatter offsets, pair segments, bar heights, line data) against
references computed here with numpy, and through the files they write (PNG decodes, SVG parses, PDF header).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from cli_helpers import assert_one_line_error, gapdiag
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.colors import to_rgba
from PIL import Image

from gapdiag import figures as gplot
from gapdiag.cli import run
from gapdiag.errors import InputError, ProvenanceError
from gapdiag.figures.compare import VERDICT_COLORS
from gapdiag.report import Report
from gapdiag.vectors import EmbeddingSet

PROVENANCE = {"model": {"name": "toy-clip"}, "dataset": {"name": "two-cones"}}


def two_cones(n: int = 40, d: int = 8, captions: int = 2, seed: int = 0, n_classes: int = 3) -> EmbeddingSet:
    """One image per sample and ``captions`` texts per sample, each modality around its own axis (a gap)."""
    rng = np.random.default_rng(seed)
    content = rng.normal(size=(n, d))
    image = content + 4.0 * np.eye(d)[0]
    text_sample = np.repeat(np.arange(n), captions)
    text = content[text_sample] + 0.3 * rng.normal(size=(n * captions, d)) + 4.0 * np.eye(d)[1]
    return EmbeddingSet(
        vectors={"image": image.astype(np.float32), "text": text.astype(np.float32)},
        sample_index={"image": np.arange(n, dtype=np.int64), "text": text_sample.astype(np.int64)},
        n_samples=n,
        labels=(np.arange(n) % n_classes).astype(np.int64),
        class_names=[f"class{c}" for c in range(n_classes)],
        provenance=PROVENANCE,
    )


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def scatter_by_gid(fig) -> dict[str, PathCollection]:
    ax = fig.axes[0]
    return {
        c.get_gid().split("/", 1)[1]: c
        for c in ax.collections
        if isinstance(c, PathCollection) and (c.get_gid() or "").startswith("points/")
    }


def pair_segments(fig) -> np.ndarray:
    (lines,) = [
        c for c in fig.axes[0].collections if isinstance(c, LineCollection) and c.get_gid() == "pairs"
    ]
    return np.asarray(lines.get_segments())


def sorted_rows(a: np.ndarray) -> np.ndarray:
    a = np.round(np.asarray(a, dtype=np.float64).reshape(len(a), -1), 6)
    return a[np.lexsort(a.T[::-1])]


# --------------------------------------------------------------------------------------------------- map


def test_map_pca_points_are_the_joint_pca_of_unit_vectors_and_lines_join_true_pairs():
    es = two_cones(n=30, captions=2)
    fig = gplot.plot_map(es, method="pca", max_pairs=None)
    points = scatter_by_gid(fig)
    assert {m: len(c.get_offsets()) for m, c in points.items()} == {"image": 30, "text": 60}

    # Reference: PCA by SVD of the centred, stacked unit vectors (signs of components are arbitrary).
    z = np.vstack([unit(es.vectors["image"]), unit(es.vectors["text"])])
    zc = z - z.mean(axis=0)
    _, _, vt = np.linalg.svd(zc, full_matrices=False)
    ref = zc @ vt[:2].T
    got = np.vstack([points["image"].get_offsets(), points["text"].get_offsets()])
    signs = np.sign(np.sum(ref * got, axis=0))
    np.testing.assert_allclose(got, ref * signs, atol=1e-5)

    # One line per caption, from its image to it.
    img_xy, txt_xy = ref[:30] * signs, ref[30:] * signs
    expected = np.stack([img_xy[es.sample_index["text"]], txt_xy], axis=1)
    segments = pair_segments(fig)
    assert segments.shape == (60, 2, 2)
    np.testing.assert_allclose(sorted_rows(segments), sorted_rows(expected), atol=1e-5)
    assert "toy-clip" in fig._suptitle.get_text() and "two-cones" in fig._suptitle.get_text()


def test_map_subsamples_samples_with_a_seed():
    es = two_cones(n=40, captions=3)
    fig = gplot.plot_map(es, method="pca", max_pairs=10, seed=1)
    points = scatter_by_gid(fig)
    assert len(points["image"].get_offsets()) == 10
    assert len(points["text"].get_offsets()) == 30
    assert len(pair_segments(fig)) == 30
    again = scatter_by_gid(gplot.plot_map(es, method="pca", max_pairs=10, seed=1))
    np.testing.assert_array_equal(points["text"].get_offsets(), again["text"].get_offsets())
    other = scatter_by_gid(gplot.plot_map(es, method="pca", max_pairs=10, seed=2))
    assert not np.allclose(
        np.sort(points["image"].get_offsets()[:, 0]), np.sort(other["image"].get_offsets()[:, 0])
    )


def test_select_samples_is_a_seeded_subset_without_repeats():
    chosen = gplot.select_samples(100, 7, seed=3)
    assert len(chosen) == 7 == len(np.unique(chosen)) and chosen.min() >= 0 and chosen.max() < 100
    np.testing.assert_array_equal(chosen, gplot.select_samples(100, 7, seed=3))
    np.testing.assert_array_equal(gplot.select_samples(5, 7, seed=3), np.arange(5))
    with pytest.raises(InputError, match="max_pairs"):
        gplot.select_samples(5, 0, seed=0)


def test_map_umap_is_deterministic_for_a_seed_and_announces_the_slow_fit():
    es = two_cones(n=100, captions=1, d=16)
    messages: list[str] = []
    first = scatter_by_gid(gplot.plot_map(es, method="umap", seed=0, status=messages.append))
    second = scatter_by_gid(gplot.plot_map(es, method="umap", seed=0))
    assert {m: len(c.get_offsets()) for m, c in first.items()} == {"image": 100, "text": 100}
    for m in first:
        np.testing.assert_array_equal(first[m].get_offsets(), second[m].get_offsets())
    assert len(messages) == 1 and "UMAP" in messages[0] and "200 points" in messages[0]
    # The two cones stay apart: the centroids are further apart than the mean spread of each cloud.
    ci, ct = first["image"].get_offsets().mean(0), first["text"].get_offsets().mean(0)
    spread = np.mean(
        [
            np.linalg.norm(first[m].get_offsets() - first[m].get_offsets().mean(0), axis=1).mean()
            for m in first
        ]
    )
    assert np.linalg.norm(ci - ct) > spread


def test_map_color_by_class_colours_each_point_by_its_sample_label():
    es = two_cones(n=12, captions=2, n_classes=3)
    points = scatter_by_gid(gplot.plot_map(es, method="pca", color_by="class"))
    for m, coll in points.items():
        labels = es.labels[es.sample_index[m]]
        expected = np.array([to_rgba(gplot.OKABE_ITO[c]) for c in labels])
        np.testing.assert_allclose(coll.get_facecolors()[:, :3], expected[:, :3])
    assert (
        points["image"].get_paths()[0] != points["text"].get_paths()[0]
    )  # markers tell the modalities apart


def test_map_errors_are_one_line_input_errors():
    es = two_cones(n=10)
    with pytest.raises(InputError, match="method"):
        gplot.plot_map(es, method="tsne")
    with pytest.raises(InputError, match="color-by"):
        gplot.plot_map(es, method="pca", color_by="size")
    es.labels = None
    with pytest.raises(InputError, match="class labels"):
        gplot.plot_map(es, method="pca", color_by="class")


# --------------------------------------------------------------------------------------------- histograms


def test_similarity_histograms_count_every_true_pair_and_as_many_negatives():
    es = two_cones(n=25, captions=2)
    fig = gplot.plot_similarity_histograms(es, seed=0, bins=20)
    (ax,) = fig.axes
    true_bars, neg_bars = ax.containers
    edges = np.array(
        [p.get_x() for p in true_bars.patches]
        + [true_bars.patches[-1].get_x() + true_bars.patches[-1].get_width()]
    )
    ref = np.array(
        [
            unit(es.vectors["image"])[es.sample_index["text"][j]] @ unit(es.vectors["text"])[j]
            for j in range(50)
        ]
    )
    # The figure's cosines come from float32 unit vectors (~1e-7 off these): widen the outer edges.
    edges[0], edges[-1] = min(edges[0], ref.min()) - 1e-6, max(edges[-1], ref.max()) + 1e-6
    np.testing.assert_array_equal(true_bars.datavalues, np.histogram(ref, bins=edges)[0])
    assert true_bars.datavalues.sum() == 50 and neg_bars.datavalues.sum() == 50
    assert "image–text" in ax.get_title()


def test_similarity_histograms_subsample_true_pairs_beyond_max_pairs():
    es = two_cones(n=25, captions=2)
    (ax,) = gplot.plot_similarity_histograms(es, seed=0, max_pairs=10).axes
    assert [c.datavalues.sum() for c in ax.containers] == [10, 10]
    assert "10 of 50 true pairs" in ax.get_title()
    again = gplot.plot_similarity_histograms(es, seed=0, max_pairs=10).axes[0]
    np.testing.assert_array_equal(ax.containers[0].datavalues, again.containers[0].datavalues)


def test_histogram_means_are_the_measured_ones_and_the_bars_say_what_they_sample():
    # Issue #25: the report's histogram gave the non-matching mean of its random pairs (0.2648) where the table's
    # cos_nonmatching, over every pair, read 0.2751. One quantity, one number: the figure's means are the
    # table's, and the legend says how many pairs the bars were drawn from.
    from gapdiag.metrics import compute_all
    from gapdiag.report.presentation import format_number

    es = two_cones(n=25, captions=2)
    measured, _ = compute_all(es, ["cos_tp", "cos_nonmatching"], device="cpu")
    cos_tp, cos_nm = measured["cos_tp/image-text"], measured["cos_nonmatching/image-text"]
    for max_pairs, drawn in ((None, "all 50"), (10, "10 of 50")):
        (ax,) = gplot.plot_similarity_histograms(es, seed=0, max_pairs=max_pairs).axes
        true_label, other_label = (t.get_text() for t in ax.get_legend().get_texts())
        assert f"mean {format_number(cos_tp)}" in true_label and drawn in true_label
        n_drawn = 50 if max_pairs is None else 10  # as many non-matching pairs as true pairs
        assert f"mean {format_number(cos_nm)}" in other_label and f"{n_drawn} of 1,200" in other_label
        assert [line.get_xdata()[0] for line in ax.lines] == pytest.approx([cos_tp, cos_nm], abs=1e-12)


def test_random_non_matching_pairs_never_pair_a_sample_with_itself_and_are_seeded():
    sa = np.arange(5)
    sb = np.repeat(np.arange(5), 2)
    ia, ib = gplot.random_non_matching_pairs(sa, sb, 200, np.random.default_rng(0))
    assert len(ia) == 200 and np.all(sa[ia] != sb[ib])
    ja, jb = gplot.random_non_matching_pairs(sa, sb, 200, np.random.default_rng(0))
    np.testing.assert_array_equal(ia, ja)
    np.testing.assert_array_equal(ib, jb)
    empty = gplot.random_non_matching_pairs(
        np.zeros(3, dtype=int), np.zeros(2, dtype=int), 5, np.random.default_rng(0)
    )
    assert len(empty[0]) == 0


def test_histograms_need_two_modalities():
    es = two_cones(n=10)
    es.vectors.pop("text")
    es.sample_index.pop("text")
    with pytest.raises(InputError, match="two modalities"):
        gplot.plot_similarity_histograms(es)


# ----------------------------------------------------------------------------------------------- spectrum


def test_spectrum_lines_are_the_singular_values_and_effective_rank_is_marked():
    es = two_cones(n=30, d=6)
    fig = gplot.plot_spectrum(es)
    (ax,) = fig.axes
    assert ax.get_yscale() == "log"
    lines = {line.get_gid(): line for line in ax.lines}
    sets = {"image": unit(es.vectors["image"]), "text": unit(es.vectors["text"])}
    sets["joint"] = np.vstack([sets["image"], sets["text"]])
    for name, z in sets.items():
        sigma = np.linalg.svd(z, compute_uv=False)
        np.testing.assert_allclose(lines[f"spectrum/{name}"].get_ydata(), sigma, rtol=1e-5)
        p = sigma / sigma.sum()
        erank = np.exp(-np.sum(p * np.log(p)))  # Roy & Vetterli 2007
        np.testing.assert_allclose(lines[f"erank/{name}"].get_xdata()[0], erank, rtol=1e-5)


# -------------------------------------------------------------------------------------------------- shift


def shift_result(temperatures=("0.01", "1")) -> dict:
    lambdas = np.arange(-1.0, 1.01, 0.25)
    return {
        "lambdas": lambdas.tolist(),
        "temperatures": [float(t) for t in temperatures],
        "gap": np.abs(0.8 - 0.4 * lambdas).tolist(),
        "gap_signed": (0.8 - 0.4 * lambdas).tolist(),
        "loss": {t: ((lambdas - 0.25 * i) ** 2 + 1.0).tolist() for i, t in enumerate(temperatures)},
        "recall_at_1": {
            "image_to_text": (0.5 - 0.1 * lambdas**2).tolist(),
            "text_to_image": (0.4 - 0.1 * lambdas**2).tolist(),
        },
        "zero_shot_accuracy": (0.6 - 0.2 * lambdas**2).tolist(),
    }


def test_shift_plot_has_one_loss_curve_per_temperature_with_its_minimum_marked():
    result = shift_result()
    fig = gplot.plot_shift(result)
    lines = {line.get_gid(): line for ax in fig.axes for line in ax.lines if line.get_gid()}
    for i, t in enumerate(result["loss"]):
        np.testing.assert_allclose(lines[f"loss/{t}"].get_ydata(), result["loss"][t])
        assert lines[f"loss_min/{t}"].get_xdata()[0] == pytest.approx(0.25 * i)
    np.testing.assert_allclose(lines["gap"].get_ydata(), result["gap"])
    np.testing.assert_allclose(lines["gap_signed"].get_ydata(), result["gap_signed"])
    assert fig._suptitle.get_text() == "Embedding shift along the gap"  # no provenance, no "unknown model"
    assert {g for g in lines if g.startswith("score/")} == {
        "score/R@1 image to text",
        "score/R@1 text to image",
        "score/zero-shot accuracy",
    }
    no_accuracy = dict(result, zero_shot_accuracy=None)
    lines = [line.get_gid() for ax in gplot.plot_shift(no_accuracy).axes for line in ax.lines]
    assert "score/zero-shot accuracy" not in lines


def test_shift_result_validation(tmp_path):
    bad = shift_result()
    del bad["gap"]
    with pytest.raises(InputError, match="missing key 'gap'"):
        gplot.plot_shift(bad)
    short = shift_result()
    short["loss"]["1"] = short["loss"]["1"][:-1]
    with pytest.raises(InputError, match=r"loss\[1\] has 8 values for 9 lambdas"):
        gplot.validate_shift_result(short)
    with pytest.raises(InputError, match="not found"):
        gplot.load_shift_result(tmp_path / "nope.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(InputError, match="not valid JSON"):
        gplot.load_shift_result(tmp_path / "broken.json")


# ------------------------------------------------------------------------------------------------ compare


def report(values: dict[str, float], dataset: str = "two-cones", **kw) -> Report:
    return Report(metrics=values, provenance={"model": {"name": "toy"}, "dataset": {"name": dataset}}, **kw)


def _visible_axes(fig):
    return [ax for ax in fig.axes if ax.get_visible()]


def assert_every_text_inside(fig) -> None:
    """Nothing is cut at the figure's edge (titles, tick labels, legends: everything drawn), and a change
    written beside its bar stays inside its panel."""
    fig.canvas.draw()  # lays the figure out as saving does
    renderer = fig.canvas.get_renderer()
    drawn = fig.get_tightbbox(renderer)  # inches
    assert drawn.x0 >= -0.01 and drawn.y0 >= -0.01, drawn
    assert drawn.x1 <= fig.get_figwidth() + 0.01 and drawn.y1 <= fig.get_figheight() + 0.01, drawn
    for ax in _visible_axes(fig):
        for text in ax.texts:
            box = text.get_window_extent(renderer)
            assert ax.bbox.x0 - 1 <= box.x0 and box.x1 <= ax.bbox.x1 + 1, text.get_text()


TWO = {
    # family gap: the gap falls by 75 % of its size, cos_tp rises by 0.01 of 0.31
    "modality_gap/image-text": (0.8, 0.2), "cos_tp/image-text": (0.3, 0.31),
    # retrieval: R@1 drops by 10 % of 0.5; rank: +0.5 of 10.5
    "recall_at_1/image_to_text": (0.5, 0.45), "effective_rank/joint": (10.0, 10.5),
}


def test_compare_draws_one_panel_per_family_largest_change_first_on_one_axis():
    a = report({name: v[0] for name, v in TWO.items()} | {"only_a": 1.0})
    b = report({name: v[1] for name, v in TWO.items()})
    fig = gplot.plot_compare([a, b], ["infonce", "gap-closing"])
    axes = _visible_axes(fig)
    assert [ax.get_title(loc="left") for ax in axes] == ["gap", "retrieval", "rank"]
    rows = [[t.get_text() for t in ax.get_yticklabels()] for ax in axes]
    assert rows[0] == ["modality_gap/image-text ↓   0.8000 → 0.2000", "cos_tp/image-text ↑   0.3000 → 0.3100"]
    bars = {p.get_gid(): p for ax in axes for p in ax.patches}
    # Bar length: the change in % of the metric's size (largest |value|, at least 5 % of its registry range).
    expected = {"modality_gap/image-text": -75.0, "cos_tp/image-text": 100 * 0.01 / 0.31,
                "recall_at_1/image_to_text": -10.0, "effective_rank/joint": 100 * 0.5 / 10.5}
    for name, width in expected.items():
        assert bars[f"delta/{name}/gap-closing"].get_width() == pytest.approx(width)
    colour = {name: to_rgba(bars[f"delta/{name}/gap-closing"].get_facecolor()) for name in expected}
    assert colour["modality_gap/image-text"] == to_rgba(VERDICT_COLORS["better"])  # lower gap: better
    assert colour["recall_at_1/image_to_text"] == to_rgba(VERDICT_COLORS["worse"])
    assert [t.get_text().strip() for t in axes[0].texts] == ["-0.6000", "+0.01000"]  # the change itself
    assert all(ax.get_xlim() == axes[0].get_xlim() for ax in axes)  # one scale for every panel
    low, high = axes[0].get_xlim()
    assert low == -high and high >= 75
    assert all(any(list(line.get_xdata()) == [0, 0] for line in ax.lines) for ax in axes)  # the zero line
    assert_every_text_inside(fig)


def test_a_full_report_is_one_readable_figure_not_a_panel_per_metric():
    from gapdiag.metrics import REGISTRY

    names = [f"{base}/{q}" for base in REGISTRY for q in ("image", "text", "joint")]
    rng = np.random.default_rng(0)
    a = report({n: float(v) for n, v in zip(names, rng.uniform(0.1, 0.9, len(names)))})
    b = report({n: v * float(f) for (n, v), f in zip(a.metrics.items(), rng.uniform(0.5, 1.5, len(names)))})
    fig = gplot.plot_compare([a, b], ["a", "b"])
    axes = _visible_axes(fig)
    families = {info.family for info in REGISTRY.values()}
    assert len(axes) == len(families) and len(names) > 3 * len(families)
    assert sum(len(ax.get_yticklabels()) for ax in axes) == len(names)
    assert fig.get_figheight() <= 0.4 * len(names) + 0.8 * len(families) + 2  # a row per metric, no more
    for ax in axes:
        for label in (*ax.get_yticklabels(), *ax.get_xticklabels()):
            assert label.get_fontsize() >= 7 and label.get_rotation() == 0
    assert_every_text_inside(fig)


def test_compare_of_several_reports_gives_each_its_colour_and_says_better_or_worse_in_words():
    a, b, c = (report({"modality_gap/image-text": g, "recall_at_1/image_to_text": r})
               for g, r in ((0.8, 0.5), (0.6, 0.4), (0.9, 0.6)))
    fig = gplot.plot_compare([a, b, c], ["base", "b", "c"])
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["b", "c"]
    colours = [to_rgba(h.get_facecolor()) for h in legend.legend_handles]
    assert len(set(colours)) == 2 and not {to_rgba(c) for c in VERDICT_COLORS.values()} & set(colours)
    bars = {p.get_gid(): to_rgba(p.get_facecolor()) for ax in _visible_axes(fig) for p in ax.patches}
    assert bars["delta/modality_gap/image-text/b"] == colours[0] and bars["delta/recall_at_1/image_to_text/c"] \
        == colours[1]
    words = [t.get_text().strip() for ax in _visible_axes(fig) for t in ax.texts]
    assert "-0.2000 better" in words and "+0.1000 worse" in words and "+0.1000 better" in words


def test_compare_draws_lines_over_epochs_sorted_by_step_with_intervals():
    reports = [report({"m": v}, intervals={"m": (v - 0.1, v + 0.1)}) for v in (0.3, 0.1, 0.2)]
    fig = gplot.plot_compare(reports, ["epoch 10", "epoch 2", "epoch 5"], metrics=["m"])
    ax = fig.axes[0]
    (line,) = [line for line in ax.lines if line.get_gid() == "metric/m"]
    np.testing.assert_allclose(line.get_xdata(), [2, 5, 10])
    # The change from the first step, in % of the metric's size (0.3: no registry range for "m").
    np.testing.assert_allclose(line.get_ydata(), [0.0, 100 * 0.1 / 0.3, 100 * 0.2 / 0.3])
    assert ax.collections  # error bars
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["m    0.1000 → 0.2000, 0.3000"]


def test_a_tiny_change_over_epochs_stays_small_and_no_label_is_cut():
    """Issue #30: a 0.0003 change of Cos_TP was stretched to the full height, its value labels cut."""
    reports = [report({"cos_tp/image-text": v}) for v in (0.8320, 0.8321, 0.8323)]
    fig = gplot.plot_compare(reports, ["epoch 1", "epoch 2", "epoch 3"])
    (ax,) = _visible_axes(fig)
    (line,) = [line for line in ax.lines if line.get_gid() == "metric/cos_tp/image-text"]
    low, high = ax.get_ylim()
    drawn = max(line.get_ydata()) - min(line.get_ydata())
    assert drawn / (high - low) < 0.02  # 0.0003 of a cosine is a flat line, not the whole axis
    assert_every_text_inside(fig)


def test_step_values_recognise_epoch_and_step_labels_only():
    assert gplot.step_values(["epoch 1", "Epoch_2", "step-30", "4"]) == [1.0, 2.0, 30.0, 4.0]
    assert gplot.step_values(["infonce", "epoch 2"]) is None


def test_compare_errors():
    a = report({"x": 1.0})
    with pytest.raises(InputError, match="at least two reports"):
        gplot.plot_compare([a], ["a"])
    with pytest.raises(InputError, match="labels for 2 reports"):
        gplot.plot_compare([a, a], ["a"])
    with pytest.raises(InputError, match="has no metric 'y'"):
        gplot.plot_compare([a, a], ["a", "b"], metrics=["y"])
    with pytest.raises(InputError, match="share no metric"):
        gplot.plot_compare([a, report({"y": 1.0})], ["a", "b"])
    old = report({"x": 1.0}, metric_definitions_version=0)
    with pytest.raises(ProvenanceError, match="different metric definitions"):
        gplot.plot_compare([a, old], ["a", "b"])


# ------------------------------------------------------------------------------------------ kinds, saving


def test_parse_kinds():
    assert gplot.parse_kinds(None) == ["map", "hist", "spectrum"]
    assert gplot.parse_kinds(["spectrum,map", "map"]) == ["map", "spectrum"]
    assert gplot.parse_kinds(["all"], have_shift=True) == ["map", "hist", "spectrum", "shift"]
    assert gplot.parse_kinds(None, have_shift=True, have_reports=True) == ["shift", "compare"]
    with pytest.raises(InputError, match="unknown --kind 'maps'"):
        gplot.parse_kinds(["map,maps"])
    with pytest.raises(InputError, match="needs a shift result"):
        gplot.parse_kinds(["shift"])


@pytest.mark.parametrize("fmt", ["png", "svg", "pdf"])
def test_saved_files_decode(tmp_path, fmt):
    fig = gplot.plot_spectrum(two_cones(n=10))
    path = gplot.save_figure(fig, tmp_path / "sub" / f"spectrum.{fmt}", dpi=50)
    assert path == tmp_path / "sub" / f"spectrum.{fmt}"
    if fmt == "png":
        with Image.open(path) as img:
            assert img.size == (round(fig.get_figwidth() * 50), round(fig.get_figheight() * 50))
        assert matplotlib.image.imread(path).std() > 0  # not a blank image
    elif fmt == "svg":
        assert ET.parse(path).getroot().tag.endswith("svg")
    else:
        assert path.read_bytes().startswith(b"%PDF")
    assert not list(path.parent.glob(".*.tmp"))


@pytest.mark.parametrize("fmt", ["png", "svg", "pdf"])
def test_a_figure_saves_to_the_same_bytes_every_time(tmp_path, fmt, monkeypatch):
    """No timestamp, fixed SVG ids, and the layout computed once: constrained layout re-run at each save
    moved an axes edge across a rounding boundary of the PDF writer on some machines."""
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    runs = []
    execute = ConstrainedLayoutEngine.execute
    monkeypatch.setattr(
        ConstrainedLayoutEngine, "execute", lambda self, fig: runs.append(1) or execute(self, fig)
    )
    fig = gplot.plot_spectrum(two_cones(n=10))
    first = gplot.save_figure(fig, tmp_path / f"first.{fmt}", dpi=50).read_bytes()
    position = fig.axes[0].get_position().bounds
    again = [gplot.save_figure(fig, tmp_path / f"again{i}.{fmt}", dpi=50).read_bytes() for i in range(2)]
    assert again == [first, first]
    assert len(runs) == 1  # laid out once, then frozen
    assert fig.axes[0].get_position().bounds == position
    # A second figure built the same way gives the same bytes too.
    other = gplot.save_figure(gplot.plot_spectrum(two_cones(n=10)), tmp_path / f"other.{fmt}", dpi=50)
    assert other.read_bytes() == first


def test_an_interrupted_save_keeps_the_previous_file(tmp_path, monkeypatch):
    fig = gplot.plot_spectrum(two_cones(n=10))
    path = gplot.save_figure(fig, tmp_path / "spectrum.png", dpi=30)
    before = path.read_bytes()

    def disk_full(self, fname, **kwargs):
        Path(fname).write_bytes(b"\x89PNG half a figure")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(fig), "savefig", disk_full)
    with pytest.raises(InputError, match="disk full while writing figure .*spectrum.png"):
        gplot.save_figure(fig, path, dpi=30)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spectrum.png"]  # no temporary file left


def test_save_errors_name_the_path(tmp_path):
    fig = gplot.plot_spectrum(two_cones(n=10))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="file/out"):  # works as root too: a file is never a directory
        gplot.save_figure(fig, blocker / "out" / "spectrum.png")
    with pytest.raises(InputError, match="unknown format 'jpg'"):
        gplot.save_figure(fig, tmp_path / "spectrum.jpg")


# -------------------------------------------------------------------------------------------------- CLI


@pytest.fixture()
def npz(tmp_path) -> Path:
    """Precomputed two-cone embeddings on disk (read through api.embed like any dataset)."""
    es = two_cones(n=30, captions=1)
    path = tmp_path / "cones.npz"
    np.savez(
        path,
        image=es.vectors["image"],
        text=es.vectors["text"],
        labels=es.labels,
        class_names=np.array(es.class_names),
    )
    return path


def cli(*args: str) -> int:
    return run(list(args))


def test_cli_plot_writes_each_kind_and_prints_the_paths(npz, tmp_path, capsys):
    out = tmp_path / "plots"
    code = cli(
        "plot",
        "-d",
        str(npz),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--method",
        "pca",
        "--kind",
        "map,hist",
        "--kind",
        "spectrum",
        "--format",
        "svg",
        "--out",
        str(out),
        "--json",
    )
    assert code == 0
    paths = json.loads(capsys.readouterr().out)
    assert paths == [str(out / "map-pca.svg"), str(out / "hist.svg"), str(out / "spectrum.svg")]
    for p in paths:
        ET.parse(p)


def test_cli_plot_shift_and_compare_need_no_embeddings(tmp_path, capsys):
    (tmp_path / "shift.json").write_text(json.dumps(shift_result()))
    report({"m": 1.0}).save(tmp_path / "a.json")
    report({"m": 2.0}).save(tmp_path / "b.json")
    code = cli(
        "plot",
        "--shift",
        str(tmp_path / "shift.json"),
        "--report",
        str(tmp_path / "a.json"),
        "--report",
        str(tmp_path / "b.json"),
        "--out",
        str(tmp_path / "o"),
        "--dpi",
        "40",
    )
    assert code == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(tmp_path / "o" / "shift.png"), str(tmp_path / "o" / "compare.png")]
    for p in printed:
        assert matplotlib.image.imread(p).shape[2] in (3, 4)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kind", "pie"], "unknown --kind 'pie'"),
        (["--shift", "{tmp}/missing.json"], "shift result not found"),
        (["--shift", "{tmp}/binary.json"], "binary.json: not a text file (not UTF-8), so not a shift result"),
        (["--shift", "{tmp}"], "is a directory, not a shift result"),
        (["--report", "{tmp}/missing.json", "--report", "{tmp}/missing.json"], "report not found"),
        (["--kind", "shift"], "--kind shift needs a shift result"),
        (["-d", "{tmp}/missing.npz", "--method", "pca"], "missing.npz"),
        (["-d", "{npz}", "--out", "{tmp}/file/plots", "--method", "pca"], "it or a parent is a file"),
        (["-d", "{npz}", "--format", "gif", "--method", "pca"], "unknown format 'gif'"),
        (["-d", "{npz}", "--method", "tsne"], "unknown method 'tsne'"),
    ],
)
def test_cli_plot_errors_are_one_line(npz, tmp_path, capsys, args, message):
    (tmp_path / "file").write_text("a regular file")
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe{}")
    args = [a.format(tmp=tmp_path, npz=npz) for a in args]
    assert_one_line_error(
        *gapdiag(capsys, "plot", "--cache-dir", tmp_path / "cache", "--out", tmp_path / "o", *args), message
    )


def test_umap_gives_identical_vectors_identical_coordinates():
    """Duplicated captions (one per image of a class) are fitted once and placed on the same spot."""
    rng = np.random.default_rng(0)
    distinct = rng.normal(size=(60, 8))
    distinct /= np.linalg.norm(distinct, axis=1, keepdims=True)
    z = np.concatenate([distinct, np.repeat(distinct[:5], 20, axis=0)])  # 100 copies of five vectors
    xy = gplot.map_coordinates(z, method="umap", seed=0)
    assert xy.shape == (160, 2) and np.isfinite(xy).all()
    for k in range(5):
        copies = xy[60 + 20 * k : 60 + 20 * (k + 1)]
        np.testing.assert_array_equal(copies, np.broadcast_to(xy[k], copies.shape))
