"""Exact retrieval on a GPU vs the CPU, ratios from one run (run it on a machine with a CUDA GPU).

    python benchmarks/retrieval.py                 # 50,000 queries x 50,000 gallery x 512 dims, k = 10
    python benchmarks/retrieval.py --n 200000 --all-metrics

1. ``search_topk(device="cpu")`` (FAISS ``IndexFlatIP`` on the CPU) vs ``search_topk(device="cuda")`` (a FAISS
   GPU index where the FAISS build has GPU support, torch on CUDA otherwise; the line says which), with the
   top-k indices compared: they must be identical (both rank by exact scores, ties to the lower index).
2. ``compute_all`` of the retrieval metrics (R@1/5/10 both ways): on the CPU the fused blocked pass, on the GPU
   the search above; the values must be equal.
3. With ``--all-metrics``: every metric, CPU vs GPU (uniformity passes run on the GPU; clustering on the CPU).

Target (issue #15): R@1/5/10 both ways on the GPU <= 2 × one bare GPU X·Yᵀ + top-k pass, same run. Runs on
the CPU too (``--device cpu --n 2000``), to check the script.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from measure import embedding_set, paired_data, torch_pass

from gapdiag.metrics import compute_all
from gapdiag.metrics.retrieval import search_topk
from gapdiag.metrics.search_index import search_backend

RETRIEVAL = ["recall_at_1", "recall_at_5", "recall_at_10"]


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50_000, help="queries = gallery items (paired)")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--all-metrics", action="store_true")
    args = parser.parse_args()

    x, y = paired_data(args.n, args.dim, seed=0)
    print(f"N={args.n} dim={args.dim} k={args.k}; GPU search backend: {search_backend(args.device)}")
    search_topk(x[:64], y[:1024], args.k, device=args.device)  # warm-up: CUDA context, kernels, FAISS resources
    cpu_t, (_, cpu_idx) = timed(lambda: search_topk(x, y, args.k, device="cpu"))
    gpu_t, (_, gpu_idx) = timed(lambda: search_topk(x, y, args.k, device=args.device))
    print(f"search_topk  cpu {cpu_t:8.2f} s   gpu {gpu_t:8.2f} s   speed-up {cpu_t / gpu_t:7.1f}   "
          f"identical top-{args.k}: {bool(np.array_equal(cpu_idx, gpu_idx))}")

    bare = torch_pass(x, y, args.device, k=args.k)
    print(f"bare X·Yᵀ + top-{args.k} pass on {args.device}: {bare:.3f} s")

    es = embedding_set(x, y)
    groups = [("retrieval metrics", RETRIEVAL)] + ([("all metrics", None)] if args.all_metrics else [])
    for name, metrics in groups:
        cpu_t, (cpu_vals, cpu_extras) = timed(lambda m=metrics: compute_all(es, m, device="cpu"))
        gpu_t, (gpu_vals, gpu_extras) = timed(lambda m=metrics: compute_all(es, m, device=args.device))
        same = cpu_vals.keys() == gpu_vals.keys() and all(
            abs(cpu_vals[k] - gpu_vals[k]) <= 1e-9 for k in cpu_vals if k.startswith("recall"))
        print(f"{name:18s} cpu {cpu_t:8.2f} s ({cpu_extras['variants']['retrieval_engine']})   "
              f"gpu {gpu_t:8.2f} s ({gpu_extras['variants']['retrieval_engine']}, "
              f"{gpu_extras['variants'].get('search_backend')})   speed-up {cpu_t / gpu_t:7.1f}   "
              f"equal recalls: {same}")
        if metrics is RETRIEVAL:
            print(f"retrieval on {args.device} / bare pass = {gpu_t / bare:.2f}   (target <= 2)")


if __name__ == "__main__":
    main()
