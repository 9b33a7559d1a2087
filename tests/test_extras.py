"""The optional extras (issue #30 §1): Parquet (pyarrow, ``gapdiag[parquet]``) and the report's interactive map
(plotly, ``gapdiag[interactive]``).

The test extra installs both, so the suite tests both paths: here each package is made unimportable in-process
(its modules leave ``sys.modules`` and a meta-path finder refuses to find them, so ``import`` raises
``ModuleNotFoundError`` as in an environment without it), and every user-facing entry point that needs it must
stop with one line naming the feature and the install command, before any work; everything else must run.
"""

from __future__ import annotations

import ast
import importlib.abc
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_helpers import assert_one_line_error, gapdiag
from conftest import instrument_encoding

from gapdiag import api
from gapdiag.errors import MissingExtraError, require

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
PARQUET_FIX = "pip install 'gapdiag[parquet]'"
MAP_FIX = "pip install 'gapdiag[interactive]'"


class _Uninstalled(importlib.abc.MetaPathFinder):
    """Finds ``top`` and its submodules nowhere, as in an environment where the package is not installed."""

    def __init__(self, top: str) -> None:
        self.top = top

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == self.top or name.startswith(self.top + "."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


def _block(monkeypatch: pytest.MonkeyPatch, top: str) -> None:
    """Make ``top`` unimportable for this test (restored afterwards by monkeypatch).

    Its loaded modules leave ``sys.modules`` too (not ``None`` there: scikit-learn, for one, takes any entry for
    pyarrow in ``sys.modules`` as the imported package), and a finder in front refuses to find them again.
    """
    for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_Uninstalled(top), *sys.meta_path])


@pytest.fixture
def no_pyarrow(monkeypatch: pytest.MonkeyPatch) -> None:
    _block(monkeypatch, "pyarrow")


@pytest.fixture
def no_plotly(monkeypatch: pytest.MonkeyPatch) -> None:
    _block(monkeypatch, "plotly")


@pytest.fixture
def vectors_npz(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    image = rng.normal(size=(30, 6)).astype(np.float32)
    text = (image + 0.3 * rng.normal(size=(30, 6))).astype(np.float32)
    path = tmp_path / "pairs.npz"
    np.savez(path, image=image, text=text)
    return path


# --- the declared requirements ---------------------------------------------------------------------------------

def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _names(requirements: list[str]) -> set[str]:
    return {r.split(";")[0].split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower()
            for r in requirements}


def test_pyarrow_and_plotly_are_extras_not_dependencies():
    project = _project()
    extras = project["optional-dependencies"]
    assert not {"pyarrow", "plotly"} & _names(project["dependencies"])
    assert extras["parquet"] == ["pyarrow>=14"] and extras["interactive"] == ["plotly>=5.15"]
    assert {"pyarrow", "plotly"} <= _names(extras["test"])  # the suite runs both paths
    (everything,) = extras["all"]
    chosen = set(everything.split("[")[1].rstrip("]").split(","))
    assert chosen == set(extras) - {"all", "test", "dev"}  # every feature extra, none of the tool sets


def _direct_imports(tree: ast.AST, tops: set[str]) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        if any(name.split(".")[0] in tops for name in names):
            lines.append(node.lineno)
    return lines


def test_every_import_of_an_optional_package_goes_through_the_one_helper():
    found = {}
    for path in sorted((REPO / "gapdiag").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        # Imports under `if TYPE_CHECKING:` never run; they are left out.
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
                node.body = []
        lines = _direct_imports(tree, {"pyarrow", "plotly"})
        if lines:
            found[str(path.relative_to(REPO))] = lines
    assert found == {}, f"import pyarrow/plotly through gapdiag.extras.require: {found}"


# --- the helper --------------------------------------------------------------------------------------------------

def test_a_missing_package_names_the_feature_and_the_install_command(no_pyarrow):
    with pytest.raises(MissingExtraError) as caught:
        require("pyarrow.parquet", "x.parquet: Parquet support")
    line = caught.value.one_line()
    assert line == ("x.parquet: Parquet support needs pyarrow, which is not installed "
                    f"(install it with: {PARQUET_FIX})")
    assert caught.value.exit_code == 2


def test_a_package_that_is_installed_but_broken_is_named_as_such(monkeypatch):
    import importlib

    def broken(name: str, package: str | None = None):
        raise ImportError("libarrow.so.2000: cannot open shared object file")

    monkeypatch.setattr(importlib, "import_module", broken)
    with pytest.raises(MissingExtraError) as caught:
        require("plotly.io", "the interactive map")
    line = caught.value.one_line()
    assert "installed but cannot be imported (libarrow.so.2000: cannot open shared object file)" in line
    assert "pip install --force-reinstall plotly" in line


def test_a_missing_dependency_of_the_package_is_not_called_a_missing_package(monkeypatch):
    import importlib

    def inner(name: str, package: str | None = None):
        raise ModuleNotFoundError("No module named 'narwhals'", name="narwhals")

    monkeypatch.setattr(importlib, "import_module", inner)
    with pytest.raises(MissingExtraError, match="installed but cannot be imported.*narwhals"):
        require("plotly.graph_objects", "the interactive map")


# --- Parquet: every entry point stops with one line, before any work ---------------------------------------------

def test_export_without_pyarrow_is_one_line_before_embedding(no_pyarrow, capsys, manifest, tiny_checkpoint,
                                                             tmp_path, monkeypatch):
    counts = instrument_encoding(monkeypatch.setattr)
    out = tmp_path / "e.parquet"
    assert_one_line_error(*gapdiag(capsys, "export", "-d", manifest, "-m", tiny_checkpoint, "--device", "cpu",
                                   "--out", out), "e.parquet: Parquet support needs pyarrow", PARQUET_FIX)
    assert counts == {"image": 0, "text": 0} and not out.exists()


def test_export_of_the_bundled_default_without_pyarrow_is_one_line(no_pyarrow, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(*gapdiag(capsys, "export"), PARQUET_FIX)
    assert list(tmp_path.glob("*.parquet")) == []


def test_track_parquet_without_pyarrow_is_one_line_before_measuring(no_pyarrow, capsys, manifest, tiny_checkpoint,
                                                                    tmp_path, monkeypatch):
    counts = instrument_encoding(monkeypatch.setattr)
    record, table = tmp_path / "track.json", tmp_path / "track.parquet"
    assert_one_line_error(*gapdiag(capsys, "track", tiny_checkpoint, "-d", manifest, "--device", "cpu",
                                   "--out", record, "--parquet", table), f"--parquet {table}", PARQUET_FIX)
    assert counts == {"image": 0, "text": 0} and not record.exists() and not table.exists()


def _manifest_parquet(tmp_path: Path, manifest: Path) -> Path:
    import csv

    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    path = manifest.with_suffix(".parquet")
    pq.write_table(pa.table({k: [r[k] for r in rows] for k in rows[0]}), path)
    return path


def _vectors_parquet(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "vectors.parquet"
    pq.write_table(pa.table({m: list(rng.normal(size=(6, 4))) for m in ("image", "text")}), path)
    return path


def _hf_shard(tmp_path: Path, manifest: Path) -> Path:
    image = next(manifest.parent.rglob("*.png"))
    path = tmp_path / "hf" / "train-00000-of-00001.parquet"
    path.parent.mkdir()
    struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    pq.write_table(pa.table({"image": pa.array([{"bytes": image.read_bytes(), "path": "a.png"}] * 2, struct),
                             "caption": ["a digit", "another digit"]}), path)
    return path


@pytest.mark.parametrize("kind", ["manifest", "vectors", "huggingface"])
def test_measuring_a_parquet_dataset_without_pyarrow_is_one_line_naming_it(kind, capsys, manifest, tiny_checkpoint,
                                                                           tmp_path, monkeypatch):
    path = {"manifest": _manifest_parquet, "vectors": lambda t, m: _vectors_parquet(t),
            "huggingface": _hf_shard}[kind](tmp_path, manifest)
    _block(monkeypatch, "pyarrow")  # after writing the file
    line = assert_one_line_error(*gapdiag(capsys, "measure", "-d", path, "-m", tiny_checkpoint, "--device", "cpu"),
                                 PARQUET_FIX)
    assert path.name in line


def test_a_format_named_explicitly_still_needs_the_extra(capsys, manifest, tiny_checkpoint, tmp_path, monkeypatch):
    path = _hf_shard(tmp_path, manifest)
    _block(monkeypatch, "pyarrow")
    assert_one_line_error(*gapdiag(capsys, "measure", "-d", path, "--data-format", "hf", "-m", tiny_checkpoint,
                                   "--device", "cpu"), PARQUET_FIX)


def test_compare_of_parquet_vectors_without_pyarrow_is_one_line(capsys, tmp_path, monkeypatch):
    path = _vectors_parquet(tmp_path)
    _block(monkeypatch, "pyarrow")
    assert_one_line_error(*gapdiag(capsys, "compare", path, path), "vectors.parquet", PARQUET_FIX)


def test_reading_images_of_a_parquet_shard_without_pyarrow_is_the_same_line(tmp_path, manifest, monkeypatch):
    from gapdiag.data import images

    dataset = api.load_data(_hf_shard(tmp_path, manifest))
    item = dataset.modalities["image"].items[0]
    images._row_group_images.cache_clear()
    _block(monkeypatch, "pyarrow")
    with pytest.raises(MissingExtraError, match=r"train-00000-of-00001\.parquet.*" + PARQUET_FIX.replace("[", r"\[")):
        item.read_bytes()


# --- what needs neither ------------------------------------------------------------------------------------------

def test_measure_check_plot_and_compare_run_without_either(no_pyarrow, no_plotly, capsys, vectors_npz, tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    for args in (("measure", "-d", vectors_npz, "--out", a, "--json"),
                 ("measure", "-d", vectors_npz, "--out", b, "--json"),
                 ("check", "--baseline", a, "--report", a),
                 ("compare", a, b),
                 ("plot", "-d", vectors_npz, "--method", "pca", "--out", tmp_path / "figs")):
        code, _, err = gapdiag(capsys, *args)
        assert code == 0, (args, err)
    assert sorted(p.name for p in (tmp_path / "figs").iterdir())


# --- the report without plotly: every other section, and a note -------------------------------------------------

def test_report_without_plotly_has_every_other_section_and_says_the_map_needs_the_extra(no_plotly, capsys,
                                                                                          vectors_npz, tmp_path):
    out = tmp_path / "r.html"
    code, stdout, err = gapdiag(capsys, "report", "-d", vectors_npz, "--method", "pca", "--out", out, "--json")
    assert code == 0, err
    assert json.loads(stdout)["interactive"] is False
    assert "Traceback" not in err and MAP_FIX in err  # the CLI prints the result's note
    page = out.read_text(encoding="utf-8")
    for section in ("<h2>Metrics</h2>", "<h2>Figures</h2>", "<h2>Interactive map</h2>", "<h2>Provenance</h2>"):
        assert section in page, section
    assert MAP_FIX.replace("'", "&#x27;") in page and "Plotly.newPlot" not in page


def test_the_api_report_says_it_in_its_result_and_prints_nothing(no_plotly, capsys, vectors_npz, tmp_path):
    page = api.report(tmp_path / "r.html", data=vectors_npz, method="pca", progress=False)
    assert page.interactive is False
    assert any(MAP_FIX in note for note in page.notes)
    assert capsys.readouterr() == ("", "")


def test_report_without_the_map_asked_for_needs_no_note(no_plotly, vectors_npz, tmp_path):
    page = api.report(tmp_path / "r.html", data=vectors_npz, method="pca", interactive=False, progress=False)
    assert page.notes == [] and "Interactive map" not in page.path.read_text(encoding="utf-8")


def test_report_without_plotly_reads_no_hover_labels(no_plotly, monkeypatch, vectors_npz, tmp_path):
    """The hover labels (captions, class names: a read of the data) were built before plotly was found missing."""
    from gapdiag.api import drawing

    def read_for_nothing(*args, **kwargs):
        raise AssertionError("hover labels read for a map that cannot be drawn")

    monkeypatch.setattr(drawing, "hover_labels", read_for_nothing)
    page = api.report(tmp_path / "r.html", data=vectors_npz, method="pca", progress=False)
    assert page.interactive is False and page.notes
