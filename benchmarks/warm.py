"""Warm re-measure: how close a repeated `gapdiag measure` comes to interpreter start-up (issue #12).

    python benchmarks/warm.py                       # bundled default + a 500-image COCO set, 5 repeats
    python benchmarks/warm.py --repeat 9 --n-images 500 --model ViT-B-32

Everything is timed as a fresh process (what a user or CI step pays), in one run, so that the ratios hold on
a noisy machine; each time is the median of ``--repeat`` runs:
- ``python -c "import numpy"``: the start-up floor;
- ``gapdiag --version`` and ``--help``: target < 0.5 s;
- warm ``gapdiag measure`` on the bundled default (cache filled by one earlier run);
- a 500-image COCO-format set (made from the bundled digits, 5 captions per image): a cold ``gapdiag measure``
  into an empty cache (it embeds) and a warm one on the filled cache;
- optionally (``--report``) a cold and a warm ``gapdiag report --method umap``.
Targets: warm default ÷ numpy start-up <= 8; warm COCO ÷ cold COCO <= 0.1. ``--clock cpu`` times the commands'
CPU seconds instead of the wall clock (steadier on a shared machine, but blind to import time spent waiting on
the file system, which is most of what a warm hit saves: report wall seconds).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GAPDIAG = [sys.executable, "-m", "gapdiag"]


#: "wall" (what a user waits) or "cpu" (user + system seconds of the command: far steadier on a loaded machine).
CLOCK = "wall"


def timed(cmd: list[str], env: dict[str, str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    # Run outside any checkout: `python -m gapdiag` puts the working directory ahead of PYTHONPATH.
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu if CLOCK == "cpu" else elapsed


def median(cmd: list[str], env: dict[str, str], repeat: int) -> float:
    return statistics.median(timed(cmd, env) for _ in range(repeat))


def make_coco(root: Path, n_images: int) -> Path:
    """A COCO-captions JSON over ``n_images`` of the bundled digits (upscaled to 64x64 RGB), 5 captions each."""
    from PIL import Image

    from gapdiag.data.sample import sample_data_dir

    digits = sample_data_dir() / "digits"
    rows = list(csv.DictReader(open(digits / "manifest.csv", newline="")))
    if n_images > len(rows):
        sys.exit(f"--n-images at most {len(rows)} (the bundled digits)")
    images_dir = root / "images"
    images_dir.mkdir(parents=True)
    images, annotations = [], []
    for i, row in enumerate(rows[:n_images]):
        name = f"{i:06d}.jpg"
        Image.open(digits / row["image"]).convert("RGB").resize((64, 64)).save(images_dir / name, quality=90)
        images.append({"id": i, "file_name": name})
        captions = [row[k] for k in ("caption_1", "caption_2", "caption_3") if row.get(k)]
        captions += [f"a photo of the digit {row['class_name']}", f"handwritten {row['class_name']}"]
        annotations += [{"id": len(annotations) + j, "image_id": i, "caption": c} for j, c in enumerate(captions[:5])]
    path = root / "captions_bench.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations}))
    return path


def _model_args(model: str | None) -> list[str]:
    """``--model`` for the timed commands; an architecture alone (random weights: timing only) opts in."""
    if not model:
        return []
    from gapdiag.models.resolving import resolve_model
    from gapdiag.settings import Settings

    spec = resolve_model(model, cache_root=Settings.build().cache_root)
    return ["--model", model, *(["--random-init"] if spec.random_init else [])]


def report_timings(coco: Path, model: list[str], device: list[str], tmp: Path, env: dict[str, str],
                   repeat: int) -> tuple[float, float]:
    """A cold `gapdiag report` (embeds, measures, draws) and the median of warm ones on the same cache."""
    report_cmd = [*GAPDIAG, "report", "-q", "--data", str(coco), *model, *device, "--cache-dir",
                  str(tmp / "cache-report"), "--out", str(tmp / "report.html")]
    return timed(report_cmd, env), median(report_cmd, env, max(1, repeat // 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="median of N runs of each (default 5)")
    parser.add_argument("--cold-repeat", type=int, default=2, help="median of N cold COCO runs (default 2)")
    parser.add_argument("--n-images", type=int, default=500)
    parser.add_argument("--model", default=None, help="for the COCO set; default: the bundled checkpoint")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--report", action="store_true", help="also time a cold and a warm `gapdiag report`")
    parser.add_argument("--report-only", action="store_true",
                        help="time only a cold and a warm `gapdiag report` on the COCO set (e.g. with PYTHONPATH set "
                             "to an older checkout, for a before/after pair)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall-clock seconds (default) or the commands' CPU seconds (steadier under load)")
    args = parser.parse_args()
    global CLOCK
    CLOCK = args.clock

    env = dict(os.environ)
    env.pop("GAPDIAG_CACHE_DIR", None)
    model = _model_args(args.model)
    device = ["--device", args.device]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        coco = make_coco(tmp / "coco", args.n_images)
        if args.report_only:
            cold, warm = report_timings(coco, model, device, tmp, env, args.repeat)
            print(f"{CLOCK} seconds, load {os.getloadavg()[0]:.2f}: report, COCO {args.n_images} images, "
                  f"cold {cold:.2f} s, warm (median of {max(1, args.repeat // 2)}) {warm:.2f} s")
            return
        numpy_t = median([sys.executable, "-c", "import numpy"], env, args.repeat)
        version_t = median([*GAPDIAG, "--version"], env, args.repeat)
        help_t = median([*GAPDIAG, "--help"], env, args.repeat)

        default_cache = str(tmp / "cache-default")
        default_cmd = [*GAPDIAG, "measure", "-q", "--cache-dir", default_cache, *device]
        default_cold = timed(default_cmd, env)
        default_warm = median(default_cmd, env, args.repeat)

        colds = []
        for k in range(args.cold_repeat):
            cache = str(tmp / f"cache-coco-{k}")
            colds.append(timed([*GAPDIAG, "measure", "-q", "--data", str(coco), *model, *device,
                                "--cache-dir", cache], env))
        coco_cmd = [*GAPDIAG, "measure", "-q", "--data", str(coco), *model, *device, "--cache-dir", cache]
        coco_warm = median(coco_cmd, env, args.repeat)
        coco_cold = statistics.median(colds)

        report_times = None
        if args.report:
            report_times = report_timings(coco, model, device, tmp, env, args.repeat)
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, "
          f"median of {args.repeat} (cold COCO: {args.cold_repeat}), {CLOCK} seconds")
    print(f"python -c 'import numpy'          {numpy_t:7.3f} s")
    print(f"gapdiag --version                 {version_t:7.3f} s   (target < 0.5 s)")
    print(f"gapdiag --help                    {help_t:7.3f} s   (target < 0.5 s)")
    print(f"measure, bundled default, cold    {default_cold:7.3f} s")
    print(f"measure, bundled default, warm    {default_warm:7.3f} s")
    print(f"measure, COCO {args.n_images} images, cold     {coco_cold:7.3f} s")
    print(f"measure, COCO {args.n_images} images, warm     {coco_warm:7.3f} s")
    if report_times:
        print(f"report, COCO, cold / warm         {report_times[0]:7.3f} s / {report_times[1]:.3f} s")
    print(f"ratio warm default / numpy start-up = {default_warm / numpy_t:6.2f}   (target <= 8)")
    print(f"ratio warm COCO / cold COCO         = {coco_warm / coco_cold:6.3f}   (target <= 0.1)")


if __name__ == "__main__":
    main()
