"""The reader registry: a format is one registered function; detection, options, FORMATS and messages follow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from data_fixtures import write_csv

import gapdiag.data as data
from gapdiag.data import detect_format, load_dataset, registry
from gapdiag.data.precomputed import build_precomputed
from gapdiag.errors import DatasetError, InputError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registrations made by a test disappear after it."""
    registry.readers()  # load the real readers first
    monkeypatch.setattr(registry, "_READERS", dict(registry._READERS))


def _register_toy(suffix: str = ".toy") -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    @registry.register_reader(
        "toy",
        detect=lambda spec: f"toy file {Path(spec).name}" if spec.endswith(suffix) else None,
        accepted="a .toy file",
        help="Two random modalities, for this test.",
        options=("split",),
        aliases=("t",),
        order=99,
    )
    def read_toy(spec: str, *, skip_bad: bool = False, memo_dir: Path | None = None,
                 **options: Any) -> data.PairedDataset:
        calls.append({"spec": spec, "skip_bad": skip_bad, "memo_dir": memo_dir, **options})
        rng = np.random.default_rng(0)
        arrays = {"image": rng.normal(size=(3, 2)), "text": rng.normal(size=(3, 2))}
        return build_precomputed(arrays, source=Path(spec), files=[Path(spec)])

    return calls


def test_a_registered_reader_is_detected_listed_and_given_its_options(scratch_registry, tmp_path: Path) -> None:
    calls = _register_toy()
    path = tmp_path / "x.toy"
    path.write_text("toy")
    assert data.FORMATS[-1] == "toy"
    assert detect_format(path) == "toy"
    assert load_dataset(path, split="a", skip_bad=True).n_samples == 3
    assert calls == [{"spec": str(path), "skip_bad": True, "memo_dir": None, "split": "a"}]
    load_dataset(path, format="t", memo_dir=str(tmp_path / "memo"))
    assert calls[-1]["memo_dir"] == tmp_path / "memo"  # the fingerprint memo's folder, handed to the reader
    with pytest.raises(InputError, match="option templates does not apply to the toy format"):
        load_dataset(path, templates=["a {}"])
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    with pytest.raises(DatasetError, match=r"unknown dataset format \(expected .*, or a \.toy file\)"):
        detect_format(notes)


def test_two_readers_recognising_one_file_are_an_error(scratch_registry, tmp_path: Path) -> None:
    _register_toy(suffix=".csv")
    path = write_csv(tmp_path / "m.csv", ["image", "caption"], [["a.png", "a"]])
    with pytest.raises(DatasetError, match=r"fits two dataset formats, manifest \(table m.csv\) and toy \(toy file"):
        detect_format(path)


def test_a_name_or_alias_registered_twice_is_refused(scratch_registry) -> None:
    with pytest.raises(RuntimeError, match="'wds' registered twice"):
        registry.register_reader("wds", detect=lambda s: None, accepted="x", help="x")(lambda spec: None)


def test_every_registered_format_is_documented() -> None:
    docs = (ROOT / "docs" / "datasets.md").read_text()
    for spec in registry.readers():
        assert spec.help and spec.accepted, spec.name
        assert f"| {spec.name}" in docs, f"docs/datasets.md has no row for {spec.name}"
