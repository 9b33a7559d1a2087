"""How :meth:`gapdiag.training.monitor.Monitor.sync` gathers the ranks of ``torch.distributed``: the float64 sums
add up with ``all_reduce`` on the device they live on (gloo on the CPU, NCCL on GPUs), the host-side samples and
counts travel with ``all_gather_object`` and merge into one draw (:meth:`~gapdiag.training.reservoir.Reservoir.merge`,
rank by rank, so every rank ends with the same state)."""

from __future__ import annotations

import copy
from typing import Any

from gapdiag.errors import InputError
from gapdiag.training.reservoir import Reservoir


def merge_ranks(stats: dict[str, list[Any]], true: list[Any], reservoir: Reservoir,
                seen: int) -> tuple[dict[str, list[Any]], list[Any], Reservoir, int] | None:
    """Every rank's ``(stats, true pairs, reservoir, samples seen)`` summed into one, on every rank; None without an
    initialised process group (one process: nothing to gather).

    A rank that saw no batch joins with zeros of the others' dimension.

    Raises:
        InputError: Ranks with vectors of different dimensions, or a sample given on two ranks.
    """
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return None
    dim = None if not stats else int(stats["image"][1].shape[0])
    gram = bool(stats) and stats["image"][2] is not None
    device = None if not stats else stats["image"][1].device
    shared: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(shared, (dim, gram, str(device) if device is not None else None, reservoir, seen,
                                    {m: st[0] for m, st in stats.items()}, true[0]))
    dims = {d for d, *_ in shared if d is not None}
    if len(dims) > 1:
        raise InputError(f"monitor: the ranks' vectors have different dimensions {sorted(dims)}",
                         hint="every rank must measure the same model")
    if not dims:
        return None
    (d,) = dims
    gram = any(g for _, g, *_ in shared)
    if device is None:
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    merged: dict[str, list[Any]] = {}
    for m in ("image", "text"):
        st = stats.get(m) or [0, torch.zeros(d, dtype=torch.float64, device=device),
                              torch.zeros(d, d, dtype=torch.float64, device=device) if gram else None]
        total, g = st[1].clone(), None if st[2] is None else st[2].clone()
        dist.all_reduce(total)
        if g is not None:
            dist.all_reduce(g)
        merged[m] = [sum(counts.get(m, 0) for *_, counts, _ in shared), total, g]
    true_sum = true[1].clone() if true[1] is not None else torch.zeros((), dtype=torch.float64, device=device)
    dist.all_reduce(true_sum)
    together = copy.deepcopy(shared[0][3])
    for other in shared[1:]:
        together.merge(other[3])
    return merged, [sum(s[-1] for s in shared), true_sum], together, sum(s[4] for s in shared)
