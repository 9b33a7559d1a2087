"""Tests of gapdiag.html_report and `gapdiag report`: a self-contained HTML file that really renders.

The rendering test opens the file in headless Chromium (skipped with a reason when ``chromium`` is not
installed; .ci installs it) and checks the rendered DOM and a screenshot.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, gapdiag
from PIL import Image

from gapdiag import plot as gplot
from gapdiag.cli import run
from gapdiag.embeddings import EmbeddingSet
from gapdiag.errors import InputError
from gapdiag.html_report import render_html, write_html
from gapdiag.report import Report

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
    assert "0.8123" in tags.cells and "[0.8, 0.825]" in tags.cells and "lower" in tags.cells
    # Special characters in provenance are escaped, not markup.
    assert "toy &lt;pairs&gt; &amp; co" in text and "<pairs>" not in text


def test_html_with_inline_svg_names_no_url(figures):
    text = render_html(make_report(), figures, figure_format="svg", title="t")
    assert "http://" not in text.lower() and "https://" not in text.lower()
    tags = parse(text)
    assert len(tags.all("svg")) == 3 and not tags.all("img")
    with pytest.raises(InputError, match="unknown figure format 'gif'"):
        render_html(make_report(), figures, figure_format="gif")


def test_write_html_is_atomic_and_reports_unwritable_paths(tmp_path, figures):
    path = write_html(
        tmp_path / "sub" / "r.html", make_report(), {"hist": figures["hist"]}, title="x", dpi=30
    )
    assert path.read_text().startswith("<!DOCTYPE html>")
    assert not list(path.parent.glob(".*.tmp"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="it or a parent is a file"):
        write_html(tmp_path / "file" / "r.html", make_report(), {})


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
            "-d",
            str(tmp_path / "never-read.npz"),
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
