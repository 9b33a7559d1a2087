"""Build gapdiag's bundled sample data into ``sample_data/`` (deterministic: same bytes on every run).

    python scripts/build_sample_data.py [--out sample_data]

Writes two datasets, each a folder with ``manifest.csv``, ``images/*.png`` and a README.md:

- ``digits/``: scikit-learn's 1,797 handwritten digits (``sklearn.datasets.load_digits``, real scans from the UCI
  Optical Recognition of Handwritten Digits data set), upscaled to 32x32 grayscale, dark ink on white, three
  captions each drawn (seeded) from several phrasings, label, class name and a stratified 80/20 split;
- ``shapes/``: 480 rendered 32x32 RGB images of one coloured shape (6 colours x 4 shapes x 2 sizes x 5 positions
  x 2 seeded jitters) with captions and ``color``/``shape``/``size``/``position`` attribute columns.

Only numpy, scikit-learn and Pillow are used; every image is computed with numpy (no Pillow resampling or
drawing, whose output can change between Pillow versions), and Pillow only encodes the PNGs.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

SEED = 20261125
IMAGE_SIZE = 32
TEST_FRACTION = 0.2

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGIT_TEMPLATES = (
    "a handwritten digit {word}",
    "the number {num} written by hand",
    "a scanned image of a handwritten {word}",
    "a black and white picture of the digit {num}",
    "a blurry low resolution image of the number {word}",
    "the digit {word}, drawn by hand",
    "a pixelated handwritten {num}",
)

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 205, 30),
    "purple": (140, 60, 180),
    "orange": (245, 140, 30),
}
SHAPES = ("circle", "square", "triangle", "cross")
SIZES = {"small": 5.0, "large": 9.0}  # half-width in pixels
POSITIONS = {"left": (-1, 0), "right": (1, 0), "top": (0, -1), "bottom": (0, 1), "center": (0, 0)}
POSITION_PHRASES = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "center": "in the middle",
}
SHAPE_TEMPLATES = (
    "a simple drawing of a {color} {shape}",
    "a {color} {shape} on a grey background",
    "an icon of a {size} {color} {shape}",
    "a {shape} coloured {color}",
)
REPEATS = 2
SUPERSAMPLE = 4


def stratified_split(groups: NDArray[np.int64], rng: np.random.Generator) -> list[str]:
    """``"test"`` for round(20%) of each group's items (chosen at random), ``"train"`` for the rest."""
    split = np.array(["train"] * len(groups), dtype=object)
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        n_test = round(TEST_FRACTION * len(members))
        split[rng.permutation(members)[:n_test]] = "test"
    return split.tolist()


def linear_resize_matrix(n_in: int, n_out: int) -> NDArray[np.float64]:
    """``(n_out, n_in)`` matrix of bilinear weights (pixel centres aligned, edges clamped)."""
    x = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(x).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    w = np.zeros((n_out, n_in))
    np.add.at(w, (np.arange(n_out), lo), 1 - (x - lo))
    np.add.at(w, (np.arange(n_out), hi), x - lo)
    return w


def save_png(array: NDArray[np.uint8], path: Path) -> None:
    Image.fromarray(array).save(path, format="PNG", optimize=True)


def write_manifest(path: Path, columns: list[str], rows: list[list[object]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)


def build_digits(out: Path, rng: np.random.Generator) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    resize = linear_resize_matrix(8, IMAGE_SIZE)
    labels = digits.target.astype(np.int64)
    split = stratified_split(labels, rng)
    rows = []
    for i, (img, label) in enumerate(zip(digits.images, labels)):
        ink = resize @ (img / 16.0) @ resize.T  # values 0..16 in the original scans
        pixels = np.round(255.0 * (1.0 - np.clip(ink, 0.0, 1.0))).astype(np.uint8)  # dark ink on white paper
        name = f"images/digit_{i:04d}.png"
        save_png(pixels, out / name)
        word = DIGIT_WORDS[label]
        picks = rng.choice(len(DIGIT_TEMPLATES), size=3, replace=False)
        captions = [DIGIT_TEMPLATES[k].format(word=word, num=int(label)) for k in picks]
        rows.append([name, *captions, int(label), word, split[i]])
    write_manifest(
        out / "manifest.csv",
        ["image", "caption_1", "caption_2", "caption_3", "label", "class_name", "split"],
        rows,
    )
    (out / "README.md").write_text(
        DIGITS_README.format(n=len(rows), n_test=split.count("test")), encoding="utf-8"
    )


def shape_mask(shape: str, cx: float, cy: float, r: float) -> NDArray[np.float64]:
    """Fraction of each pixel covered by the shape (``SUPERSAMPLE``^2 sub-pixel samples per pixel)."""
    n = IMAGE_SIZE * SUPERSAMPLE
    y, x = (np.mgrid[0:n, 0:n] + 0.5) / SUPERSAMPLE
    dx, dy = x - cx, y - cy
    if shape == "circle":
        inside = dx**2 + dy**2 <= r**2
    elif shape == "square":
        inside = (np.abs(dx) <= 0.85 * r) & (np.abs(dy) <= 0.85 * r)
    elif shape == "triangle":  # pointing up: below the two slanted edges and above the base
        inside = (dy <= 0.8 * r) & (dy >= -r + np.abs(dx) * 1.8 / 0.95)  # apex (0, -r), base (+-0.95r, 0.8r)
    elif shape == "cross":
        arm = 0.3 * r
        inside = ((np.abs(dx) <= arm) & (np.abs(dy) <= r)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= r))
    else:
        raise ValueError(shape)
    return inside.reshape(IMAGE_SIZE, SUPERSAMPLE, IMAGE_SIZE, SUPERSAMPLE).mean(axis=(1, 3))


def build_shapes(out: Path, rng: np.random.Generator) -> None:
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    records = []
    for color in COLORS:
        for shape in SHAPES:
            for size, r in SIZES.items():
                for position, (px, py) in POSITIONS.items():
                    for _ in range(REPEATS):
                        records.append((color, shape, size, position, r, px, py))
    groups = np.array([list(COLORS).index(c) * len(SHAPES) + SHAPES.index(s) for c, s, *_ in records])
    split = stratified_split(groups, rng)
    rows = []
    for i, (color, shape, size, position, r, px, py) in enumerate(records):
        offset = IMAGE_SIZE / 2 - r - 2  # as far from the centre as the shape fits, with a 2-pixel margin
        jitter = rng.uniform(-1.0, 1.0, size=2)
        cx = IMAGE_SIZE / 2 + px * offset + jitter[0]
        cy = IMAGE_SIZE / 2 + py * offset + jitter[1]
        cover = shape_mask(shape, cx, cy, r)[..., None]
        background = np.full(3, rng.integers(215, 250), dtype=np.float64)
        pixels = np.round((1 - cover) * background + cover * np.array(COLORS[color], dtype=np.float64))
        name = f"images/shape_{i:04d}.png"
        save_png(pixels.astype(np.uint8), out / name)
        template = SHAPE_TEMPLATES[rng.integers(len(SHAPE_TEMPLATES))]
        captions = [
            f"a {size} {color} {shape}",
            f"a {color} {shape} {POSITION_PHRASES[position]}",
            template.format(color=color, shape=shape, size=size),
        ]
        rows.append([name, *captions, color, shape, size, position, split[i]])
    write_manifest(
        out / "manifest.csv",
        ["image", "caption_1", "caption_2", "caption_3", "color", "shape", "size", "position", "split"],
        rows,
    )
    (out / "README.md").write_text(
        SHAPES_README.format(n=len(rows), n_test=split.count("test")), encoding="utf-8"
    )


def build(out: Path, seed: int = SEED) -> None:
    """Write ``out/digits`` and ``out/shapes`` (each from its own seeded generator)."""
    build_digits(out / "digits", np.random.default_rng([seed, 0]))
    build_shapes(out / "shapes", np.random.default_rng([seed, 1]))


DIGITS_README = """# digits: handwritten digits with captions

{n} handwritten digits (0-9), one 32x32 grayscale PNG each (dark ink on white), with three captions per image,
a label (0-9), a class name (zero..nine) and a split ({n_test} test, the rest train; stratified by digit).

## Provenance and licence
The images are scikit-learn's `load_digits()` data: a copy of the test set of the UCI Optical Recognition of
Handwritten Digits data set (E. Alpaydin, C. Kaynak, 1998; https://archive.ics.uci.edu/dataset/80), 8x8 images
of digits written by 43 people, each pixel the count (0-16) of ink in a 4x4 block of the 32x32 scan. scikit-learn
ships it under the BSD 3-Clause licence; the UCI data set is licensed CC BY 4.0 (cite the authors above).
Here each image is upscaled bilinearly to 32x32 and inverted; captions are drawn with a fixed seed from several
phrasings ("a handwritten digit seven", "the number 7 written by hand", ...).

## Columns
image, caption_1, caption_2, caption_3, label, class_name, split

## Rebuild
    python scripts/build_sample_data.py --out sample_data

The script is deterministic (fixed seed, images computed with numpy): a rebuild gives the same pixels, captions
and splits; tests/test_data_sample.py checks that the committed files match a fresh build.
"""

SHAPES_README = """# shapes: coloured shapes with attributes

{n} rendered 32x32 RGB images of one shape each: 6 colours (red, green, blue, yellow, purple, orange) x 4 shapes
(circle, square, triangle, cross) x 2 sizes (small, large) x 5 positions (left, right, top, bottom, center) x 2
seeded jitters (position +-1 pixel, background grey level). Three captions per image ("a small red circle",
"a red circle on the left", and one drawn from a few phrasings), attribute columns color, shape, size, position,
and a split ({n_test} test, stratified by colour and shape).

## Provenance and licence
Synthetic: drawn by scripts/build_sample_data.py with numpy (4x4 supersampled coverage). Same licence as
gapdiag (MIT).

## Columns
image, caption_1, caption_2, caption_3, color, shape, size, position, split

## Rebuild
    python scripts/build_sample_data.py --out sample_data
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent.parent / "sample_data",
        help="output folder (default: the repository's sample_data/)",
    )
    parser.add_argument("--seed", type=int, default=SEED, help="random seed (changing it changes the data)")
    args = parser.parse_args()
    build(args.out, args.seed)
    print(f"wrote {args.out}/digits and {args.out}/shapes")


if __name__ == "__main__":
    main()
