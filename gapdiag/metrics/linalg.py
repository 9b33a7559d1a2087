"""BLAS on one thread: the small ``d × d`` eigendecompositions of the spectrum metrics, and the pair passes' tiles.

OpenBLAS splits LAPACK's tridiagonal reduction of a 512 × 512 matrix over all its threads, and on a busy
machine the threads spin: measured on the 2-core box under load, ``eigvalsh`` took 0.4–1.9 CPU-seconds
threaded and 0.025 s on one thread. One thread is never slower at these sizes, so every ``d × d``
decomposition of the metrics goes through here. The pair passes run their tile products on one BLAS thread per
worker (:mod:`gapdiag.metrics.tile_workers`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import numpy as np
from numpy.typing import NDArray
from threadpoolctl import ThreadpoolController


@cache
def _controller() -> ThreadpoolController:
    """threadpoolctl's view of the loaded thread pools, built once: building it scans every loaded library (7 ms
    a time here, which a bootstrap of small sets would pay thousands of times), and numpy's BLAS, the one that is
    limited, is loaded before any call."""
    return ThreadpoolController()


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Limit BLAS to one thread for the block."""
    with _controller().limit(limits=1, user_api="blas"):
        yield


def eigvalsh(m: NDArray[np.floating]) -> NDArray[np.float64]:
    """Eigenvalues of a symmetric matrix, ascending (:func:`numpy.linalg.eigvalsh`, one BLAS thread)."""
    with one_blas_thread():
        return np.linalg.eigvalsh(m)


def eigh(m: NDArray[np.floating]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Eigenvalues (ascending) and eigenvectors of a symmetric matrix (:func:`numpy.linalg.eigh`, one thread)."""
    with one_blas_thread():
        return np.linalg.eigh(m)
