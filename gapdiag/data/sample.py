"""The sample data shipped in the repository's ``sample_data/`` folder (built by scripts/build_sample_data.py).

An installed wheel carries a copy inside the package (``gapdiag/bundled/sample_data/``, put there by
setup.py), so that ``gapdiag measure`` with no arguments works without a checkout; an editable install reads
the checkout's folder in place. Same files, so the same data fingerprint: caches and baselines carry over.

- ``sample_data/digits``: scikit-learn's 1,797 handwritten digits (UCI Optical Recognition of Handwritten
  Digits) as 32x32 PNGs with three captions each, labels, class names and an 80/20 train/test split;
- ``sample_data/shapes``: 480 rendered coloured shapes with captions and ``color``/``shape``/``size``/
  ``position`` attributes.
"""

from __future__ import annotations

from pathlib import Path

from gapdiag.data.base import PairedDataset
from gapdiag.data.manifest import read_manifest
from gapdiag.errors import DatasetError
from gapdiag.settings import SAMPLE_DATA_ENV  # the variable's name, for the message: the settings read it

#: Where a built wheel keeps its copy, relative to the ``gapdiag`` package (see setup.py).
PACKAGED_SAMPLE_DATA = ("bundled", "sample_data")


def sample_data_dir(override: Path | None = None) -> Path:
    """The sample-data folder: ``override`` (``$GAPDIAG_SAMPLE_DATA``, which the settings read); else the installed
    package's copy (``gapdiag/bundled/sample_data``); else ``sample_data/`` of the checkout the package is
    imported from.

    Raises:
        DatasetError: The folder does not exist.
    """
    if override is not None:
        folder = Path(override)
        how = f"${SAMPLE_DATA_ENV}"
    else:
        package = Path(__file__).resolve().parents[1]  # the gapdiag package
        packaged = package.joinpath(*PACKAGED_SAMPLE_DATA)
        folder = packaged if packaged.is_dir() else package.parent / "sample_data"
        how = "the installed package or the repository checkout"
    if not folder.is_dir():
        raise DatasetError(
            f"{folder}: sample data not found (from {how}); reinstall gapdiag from a wheel or the checkout, "
            f"run `python scripts/build_sample_data.py` in a checkout, or set {SAMPLE_DATA_ENV}"
        )
    return folder


def default_dataset(split: str | None = "test", *, sample_data: Path | None = None,
                    memo_dir: Path | None = None) -> PairedDataset:
    """The bundled default: the handwritten digits, ``split`` (``"train"``, ``"test"`` or ``None`` for all), from
    :func:`sample_data_dir` of ``sample_data``; ``memo_dir`` as for :func:`gapdiag.data.load_dataset`."""
    return read_manifest(sample_data_dir(sample_data) / "digits" / "manifest.csv", split=split, memo_dir=memo_dir)
