"""Fitting and evaluation cost of every post-hoc intervention, against one blocked X·Yᵀ pass (issue #27 §1).

    nice python benchmarks/interventions.py                      # 50,000 × 512, what docs/benchmarks.md records
    python benchmarks/interventions.py --n 2000 --dim 64         # check the script in seconds

Synthetic paired data (``--n`` images, one caption each, ``--dim`` dimensions, a modality gap along one axis)
goes through :func:`gapdiag.api.intervene` exactly as the CLI runs it: a seeded 50/50 split of the samples, each
method fitted on at most ``--fit-sample`` items per modality (``ot`` on at most 2,000) and every evaluation metric
measured on the held-out half before and after. The unit is one blocked pass of X·Yᵀ over all ``n × n`` image-text
scores (float32, row blocks, the row maximum kept so that nothing is optimised away), timed in the same process:
each method's fit and evaluation time is printed in seconds and as a multiple of that pass. The machine's CPUs
may be shared: run it under ``nice`` and read the ratios, which shift less than the seconds.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from gapdiag.api import intervene
from gapdiag.vectors import EmbeddingSet


def synthetic_pairs(n: int, dim: int, seed: int) -> EmbeddingSet:
    """``n`` images and one caption each: shared content plus noise, the two modalities offset along axis 0."""
    rng = np.random.default_rng(seed)
    content = rng.standard_normal((n, dim), dtype=np.float32)
    offset = np.zeros(dim, dtype=np.float32)
    offset[0] = 4.0
    images = content + 0.5 * rng.standard_normal((n, dim), dtype=np.float32) + offset
    texts = content + 0.5 * rng.standard_normal((n, dim), dtype=np.float32) - offset
    ids = np.arange(n, dtype=np.int64)
    return EmbeddingSet(vectors={"image": images, "text": texts}, sample_index={"image": ids, "text": ids.copy()},
                        n_samples=n)


def blocked_product_seconds(x: np.ndarray, y: np.ndarray, block: int = 4096) -> float:
    """Seconds of one pass of ``x @ y.T`` in row blocks (the maximum of each row kept)."""
    start = time.perf_counter()
    best = np.empty(x.shape[0], dtype=np.float32)
    for i in range(0, x.shape[0], block):
        best[i : i + block] = (x[i : i + block] @ y.T).max(axis=1)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000, help="images (and captions)")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--fit-sample", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    es = synthetic_pairs(args.n, args.dim, args.seed)
    unit = blocked_product_seconds(es.vectors["image"], es.vectors["text"])
    print(f"{args.n:,} x {args.dim}: one blocked X·Yᵀ pass ({args.n:,} x {args.n:,} scores) = {unit:.1f} s")
    start = time.perf_counter()
    result = intervene(es, fit_sample=args.fit_sample, seed=args.seed, progress=False)
    total = time.perf_counter() - start
    split = result["split"]
    print(f"fit on {split['fit_items']['image']:,} + {split['fit_items']['text']:,} items, evaluated on "
          f"{split['eval_items']['image']:,} + {split['eval_items']['text']:,} held-out items")
    print(f"{'method':<12} {'fit s':>8} {'fit / pass':>11} {'eval s':>8} {'eval / pass':>12}")
    for method, entry in result["results"].items():
        fit, ev = entry["fit_seconds"], entry["eval_seconds"]
        print(f"{method:<12} {fit:8.1f} {fit / unit:11.2f} {ev:8.1f} {ev / unit:12.2f}")
    print(f"whole run (the split, the metrics before, every method): {total:.1f} s = {total / unit:.1f} passes")


if __name__ == "__main__":
    main()
