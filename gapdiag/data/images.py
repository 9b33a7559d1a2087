"""Image items and how to open them.

An image item of a :class:`~gapdiag.data.base.Modality` of kind ``"image"`` is either a file path
(:class:`pathlib.Path`), a :class:`TarMember` (an image stored inside a WebDataset shard) or a
:class:`ParquetImage` (image bytes inside a Parquet file); the last two are read on demand so that a large set
never sits in memory. :func:`load_image` opens all three.

Readers only check that image files *exist* (cheap, one ``stat`` each); decoding happens once, in the embed
step, which calls :func:`load_image` and turns its :class:`~gapdiag.errors.DatasetError` into a skipped item
when ``skip_bad`` is set.
"""

from __future__ import annotations

import errno
import functools
import io
import os
import stat
import sys
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from gapdiag.data.parquet import arrow
from gapdiag.errors import DatasetError

#: File extensions readers treat as images (lower case).
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
)


@dataclass(frozen=True)
class TarMember:
    """An image stored uncompressed inside a tar shard: ``size`` bytes starting at byte ``offset``.

    Attributes:
        shard: Path of the ``.tar`` file.
        name: Member name inside the tar (for messages).
        offset: Byte offset of the member's data in the shard.
        size: Member size in bytes.
    """

    shard: Path
    name: str
    offset: int
    size: int

    def __str__(self) -> str:
        return f"{self.shard}::{self.name}"

    def read_bytes(self) -> bytes:
        with open(self.shard, "rb") as f:
            f.seek(self.offset)
            return f.read(self.size)


@dataclass(frozen=True)
class ParquetImage:
    """An image stored as bytes in a Parquet file (a Hugging Face datasets export), read on demand.

    Attributes:
        shard: Path of the ``.parquet`` file.
        row_group: Row group holding the image (the unit Parquet reads).
        index: Row inside that row group.
        column: The image column (raw bytes, or a ``{bytes, path}`` struct).
        row: 1-based row in the file, for messages.
    """

    shard: Path
    row_group: int
    index: int
    column: str
    row: int

    @property
    def name(self) -> str:
        return f"row {self.row}"

    def __str__(self) -> str:
        return f"{self.shard}:{self.row} column {self.column!r}"

    def read_bytes(self) -> bytes:
        data = _row_group_images(self.shard, self.row_group, self.column)[self.index]
        return data or b""


@functools.lru_cache(maxsize=4)
def _row_group_images(shard: Path, row_group: int, column: str) -> list[bytes | None]:
    """The image bytes of one row group: images are embedded in order, so one read serves many items."""
    pa = arrow("pyarrow", shard)
    with arrow("pyarrow.parquet", shard).ParquetFile(shard) as f:
        array = f.read_row_group(row_group, columns=[column]).column(0).combine_chunks()
    if pa.types.is_struct(array.type):
        array = array.field("bytes")
    return array.to_pylist()


ImageItem = Path | TarMember | ParquetImage


def is_image_file(path: Path) -> bool:
    """True for a visible file whose extension is an image extension."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".") and path.is_file()


def missing_image_message(location: str, path: object) -> str:
    """The one-line message for an image that is not there (shared by readers and :func:`load_image`)."""
    return f"{location}: image file not found: {path} (fix the path or pass --skip-bad)"


def image_path_problem(path: Path) -> str | None:
    """What keeps ``path`` from being read as an image file, in words, or ``None`` for a regular file.

    Says what the path is rather than "not found" for everything: a folder, a symbolic link loop, a link to
    nothing, a device or FIFO, a file it may not read. A name the OS refuses (too long, a NUL byte) is not found.
    One ``stat`` (a second for a missing path: is it a broken link).
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if path.is_symlink():
            return f"{path} is a broken symbolic link (to {os.readlink(path)}, which does not exist)"
        return f"image file not found: {path}"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"{path} is a symbolic link loop"
        if exc.errno == errno.EACCES:
            return f"{path} cannot be read (permission denied)"
        return f"image file not found: {path} ({exc.strerror or exc})"
    except ValueError:  # a NUL byte in the name
        return f"image file not found: {path!r}"
    if stat.S_ISDIR(mode):
        return f"{path} is a folder, not an image file"
    if not stat.S_ISREG(mode):
        return f"{path} is not a regular file (a device, FIFO or socket)"
    return None


#: Bump when :func:`load_image` returns other pixels for the same bytes: it is part of every embedding cache key
#: (:func:`gapdiag.embedding.encode.embedding_key`), so vectors decoded under an older rule are never reused.
#: 2: 16-bit and float images scaled to 8 bits instead of clipped; EXIF orientation applied.
IMAGE_DECODE_VERSION = 2

#: Pillow's 16-bit modes (PNG/TIFF 16-bit grayscale); values 0..65535.
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
#: Formats whose 32-bit integer mode "I" holds 16-bit samples (0..65535): Pillow scales a PGM's maxval to 65535.
_SIXTEEN_BIT_IN_I = frozenset({"PNG", "PPM"})


class _PillowQuiet:
    """While any thread decodes, Pillow's warnings about the file it reads are not printed.

    Pillow warns (``DecompressionBombWarning``) for an image above ``Image.MAX_IMAGE_PIXELS`` (89 M pixels) and
    refuses one above twice that (``DecompressionBombError``, a one-line decode error here): a photo between the
    two is data the user asked for, not an attack, and decodes quietly. It also warns (``UserWarning`` from its
    own modules) about damaged metadata (an EXIF block, TIFF tags): the pixels decode or fail on their own.

    ``warnings.catch_warnings`` changes process-wide state: entered and left by several decoding threads
    (``--skip-bad`` decodes in a thread pool) it would restore the filters out of order. So the first thread in
    enters one ``catch_warnings`` and the last one out leaves it; warnings from other modules are untouched.
    Where the filters are per thread (``sys.flags.context_aware_warnings``, free-threaded Python 3.14) each
    thread enters its own.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._shared: warnings.catch_warnings | None = None
        self._own = threading.local()

    @staticmethod
    def _enter() -> warnings.catch_warnings:
        context = warnings.catch_warnings()
        context.__enter__()
        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
        return context

    def __enter__(self) -> None:
        if getattr(sys.flags, "context_aware_warnings", False):
            self._own.__dict__.setdefault("contexts", []).append(self._enter())
            return
        with self._lock:
            if self._users == 0:
                self._shared = self._enter()
            self._users += 1

    def __exit__(self, *exc: object) -> None:
        if getattr(sys.flags, "context_aware_warnings", False):
            self._own.contexts.pop().__exit__(None, None, None)
            return
        with self._lock:
            self._users -= 1
            if self._users == 0 and self._shared is not None:
                self._shared.__exit__(None, None, None)
                self._shared = None


_PILLOW_QUIET = _PillowQuiet()


class _Unreadable(ValueError):
    """Pixel values with no known range to bring to 8 bits (the message says which)."""


def to_rgb(img: Image.Image) -> Image.Image:
    """An image of any Pillow mode as 8-bit RGB, as the model's reference pipeline sees it, after correct scaling.

    open_clip's preprocess starts with ``image.convert("RGB")``, which clips 16-bit and float samples to 0..255
    (a 16-bit PNG becomes black and white, a float image in [0, 1] black). Here those are scaled first:

    - 16-bit samples (``I;16*``; ``I`` from a PNG or PGM): ``round(v / 257)``, i.e. 0..65535 onto 0..255;
    - float samples (``F``, e.g. a float TIFF) in [0, 1]: ``round(v * 255)``; other ranges, NaN and inf are refused;
    - other 32-bit integer images (``I`` from a TIFF) have no standard range and are refused;
    - every other mode: ``convert("RGB")``, exactly as the reference pipeline (Pillow reads 16-bit colour PNGs as
      their high byte, within one level of exact scaling).

    Raises:
        _Unreadable: Pixel values without a known range.
    """
    mode = img.mode
    if mode in _SIXTEEN_BIT_MODES or (mode == "I" and img.format in _SIXTEEN_BIT_IN_I):
        samples = np.asarray(img).astype(np.int64)
        if samples.size and (samples.min() < 0 or samples.max() > 65535):
            raise _Unreadable(f"16-bit image with values outside 0..65535 ({samples.min()}..{samples.max()})")
        return Image.fromarray(((samples + 128) // 257).astype(np.uint8)).convert("RGB")  # round(v / 257)
    if mode == "F":
        values = np.asarray(img, dtype=np.float64)
        if not np.isfinite(values).all():
            raise _Unreadable("float image with NaN or infinite values")
        if values.size and (values.min() < 0 or values.max() > 1):
            raise _Unreadable(f"float image with values in [{values.min():g}, {values.max():g}]; float images are "
                              f"read in [0, 1] (scale it there or save it as 8/16-bit)")
        return Image.fromarray(np.rint(values * 255).astype(np.uint8)).convert("RGB")
    if mode == "I":
        raise _Unreadable("32-bit integer image: no standard range to bring to 8 bits (save it as 8- or 16-bit)")
    return img.convert("RGB")


def _upright(img: Image.Image) -> None:
    """Turn ``img`` upright by its EXIF orientation, in place, with ``PIL.ImageOps.exif_transpose``.

    A damaged EXIF block is read as far as Pillow can (an orientation it cannot read is not applied). The
    metadata is dropped from ``img.info`` once parsed (only pixels leave this module): ``exif_transpose`` would
    otherwise write a damaged block back, which can raise ``struct.error``.
    """
    img.getexif()  # parsed once here; Pillow keeps the result for exif_transpose
    for key in ("exif", "Raw profile type exif"):
        img.info.pop(key, None)
    ImageOps.exif_transpose(img, in_place=True)


def load_image(item: ImageItem | str, location: str) -> Image.Image:
    """Open and fully decode one image item as 8-bit RGB, upright.

    The image is decoded here (``img.load()``), so truncated or corrupt files fail in this call rather than later
    inside a model's preprocessing. The EXIF orientation is applied (``PIL.ImageOps.exif_transpose``: a phone
    photo stored sideways is embedded upright), then the pixels are brought to 8-bit RGB by :func:`to_rgb`.

    Args:
        item: A file path, a :class:`TarMember` or a :class:`ParquetImage`.
        location: Where the item came from (e.g. ``"manifest.csv:17"``), for the error message.

    Returns:
        The decoded image in mode ``"RGB"``.

    Raises:
        DatasetError: The file is not there (or not a file), cannot be decoded, or has pixel values without a
            known range (see :func:`to_rgb`).
    """
    if not isinstance(item, (TarMember, ParquetImage)):
        problem = image_path_problem(Path(item))
        if problem is not None:
            raise DatasetError(f"{location}: {problem}", hint="fix the path or pass --skip-bad")
    try:
        source = io.BytesIO(item.read_bytes()) if isinstance(item, (TarMember, ParquetImage)) else Path(item)
        with _PILLOW_QUIET, Image.open(source) as img:
            img.load()
            _upright(img)
            return to_rgb(img)
    except FileNotFoundError:  # gone since it was checked
        raise DatasetError(f"{location}: image file not found: {item}", hint="fix the path or pass --skip-bad") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        # PIL reports truncated data as OSError, some malformed headers as SyntaxError/ValueError, and an image
        # whose header claims billions of pixels as DecompressionBombError (not an OSError); _Unreadable is a
        # ValueError.
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DatasetError(f"{location}: cannot decode image {item}: {detail}",
                           hint="replace the file or pass --skip-bad") from None
