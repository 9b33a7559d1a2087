"""Small real-image datasets for the data-reader tests, written into a temporary folder.

Images come from data that packages ship: scikit-learn's handwritten digits and its two sample photos
(``load_sample_images``), shrunk to a few pixels so every test stays fast.
"""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@lru_cache(maxsize=1)
def _digits() -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images * (255 / 16)).round().astype(np.uint8), d.target.astype(np.int64)


def digit_image(i: int) -> Image.Image:
    """Digit ``i`` of scikit-learn's digits as a 16x16 grayscale image."""
    return Image.fromarray(_digits()[0][i]).resize((16, 16), Image.NEAREST)


def digit_label(i: int) -> int:
    return int(_digits()[1][i])


@lru_cache(maxsize=1)
def _photos() -> tuple[NDArray[np.uint8], ...]:
    from sklearn.datasets import load_sample_images

    return tuple(
        np.asarray(Image.fromarray(img).resize((24, 16), Image.BILINEAR))
        for img in load_sample_images().images
    )


def photo_image(k: int) -> Image.Image:
    """Sample photo ``k`` (0 = china.jpg, 1 = flower.jpg) shrunk to 24x16 RGB."""
    return Image.fromarray(_photos()[k])


def write_digits(folder: Path, indices: list[int], fmt: str = "png") -> list[Path]:
    """Write digits ``indices`` as ``folder/digit_<i>.<fmt>``; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in indices:
        p = folder / f"digit_{i}.{fmt}"
        digit_image(i).save(p)
        paths.append(p)
    return paths


def write_csv(path: Path, header: list[str], rows: list[list[object]], delimiter: str = ",") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter=delimiter, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return path


def digits_manifest(root: Path, n: int = 6, name: str = "manifest.csv") -> tuple[Path, list[list[object]]]:
    """A manifest of ``n`` digits with two captions, label, class name and split; returns (path, rows)."""
    write_digits(root / "images", list(range(n)))
    rows = []
    for i in range(n):
        y = digit_label(i)
        rows.append(
            [
                f"images/digit_{i}.png",
                f"a handwritten {DIGIT_WORDS[y]}",
                f"the number {y} by hand",
                y,
                DIGIT_WORDS[y],
                "test" if i % 3 == 0 else "train",
            ]
        )
    header = ["image", "caption_1", "caption_2", "label", "class_name", "split"]
    return write_csv(root / name, header, rows), rows
