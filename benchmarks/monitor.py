"""What ``gapdiag.Monitor.update`` costs a training loop, against one matmul of the same batch (issue #28 §2).

    python benchmarks/monitor.py                       # CPU, 4,096 x 512
    python benchmarks/monitor.py --device cuda         # on a GPU

The baseline is the product every contrastive step makes: the ``n x n`` logits ``X Yᵀ`` of an ``n x d`` float32
batch of image and text embeddings. Each line is the median over ``--repeat`` timed calls (after warm-up), each
``update`` fed a batch of new samples, so the sample of the pair metrics is full and only its candidates move:

* ``update`` with the default metrics (linear statistics with Gram matrices, true pairs, the seeded sample);
* ``update`` with the Gram-free metrics only (gap, Cos_TP, angular value: sums and true pairs);
* ``compute()`` once at the end (every metric, the pair metrics on the sample of ``--sample``), for scale.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any


def _timed(fn: Callable[[], Any], device: Any, repeat: int) -> float:
    """Median seconds of ``repeat`` calls of ``fn`` after two warm-up calls, the device synchronised around each."""
    import torch

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    times = []
    for i in range(repeat + 2):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n", type=int, default=4096, help="batch rows (image and text)")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--sample", type=int, default=4096, help="the Monitor's sample size")
    args = parser.parse_args()

    import torch

    from gapdiag.training.monitor import Monitor

    device = torch.device(args.device)
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(args.n, args.dim, generator=gen).to(device)
    y = (0.5 * x.cpu() + torch.randn(args.n, args.dim, generator=gen)).to(device)
    matmul = _timed(lambda: x @ y.T, device, args.repeat)
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
          f"batch {args.n} x {args.dim} float32, torch {torch.__version__}, median of {args.repeat}")
    print(f"baseline: one matmul X·Yᵀ ({args.n} x {args.n} logits)   {matmul * 1e3:9.2f} ms")
    monitors = []
    for label, metrics in (("update, default metrics", None),
                           ("update, gap / Cos_TP / angular value", ["modality_gap", "cos_tp", "angular_value"])):
        monitor = Monitor(metrics, sample=args.sample)
        monitors.append(monitor)
        fed = [0]

        def update(monitor: Monitor = monitor, fed: list[int] = fed) -> None:
            start = fed[0] * args.n
            monitor.update(x, y, indices=torch.arange(start, start + args.n))
            fed[0] += 1

        seconds = _timed(update, device, args.repeat)
        print(f"{label:<44s}   {seconds * 1e3:9.2f} ms   {seconds / matmul:6.2f} x the matmul")
    t0 = time.perf_counter()
    values = monitors[0].compute()
    print(f"compute(), every metric, sample of {int(values['monitor/sample_size'])}          "
          f"{(time.perf_counter() - t0) * 1e3:9.2f} ms (once per evaluation)")


if __name__ == "__main__":
    main()
