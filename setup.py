"""Build hook: put the repository's ``sample_data/`` into the wheel as ``gapdiag/bundled/sample_data/``.

The default of ``gapdiag measure`` (no arguments) reads the bundled tiny checkpoints and the digits; an
installed wheel has no checkout beside it, so the wheel carries a copy. The repository keeps one copy
(``sample_data/``, read in place by an editable install); :func:`gapdiag.data.sample.sample_data_dir` finds
either. Everything else about the build is declared in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
#: The sample_data/ folders shipped: the default's checkpoints and data (digits), and the shapes (~200 kB).
SHIPPED = ("checkpoints", "digits", "shapes")
#: Where the copy goes inside the package (kept in step with gapdiag.data.sample.PACKAGED_SAMPLE_DATA).
PACKAGED = Path("gapdiag") / "bundled" / "sample_data"


class BuildPyWithSampleData(build_py):
    """``build_py`` that also copies the shipped sample-data folders into the build tree."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout's sample_data/ in place
        source = ROOT / "sample_data"
        if not source.is_dir():  # a stripped sdist: the package still works with $GAPDIAG_SAMPLE_DATA
            return
        dest = Path(self.build_lib) / PACKAGED
        for name in SHIPPED:
            if (source / name).is_dir():
                shutil.copytree(source / name, dest / name, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__", ".*"))


setup(cmdclass={"build_py": BuildPyWithSampleData})
