"""Embedding throughput against the encoder floor, and gapdiag vs a bare loop (issue #15; one run, one process).

    python benchmarks/embed.py --device cpu --n-images 64                    # check the script on a CPU
    python benchmarks/embed.py --device cuda --model ViT-B-32 --pretrained none --n-images 8192
    python benchmarks/embed.py --device cuda --model ViT-L-14 --pretrained none --n-images 4096

Sections, all with the same model in this process:
(a) image encoder floor: ``encode_image`` on synthetic, already-preprocessed tensors on the device (bf16 autocast
    on CUDA, channels_last where faster), best over a batch-size sweep, images/s;
(b) text encoder floor: ``encode_text`` on pre-tokenised batches on the device, texts/s;
(c) gapdiag's image data path end to end from JPEG files on disk (``--preprocess pil`` and ``device``), with
    the model already built, images/s and the ratio to (a) (target >= 0.7); the same for texts (tokenise +
    encode + copy back) against (b);
(d) the preprocess check: per-image cosine of the device transform's pixels against the model's PIL preprocess
    on the files of (c) (target >= 0.999);
(e) unless ``--skip-bare``: ``gapdiag.api.embed`` into an empty cache vs a bare encode loop, and the cache hit.
Weights do not change throughput: ``--pretrained none`` (random init) needs no download.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _rate(fn: Any, items: int, device: Any, seconds: float) -> float:
    """Items/s of ``fn`` (which processes ``items``), repeated for at least ``seconds`` after one warm-up call."""
    fn()
    _sync(device)
    start, calls = time.perf_counter(), 0
    while True:
        fn()
        calls += 1
        _sync(device)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return items * calls / elapsed


def image_floor(loaded: Any, batch_sizes: list[int], seconds: float) -> tuple[float, int, bool]:
    """Best images/s of ``encode_image`` on random preprocessed batches: (rate, batch size, channels_last)."""
    import torch

    size = loaded.model.visual.image_size
    h, w = (size, size) if isinstance(size, int) else size
    best = (0.0, 0, False)
    layouts = [False, True] if loaded.device.type == "cuda" else [False]
    for channels_last in layouts:
        if channels_last:
            loaded.model.to(memory_format=torch.channels_last)
        for bs in batch_sizes:
            x = torch.randn(bs, 3, h, w, device=loaded.device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)

            def step(x: Any = x) -> None:
                with torch.inference_mode(), loaded.autocast():
                    loaded.model.encode_image(x)

            try:
                rate = _rate(step, bs, loaded.device, seconds)
            except torch.OutOfMemoryError:
                break
            print(f"  image floor  batch {bs:5d}  channels_last={channels_last!s:5s}  {rate:10.1f} images/s")
            best = max(best, (rate, bs, channels_last))
    loaded.model.to(memory_format=torch.contiguous_format)
    return best


def text_floor(loaded: Any, batch_sizes: list[int], seconds: float) -> tuple[float, int]:
    """Best texts/s of ``encode_text`` on pre-tokenised batches already on the device."""
    import torch

    best = (0.0, 0)
    for bs in batch_sizes:
        tokens = loaded.tokenizer([f"a photo of a thing number {i}" for i in range(bs)]).to(loaded.device)

        def step(tokens: Any = tokens) -> None:
            with torch.inference_mode(), loaded.autocast():
                loaded.model.encode_text(tokens)

        try:
            rate = _rate(step, bs, loaded.device, seconds)
        except torch.OutOfMemoryError:
            break
        print(f"  text floor   batch {bs:5d}  {rate:10.1f} texts/s")
        best = max(best, (rate, bs))
    return best


def write_jpegs(folder: Path, n: int, size: tuple[int, int], seed: int = 0) -> list[Path]:
    """``n`` photo-like JPEGs (crops of scikit-learn's sample photos) in an ImageFolder of 10 classes."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = [Image.fromarray(p) for p in load_sample_images().images]
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        photo = photos[i % len(photos)]
        w, h = photo.size
        cw, ch = int(rng.integers(w // 3, w)), int(rng.integers(h // 3, h))
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        image = photo.crop((x0, y0, x0 + cw, y0 + ch)).resize(size, Image.BILINEAR)
        path = folder / f"class_{i % 10}" / f"img_{i:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


def image_path_rate(loaded: Any, modality: Any, *, batch_size: int, workers: int, preprocess: str) -> float:
    """Images/s of gapdiag's image data path (read, decode, transform, encode, copy back), model already built."""
    from gapdiag.embedding.encode import _encode_images

    n = len(modality)

    def run() -> None:
        for _ in _encode_images(loaded, modality, [(0, n)], batch_size=batch_size, workers=workers, memo={},
                                on_batch=lambda k: None, preprocess=preprocess):
            pass

    run()  # warm-up: workers, kernels, the decoder
    _sync(loaded.device)
    start = time.perf_counter()
    run()
    _sync(loaded.device)
    return n / (time.perf_counter() - start)


def text_path_rate(loaded: Any, n: int, batch_size: int) -> float:
    """Texts/s of gapdiag's text path (tokenise, encode, copy back) on ``n`` distinct captions."""
    from gapdiag.embedding.encode import encode_texts

    texts = [f"a photo of a small thing, number {i}, on a table" for i in range(n)]
    encode_texts(loaded, texts[:batch_size], batch_size=batch_size)
    _sync(loaded.device)
    start = time.perf_counter()
    encode_texts(loaded, texts, batch_size=batch_size)
    _sync(loaded.device)
    return n / (time.perf_counter() - start)


def preprocess_cosines(loaded: Any, paths: list[Path]) -> np.ndarray:
    """Per-image cosine between the device transform's pixels and the model's own PIL preprocess."""
    import torch
    from PIL import Image

    from gapdiag.embedding.preprocess import DecodeStats, decode_batch, tensor_transform

    transform = tensor_transform(loaded.preprocess)
    if transform is None:
        return np.array([np.nan])
    payloads = [torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8) for p in paths]
    images = decode_batch(payloads, loaded.device, DecodeStats(), lambda i: Image.open(paths[i]).convert("RGB"))
    x = transform.batch(images).float().cpu().flatten(1).double()
    y = torch.stack([loaded.preprocess(Image.open(p).convert("RGB")) for p in paths]).flatten(1).double()
    return torch.nn.functional.cosine_similarity(x, y).numpy()


def bare_loop(loaded: Any, dataset: Any, batch_size: int) -> int:
    import torch

    from gapdiag.data.images import load_image

    n = 0
    for m in dataset.modalities.values():
        for b in range(0, len(m), batch_size):
            idx = range(b, min(b + batch_size, len(m)))
            with torch.inference_mode(), loaded.autocast():
                if m.kind == "image":
                    x = torch.stack([loaded.preprocess(load_image(m.items[i], m.location(i))) for i in idx])
                    loaded.model.encode_image(x.to(loaded.device))
                else:
                    loaded.model.encode_text(loaded.tokenizer([m.items[i] for i in idx]).to(loaded.device))
            n += len(idx)
    _sync(loaded.device)
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="default: the bundled InfoNCE checkpoint")
    parser.add_argument("--pretrained", default=None, help="'none' = random init (throughput only)")
    parser.add_argument("--data", default=None, help="(e) only; default: bundled digits, all splits")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default=None, help="default: bf16 on CUDA, fp32 elsewhere")
    parser.add_argument("--batch-size", type=int, default=None, help="(c) and (e); default: the floor's best")
    parser.add_argument("--workers", type=int, default=None, help="default: 8 on CUDA, 1 elsewhere")
    parser.add_argument("--n-images", type=int, default=2048, help="JPEG files written for (c) and (d)")
    parser.add_argument("--image-size", default="500x375", help="WxH of those files (a typical photo)")
    parser.add_argument("--seconds", type=float, default=None, help="per floor measurement (default 2 / 0.3)")
    parser.add_argument("--skip-bare", action="store_true", help="skip (e)")
    parser.add_argument("--repeat", type=int, default=2, help="(e): best of N runs of each")
    args = parser.parse_args()

    from gapdiag import api
    from gapdiag.device import resolve
    from gapdiag.models.loading import build_model
    from gapdiag.models.resolving import resolve_model
    from gapdiag.settings import Settings

    resolved = resolve(args.device)
    device = str(resolved)
    cuda = device.startswith("cuda")
    precision = args.precision or ("bf16" if cuda else "fp32")
    workers = args.workers if args.workers is not None else (8 if cuda else 1)
    seconds = args.seconds if args.seconds is not None else (2.0 if cuda else 0.3)
    pretrained = None if args.pretrained in (None, "none") else args.pretrained
    model = args.model or api.bundled_checkpoint()
    spec = resolve_model(model, pretrained, cache_root=Settings.build().cache_root)
    loaded = build_model(spec, device=resolved, precision=precision)
    print(f"device {loaded.device}, model {loaded.spec.display_name}, precision {precision}, workers {workers}")

    sweep = [64, 128, 256, 512, 1024] if cuda else [16, 64]
    print("(a) image encoder floor")
    img_floor, img_bs, _ = image_floor(loaded, sweep, seconds)
    print("(b) text encoder floor")
    txt_floor, txt_bs = text_floor(loaded, sweep, seconds)
    batch = args.batch_size or img_bs

    w, h = (int(v) for v in args.image_size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_jpegs(Path(tmp) / "images", args.n_images, (w, h))
        modality = api.load_data(str(Path(tmp) / "images")).modalities["image"]
        print(f"(c) end to end from {args.n_images} JPEG files ({w}x{h}), batch {batch}")
        rates = {}
        for backend in ("pil", "device"):
            rates[backend] = image_path_rate(loaded, modality, batch_size=batch, workers=workers,
                                             preprocess=backend)
            print(f"  images  --preprocess {backend:6s} {rates[backend]:10.1f} images/s   "
                  f"/ floor = {rates[backend] / img_floor:.3f}   (target >= 0.7)")
        txt_rate = text_path_rate(loaded, max(4 * txt_bs, 4096 if cuda else 256), txt_bs)
        print(f"  texts   {txt_rate:10.1f} texts/s   / floor = {txt_rate / txt_floor:.3f}   (target >= 0.7)")
        cos = preprocess_cosines(loaded, paths[:256])
        print(f"(d) preprocess check: device vs PIL pixels, per-image cosine min {cos.min():.5f} "
              f"mean {cos.mean():.5f} over {cos.size} images   (target >= 0.999)")

    print(f"SUMMARY {loaded.spec.display_name} {device}: image floor {img_floor:.0f}/s (batch {img_bs}), "
          f"text floor {txt_floor:.0f}/s (batch {txt_bs}), e2e pil {rates['pil']:.0f}/s "
          f"({rates['pil'] / img_floor:.2f}), e2e device {rates['device']:.0f}/s "
          f"({rates['device'] / img_floor:.2f}), texts {txt_rate:.0f}/s ({txt_rate / txt_floor:.2f}), "
          f"preprocess cosine min {cos.min():.5f}")
    if not args.skip_bare:
        _bare_vs_embed(api, loaded, model, pretrained, args, device, precision, workers)


def _bare_vs_embed(api: Any, loaded: Any, model: str, pretrained: str | None, args: Any, device: str,
                   precision: str, workers: int) -> None:
    """(e) gapdiag.api.embed (miss and hit) against a bare loop on the same dataset."""
    from gapdiag.data.manifest import read_manifest
    from gapdiag.data.sample import sample_data_dir

    dataset = (api.load_data(args.data) if args.data
               else read_manifest(sample_data_dir() / "digits" / "manifest.csv", split=None))
    batch = args.batch_size or 64
    n_items = sum(len(m) for m in dataset.modalities.values())
    bare_loop(loaded, dataset, batch)  # warm-up
    bare = min(_timed(lambda: bare_loop(loaded, dataset, batch)) for _ in range(args.repeat))
    embed_times, hit_times = [], []
    options = {"model": model, "pretrained": pretrained, "device": device, "precision": precision,
               "batch_size": batch, "workers": workers, "progress": False,
               "random_init": loaded.spec.random_init}  # --pretrained none: random weights, timing only
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as cache:
            def run(cache_dir: Path = Path(cache)) -> None:
                api.embed(dataset, cache_dir=cache_dir, **options)

            embed_times.append(_timed(run))
            hit_times.append(_timed(run))
    embed_t, hit_t = min(embed_times), min(hit_times)
    print(f"(e) {n_items} items, batch {batch}")
    print(f"  bare encode loop      {bare:8.3f} s  {n_items / bare:10.1f} items/s")
    print(f"  gapdiag embed (miss)  {embed_t:8.3f} s  {n_items / embed_t:10.1f} items/s")
    print(f"  gapdiag embed (hit)   {hit_t:8.3f} s")
    print(f"  throughput ratio gapdiag/bare = {bare / embed_t:.3f}   (target >= 0.9)")


def _timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
