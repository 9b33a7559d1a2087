"""Image preprocessing on tensors, on whatever device they are on: the GPU data path of ``--preprocess device``.

open_clip's eval preprocess is a torchvision ``Compose``: ``Resize(size, bicubic)``, ``CenterCrop``, a convert to
RGB, ``ToTensor`` and ``Normalize(mean, std)``, applied to a PIL image. :func:`tensor_transform` reads that
``Compose`` and builds the same steps on uint8 ``CHW`` tensors (``torchvision.transforms.v2.functional``), so
that decoding (nvJPEG on CUDA), resizing, cropping and normalising all run on the device and CPU workers only
read bytes. Anything in the ``Compose`` it does not know means "not reproducible": ``None``, and ``auto`` keeps
the PIL path.

Decoding: JPEG and PNG go through ``torchvision.io`` (JPEGs batched on CUDA); everything else, and what it
cannot take or would decode otherwise than the PIL path (CMYK JPEG, 16-bit PNG, an EXIF/XMP orientation, a
decode error), falls back per image to the PIL path's decoder (:func:`gapdiag.data.images.load_image`), counted in
:attr:`DecodeStats.fallbacks`: both paths see the same upright, 8-bit pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from gapdiag.errors import InputError

#: The values of ``--preprocess``.
PREPROCESS_BACKENDS = ("pil", "device", "auto")

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class TensorTransform:
    """``Resize → CenterCrop → /255 → Normalize`` on uint8 ``(3, H, W)`` tensors, on the tensor's device.

    Attributes:
        size: ``Resize`` size: an int (shorter side, aspect kept) or ``(h, w)`` (squash).
        interpolation: ``"bicubic"`` or ``"bilinear"`` (antialiased, as PIL resizes).
        crop: ``(h, w)`` of the centre crop, or ``None``.
        mean, std: Per-channel normalisation.
    """

    size: int | tuple[int, int]
    interpolation: str
    crop: tuple[int, int] | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def one(self, image: Any) -> Any:
        """One uint8 ``(3, H, W)`` tensor → float32 ``(3, h, w)`` model input, on the same device."""
        import torch
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.v2 import functional as F

        mode = InterpolationMode.BICUBIC if self.interpolation == "bicubic" else InterpolationMode.BILINEAR
        size = [self.size] if isinstance(self.size, int) else list(self.size)
        # Resize in float, then round and clamp like PIL, which resizes uint8 to uint8 (CUDA has no uint8 AA).
        x = F.resize(image.float(), size, interpolation=mode, antialias=True)
        x = x.round_().clamp_(0, 255)
        if self.crop is not None:
            x = F.center_crop(x, list(self.crop))
        x = x.div_(255.0)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device)[:, None, None]
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device)[:, None, None]
        return (x - mean) / std

    def batch(self, images: Sequence[Any]) -> Any:
        """Images of any sizes → one float32 ``(B, 3, h, w)`` batch."""
        import torch

        return torch.stack([self.one(img) for img in images])

    def describe(self) -> str:
        """A stable description, part of the cache key of the device backend."""
        return (f"resize={self.size}/{self.interpolation},crop={self.crop},"
                f"mean={list(self.mean)},std={list(self.std)}")


def tensor_transform(preprocess: Any) -> TensorTransform | None:
    """The tensor equivalent of an open_clip eval preprocess, or ``None`` when it has a step this cannot copy.

    Known steps: ``Resize`` (bicubic/bilinear, no ``max_size``), ``CenterCrop``, the RGB conversion,
    ``ToTensor``, ``Normalize``. A ``Resize`` and a ``Normalize`` are required.
    """
    steps = getattr(preprocess, "transforms", None)
    if steps is None:
        return None
    size: int | tuple[int, int] | None = None
    interpolation = "bicubic"
    crop: tuple[int, int] | None = None
    mean = std = None
    for step in steps:
        kind = type(step).__name__
        if kind == "Resize":
            mode = str(getattr(step.interpolation, "value", step.interpolation)).lower()
            if mode not in ("bicubic", "bilinear") or getattr(step, "max_size", None) is not None:
                return None
            if getattr(step, "antialias", True) is False:
                return None
            s = step.size
            size = s if isinstance(s, int) else (int(s[0]) if len(s) == 1 else (int(s[0]), int(s[1])))
            interpolation = mode
        elif kind == "CenterCrop":
            c = step.size
            crop = (int(c), int(c)) if isinstance(c, int) else (int(c[0]), int(c[-1]))
        elif kind == "Normalize":
            mean, std = tuple(float(v) for v in step.mean), tuple(float(v) for v in step.std)
        elif kind in ("ToTensor", "MaybeToTensor", "MaybeConvertMode") or (
                callable(step) and "convert" in getattr(step, "__name__", "")):
            continue
        else:
            return None
    if size is None or mean is None or std is None or len(mean) != 3 or len(std) != 3:
        return None
    return TensorTransform(size=size, interpolation=interpolation, crop=crop, mean=mean, std=std)  # type: ignore[arg-type]


def resolve_preprocess(choice: str, preprocess: Any, device: Any) -> str:
    """``pil`` or ``device`` for ``--preprocess choice``: ``auto`` = device only on CUDA with a copyable transform.

    Raises:
        InputError: unknown choice, or ``device`` for a transform the tensor path cannot reproduce.
    """
    if choice not in PREPROCESS_BACKENDS:
        raise InputError(f"unknown --preprocess {choice!r}", hint="use pil, device or auto")
    if choice == "pil":
        return "pil"
    copyable = tensor_transform(preprocess) is not None
    if choice == "device":
        if not copyable:
            raise InputError("--preprocess device: this model's image transform has steps the tensor path does "
                             "not reproduce", hint="use --preprocess pil (or auto)")
        return "device"
    return "device" if copyable and getattr(device, "type", str(device)) == "cuda" else "pil"


@dataclass
class DecodeStats:
    """What the tensor decoder did: images decoded on the tensor path and images that fell back to PIL."""

    decoded: int = 0
    fallbacks: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def fell_back(self, reason: str) -> None:
        self.fallbacks += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1


def _jpeg_segments(data: bytes) -> Iterator[tuple[int, bytes]]:
    """``(marker, payload)`` of a JPEG's header segments, up to the start of the image data (or of ``data``)."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no header segment follows
            return
        length = int.from_bytes(data[i + 2:i + 4], "big")
        yield marker, data[i + 4:i + 2 + length]
        i += 2 + length


def _jpeg_components(data: bytes) -> int | None:
    """Colour components in a JPEG's frame header (3 = YCbCr/RGB, 1 = gray, 4 = CMYK/YCCK), None if not found."""
    for marker, payload in _jpeg_segments(data):
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return payload[5] if len(payload) > 5 else None
    return None


def _tiff_orientation(tiff: bytes) -> int | None:
    """The Orientation tag (0x0112) of an EXIF block's first IFD; ``None`` without one, ``-1`` if unreadable."""
    endian = {b"II": "little", b"MM": "big"}.get(tiff[:2])
    if endian is None or len(tiff) < 8:
        return -1
    ifd = int.from_bytes(tiff[4:8], endian)  # type: ignore[arg-type]
    if ifd + 2 > len(tiff):
        return -1
    for k in range(int.from_bytes(tiff[ifd:ifd + 2], endian)):  # type: ignore[arg-type]
        entry = tiff[ifd + 2 + 12 * k:ifd + 14 + 12 * k]
        if len(entry) < 12:
            return -1
        if int.from_bytes(entry[:2], endian) == 0x0112:  # type: ignore[arg-type]
            return int.from_bytes(entry[8:10], endian)  # type: ignore[arg-type]  # a SHORT, first in its field
    return None


def _may_be_rotated(data: bytes) -> bool:
    """Whether PIL would turn this JPEG or PNG by an orientation (``ImageOps.exif_transpose``, as ``load_image``).

    Pillow reads the first EXIF block (JPEG APP1 ``Exif``, PNG ``eXIf``, or the ``Raw profile type exif`` text
    some tools write) and, without an Orientation there, the XMP packet. Orientations 2..8 turn the image; an
    EXIF block this cannot read, or an XMP packet or text chunk that may hold one, counts as turned: the PIL path
    then decides, so the two paths never disagree.
    """
    if data.startswith(_JPEG_MAGIC):
        exif_seen = False
        for marker, payload in _jpeg_segments(data):
            if marker != 0xE1:
                continue
            if payload.startswith(b"Exif\0\0") and not exif_seen:
                exif_seen = True
                orientation = _tiff_orientation(payload[6:])
                if orientation == -1 or (orientation is not None and 2 <= orientation <= 8):
                    return True
            elif b"tiff:Orientation" in payload:
                return True
        return False
    i = len(_PNG_MAGIC)
    while i + 8 <= len(data):
        length, kind = int.from_bytes(data[i:i + 4], "big"), data[i + 4:i + 8]
        if kind == b"eXIf":
            return True
        if kind in (b"tEXt", b"zTXt", b"iTXt") and data[i + 8:i + 8 + 80].split(b"\0", 1)[0] in (
                b"XML:com.adobe.xmp", b"Raw profile type exif"):
            return True
        if kind == b"IEND":
            break
        i += 12 + length
    return False


def _png_depth(data: bytes) -> int:
    return data[24] if len(data) > 24 else 0


def fallback_reason(data: bytes) -> str | None:
    """Why these bytes cannot take the tensor decoder (``None`` = they can).

    ``data`` is the file's start (a JPEG's header segments sit in its first 64 KiB) or, for a PNG, the whole file
    (an ``eXIf`` chunk may follow the image data).
    """
    if data.startswith(_JPEG_MAGIC):
        components = _jpeg_components(data)
        if components not in (1, 3):
            return f"jpeg with {components} components"
        return "exif orientation" if _may_be_rotated(data) else None
    if data.startswith(_PNG_MAGIC):
        if _png_depth(data) > 8:
            return "16-bit png"
        return "exif orientation" if _may_be_rotated(data) else None
    return "not jpeg/png"


def decode_batch(payloads: Sequence[Any], device: Any, stats: DecodeStats,
                 fallback: Callable[[int], Any]) -> list[Any]:
    """Decode uint8 byte tensors to RGB uint8 ``(3, H, W)`` tensors on ``device``.

    JPEGs are decoded together on CUDA (nvJPEG), other JPEG/PNG on the CPU with ``torchvision.io``; an image
    that cannot take that path, or fails in it, comes from ``fallback(position)`` (the PIL decoder, which also
    raises the one-line error of a truly broken file).
    """
    from torchvision.io import ImageReadMode, decode_image, decode_jpeg

    out: list[Any] = [None] * len(payloads)
    on_cuda = getattr(device, "type", str(device)) == "cuda"
    gpu_jpegs: list[int] = []
    for pos, data in enumerate(payloads):
        head = _bytes(data[:1 << 16])
        reason = fallback_reason(_bytes(data) if head.startswith(_PNG_MAGIC) else head)
        if reason is not None:
            stats.fell_back(reason)
            out[pos] = _pil_to_tensor(fallback(pos), device)
            continue
        if on_cuda and head.startswith(_JPEG_MAGIC):
            gpu_jpegs.append(pos)
            continue
        try:
            out[pos] = decode_image(data, mode=ImageReadMode.RGB).to(device, non_blocking=True)
            stats.decoded += 1
        except RuntimeError:
            stats.fell_back("decode error")
            out[pos] = _pil_to_tensor(fallback(pos), device)
    if gpu_jpegs:
        try:
            decoded = decode_jpeg([payloads[p] for p in gpu_jpegs], mode=ImageReadMode.RGB, device=device)
            for p, img in zip(gpu_jpegs, decoded):
                out[p] = img
            stats.decoded += len(gpu_jpegs)
        except RuntimeError:
            # One bad file fails the whole batched call: decode these one by one to find it.
            for p in gpu_jpegs:
                try:
                    out[p] = decode_jpeg(payloads[p], mode=ImageReadMode.RGB, device=device)
                    stats.decoded += 1
                except RuntimeError:
                    stats.fell_back("decode error")
                    out[p] = _pil_to_tensor(fallback(p), device)
    return out


def _bytes(data: Any) -> bytes:
    """A byte tensor (or bytes) as ``bytes``."""
    return bytes(data.cpu().numpy()) if hasattr(data, "numpy") else bytes(data)


def _pil_to_tensor(image: Any, device: Any) -> Any:
    """A decoded RGB PIL image as a uint8 ``(3, H, W)`` tensor on ``device``."""
    import numpy as np
    import torch

    array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous().to(device)
