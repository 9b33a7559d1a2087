"""One place that turns ``--device`` ("auto", "cpu", "cuda", "cuda:N", "mps") into the device a run uses.

``auto`` means cuda > mps > cpu. It is resolved without importing torch where no GPU can exist: no NVIDIA
(``/dev/nvidia*``), ROCm (``/dev/kfd``) or WSL (``/dev/dxg``) device node and not Apple silicon. Importing
torch costs seconds, and a warm cache hit on a CPU machine needs nothing from it. Where a GPU may exist, torch
is asked once, on first use, and the answer is kept for the process.

The api resolves ``--device`` once, at the door (:func:`resolve`), and hands the resolved :class:`Device` down:
to the model loader (:func:`gapdiag.models.loading.build_model`), the distributed context, which gives each
torchrun rank its own GPU (:func:`for_rank`), and, as :func:`search_device`, to the search backends of
:mod:`gapdiag.metrics`. Nothing below the api parses ``auto``.
"""

from __future__ import annotations

import functools
import glob
import platform
from dataclasses import dataclass
from typing import Any

from gapdiag.errors import ModelError

#: What ``--device`` accepts.
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"
#: Device nodes whose presence means a GPU driver is loaded (NVIDIA, ROCm, WSL's GPU paravirtualisation).
_GPU_NODES = ("/dev/nvidia[0-9]*", "/dev/nvidiactl", "/dev/kfd", "/dev/dxg")


@dataclass(frozen=True)
class Device:
    """A parsed device request: ``kind`` in auto/cpu/cuda/mps and, for ``cuda:N``, the ``index``."""

    kind: str
    index: int | None = None

    def __str__(self) -> str:
        return f"{self.kind}:{self.index}" if self.index is not None else self.kind

    @property
    def is_cuda(self) -> bool:
        return self.kind == "cuda"

    def torch(self) -> Any:
        """The ``torch.device`` (imports torch: only for code that runs a model)."""
        import torch

        return torch.device(str(self))


def parse(device: str | Device) -> Device:
    """Check the spelling of a device request, without looking at the hardware.

    Raises:
        ModelError: Not one of auto, cpu, cuda, cuda:N, mps.
    """
    if isinstance(device, Device):
        return device
    text = str(device).strip().lower()
    kind, sep, suffix = text.partition(":")
    if kind in ("auto", "cpu", "mps") and not sep:
        return Device(kind)
    if kind == "cuda" and (not sep or suffix.isdigit()):
        return Device("cuda", int(suffix) if sep else None)
    raise ModelError(f"unknown device {device!r}", hint=f"use {DEVICE_CHOICES}")


@functools.lru_cache(maxsize=1)
def gpu_possible() -> bool:
    """Whether this machine could have a CUDA/ROCm GPU or MPS at all (no torch import)."""
    if platform.system() == "Darwin":
        return platform.machine() == "arm64"
    return any(glob.glob(pattern) for pattern in _GPU_NODES)


@functools.lru_cache(maxsize=1)
def cuda_count() -> int:
    """CUDA (or ROCm) GPUs torch can use here; 0 without importing torch where none can exist."""
    if not gpu_possible() or platform.system() == "Darwin":
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@functools.lru_cache(maxsize=1)
def mps_available() -> bool:
    """Whether torch can use Apple's Metal backend here."""
    if platform.system() != "Darwin" or not gpu_possible():
        return False
    import torch

    return bool(getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available())


def resolve(device: str | Device = "auto") -> Device:
    """``auto`` -> ``cuda`` > ``mps`` > ``cpu``; an explicit device that is not available -> ModelError.

    Examples:
        >>> str(resolve("cpu"))
        'cpu'
    """
    dev = parse(device)
    if dev.kind == "auto":
        if cuda_count():
            return Device("cuda")
        return Device("mps") if mps_available() else Device("cpu")
    if dev.kind == "cuda":
        n = cuda_count()
        if not n:
            raise ModelError(f"--device {dev} requested but no CUDA GPU is available", hint="use --device cpu or auto")
        if dev.index is not None and dev.index >= n:
            raise ModelError(f"--device {dev} requested but only {n} GPU(s) are visible",
                             hint=f"use cuda:0..cuda:{n - 1}")
    if dev.kind == "mps" and not mps_available():
        raise ModelError("--device mps requested but MPS is not available", hint="use --device cpu or auto")
    return dev


def for_rank(device: Device, local_rank: int, distributed: bool) -> Device:
    """This torchrun rank's device for the resolved ``device``: ``cuda`` -> the rank's own GPU (``cuda:LOCAL_RANK``,
    round-robin when ranks outnumber GPUs); an explicit ``cuda:N``, ``cpu`` or ``mps`` is kept, as is everything
    outside torchrun."""
    if distributed and device.is_cuda and device.index is None:
        n = cuda_count()
        if n:
            return Device("cuda", local_rank % n)
    return device


def search_device(device: Device) -> Device:
    """Where nearest-neighbour search runs beside a model on the resolved ``device``: the same device, except
    ``mps``, which neither FAISS nor torch-on-CUDA searches with: there, the CPU."""
    return Device("cpu") if device.kind == "mps" else device

