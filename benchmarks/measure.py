"""Benchmark of ``gapdiag.metrics.compute_all`` against one blocked float32 X·Yᵀ pass.

Usage::

    python benchmarks/measure.py                 # 50,000 pairs × 512 dims: times, ratio, peak RSS
    python benchmarks/measure.py --n 10000 --dim 256
    python benchmarks/measure.py --large         # 1,000,000 × 512 float16 memory map, sample=100000
    python benchmarks/measure.py --device cuda   # all metrics on the GPU vs one GPU X·Yᵀ pass; equal to the CPU
    python benchmarks/measure.py --diagnostics-cost --repeat 3   # also without issue #14's diagnostics, fastest of 3

Target (issue #14): the diagnostics (gap decomposition, MMD, hubness, TwoNN, IsoScore) add <= 5 % to the
time of all other metrics, in the same run.

Target (issue #12): total ``compute_all`` time (all metrics) ÷ baseline pass time ≤ 2.4 on CPU; each stage is
printed as a fraction of a pass so that a regression shows where. Each run is divided by the mean of the two
passes timed just before and after it (the machine's speed drifts between minutes); ``--repeat N`` prints the
median of N such ratios, and the fastest run ÷ the fastest pass.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from gapdiag.metrics import compute_all
from gapdiag.metrics.blocked import DEFAULT_BLOCK_SIZE
from gapdiag.vectors import EmbeddingSet


def peak_rss_gib() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**30


def paired_data(n: int, dim: int, seed: int, dtype: type = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Image-like vectors and noisy text partners shifted by a common offset (a modality gap)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    y = x + rng.standard_normal((n, dim), dtype=np.float32)
    y += 0.5
    return x.astype(dtype, copy=False), y.astype(dtype, copy=False)


#: time.perf_counter (wall) or time.process_time (CPU seconds of this process, all threads: steadier under load).
clock = time.perf_counter


def baseline_pass(x: np.ndarray, y: np.ndarray, block_size: int) -> float:
    """Seconds for one blocked float32 X̂·Ŷᵀ pass (normalised inputs, one reused tile buffer)."""
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    yn = y / np.linalg.norm(y, axis=1, keepdims=True)
    buf = np.empty(block_size * block_size, dtype=np.float32)
    start = clock()
    for i in range(0, xn.shape[0], block_size):
        xi = xn[i : i + block_size]
        for j in range(0, yn.shape[0], block_size):
            yj = yn[j : j + block_size]
            np.dot(xi, yj.T, out=buf[: xi.shape[0] * yj.shape[0]].reshape(xi.shape[0], yj.shape[0]))
    return clock() - start


def torch_pass(x: np.ndarray, y: np.ndarray, device: str, *, k: int = 0, block_size: int = 8192) -> float:
    """Seconds for one bare X̂·Ŷᵀ pass with torch on ``device`` (IEEE float32), plus a top-k per row if ``k``.

    The GPU yardstick of issue #15: uniformity and retrieval on the GPU are measured against it, in the same run.
    """
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    xn = torch.nn.functional.normalize(torch.from_numpy(x).to(device).float(), dim=1)
    yn = torch.nn.functional.normalize(torch.from_numpy(y).to(device).float(), dim=1)
    (xn[:64] @ yn[:64].T).sum().item()  # warm-up: context and kernels
    sync()
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, xn.shape[0], block_size):
            s = xn[i : i + block_size] @ yn.T
            if k:
                torch.topk(s, k, dim=1)
        sync()
    return time.perf_counter() - start


def run_device(n: int, dim: int, block_size: int, seed: int, device: str) -> None:
    """All metrics with ``compute_all(device=...)`` against one bare X·Yᵀ pass there, and against the CPU."""
    x, y = paired_data(n, dim, seed)
    base = torch_pass(x, y, device)
    es = embedding_set(x, y)
    compute_all(embedding_set(x[:256], y[:256]), device=device)  # warm-up
    start = time.perf_counter()
    values, extras = compute_all(es, block_size=block_size, seed=seed, device=device)
    total = time.perf_counter() - start
    cpu_values, _ = compute_all(es, block_size=block_size, seed=seed, device="cpu")
    diff = max(abs(values[k] - cpu_values[k]) for k in cpu_values)
    print(f"N={n} dim={dim} device={device} retrieval_engine={extras['variants'].get('retrieval_engine')} "
          f"search_backend={extras['variants'].get('search_backend')}")
    print(f"bare X·Yᵀ pass on {device}: {base:.3f} s")
    print(f"compute_all (all metrics, {len(values)} values) on {device}: {total:.2f} s")
    print(f"ratio: {total / base:.2f}   (target <= 3 on a GPU)")
    print(f"max |{device} - cpu| over all values: {diff:.2e}   (target <= 1e-5)   "
          f"same names: {values.keys() == cpu_values.keys()}")


def embedding_set(x: np.ndarray, y: np.ndarray) -> EmbeddingSet:
    ids = np.arange(x.shape[0], dtype=np.int64)
    return EmbeddingSet(
        vectors={"image": x, "text": y}, sample_index={"image": ids, "text": ids}, n_samples=x.shape[0]
    )


class StageClock:
    """Times between ``compute_all``'s progress messages: each stage's seconds, printed as a fraction of a pass."""

    def __init__(self) -> None:
        self.start = self.last = clock()
        self.stages: list[tuple[str, float]] = []
        self.current = "setup"

    def __call__(self, message: str) -> None:
        now = clock()
        self.stages.append((self.current, now - self.last))
        print(f"  [{now - self.start:7.1f}s] {message}")
        self.current, self.last = message, now

    def finish(self) -> float:
        self("done")
        return self.last - self.start

    def report(self, base: float) -> None:
        for name, seconds in self.stages:
            print(f"  {seconds / base:6.3f} pass  {seconds:8.2f} s  {name}")


#: The metric families of issue #14 (diagnostics beyond the centroid gap); similarity needs two models.
DIAGNOSTIC_FAMILIES = ("decomposition", "hubness", "intrinsic")


def run_standard(n: int, dim: int, block_size: int, seed: int, diagnostics_cost: bool = False,
                 repeat: int = 1) -> None:
    """All metrics ÷ one pass. Each run sits between two baseline passes and is divided by their mean: this
    machine's speed drifts by ±10 % from minute to minute, and a pass measured minutes away from a run says
    less about it. With ``repeat`` > 1 the median of these ratios is the headline; the fastest run ÷ the fastest
    pass is printed too."""
    from gapdiag.metrics.registry import REGISTRY
    from gapdiag.metrics.tile_workers import available_threads

    x, y = paired_data(n, dim, seed)
    # A small warm-up run: imports and compiled kernels are not timed, and it tells which metrics apply here.
    computed, _ = compute_all(embedding_set(x[:512], y[:512]), seed=seed)
    others = sorted({k.split("/")[0] for k in computed} - {m for m, info in REGISTRY.items()
                                                           if info.family in DIAGNOSTIC_FAMILIES})
    bases, withouts, ratios, best = [], [], [], None
    for _ in range(repeat):
        before = baseline_pass(x, y, block_size)
        if diagnostics_cost:
            stages = StageClock()
            compute_all(embedding_set(x, y), others, block_size=block_size, seed=seed, progress=stages)
            withouts.append(stages.finish())
        stages = StageClock()
        values, extras = compute_all(embedding_set(x, y), block_size=block_size, seed=seed, progress=stages)
        total = stages.finish()
        after = baseline_pass(x, y, block_size)
        bases += [before, after]
        ratios.append(total / ((before + after) / 2))
        if best is None or total < best[0]:
            best = (total, stages, values, extras)
    total, stages, values, extras = best
    base = min(bases)
    print(
        f"N={n} dim={dim} block_size={block_size} retrieval_engine={extras['variants'].get('retrieval_engine')} "
        f"threads={available_threads()}"
    )
    print(f"baseline X·Yᵀ pass: {base:.2f} s (fastest of {len(bases)}: {', '.join(f'{b:.2f}' for b in bases)})")
    print(f"compute_all (all metrics, {len(values)} values): {total:.2f} s (fastest of {repeat})")
    print("stages of that run (fraction of the fastest baseline pass):")
    stages.report(base)
    print(f"ratio, each run ÷ the mean of the passes just before and after it: "
          f"{', '.join(f'{r:.2f}' for r in ratios)}; median {float(np.median(ratios)):.2f}   (target <= 2.4)")
    print(f"ratio, fastest run ÷ fastest pass: {total / base:.2f}")
    if diagnostics_cost:
        without = min(withouts)
        print(f"without the diagnostics ({', '.join(DIAGNOSTIC_FAMILIES)}): {without:.2f} s (fastest of "
              f"{repeat}: {', '.join(f'{w:.2f}' for w in withouts)}) = {without / base:.2f} pass")
        print(f"diagnostics add {100 * (total / without - 1):.1f} % to the other metrics, end to end   "
              f"(target <= 5 %)")
        own = diagnostics_own_work(x, y, block_size, seed, repeat)
        print(f"the diagnostics' own work: {own:.2f} s = {100 * own / without:.1f} % of the other metrics   "
              f"(target <= 5 %)")
    print(f"peak RSS: {peak_rss_gib():.2f} GiB")


def diagnostics_own_work(x: np.ndarray, y: np.ndarray, block_size: int, seed: int, repeat: int) -> float:
    """Seconds of the work only the diagnostics do, each part timed alone (end to end, a few percent drown in a
    shared machine's run-to-run noise): the hubness top-10 in the cross pass (with ÷ without, alternated,
    fastest of ``repeat`` each), the decomposition and IsoScore from the streamed statistics, MMD and TwoNN."""
    from gapdiag.metrics.blocked import linear_stats, unit_rows
    from gapdiag.metrics.cross import cross_pass
    from gapdiag.metrics.engine import evaluate
    from gapdiag.metrics.passes import Passes
    from gapdiag.metrics.registry import REGISTRY

    ua, ub = unit_rows(x, "image"), unit_rows(y, "text")
    ids = np.arange(x.shape[0])
    runs: dict[int, list[float]] = {0: [], 10: []}
    for _ in range(max(repeat, 2)):
        for k, times in runs.items():
            start = clock()
            cross_pass(ua, ub, ids, ids, block_size=block_size, topk=k)
            times.append(clock() - start)
    top = max(0.0, min(runs[10]) - min(runs[0]))
    # The diagnostics' values from the passes' results, as compute_all evaluates them (hubness: above).
    passes = Passes(embedding_set(x, y), ["image", "text"], [("image", "text")], "image", {"image": x, "text": y},
                    {"image": ids, "text": ids}, {"variants": {}, "skipped": {}}, seed, block_size, "cpu",
                    lambda _msg: None, rows={"image": None, "text": None},
                    stats={"image": linear_stats(x, "image", gram=True), "text": linear_stats(y, "text", gram=True)},
                    units={"image": ua, "text": ub}, sub={"image": ids, "text": ids})
    diagnostics = [info for info in REGISTRY.values() if info.family in ("decomposition", "intrinsic")]
    start = clock()
    evaluate(passes, [info for info in diagnostics if not info.quadratic], {})
    linear = clock() - start
    start = clock()
    evaluate(passes, [info for info in diagnostics if info.quadratic], {})
    sampled = clock() - start
    print(f"  hubness top-10 in the cross pass {top:.2f} s (fastest with {min(runs[10]):.2f} s, without "
          f"{min(runs[0]):.2f} s), decomposition + IsoScore {linear:.2f} s, MMD + TwoNN {sampled:.2f} s")
    return top + linear + sampled


def run_large(n: int, dim: int, block_size: int, seed: int, sample: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for name in ("image", "text"):
            paths[name] = Path(tmp) / f"{name}.npy"
            mm = np.lib.format.open_memmap(paths[name], mode="w+", dtype=np.float16, shape=(n, dim))
            rng = np.random.default_rng([seed, len(paths)])
            for s in range(0, n, 65536):  # written in chunks: the benchmark itself must stay small
                mm[s : s + 65536] = rng.standard_normal((min(65536, n - s), dim), dtype=np.float32) + (
                    0.5 if name == "text" else 0.0
                )
            mm.flush()
            del mm
        vectors = {name: np.load(p, mmap_mode="r") for name, p in paths.items()}
        ids = np.arange(n, dtype=np.int64)
        es = EmbeddingSet(vectors=vectors, sample_index={"image": ids, "text": ids}, n_samples=n)
        rss_before = peak_rss_gib()
        start = time.perf_counter()
        values, _ = compute_all(
            es,
            sample=sample,
            seed=seed,
            block_size=block_size,
            progress=lambda msg: print(f"  [{time.perf_counter() - start:7.1f}s] {msg}"),
        )
        print(
            f"N={n} dim={dim} float16 memory map, sample={sample}: {time.perf_counter() - start:.1f} s, "
            f"{len(values)} values"
        )
        print(f"peak RSS: {peak_rss_gib():.2f} GiB (before compute_all: {rss_before:.2f} GiB)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=None, help="pairs (default 50,000; 1,000,000 with --large)")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--block-size", type=int, default=DEFAULT_BLOCK_SIZE)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--large", action="store_true", help="float16 memory-mapped cache, sampled quadratic metrics"
    )
    parser.add_argument("--sample", type=int, default=100_000, help="samples drawn with --large")
    parser.add_argument("--device", default=None, help="cuda (or cpu, to try the script): the device comparison")
    parser.add_argument("--repeat", type=int, default=1,
                        help="repeat pass, run(s), pass this many times: the median ratio and each one's fastest")
    parser.add_argument("--diagnostics-cost", action="store_true",
                        help="also time all metrics without issue #14's diagnostics and print what they add")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall-clock seconds (default) or this process's CPU seconds (steadier under load)")
    args = parser.parse_args()
    global clock
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.device:
        run_device(args.n or 50_000, args.dim, args.block_size, args.seed, args.device)
    elif args.large:
        run_large(args.n or 1_000_000, args.dim, args.block_size, args.seed, args.sample)
    else:
        run_standard(args.n or 50_000, args.dim, args.block_size, args.seed, args.diagnostics_cost, args.repeat)


if __name__ == "__main__":
    main()
