"""Embedding throughput of gapdiag vs a bare encode loop, and cache-hit time vs embed time (one run).

    python benchmarks/embed.py                      # bundled tiny model on the bundled digits (all splits)
    python benchmarks/embed.py --model ViT-B-32 --pretrained openai --data captions.csv --device cuda

Same model, data and batch size for every measurement, all in this process, so the ratios are meaningful on
a noisy machine:
- baseline: a bare loop that, batch by batch, loads + preprocesses the images and calls ``encode_image``, then
  tokenises the captions and calls ``encode_text`` (no cache, no overlap);
- gapdiag: ``gapdiag.api.embed`` into an empty cache (DataLoader workers overlap decoding with compute);
- cache hit: the same ``gapdiag.api.embed`` call again.
Target: throughput ratio >= 0.9; cache-hit time well under a second.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def bare_loop(loaded, dataset, batch_size: int) -> int:
    import torch

    from gapdiag.data.images import load_image

    n = 0
    for m in dataset.modalities.values():
        for b in range(0, len(m), batch_size):
            idx = range(b, min(b + batch_size, len(m)))
            with torch.inference_mode():
                if m.kind == "image":
                    x = torch.stack([loaded.preprocess(load_image(m.items[i], m.location(i))) for i in idx])
                    loaded.model.encode_image(x.to(loaded.device))
                else:
                    loaded.model.encode_text(loaded.tokenizer([m.items[i] for i in idx]).to(loaded.device))
            n += len(idx)
    if loaded.device.type == "cuda":
        torch.cuda.synchronize()
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="default: the bundled InfoNCE checkpoint")
    parser.add_argument("--pretrained", default=None)
    parser.add_argument("--data", default=None, help="default: bundled digits, all splits")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=2, help="take the best of N runs of each")
    args = parser.parse_args()

    from gapdiag import api
    from gapdiag.data.manifest import read_manifest
    from gapdiag.data.sample import sample_data_dir
    from gapdiag.models import build_model, resolve_model

    dataset = (api.load_data(args.data) if args.data
               else read_manifest(sample_data_dir() / "digits" / "manifest.csv", split=None))
    model = args.model or api.bundled_checkpoint()
    loaded = build_model(resolve_model(model, args.pretrained), device=args.device)
    n_items = sum(len(m) for m in dataset.modalities.values())
    bare_loop(loaded, dataset, args.batch_size)  # warm-up: first calls allocate and pick kernels

    bare = min(_timed(lambda: bare_loop(loaded, dataset, args.batch_size)) for _ in range(args.repeat))
    embed_times, hit_times = [], []
    options = {"model": model, "pretrained": args.pretrained, "device": args.device,
               "batch_size": args.batch_size, "workers": args.workers, "progress": False}
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as cache:
            def run(cache_dir: Path = Path(cache)) -> None:
                api.embed(dataset, cache_dir=cache_dir, **options)

            embed_times.append(_timed(run))  # empty cache: a miss
            hit_times.append(_timed(run))  # the same call again: a hit
    embed_t, hit_t = min(embed_times), min(hit_times)
    print(f"device {loaded.device}, model {loaded.spec.display_name}, {n_items} items, batch {args.batch_size}, "
          f"workers {args.workers}")
    print(f"bare encode loop      {bare:8.3f} s  {n_items / bare:10.1f} items/s")
    print(f"gapdiag embed (miss)  {embed_t:8.3f} s  {n_items / embed_t:10.1f} items/s")
    print(f"gapdiag embed (hit)   {hit_t:8.3f} s")
    print(f"throughput ratio gapdiag/bare = {bare / embed_t:.3f}   (target >= 0.9)")
    print(f"cache hit / embed time        = {hit_t / embed_t:.4f}")


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
