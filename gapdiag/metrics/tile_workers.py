"""Runs the tiles of a pair pass on several CPU threads, each worker with its own one-thread BLAS product.

What: :class:`TileWorkers` hands the jobs of a pass (a tile of the within-set pass, a column band of the cross
pass) to one worker per core, in order; each worker computes its jobs' matrix products with BLAS limited to one
thread and runs the compiled steps on them itself (the rank scan and the exp sums,
:mod:`gapdiag.metrics.strip_scan`); the results come back in job order. numpy's products and the numba kernels
release the GIL, so the threads run in parallel.

Why not let BLAS thread each product, as a plain ``np.dot`` does: the compiled steps that follow a product run on
one core, and while they run the other cores would wait. With whole jobs per worker every core is busy with
both the products and the scans, and two one-thread products together run at least as fast as BLAS's own
threads (the measurements are in docs/benchmarks.md, "the pair passes on every core").

Results do not depend on the number of threads: every product is a one-thread BLAS call (OpenBLAS's threaded
products round differently from its one-thread ones), and callers combine what the jobs return in job order.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from gapdiag.errors import InputError
from gapdiag.metrics.linalg import one_blas_thread

Job = TypeVar("Job")
Result = TypeVar("Result")
State = TypeVar("State")


def available_threads() -> int:
    """CPU cores this process may run on (its affinity mask where the platform has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def resolve_threads(threads: int | None) -> int:
    """``threads``, or every available core when None; at least 1."""
    if threads is None:
        return available_threads()
    if threads < 1:
        raise InputError(f"threads must be a positive integer, got {threads}")
    return threads


class _Stop(Exception):
    """Raised in a worker's ``tick`` once another worker failed, to end its job early."""


class TileWorkers(Generic[State]):
    """A pool of ``threads`` workers (no more than ``n_jobs``: each holds its own state), each with its own scratch
    ``State`` (buffers, per-worker partial results).

    :meth:`map` hands jobs out one at a time, in order, to whichever worker is free; job results come back in job
    order whatever the thread count, and :attr:`states` holds each worker's state afterwards (to be merged by the
    caller). Progress (``tick``) is reported on the calling thread, so callbacks need not be thread-safe.
    """

    def __init__(self, threads: int, make_state: Callable[[], State], n_jobs: int) -> None:
        self.states = [make_state() for _ in range(max(1, min(threads, n_jobs)))]

    def map(
        self,
        jobs: Sequence[Job],
        work: Callable[[Job, State, Callable[[], None]], Result],
        on_tick: Callable[[], None] | None = None,
    ) -> list[Result]:
        """``[work(job, state, tick) for job in jobs]``, run on the workers; ``tick()`` marks one tile done."""
        notices: queue.Queue[tuple[str, int, object]] = queue.Queue()
        next_job = iter(range(len(jobs)))
        take = threading.Lock()
        failed = threading.Event()

        def tick() -> None:
            if failed.is_set():
                raise _Stop
            notices.put(("tick", -1, None))

        def worker(state: State) -> None:
            while not failed.is_set():
                with take:
                    index = next(next_job, None)
                if index is None:
                    break
                try:
                    notices.put(("done", index, work(jobs[index], state, tick)))
                except _Stop:
                    break
                except BaseException as exc:  # noqa: BLE001 - handed to the calling thread, which re-raises it
                    failed.set()
                    notices.put(("error", index, exc))
                    break
            notices.put(("exit", -1, None))

        if len(self.states) == 1:  # no thread: plain calls, same results
            with one_blas_thread():
                return [work(job, self.states[0], on_tick or (lambda: None)) for job in jobs]
        results: dict[int, Result] = {}
        with one_blas_thread():
            pool = [threading.Thread(target=worker, args=(s,), daemon=True) for s in self.states]
            for thread in pool:
                thread.start()
            running = len(pool)
            try:
                while running:
                    kind, index, payload = notices.get()
                    if kind == "tick" and on_tick is not None:
                        on_tick()
                    elif kind == "done":
                        results[index] = payload  # type: ignore[assignment]
                    elif kind == "error":
                        raise payload  # type: ignore[misc]
                    elif kind == "exit":
                        running -= 1
            finally:
                failed.set()  # on an error or Ctrl-C the others stop at their next tile
                for thread in pool:
                    thread.join()
        return [results[i] for i in range(len(jobs))]
