"""The tensor preprocess of ``--preprocess device`` against the model's own PIL preprocess, run on CPU tensors.

The same code runs on CUDA (nvJPEG decode there); what is checked here is its logic: the transform read from
open_clip's ``Compose``, the per-image fallbacks, and that the pixels and the embeddings match the PIL path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, gapdiag
from data_fixtures import photo_image, write_csv
from PIL import Image

from gapdiag.embedding.preprocess import (
    DecodeStats,
    decode_batch,
    fallback_reason,
    resolve_preprocess,
    tensor_transform,
)
from gapdiag.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = [ROOT / "sample_data/digits/images/digit_0000.png", ROOT / "sample_data/digits/images/digit_0007.png",
           ROOT / "sample_data/shapes/images/shape_0000.png", ROOT / "sample_data/shapes/images/shape_0011.png"]


@pytest.fixture(scope="module")
def loaded() -> Any:
    from gapdiag.api import load_model

    return load_model("gapdiag-tiny-vit", device="cpu")


def _synthetic(folder: Path) -> dict[str, Path]:
    """Larger than the model's 32 px input (so resize and crop do real work), in the formats that matter."""
    folder.mkdir(parents=True, exist_ok=True)
    photo = photo_image(0).resize((96, 64), Image.BICUBIC)
    wide = photo_image(1).resize((50, 120), Image.BICUBIC)
    images = {
        "rgb.jpg": (photo, "JPEG"),
        "tall.jpg": (wide, "JPEG"),
        "gray.jpg": (photo.convert("L"), "JPEG"),
        "cmyk.jpg": (photo.convert("CMYK"), "JPEG"),
        "rgb.png": (wide, "PNG"),
        "deep.png": (Image.fromarray(np.asarray(photo.convert("L"), dtype=np.uint16) * 257), "PNG"),
        "photo.webp": (photo, "WEBP"),
    }
    paths = {}
    for name, (img, fmt) in images.items():
        paths[name] = folder / name
        img.save(paths[name], fmt)
    return paths


def _cosines(x: Any, y: Any) -> np.ndarray:
    x, y = np.asarray(x, np.float64).reshape(len(x), -1), np.asarray(y, np.float64).reshape(len(y), -1)
    return (x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)


def test_transform_is_read_from_the_open_clip_compose(loaded: Any) -> None:
    t = tensor_transform(loaded.preprocess)
    assert t is not None
    assert (t.size, t.interpolation, t.crop) == (32, "bicubic", (32, 32))
    assert t.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))


def test_unknown_step_means_not_reproducible(loaded: Any) -> None:
    from torchvision import transforms

    augmented = transforms.Compose([transforms.RandomHorizontalFlip(), *loaded.preprocess.transforms])
    assert tensor_transform(augmented) is None
    assert tensor_transform(lambda img: img) is None
    assert resolve_preprocess("auto", augmented, "cuda") == "pil"
    with pytest.raises(InputError, match="--preprocess pil"):
        resolve_preprocess("device", augmented, "cpu")


def test_auto_is_device_only_on_cuda(loaded: Any) -> None:
    import torch

    assert resolve_preprocess("auto", loaded.preprocess, torch.device("cpu")) == "pil"
    assert resolve_preprocess("auto", loaded.preprocess, torch.device("cuda")) == "device"
    assert resolve_preprocess("pil", loaded.preprocess, torch.device("cuda")) == "pil"


def test_pixels_match_the_pil_path_and_fallbacks_are_counted(loaded: Any, tmp_path: Path) -> None:
    import torch

    paths = [*BUNDLED, *_synthetic(tmp_path).values()]
    payloads = [torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8) for p in paths]
    stats = DecodeStats()

    def pil(pos: int) -> Image.Image:
        return Image.open(paths[pos]).convert("RGB")

    images = decode_batch(payloads, torch.device("cpu"), stats, pil)
    pixels = tensor_transform(loaded.preprocess).batch(images)  # type: ignore[union-attr]
    reference = torch.stack([loaded.preprocess(pil(i)) for i in range(len(paths))])
    assert pixels.shape == reference.shape
    cos = _cosines(pixels.numpy(), reference.numpy())
    assert cos.min() >= 0.999, dict(zip([p.name for p in paths], cos.round(5)))
    # CMYK JPEG, 16-bit PNG and WEBP take the PIL decoder; the rest the tensor decoder.
    assert stats.fallbacks == 3 and stats.decoded == len(paths) - 3
    assert stats.reasons == {"jpeg with 4 components": 1, "16-bit png": 1, "not jpeg/png": 1}


def test_fallback_reasons_come_from_the_headers(tmp_path: Path) -> None:
    paths = _synthetic(tmp_path)
    assert fallback_reason(paths["rgb.jpg"].read_bytes()) is None
    assert fallback_reason(paths["gray.jpg"].read_bytes()) is None
    assert fallback_reason(paths["cmyk.jpg"].read_bytes()) == "jpeg with 4 components"
    assert fallback_reason(paths["deep.png"].read_bytes()) == "16-bit png"
    assert fallback_reason(b"GIF89a") == "not jpeg/png"


def _manifest(tmp_path: Path) -> Path:
    paths = [*BUNDLED, *_synthetic(tmp_path / "img").values()]
    return write_csv(tmp_path / "m.csv", ["image", "caption"],
                     [[str(p), f"a picture number {i}"] for i, p in enumerate(paths)])


def test_embeddings_match_the_pil_path(tmp_path: Path) -> None:
    import gapdiag

    manifest = _manifest(tmp_path)
    pil = gapdiag.embed(str(manifest), device="cpu", preprocess="pil", progress=False)
    dev = gapdiag.embed(str(manifest), device="cpu", preprocess="device", progress=False, workers=1)
    assert pil.provenance["key"] != dev.provenance["key"]
    cos = _cosines(dev.vectors["image"], pil.vectors["image"])
    assert cos.min() >= 0.999, cos
    # Texts do not go through the image path: identical.
    np.testing.assert_array_equal(dev.vectors["text"], pil.vectors["text"])


def test_backend_is_part_of_the_cache_key_and_pil_keeps_todays_key(tmp_path: Path) -> None:
    from gapdiag.api import bundled_checkpoint, load_data
    from gapdiag.embedding.encode import embedding_key
    from gapdiag.models.resolving import resolve_model
    from gapdiag.settings import Settings

    dataset = load_data(str(_manifest(tmp_path)))
    spec = resolve_model(bundled_checkpoint(), None, cache_root=Settings.build().cache_root)
    today = embedding_key(dataset, spec, precision="fp32", dtype="float32")
    assert embedding_key(dataset, spec, precision="fp32", dtype="float32", preprocess="pil") == today
    assert embedding_key(dataset, spec, precision="fp32", dtype="float32", preprocess="device") != today


def test_auto_on_cpu_reuses_the_pil_entry(tmp_path: Path) -> None:
    import gapdiag

    manifest = _manifest(tmp_path)
    pil = gapdiag.embed(str(manifest), device="cpu", preprocess="pil", progress=False)
    auto = gapdiag.embed(str(manifest), device="cpu", preprocess="auto", progress=False)
    assert auto.provenance["key"] == pil.provenance["key"]


def test_unknown_preprocess_is_one_line(capsys: Any) -> None:
    code, out, err = gapdiag(capsys, "embed", "--preprocess", "gpu", "--device", "cpu", "-q")
    assert_one_line_error(code, out, err, "--preprocess", "pil, device or auto")


def test_broken_file_on_the_device_path_is_one_line(capsys: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 40)
    manifest = write_csv(tmp_path / "m.csv", ["image", "caption"], [[str(bad), "a broken picture"]])
    code, out, err = gapdiag(capsys, "embed", "-d", manifest, "--preprocess", "device", "--device", "cpu", "-q")
    assert_one_line_error(code, out, err, "bad.jpg", "cannot decode image")


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_nvjpeg_batch_on_cuda_matches_the_pil_path(loaded: Any, tmp_path: Path) -> None:
    import torch

    from gapdiag.api import load_model

    on_gpu = load_model("gapdiag-tiny-vit", device="cuda")
    paths = list(_synthetic(tmp_path).values())
    payloads = [torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8) for p in paths]
    stats = DecodeStats()
    images = decode_batch(payloads, torch.device("cuda"), stats, lambda i: Image.open(paths[i]).convert("RGB"))
    assert all(img.device.type == "cuda" for img in images)
    pixels = tensor_transform(on_gpu.preprocess).batch(images).cpu()  # type: ignore[union-attr]
    reference = torch.stack([loaded.preprocess(Image.open(p).convert("RGB")) for p in paths])
    assert _cosines(pixels.numpy(), reference.numpy()).min() >= 0.999
    assert stats.fallbacks == 3


# ------------------------------- issue #24 item 7: the tensor decoder agrees with the reader rules (load_image)


def _rotated(folder: Path) -> dict[str, Path]:
    """Photos stored sideways with an EXIF orientation (JPEG APP1, PNG eXIf, XMP), one upright, a 16-bit PNG."""
    folder.mkdir(parents=True, exist_ok=True)
    stored = photo_image(0).resize((96, 64), Image.BICUBIC).transpose(Image.Transpose.ROTATE_90)
    six, one = Image.Exif(), Image.Exif()
    six[0x0112], one[0x0112] = 6, 1
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>'
    paths = {name: folder / name for name in ("exif6.jpg", "exif1.jpg", "exif6.png", "xmp6.jpg", "deep.png")}
    stored.save(paths["exif6.jpg"], "JPEG", exif=six.tobytes(), quality=95)
    stored.save(paths["exif1.jpg"], "JPEG", exif=one.tobytes(), quality=95)
    stored.save(paths["exif6.png"], "PNG", exif=six.tobytes())
    stored.save(paths["xmp6.jpg"], "JPEG", xmp=xmp, quality=95)
    Image.fromarray(np.asarray(stored.convert("L"), dtype=np.uint16) * 257).save(paths["deep.png"])
    return paths


def test_an_exif_orientation_takes_the_pil_decoder(tmp_path: Path) -> None:
    paths = _rotated(tmp_path)
    assert fallback_reason(paths["exif6.jpg"].read_bytes()) == "exif orientation"
    assert fallback_reason(paths["exif6.png"].read_bytes()) == "exif orientation"
    assert fallback_reason(paths["xmp6.jpg"].read_bytes()) == "exif orientation"
    assert fallback_reason(paths["exif1.jpg"].read_bytes()) is None  # upright as stored: the tensor decoder


def test_the_tensor_path_decodes_as_the_reader_does(loaded: Any, tmp_path: Path) -> None:
    """Rotated photos and a 16-bit PNG on the ``--preprocess device`` path (CPU tensors here; CUDA takes the same
    fallbacks): the pixels are load_image's, upright and scaled, not the stored ones."""
    import torch

    from gapdiag.data.images import load_image

    paths = list(_rotated(tmp_path).values())
    payloads = [torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8) for p in paths]
    stats = DecodeStats()
    images = decode_batch(payloads, torch.device("cpu"), stats, lambda i: load_image(paths[i], paths[i].name))
    for path, image in zip(paths, images):
        want = np.asarray(load_image(path, path.name)).transpose(2, 0, 1)
        assert image.shape == want.shape, path.name  # upright: 96 wide, 64 high
        if path.name != "exif1.jpg":  # the PIL decoder: the very pixels; exif1.jpg: libjpeg-turbo vs PIL's libjpeg
            np.testing.assert_array_equal(image.numpy(), want, err_msg=path.name)
    assert stats.reasons == {"exif orientation": 3, "16-bit png": 1} and stats.decoded == 1
