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
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

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
    import pyarrow as pa
    import pyarrow.parquet as pq

    with pq.ParquetFile(shard) as f:
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


def load_image(item: ImageItem | str, location: str) -> Image.Image:
    """Open and fully decode one image item as RGB.

    The image is decoded here (``img.load()``), so truncated or corrupt files fail in this call rather
    than later inside a model's preprocessing.

    Args:
        item: A file path or a :class:`TarMember`.
        location: Where the item came from (e.g. ``"manifest.csv:17"``), for the error message.

    Returns:
        The decoded image in mode ``"RGB"``.

    Raises:
        DatasetError: The file does not exist, or cannot be decoded.
    """
    if not isinstance(item, (TarMember, ParquetImage)):
        problem = image_path_problem(Path(item))
        if problem is not None:
            raise DatasetError(f"{location}: {problem}", hint="fix the path or pass --skip-bad")
    try:
        if isinstance(item, (TarMember, ParquetImage)):
            source: Path | io.BytesIO = io.BytesIO(item.read_bytes())
            shown = str(item)
        else:
            source = Path(item)
            shown = str(item)
        with Image.open(source) as img:
            img.load()
            return img.convert("RGB")
    except FileNotFoundError:
        raise DatasetError(missing_image_message(location, item)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        # PIL reports truncated data as OSError, some malformed headers as SyntaxError/ValueError, and an image
        # whose header claims billions of pixels as DecompressionBombError (not an OSError).
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DatasetError(
            f"{location}: cannot decode image {shown}: {detail} (replace the file or pass --skip-bad)"
        ) from None
