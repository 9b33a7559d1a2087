"""Tests of gapdiag.report.html and `gapdiag report`: a self-contained HTML file that really renders.

The rendering test opens the file in headless Chromium (skipped with a reason when ``chromium`` is not
installed; .ci installs it) and checks the rendered DOM and a screenshot.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, gapdiag
from PIL import Image

from gapdiag import figures as gplot
from gapdiag.cli import run
from gapdiag.errors import InputError
from gapdiag.metrics import REGISTRY
from gapdiag.report import Report
from gapdiag.report.html import render_html, write_html
from gapdiag.vectors import EmbeddingSet

METRICS = {
    "modality_gap/image-text": 0.8123,
    "cos_tp/image-text": 0.3,
    "angular_value/image": 0.25,
    "angular_value/text": 0.125,
    "effective_rank/joint": 7.5,
}


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text of every table cell."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.cells: list[str] = []
        self._in_cell = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_cell = tag == "td"
        if self._in_cell:
            self.cells.append("")

    def handle_endtag(self, tag):
        if tag == "td":
            self._in_cell = False

    def handle_data(self, data):
        if self._in_cell:
            self.cells[-1] += data

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for t, attrs in self.tags if t == tag]


def parse(text: str) -> Tags:
    tags = Tags()
    tags.feed(text)
    return tags


def small_set(n: int = 24, d: int = 6, seed: int = 0) -> EmbeddingSet:
    """1:1 image/text pairs on two offset axes."""
    rng = np.random.default_rng(seed)
    content = rng.normal(size=(n, d))
    return EmbeddingSet(
        vectors={
            "image": (content + 3 * np.eye(d)[0]).astype(np.float32),
            "text": (content + 0.2 * rng.normal(size=(n, d)) + 3 * np.eye(d)[1]).astype(np.float32),
        },
        sample_index={"image": np.arange(n), "text": np.arange(n)},
        n_samples=n,
        provenance={"model": {"name": "toy-clip"}, "dataset": {"name": "toy <pairs> & co"}},
    )


@pytest.fixture(scope="module")
def figures():
    es = small_set()
    return {
        "map-pca": gplot.plot_map(es, method="pca"),
        "hist": gplot.plot_similarity_histograms(es),
        "spectrum": gplot.plot_spectrum(es),
    }


def make_report(**kw) -> Report:
    return Report(
        metrics=dict(METRICS),
        provenance={"model": {"name": "toy-clip"}, "dataset": {"name": "toy <pairs> & co", "n_samples": 24}},
        **kw,
    )


def test_html_is_self_contained_with_metric_rows_and_png_images(figures):
    text = render_html(make_report(intervals={"modality_gap/image-text": (0.8, 0.825)}), figures, dpi=40)
    assert "http://" not in text.lower() and "https://" not in text.lower()
    tags = parse(text)
    for attrs in tags.all("link") + tags.all("script"):
        pytest.fail(f"external or scripted resource: {attrs}")
    imgs = tags.all("img")
    assert len(imgs) == 3
    for attrs, fig in zip(imgs, figures.values()):
        prefix = "data:image/png;base64,"
        assert attrs["src"].startswith(prefix)
        with Image.open(io.BytesIO(base64.b64decode(attrs["src"][len(prefix) :]))) as img:
            assert img.format == "PNG"
            assert img.size == (round(fig.get_figwidth() * 40), round(fig.get_figheight() * 40))
    rows = {attrs["data-metric"] for attrs in tags.all("tr") if "data-metric" in attrs}
    assert rows == set(METRICS)
    assert "0.8123" in tags.cells and "[0.8000, 0.8250]" in tags.cells and "lower" in tags.cells
    # Special characters in provenance are escaped, not markup.
    assert "toy &lt;pairs&gt; &amp; co" in text and "<pairs>" not in text


def test_html_with_inline_svg_names_no_url(figures):
    text = render_html(make_report(), figures, figure_format="svg", title="t")
    assert "http://" not in text.lower() and "https://" not in text.lower()
    tags = parse(text)
    assert len(tags.all("svg")) == 3 and not tags.all("img")
    with pytest.raises(InputError, match="unknown figure format 'gif'"):
        render_html(make_report(), figures, figure_format="gif")


def test_html_opens_with_a_summary_then_metrics_grouped_by_family_and_references(figures):
    report = make_report()
    report.metrics = {"recall_at_1/text_to_image": 5.261e-05, **METRICS, "modality_separability/joint": 1.0}
    report.provenance["dataset"]["split"] = "val"
    report.provenance["sample"] = {"size": 5000, "seed": 3}
    text = render_html(report, {"hist": figures["hist"]}, dpi=30)
    body = text[text.index("<body>") :]
    order = [body.index(marker) for marker in ('class="summary"', "<h2>Metrics", "<h2>Published reference",
                                               "<h2>Figures", "<h2>Provenance")]
    assert order == sorted(order)
    assert "The modalities are linearly separable (1.000) although the gap is small" not in body  # gap 0.81
    assert "linearly separable (1.000) and the gap is large (0.8123)" in body
    assert "split: val" in body and "a seeded sample of 5,000, seed 3" in body
    # One quantity, one number (issue #25): the histogram's caption says its bars are samples and its means the
    # table's, so the reader never compares a sample mean with cos_nonmatching.
    assert "Bars: samples of pairs" in body and "every pair, cos_tp and cos_nonmatching in the table" in body
    tags = parse(text)
    rows = [a["data-metric"] for a in tags.all("tr") if "data-metric" in a]
    families = [REGISTRY[r.split("/")[0]].family for r in rows]
    registry_order = list(dict.fromkeys(m.family for m in REGISTRY.values()))
    assert families == sorted(families, key=registry_order.index)
    assert rows[0] == "modality_gap/image-text" and rows[-1] == "modality_separability/joint"
    # One number format: 4 significant digits, no scientific notation for a small recall, no bare "1".
    assert "0.00005261" in tags.cells and "1.000" in tags.cells and "7.500" in tags.cells
    assert not [c for c in tags.cells if re.fullmatch(r"-?[\d.]+e[-+]\d+", c.strip())]
    # Published values beside the gap, each with model, data, N and source; no URL scheme in the page.
    assert "CLIP RN50 (OpenAI) 0.8186" in body and "5,000" in tags.cells
    assert [a["id"] for a in tags.all("tr") if a.get("id", "").startswith("ref-")][:2] == ["ref-1", "ref-2"]
    assert "journalovi.org/2024-humer-amumo" in body and "https://" not in body


def test_summary_is_left_out_when_no_headline_metric_is_measured(figures):
    report = make_report()
    report.metrics = {"recall_at_1/text_to_image": 0.5}
    text = render_html(report, {})
    assert 'class="summary"' not in text and "<h2>Published reference" not in text


def test_write_html_is_atomic_and_reports_unwritable_paths(tmp_path, figures):
    path = write_html(
        tmp_path / "sub" / "r.html", make_report(), {"hist": figures["hist"]}, title="x", dpi=30
    )
    assert path.read_text().startswith("<!DOCTYPE html>")
    assert not list(path.parent.glob(".*.tmp"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="it or a parent is a file"):
        write_html(tmp_path / "file" / "r.html", make_report(), {})


def test_a_failed_html_write_keeps_the_previous_page(tmp_path, monkeypatch):
    import os

    path = write_html(tmp_path / "r.html", make_report(), {}, title="first")
    before = path.read_bytes()

    def fsync_fails(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", fsync_fails)  # the new page is written, but cannot be made durable
    with pytest.raises(InputError, match="cannot write .*r.html: Input/output error"):
        write_html(path, make_report(), {}, title="second")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]  # no temporary file left


# ---------------------------------------------------------------------------------------- headless Chromium

PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images].map(i => i.naturalWidth);
  const svgs = [...document.querySelectorAll('figure svg')].map(s => Math.round(s.getBoundingClientRect().width));
  document.body.setAttribute('data-probe', JSON.stringify({imgs, svgs, rows: document.querySelectorAll('tr[data-metric]').length}));
});
</script></body>"""


def chromium(*args: str, user_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={user_dir}",
            "--window-size=1200,900",
            *args,
        ],
        capture_output=True,
        text=True,
        check=True,
    )


@pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="chromium not installed (apt-get install -y --no-install-recommends chromium)",
)
@pytest.mark.parametrize("figure_format", ["png", "svg"])
def test_report_renders_in_headless_chromium(tmp_path, figures, figure_format):
    report = write_html(tmp_path / "report.html", make_report(), figures, figure_format=figure_format, dpi=60)
    probed = tmp_path / "probed.html"
    probed.write_text(report.read_text().replace("</body>", PROBE))
    dom = chromium(
        "--virtual-time-budget=5000", "--dump-dom", probed.as_uri(), user_dir=tmp_path / "profile"
    ).stdout
    tags = parse(dom)
    (body,) = tags.all("body")
    probe = json.loads(body["data-probe"])
    assert probe["rows"] == len(METRICS)
    drawn = probe["imgs"] if figure_format == "png" else probe["svgs"]
    assert len(drawn) == 3 and all(width > 0 for width in drawn), probe

    shot = tmp_path / "shot.png"
    chromium(f"--screenshot={shot}", report.as_uri(), user_dir=tmp_path / "profile")
    with Image.open(shot) as img:
        pixels = np.asarray(img.convert("L"), dtype=np.float64)
    assert pixels.shape == (900, 1200)
    assert (pixels < 200).mean() > 0.01  # text and table lines, not a blank page


# ---------------------------------------------------------------------------------------------------- CLI


@pytest.fixture()
def npz(tmp_path) -> Path:
    es = small_set(n=30)
    path = tmp_path / "pairs.npz"
    np.savez(path, image=es.vectors["image"], text=es.vectors["text"])
    return path


def test_cli_report_measures_and_embeds_every_figure(npz, tmp_path, capsys):
    out = tmp_path / "r.html"
    code = run(
        [
            "report",
            "-d",
            str(npz),
            "--method",
            "pca",
            "--out",
            str(out),
            "--json",
            "--dpi",
            "40",
            "--cache-dir",
            str(tmp_path / "cache"),
        ]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["path"] == str(out) and printed["figures"] == ["map-pca", "hist", "spectrum"]
    tags = parse(out.read_text())
    assert len(tags.all("img")) == 3
    metric_rows = {attrs["data-metric"] for attrs in tags.all("tr") if "data-metric" in attrs}
    assert "modality_gap/image-text" in metric_rows and len(metric_rows) == printed["metrics"]


def test_cli_report_reuses_a_measurement(npz, tmp_path, capsys):
    make_report().save(tmp_path / "m.json")
    code = run(
        [
            "report",
            "-d",
            str(npz),
            "--report",
            str(tmp_path / "m.json"),
            "--kind",
            "hist",
            "--out",
            str(tmp_path / "r.html"),
            "--dpi",
            "30",
            "-q",
        ]
    )
    assert code == 0
    tags = parse((tmp_path / "r.html").read_text())
    assert {a["data-metric"] for a in tags.all("tr") if "data-metric" in a} == set(METRICS)
    assert [a["alt"] for a in tags.all("img")] == ["hist"]


def test_cli_report_of_a_measurement_and_its_shift_needs_no_embeddings(tmp_path):
    shift = {
        "lambdas": [-1.0, 0.0, 1.0],
        "gap": [1.2, 0.8, 0.4],
        "loss": {"0.01": [2.0, 1.0, 1.5]},
        "recall_at_1": {"image_to_text": [0.4, 0.5, 0.45]},
        "zero_shot_accuracy": None,
    }
    make_report().save(tmp_path / "m.json")
    (tmp_path / "shift.json").write_text(json.dumps(shift))
    code = run(
        [
            "report",
            "--report",
            str(tmp_path / "m.json"),
            "--shift",
            str(tmp_path / "shift.json"),
            "--kind",
            "shift",
            "--out",
            str(tmp_path / "r.html"),
            "--dpi",
            "30",
            "-q",
        ]
    )
    assert code == 0
    assert [a["alt"] for a in parse((tmp_path / "r.html").read_text()).all("img")] == ["shift"]
    # --data would not be read by any figure of this page: refused rather than ignored (issue #23).
    assert run(["report", "-d", str(tmp_path / "never-read.npz"), "--report", str(tmp_path / "m.json"),
                "--shift", str(tmp_path / "shift.json"), "--kind", "shift", "--out", str(tmp_path / "r2.html"),
                "-q"]) == 2
    assert not (tmp_path / "r2.html").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--report", "{tmp}/missing.json"], "report not found"),
        (["--report", "{tmp}/other.json"], "measured on another dataset"),
        (["--out", "{tmp}/file/r.html"], "it or a parent is a file"),
        (["--figure-format", "gif"], "unknown --figure-format 'gif'"),
        (["--kind", "map,compare"], "does not draw comparisons"),
        (["--kind", "shift"], "--kind shift needs a shift result"),
    ],
)
def test_cli_report_errors_are_one_line(npz, tmp_path, capsys, args, message):
    (tmp_path / "file").write_text("x")
    other = make_report()
    other.provenance["dataset"]["fingerprint"] = "0" * 64
    other.save(tmp_path / "other.json")
    code, out, err = gapdiag(
        capsys,
        "report",
        "-d",
        str(npz),
        "--method",
        "pca",
        "-q",
        "--out",
        str(tmp_path / "r.html"),
        *[a.format(tmp=tmp_path) for a in args],
    )
    assert_one_line_error(code, out, err, message)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


# ------------------------------------------------------------------------------------------- interactive map


def labelled_set(n: int = 12) -> EmbeddingSet:
    """``small_set`` with three classes and three captions per image (1:N pairs, as in COCO)."""
    es = small_set(n=n)
    text = np.repeat(es.vectors["text"], 3, axis=0)
    es.vectors["text"] = text + 0.05 * np.random.default_rng(1).normal(size=text.shape).astype(np.float32)
    es.sample_index["text"] = np.repeat(np.arange(n), 3)
    es.labels = np.arange(n) % 3
    es.class_names = ["cat", "dog", "<b>fish</b>"]
    return es


HOVER_LABELS = {
    "image": [f"images/{i}.png" for i in range(12)],
    "text": [f"caption {i // 3}.{i % 3}" for i in range(36)],
}


def test_interactive_map_holds_hover_text_toggles_and_an_empty_pair_trace():
    from gapdiag.figures.interactive_map import PAIRS_TRACE, build_interactive_map

    fig = build_interactive_map(labelled_set(), method="pca", labels=HOVER_LABELS)
    points = [t for t in fig.data if t.name != PAIRS_TRACE]
    assert fig.data[-1].name == PAIRS_TRACE and not fig.data[-1].x
    # One trace per modality and class, grouped by modality in the legend.
    assert sorted((t.legendgroup, t.name) for t in points) == sorted(
        (m, c) for m in ("image", "text") for c in ("cat", "dog", "<b>fish</b>")
    )
    texts = {cd[0]: [] for t in points for cd in t.customdata}
    for t in points:
        for (sample, cls), hover in zip(t.customdata, t.text):
            texts[sample].append(hover)
            assert cls == sample % 3 and t.meta["class"] == cls
    # Every sample has its image and its 3 captions, with path / caption and class in the hover text.
    assert all(len(v) == 4 for v in texts.values()) and len(texts) == 12
    assert any("images/4.png" in h and "class: dog" in h for h in texts[4])
    assert sum("caption 4." in h for h in texts[4]) == 3
    assert any("class: &lt;b&gt;fish&lt;/b&gt;" in h for h in texts[5])  # escaped, not markup
    # The class menu shows one class in every modality (and keeps the pair trace).
    (menu,) = fig.layout.updatemenus
    assert [b.label for b in menu.buttons] == ["all classes", "class cat", "class dog", "class <b>fish</b>"]
    dog = menu.buttons[2].args[0]["visible"]
    assert dog == [t.name == PAIRS_TRACE or t.meta["class"] == 1 for t in fig.data]
    assert "caption 4.0" in fig.to_json()  # the hover data travels in the figure JSON


def test_interactive_map_without_labels_has_one_trace_per_modality_and_no_menu():
    from gapdiag.figures.interactive_map import build_interactive_map

    fig = build_interactive_map(small_set(), method="pca", max_pairs=10)
    assert [t.name for t in fig.data[:-1]] == ["image", "text"]
    assert all(len(t.x) == 10 for t in fig.data[:-1]) and not fig.layout.updatemenus
    assert fig.data[0].text[0].startswith("<b>image</b> · sample ")


def test_item_labels_refuse_a_dataset_that_does_not_match_the_embeddings():
    from gapdiag.data.base import Modality, PairedDataset
    from gapdiag.figures.interactive_map import item_labels

    es = small_set(n=3)
    modalities = {
        "image": Modality("image", "image", [Path(f"{i}.png") for i in range(3)], np.arange(3)),
        "text": Modality("text", "text", ["a", "b", "c"], np.arange(3)),
    }
    assert item_labels(PairedDataset("d", "d", modalities, 3), es) == {
        "image": ["0.png", "1.png", "2.png"], "text": ["a", "b", "c"]}
    modalities["text"] = Modality("text", "text", ["a", "b"], np.arange(2))
    assert item_labels(PairedDataset("d", "d", modalities, 3), es) is None


ERROR_HOOK = """<script>window.__errors = [];
function __keep(m) { window.__errors.push(String(m));
  document.documentElement.setAttribute('data-errors', JSON.stringify(window.__errors)); }
window.addEventListener('error', function (e) { __keep(e.message); });
var __consoleError = console.error;
console.error = function () {
  __keep([].slice.call(arguments).join(' ')); __consoleError.apply(console, arguments); };
</script>"""

MAP_PROBE = """<script>
window.addEventListener('load', function () { setTimeout(function () {
  var gd = document.getElementById('gapdiag-interactive-map');
  var out = {errors: window.__errors, svg: !!gd.querySelector('svg.main-svg'),
             points: gd.querySelectorAll('.scatterlayer .point').length};
  try {
    Plotly.Fx.hover(gd, [{curveNumber: 0, pointNumber: 0}]);
    out.hover = (gd.querySelector('.hoverlayer .hovertext') || {}).textContent || '';
    gd.emit('plotly_click', {points: [{customdata: gd.data[0].customdata[0]}]});
    out.pairs = gd.data[gd.data.length - 1].x.length;
  } catch (e) { out.exc = String(e); }
  document.body.setAttribute('data-probe', JSON.stringify(out));
}, 300); });
</script></body>"""


@pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="chromium not installed (apt-get install -y --no-install-recommends chromium)",
)
def test_interactive_map_renders_hovers_and_draws_pair_lines_in_headless_chromium(tmp_path):
    from gapdiag.figures.interactive_map import build_interactive_map, interactive_map_html

    fig = build_interactive_map(labelled_set(), method="pca", labels=HOVER_LABELS)
    page = write_html(tmp_path / "r.html", make_report(), {}, interactive=interactive_map_html(fig))
    text = page.read_text()
    tags = parse(text)
    # Offline: plotly.js is inline; no script, stylesheet or frame is loaded from anywhere.
    assert not tags.all("link") and not tags.all("iframe")
    assert all("src" not in attrs for attrs in tags.all("script"))
    probed = tmp_path / "probed.html"
    probed.write_text(text.replace("<head>", "<head>" + ERROR_HOOK, 1).replace("</body>", MAP_PROBE))
    dom = chromium(
        "--virtual-time-budget=10000", "--dump-dom", probed.as_uri(), user_dir=tmp_path / "profile"
    ).stdout
    (body,) = parse(dom).all("body")
    probe = json.loads(body["data-probe"])
    assert probe["errors"] == [] and "exc" not in probe, probe
    assert probe["svg"] and probe["points"] == 12 + 36, probe
    # First trace = image points of class "cat": sample 0, its path and class in the tooltip.
    hover = probe["hover"]
    assert "sample 0" in hover and "images/0.png" in hover and "class: cat" in hover
    assert probe["pairs"] == 3 * 3  # image to each of its 3 captions: (x0, x1, gap) per line


def test_cli_report_embeds_the_interactive_map_unless_asked_not_to(npz, tmp_path, capsys):
    from tests.cli_helpers import gapdiag

    base = ("report", "-d", npz, "--method", "pca", "--kind", "map", "--dpi", "30", "--json",
            "--cache-dir", tmp_path / "cache")
    code, out, _ = gapdiag(capsys, *base, "--out", tmp_path / "a.html")
    assert code == 0 and json.loads(out)["interactive"] is True
    assert 'id="gapdiag-interactive-map"' in (tmp_path / "a.html").read_text()
    code, out, _ = gapdiag(capsys, *base, "--out", tmp_path / "b.html", "--no-interactive")
    page = (tmp_path / "b.html").read_text()
    assert code == 0 and json.loads(out)["interactive"] is False
    assert "gapdiag-interactive-map" not in page and "https://" not in page and "<script" not in page
def test_diagnostics_section_shows_where_the_gap_lives_and_the_hubs():
    from gapdiag import api
    from gapdiag.report.html import render_html

    report = api.measure(device="cpu", progress=False)
    page = render_html(report, {})
    assert "<h2>Diagnostics</h2>" in page and "Where the gap lives" in page and "Hubs of retrieval" in page
    hub = report.extras["hubness/image_to_text"]["hubs"][0]
    assert f"#{hub['item']} ×{hub['occurrence']}" in page and hub["caption"] in page
    assert f"{report.metrics['gap_bures/image-text']:.4g}" in page
    bare = api.measure(device="cpu", progress=False, metrics=["modality_gap"])
    assert "Diagnostics" not in render_html(bare, {})


def test_measurement_notes_are_shown_under_the_summary(figures):
    report = make_report()
    report.extras["notes"] = ["R@K here is class-level: 70 of 80 captions repeat <another>"]
    body = render_html(report, {"hist": figures["hist"]}, dpi=30)
    assert "Note: R@K here is class-level: 70 of 80 captions repeat &lt;another&gt;" in body
    assert body.index("Note: R@K") < body.index("<h2>Metrics")


def test_report_right_after_measure_reuses_its_measurement(manifest, tiny_checkpoint, tmp_path, monkeypatch,
                                                           capsys):
    """`gapdiag report` on the model and data `gapdiag measure` just measured reads the memo back: the metric
    engine is not called again (issue #30 §4: 47.6 s recomputed on real data)."""
    import gapdiag.metrics as metrics_package

    common = ["-d", str(manifest), "-m", str(tiny_checkpoint), "--device", "cpu", "-q"]
    assert run(["measure", *common, "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)["metrics"]

    def no_recomputation(*args, **kwargs):
        raise AssertionError("the metrics were computed again")

    monkeypatch.setattr(metrics_package, "compute_all", no_recomputation)
    out = tmp_path / "r.html"
    assert run(["report", *common, "--kind", "hist", "--no-interactive", "--dpi", "30", "--out", str(out)]) == 0
    rows = {a["data-metric"] for a in parse(out.read_text()).all("tr") if "data-metric" in a}
    assert rows == {name for name, value in measured.items() if value is not None}


def test_measure_right_after_report_reuses_its_measurement_and_names_the_listed_items(
        manifest, tiny_checkpoint, tmp_path, monkeypatch):
    import gapdiag.metrics as metrics_package
    from gapdiag import api

    options = {"model": str(tiny_checkpoint), "device": "cpu", "progress": False}
    api.report(tmp_path / "r.html", data=str(manifest), kinds=["hist"], interactive=False, dpi=30, **options)

    def no_recomputation(*args, **kwargs):
        raise AssertionError("the metrics were computed again")

    monkeypatch.setattr(metrics_package, "compute_all", no_recomputation)
    report = api.measure(str(manifest), **options)
    hubs = [hub for key, value in report.extras.items() if key.startswith("hubness/") for hub in value["hubs"]]
    assert hubs and all(hub.get("path") or hub.get("caption") for hub in hubs)


def _class_colours(n_classes: int) -> list[tuple[float, float, float]]:
    """The marker colour of each class in the interactive map of an embedding set with ``n_classes`` classes."""
    from matplotlib.colors import to_rgb

    from gapdiag.figures.interactive_map import build_interactive_map

    es = small_set(n=3 * n_classes)
    es.labels = np.arange(3 * n_classes) % n_classes
    es.class_names = [f"class {c}" for c in range(n_classes)]
    fig = build_interactive_map(es, method="pca")
    by_class = {t.meta["class"]: t.marker.color for t in fig.data if t.meta is not None}
    assert sorted(by_class) == list(range(n_classes))
    css = [by_class[c] for c in range(n_classes)]
    return [tuple(int(v) / 255 for v in c[4:-1].split(",")) if c.startswith("rgb(") else to_rgb(c) for c in css]


@pytest.mark.parametrize("n_classes", [10, 14, 30])
def test_interactive_map_colours_classes_with_a_categorical_palette(n_classes):
    """More classes than Okabe–Ito's 8 colours are still categories: no colour order that reads as a scale
    (issue #30 §4: ten digits were coloured with viridis, dark to light), and any two classes told apart."""
    rgb = np.array(_class_colours(n_classes))
    luminance = rgb @ np.array([0.2126, 0.7152, 0.0722])
    steps = np.diff(luminance)
    assert not (np.all(steps > 0) or np.all(steps < 0)), "the class colours run along a lightness scale"
    distance = np.sqrt(((rgb[:, None] - rgb[None]) ** 2).sum(-1))[~np.eye(n_classes, dtype=bool)]
    assert distance.min() > (0.2 if n_classes <= 10 else 0.03)
def test_the_interactive_map_of_a_random_init_model_still_names_its_items(manifest, tmp_path, monkeypatch):
    """--random-init is a model option: the hover text reads the dataset without it (a reader handed it would
    refuse, and the map would silently lose its captions)."""
    from gapdiag import api, figures

    seen = {}
    real = figures.build_interactive_map

    def spy(es, **kwargs):
        seen["labels"] = kwargs.get("labels")
        return real(es, **kwargs)

    monkeypatch.setattr(figures, "build_interactive_map", spy)
    api.report(tmp_path / "r.html", data=manifest, model="gapdiag-tiny-vit", random_init=True, kinds=["map"],
               method="pca", metrics=["modality_gap"], device="cpu", progress=False)
    assert seen["labels"] is not None and any("digit" in str(v) or "/" in str(v) for v in seen["labels"].values())


def test_cli_report_of_one_model_with_the_figures_of_another_is_refused(capsys, tmp_path, manifest,
                                                                         tiny_checkpoint):
    """`report -r base.json -m other.safetensors` drew a page titled for the report's model around the other
    model's map: refused like a dataset mismatch (issue #23 item 8), in one line naming both."""
    from conftest import export_tiny

    other = export_tiny(tmp_path / "other.safetensors", seed=7)
    base = tmp_path / "base.json"
    code, _, err = gapdiag(capsys, "measure", "-d", manifest, "-m", tiny_checkpoint, "--out", base, "-q",
                           "--metrics", "modality_gap")
    assert code == 0, err
    common = ["report", "-r", base, "-d", manifest, "--kind", "hist", "-q", "--no-interactive"]
    code, out, err = gapdiag(capsys, *common, "-m", other, "--out", tmp_path / "r.html")
    assert_one_line_error(code, out, err, str(base), "another model", "other", "tiny", "-m/--model")
    assert not (tmp_path / "r.html").exists()
    code, _, err = gapdiag(capsys, *common, "-m", "gapdiag-tiny-vit", "--random-init", "--out", tmp_path / "r.html")
    assert_one_line_error(code, _, err, "another model")
    code, _, err = gapdiag(capsys, *common, "-m", tiny_checkpoint, "--out", tmp_path / "r.html")
    assert code == 0, err  # the report's own model
