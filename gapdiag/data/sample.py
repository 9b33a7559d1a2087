"""The sample data shipped in the repository's ``sample_data/`` folder (built by scripts/build_sample_data.py).

- ``sample_data/digits``: scikit-learn's 1,797 handwritten digits (UCI Optical Recognition of Handwritten
  Digits) as 32x32 PNGs with three captions each, labels, class names and an 80/20 train/test split;
- ``sample_data/shapes``: 480 rendered coloured shapes with captions and ``color``/``shape``/``size``/
  ``position`` attributes.
"""

from __future__ import annotations

import os
from pathlib import Path

from gapdiag.data.base import PairedDataset
from gapdiag.errors import DatasetError

#: Environment variable that points at another sample-data folder.
SAMPLE_DATA_ENV = "GAPDIAG_SAMPLE_DATA"


def sample_data_dir() -> Path:
    """The sample-data folder: ``$GAPDIAG_SAMPLE_DATA``, else ``sample_data/`` beside the ``gapdiag`` package.

    Raises:
        DatasetError: The folder does not exist.
    """
    import gapdiag

    env = os.environ.get(SAMPLE_DATA_ENV)
    folder = Path(env) if env else Path(gapdiag.__file__).resolve().parent.parent / "sample_data"
    if not folder.is_dir():
        how = f"${SAMPLE_DATA_ENV}" if env else "the repository checkout"
        raise DatasetError(
            f"{folder}: sample data not found (from {how}); run `python scripts/build_sample_data.py` "
            f"in a gapdiag checkout or set {SAMPLE_DATA_ENV}"
        )
    return folder


def default_dataset(split: str | None = "test") -> PairedDataset:
    """The bundled default: the handwritten digits, ``split`` (``"train"``, ``"test"`` or ``None`` for all)."""
    from gapdiag.data.manifest import read_manifest

    return read_manifest(sample_data_dir() / "digits" / "manifest.csv", split=split)
