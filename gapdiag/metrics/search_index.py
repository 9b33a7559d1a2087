"""Exact (or approximate) nearest-neighbour search backends: FAISS flat/IVF/HNSW on the CPU or a GPU, and a
torch flat index for GPUs that FAISS cannot use, chosen once per searcher from the resolved device.

:mod:`gapdiag.metrics.retrieval` builds on these: it asks a searcher for candidates, widens while ties may
hide past the cut-off and rescores exactly (:func:`exact_scores`), so results do not depend on the backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from gapdiag import device as devices
from gapdiag.errors import GapdiagError, InputError, ModelError

IndexKind = Literal["flat", "ivf", "hnsw"]

# FAISS GPU k-selection is limited to this many results per query (GPU_MAX_SELECTION_K).
_GPU_MAX_K = 2048
# Elements per step when rescoring or taking norms: bounds the float64 temporaries to ~32 MB.
_CHUNK_ELEMENTS = 1 << 22


def rows_per_chunk(elements_per_row: int) -> int:
    """Rows of ``elements_per_row`` float64 values that fit one step of about ``_CHUNK_ELEMENTS`` (at least 1)."""
    return max(1, _CHUNK_ELEMENTS // max(1, elements_per_row))


@dataclass(frozen=True)
class IndexSettings:
    """How a :class:`Searcher` builds its index: the keywords of :func:`~gapdiag.metrics.retrieval.search_topk`
    that configure FAISS (the rest configure the search loop). These defaults are ``search_topk``'s, the one
    source of them: its signature reads them, and callers that set only some options get them for the rest."""

    index: IndexKind = "flat"
    device: str = "auto"
    nlist: int | None = None
    nprobe: int = 16
    hnsw_m: int = 32
    ef_search: int = 128
    ef_construction: int = 200
    seed: int = 0

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """The option names."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def of(cls, options: Mapping[str, Any]) -> IndexSettings:
        """The settings with ``options`` set and the defaults for the rest.

        Raises:
            InputError: An option that configures no index.
        """
        unknown = set(options) - set(cls.option_names())
        if unknown:
            raise InputError(f"unknown search option(s) {sorted(unknown)}; see search_topk for the options")
        return cls(**options)


#: The FAISS wheels that provide ``import faiss``; each writes the same ``faiss/`` folder.
FAISS_DISTRIBUTIONS = ("faiss-cpu", "faiss-gpu", "faiss-gpu-cu12", "faiss-gpu-cu11")


def load_faiss() -> Any:
    """The ``faiss`` module, or a one-line error naming the fix when the FAISS install is missing or damaged.

    faiss-cpu (gapdiag's dependency) and faiss-gpu (its by-hand replacement, docs/install.md) write the same
    ``faiss/`` folder: with both installed the last one wins, and uninstalling either takes the other's files
    with it, so that pip still lists a FAISS that ``import faiss`` cannot find, or finds without its library
    (no ``IndexFlatIP``). Checked in scratch environments; see docs/install.md.
    """
    try:
        import faiss

        faiss.IndexFlatIP  # noqa: B018 - a half-removed faiss/ imports but holds no indexes
    except (ImportError, AttributeError) as e:
        from importlib import metadata

        installed = []
        for name in FAISS_DISTRIBUTIONS:
            try:
                installed.append(f"{name} {metadata.version(name)}")
            except metadata.PackageNotFoundError:
                continue
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GapdiagError(
            f"FAISS cannot be loaded ({type(e).__name__}: {reason}); installed: {', '.join(installed) or 'none'}"
            + (" (two FAISS builds overwrite each other's faiss/ folder)" if len(installed) > 1 else ""),
            hint="reinstall one build: `pip uninstall -y faiss-cpu faiss-gpu && pip install faiss-cpu`, "
                 "or faiss-gpu for FAISS on a GPU, see docs/install.md") from None
    return faiss


def _faiss_gpus() -> int:
    """GPUs this FAISS build can use (0 for faiss-cpu, or faiss-gpu on a machine without a usable GPU)."""
    faiss = load_faiss()
    return faiss.get_num_gpus() if hasattr(faiss, "StandardGpuResources") else 0


def _torch_gpus() -> int:
    return devices.cuda_count()


def _use_gpu(device: str) -> tuple[str | None, int]:
    """Resolve ``device`` ("auto", "cpu", "cuda", "cuda:N") to (GPU search backend or None, GPU id).

    The backend is ``"faiss"`` (a FAISS GPU index) where the FAISS build has GPU support, else ``"torch"``
    (exact flat search with torch on CUDA: faiss-gpu needs CUDA 12 libraries that many GPU machines lack, while
    torch brings its own). ``auto`` on a machine without any GPU device node imports neither FAISS nor torch.
    """

    try:
        dev = devices.parse(device)
    except ModelError:
        dev = devices.Device("mps")  # refused below, with the message that names what search accepts
    if dev.kind == "cpu":
        return None, 0
    if dev.kind == "auto":
        if not devices.gpu_possible():
            return None, 0
        if _faiss_gpus():
            return "faiss", 0
        return ("torch", 0) if _torch_gpus() else (None, 0)
    if dev.kind == "cuda":
        gpu_id = dev.index or 0
        visible = 0
        for backend, count in (("faiss", _faiss_gpus), ("torch", _torch_gpus)):
            n = count()
            if gpu_id < n:
                return backend, gpu_id
            visible = max(visible, n)
        if visible:
            raise InputError(f"device={device!r} but only {visible} GPU(s) are visible; use cuda:0..cuda:{visible - 1}")
        raise InputError(f"device={device!r} but neither FAISS nor torch sees a GPU here; "
                         "use device='cpu' or 'auto'")
    raise InputError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")


def gpu_search_available(device: str) -> bool:
    """Whether :func:`search_topk` with ``device`` searches on a GPU (a FAISS GPU build or torch on CUDA)."""
    return _use_gpu(device)[0] is not None


def search_backend(device: str, index: str = "flat") -> str:
    """What runs :func:`search_topk` with ``device`` and ``index``: "faiss-gpu", "torch-cuda" or "faiss-cpu"."""
    return _resolve_backend(device, index)[0]


def _resolve_backend(device: str, index: str) -> tuple[str, int]:
    """:func:`search_backend` and the GPU id it runs on."""
    backend, gpu_id = _use_gpu(device)
    # HNSW has no FAISS GPU implementation, and torch serves flat search only: the rest runs on the CPU.
    if backend == "faiss" and index != "hnsw":
        return "faiss-gpu", gpu_id
    return ("torch-cuda", gpu_id) if backend == "torch" and index == "flat" else ("faiss-cpu", gpu_id)


def search_device(model_device: str) -> str:
    """The search device that goes with a model on ``model_device``: the same one, except for accelerators
    that neither FAISS nor torch-on-CUDA search with (``mps``), which search on the CPU."""

    return "cpu" if devices.parse(model_device).kind == "mps" else str(devices.parse(model_device))


class _TorchFlatIndex:
    """Exact inner-product search with torch on a CUDA GPU: what ``faiss.IndexFlatIP`` gives on a GPU.

    Used where the FAISS build has no GPU support. As with FAISS, its float32 scores only pick candidates:
    :func:`_search_batch` rescores them exactly and widens near-ties in the same way, but the rescoring runs
    here, on the device (:meth:`exact_scores`), so that only ``rows × candidates`` float64 scores cross back.
    """

    # Scores held on the device at once (1 GiB of float32): large galleries are searched in query slices.
    max_scores = 1 << 28

    def __init__(self, gallery: NDArray[np.float32], device: str) -> None:
        import torch

        self._torch = torch
        self.gallery = torch.from_numpy(np.ascontiguousarray(gallery)).to(device)

    def search(self, q: NDArray[np.float32], k: int) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        torch = self._torch
        rows = max(1, self.max_scores // self.gallery.shape[0])
        scores, indices = [], []
        tf32 = torch.backends.cuda.matmul.allow_tf32
        # TF32 rounds inputs to 10 mantissa bits, far outside the rescoring window: IEEE float32 products only.
        torch.backends.cuda.matmul.allow_tf32 = False
        try:
            with torch.inference_mode():
                for r in range(0, q.shape[0], rows):
                    block = torch.from_numpy(np.ascontiguousarray(q[r : r + rows])).to(self.gallery.device)
                    top = torch.topk(block @ self.gallery.T, k, dim=1, largest=True, sorted=True)
                    scores.append(top.values.cpu().numpy())
                    indices.append(top.indices.cpu().numpy())
        finally:
            torch.backends.cuda.matmul.allow_tf32 = tf32
        return np.concatenate(scores), np.concatenate(indices).astype(np.int64, copy=False)

    def exact_scores(self, q: NDArray[np.float32], cand: NDArray[np.int64]) -> NDArray[np.float64]:
        """:func:`exact_scores` on the device: float64 products of the float32 vectors, summed over ``d``.

        float32·float32 products are exact in float64 and every candidate's sum runs through the same kernel
        in the same order, so equal gallery vectors tie bit for bit, as on the host.
        """
        torch = self._torch
        dev = self.gallery.device
        rows, c = cand.shape
        out = torch.empty((rows, c), dtype=torch.float64, device=dev)
        # Bound the float64 temporaries (rows × candidates × d) as the host version does.
        col_step = rows_per_chunk(q.shape[1])
        row_step = rows_per_chunk(min(c, col_step) * q.shape[1])
        with torch.inference_mode():
            qd = torch.from_numpy(np.ascontiguousarray(q)).to(dev).double()
            cd = torch.from_numpy(np.ascontiguousarray(cand)).to(dev)
            for r in range(0, rows, row_step):
                for c0 in range(0, c, col_step):
                    cb = cd[r : r + row_step, c0 : c0 + col_step]
                    vecs = self.gallery[cb.clamp(min=0)].double()
                    vecs *= qd[r : r + row_step, None, :]
                    out[r : r + row_step, c0 : c0 + col_step] = vecs.sum(dim=-1)
            out[cd < 0] = -torch.inf
            return out.cpu().numpy()


def _torch_device(gpu_id: int) -> str:
    return f"cuda:{gpu_id}"


# ----------------------------------------------------------------------------------------------------------
# Index construction
# ----------------------------------------------------------------------------------------------------------
class Searcher:
    """A FAISS index over a normalised gallery plus what is needed to rescore and widen its searches."""

    def __init__(
        self,
        gallery: NDArray[np.float32],
        *,
        index: str,
        device: str,
        nlist: int | None,
        nprobe: int,
        hnsw_m: int,
        ef_search: int,
        ef_construction: int,
        seed: int,
    ) -> None:
        faiss = load_faiss()
        if index not in ("flat", "ivf", "hnsw"):
            raise InputError(f"index must be 'flat', 'ivf' or 'hnsw', got {index!r}")
        self.gallery = gallery
        self.kind = index
        self.ef_search = ef_search
        n, d = gallery.shape
        self.backend, gpu_id = _resolve_backend(device, index)
        self.on_gpu = self.backend == "faiss-gpu"
        if self.backend == "torch-cuda":
            self.index = _TorchFlatIndex(gallery, _torch_device(gpu_id))
            return
        if index == "flat":
            cpu_index = faiss.IndexFlatIP(d)
        elif index == "ivf":
            # 4·sqrt(n) lists is FAISS's rule of thumb; at most n/39 so each centroid has 39 training points.
            nlist = nlist or max(1, min(int(4 * np.sqrt(n)), n // 39))
            if nlist > n:
                raise InputError(f"nlist={nlist} is larger than the gallery ({n} items); lower nlist")
            cpu_index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
            cpu_index.cp.seed = seed
            cpu_index.train(gallery)
            cpu_index.nprobe = min(nprobe, nlist)
        else:
            cpu_index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            cpu_index.hnsw.efConstruction = ef_construction
        if self.on_gpu:
            self._resources = faiss.StandardGpuResources()  # must outlive the GPU index
            self.index = faiss.index_cpu_to_gpu(self._resources, gpu_id, cpu_index)
        else:
            self.index = cpu_index
        self.index.add(gallery)

    @property
    def max_k(self) -> int:
        return min(self.gallery.shape[0], _GPU_MAX_K) if self.on_gpu else self.gallery.shape[0]

    def exact_scores(self, q: NDArray[np.float32], cand: NDArray[np.int64]) -> NDArray[np.float64]:
        """Exact scores of candidates ``cand`` for queries ``q``: on the GPU for the torch backend, else here."""
        if isinstance(self.index, _TorchFlatIndex):
            return self.index.exact_scores(q, cand)
        return exact_scores(q, self.gallery, cand)

    def raw_search(self, q: NDArray[np.float32], k: int) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        if self.kind == "hnsw":
            self.index.hnsw.efSearch = max(self.ef_search, k)
        return self.index.search(np.ascontiguousarray(q), k)


def exact_scores(
    q: NDArray[np.float32], gallery: NDArray[np.float32], cand: NDArray[np.int64]
) -> NDArray[np.float64]:
    """Scores of candidates ``cand`` (rows, c) for queries ``q`` (rows, d); -inf where ``cand`` is -1.

    float32·float32 products are exact in float64 and the sum runs in the same order for every candidate, so
    equal gallery vectors get bit-identical scores, whatever kernel FAISS used. Memory: the candidates' vectors
    are gathered in float64 blocks of at most about ``_CHUNK_ELEMENTS`` values (rows × candidates × d), and no
    smaller than that bound needs (many queries to a block when each has few candidates).
    """
    rows, c = cand.shape
    out = np.empty((rows, c), dtype=np.float64)
    # Chunk candidates too: a query widened to a huge tie group may carry the whole gallery.
    col_step = rows_per_chunk(q.shape[1])
    row_step = rows_per_chunk(min(c, col_step) * q.shape[1])
    for r in range(0, rows, row_step):
        qr = q[r : r + row_step, None, :].astype(np.float64)
        for c0 in range(0, c, col_step):
            cb = cand[r : r + row_step, c0 : c0 + col_step]
            vecs = gallery[np.where(cb >= 0, cb, 0)].astype(np.float64)
            vecs *= qr
            out[r : r + row_step, c0 : c0 + col_step] = vecs.sum(axis=-1)
    out[cand < 0] = -np.inf
    return out
