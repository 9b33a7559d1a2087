"""torch.distributed plumbing for ``torchrun`` (one node or many, Slurm included); no home-made cluster.

``gapdiag embed`` started by ``torchrun --nproc-per-node N`` (or ``srun`` with torchrun's variables) splits the
dataset's chunks between ranks: rank ``r`` embeds chunks ``r, r + N, r + 2N, ...`` of every modality and
commits them to the shared cache directory; rank 0 prepares the entry under its lock before and finalises it
after (see :meth:`gapdiag.cache.EmbeddingCache.writer`). The result is the entry a single process would have
written: same chunks, same order, same dtype. A rank that dies leaves its committed chunks for the next run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from gapdiag import device as devices
from gapdiag.device import Device


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the job: ``rank`` of ``world_size`` (1 = not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def owns(self, chunk_number: int) -> bool:
        """Whether this rank embeds chunk ``chunk_number`` (round-robin: balanced, deterministic)."""
        return chunk_number % self.world_size == self.rank

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    def device(self, requested: Device) -> Device:
        """The resolved ``cuda`` under torchrun with GPUs -> this rank's own GPU (``cuda:LOCAL_RANK``, shared
        round-robin when ranks outnumber GPUs); an explicit ``cuda:N``, ``cpu`` or ``mps`` is kept."""
        return devices.for_rank(requested, self.local_rank, self.enabled)


def context_from_env(device: Device) -> DistributedContext:
    """Read torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK) and join the process group if needed.

    The backend follows the resolved ``device`` (what the command embeds on): NCCL where each rank of this node
    has a GPU of its own, gloo otherwise -- on CPU (``--device cpu`` on a GPU machine included) and where more
    ranks than GPUs share a node (NCCL refuses two ranks on one GPU). Ranks exchange only control messages
    (barriers, rank 0's errors); the vectors travel through the shared cache directory, so gloo costs nothing.
    Outside torchrun this returns a single-process context.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistributedContext()
    import torch.distributed as dist

    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = process_group_backend(device, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        if backend == "nccl":
            import torch

            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
    return DistributedContext(rank=rank, world_size=world, local_rank=local)


def process_group_backend(device: Device, local_world_size: int) -> str:
    """``"nccl"`` if the resolved ``device`` puts every local rank on a GPU of its own, else ``"gloo"``."""
    if not device.is_cuda:
        return "gloo"
    n = devices.cuda_count()
    return "nccl" if n and local_world_size <= n else "gloo"


def broadcast_object(ctx: DistributedContext, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (e.g. an error that must stop all ranks together)."""
    if not ctx.enabled:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def is_main_process() -> bool:
    """True outside torchrun and on rank 0: only it prints results."""
    return int(os.environ.get("RANK", "0")) == 0
