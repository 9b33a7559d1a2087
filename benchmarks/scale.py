"""Scale-out benchmarks, ratios from one run on this machine.

    python benchmarks/scale.py embed                 # torchrun 2 CPU processes vs 1 process, same data
    python benchmarks/scale.py measure               # 1,000,000 x 512 float16 memory map, --sample 100000

embed: the bundled digits (all 1,797 images and 5,391 captions, repeated --repeat times by writing a manifest
that lists every row several times under new names), embedded with the bundled checkpoint into a fresh cache
by `gapdiag embed` in one process (the dataset fingerprint memo warm, as on any run after the first), with
default threads and with --threads threads, then by `torchrun --standalone --nproc-per-node 2 -m gapdiag embed`
with --threads threads per rank; prints the wall times (start-up included), the speed-ups (target >= 1.6 against
one process of a rank's budget, where the ranks' cores are free) and the largest difference between the
entries' vectors (must be <= 1e-5).
measure: delegates to benchmarks/measure.py --large (peak RSS must stay < 8 GB).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _big_manifest(folder: Path, repeat: int) -> Path:
    from gapdiag.data.sample import sample_data_dir

    src = sample_data_dir() / "digits"
    with open(src / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    (folder / "images").mkdir(parents=True)
    out = folder / "manifest.csv"
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for r in range(repeat):
            for row in rows:
                name = f"images/r{r}_{Path(row['image']).name}"
                shutil.copyfile(src / row["image"], folder / name)
                # Every caption unique, as in real data: gapdiag encodes identical captions once per process,
                # which would favour the single process here.
                captions = {c: f"{row[c]} (copy {r})" for c in row if c.startswith("caption")}
                writer.writerow({**row, "image": name, **captions})
    return out


def _run(cmd: list[str], cache: Path, extra_env: dict[str, str] | None = None, memo: Path | None = None) -> float:
    if memo is not None:  # a warm dataset-fingerprint memo, as on any run after the first
        shutil.copytree(memo, cache / "fingerprints")
    env = {**os.environ, "GAPDIAG_CACHE_DIR": str(cache), **(extra_env or {})}
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def bench_embed(repeat: int, chunk_size: int, model: str | None, device: str = "cpu", threads: int = 1,
                nproc: int = 2) -> None:
    bindir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        manifest = _big_manifest(tmp / "data", repeat)
        # Hash the dataset once (what every later run finds in its memo); each timed run then measures embedding.
        subprocess.run([sys.executable, "-c", f"from gapdiag.data import load_dataset; load_dataset({str(manifest)!r})"],
                       env={**os.environ, "GAPDIAG_CACHE_DIR": str(tmp / "memo")}, check=True)
        memo = tmp / "memo" / "fingerprints"
        args = ["embed", "--data", str(manifest), "--device", device, "--chunk-size", str(chunk_size), "--quiet"]
        if model:
            from gapdiag.models.resolving import resolve_model
            from gapdiag.settings import Settings

            # An architecture alone has random weights (a real model's cost per item, no download): opt in.
            spec = resolve_model(model, cache_root=Settings.build().cache_root)
            args += ["--model", model, *(["--random-init"] if spec.random_init else [])]
        one = _run([sys.executable, "-m", "gapdiag", *args], tmp / "one", memo=memo)
        # Each rank gets OMP_NUM_THREADS=threads (torchrun's default is 1): the same per-process budget, one process.
        budget = {"OMP_NUM_THREADS": str(threads)}
        one_thread = _run([sys.executable, "-m", "gapdiag", *args], tmp / "one-thread", budget, memo=memo)
        two = _run([str(bindir / "torchrun"), "--standalone", "--nproc-per-node", str(nproc), "-m", "gapdiag", *args],
                   tmp / "two", budget, memo=memo)
        (entry_one,) = [p for p in (tmp / "one").iterdir() if (p / "meta.json").is_file()]
        entry_two = tmp / "two" / entry_one.name
        diff = max(float(np.abs(np.load(entry_one / f"{m}.npy") - np.load(entry_two / f"{m}.npy")).max())
                   for m in ("image", "text"))
        n = sum(np.load(entry_one / f"{m}.npy", mmap_mode="r").shape[0] for m in ("image", "text"))
    print(f"{n} items, model {model or 'bundled tiny'}, device {device}, chunk size {chunk_size}, "
          f"{os.cpu_count()} cores")
    print(f"1 process (default threads)          {one:8.2f} s")
    print(f"1 process ({threads} thread(s), a rank's budget) {one_thread:8.2f} s")
    print(f"torchrun {nproc} ranks x {threads} thread(s)       {two:8.2f} s")
    print(f"speed-up vs 1 process                {one / two:8.2f}")
    print(f"speed-up vs 1 rank's budget          {one_thread / two:8.2f}   "
          f"(target >= 1.6 for 2 ranks where their cores are free)")
    print(f"max |difference|              {diff:.2e}   (must be <= 1e-5)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("embed", "measure"))
    parser.add_argument("--repeat", type=int, default=8, help="copies of the digits for the embed benchmark")
    parser.add_argument("--chunk-size", type=int, default=512)
    parser.add_argument("--device", default="cpu", help="auto on a multi-GPU machine: one GPU per rank")
    parser.add_argument("--threads", type=int, default=1,
                        help="OMP_NUM_THREADS of each rank and of the one-process baseline (torchrun's default: 1)")
    parser.add_argument("--nproc", type=int, default=2, help="ranks (torchrun --nproc-per-node)")
    parser.add_argument("--model", default=None,
                        help="e.g. ViT-B-32 (random init, seeded: a real CLIP's cost per item, no download); "
                             "default: the bundled tiny checkpoint, whose per-item cost is near zero")
    args = parser.parse_args()
    if args.what == "embed":
        bench_embed(args.repeat, args.chunk_size, args.model, args.device, args.threads, args.nproc)
    else:
        subprocess.run([sys.executable, str(HERE / "measure.py"), "--large"], check=True)


if __name__ == "__main__":
    main()
