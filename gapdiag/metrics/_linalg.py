"""Symmetric eigendecompositions of the small ``d × d`` matrices behind the spectrum metrics, on one BLAS thread.

OpenBLAS splits LAPACK's tridiagonal reduction of a 512 × 512 matrix over all its threads, and on a busy
machine the threads spin: measured on the 2-core box under load, ``eigvalsh`` took 0.4–1.9 CPU-seconds
threaded and 0.025 s on one thread. One thread is never slower at these sizes, so every ``d × d``
decomposition of the metrics goes through here (the big tile products keep all threads).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits


def eigvalsh(m: NDArray[np.floating]) -> NDArray[np.float64]:
    """Eigenvalues of a symmetric matrix, ascending (:func:`numpy.linalg.eigvalsh`, one BLAS thread)."""
    with threadpool_limits(limits=1, user_api="blas"):
        return np.linalg.eigvalsh(m)


def eigh(m: NDArray[np.floating]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Eigenvalues (ascending) and eigenvectors of a symmetric matrix (:func:`numpy.linalg.eigh`, one thread)."""
    with threadpool_limits(limits=1, user_api="blas"):
        return np.linalg.eigh(m)
