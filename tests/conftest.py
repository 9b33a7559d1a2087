"""Fixtures shared by the test modules: an isolated cache per test, a tiny checkpoint, a small real manifest.

Model hubs are switched off for the whole session (``HF_HUB_OFFLINE=1`` must be set before huggingface_hub
is imported, which is why it is set at import time here): a test that asks for a download fails at once
instead of waiting on the network.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"


def _one_compute_thread_per_xdist_worker() -> None:
    """Under ``pytest -n N`` each worker (and what it spawns) runs torch's and FAISS's OpenMP on one thread.

    Each worker is given one core: with torch's default of one thread per core, two workers on two cores ran four
    spinning OpenMP threads, and a training epoch took 3-4x the CPU time it takes on one thread (measured in
    docs/benchmarks.md, "Test-suite time"). numpy's OpenBLAS would follow ``OMP_NUM_THREADS`` too, so its own
    variable keeps its default (every core): tests/test_tile_workers.py checks that gapdiag narrows it to one
    thread and gives it back, which a pool of one thread to begin with could not show. Must run before numpy or
    torch is imported; a value the user set is kept. Plain ``pytest`` (no workers) keeps every default.
    """
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(cores))


_one_compute_thread_per_xdist_worker()

from data_fixtures import digits_manifest

TINY_ARCH = "gapdiag-tiny-vit"


@pytest.fixture(autouse=True)
def isolated_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Every test gets its own empty cache root (``GAPDIAG_CACHE_DIR``), never the user's cache."""
    root = tmp_path / "gapdiag-cache"
    monkeypatch.setenv("GAPDIAG_CACHE_DIR", str(root))
    return root


@pytest.fixture(autouse=True)
def sigint_handler_left_as_found() -> Any:
    """No test may leave SIGINT's handler changed: a later test's Ctrl-C (``test_encode``) must reach the handler a
    command installs. A test that leaves it changed fails here, by name, and the handler is put back."""
    before = signal.getsignal(signal.SIGINT)
    yield
    after = signal.getsignal(signal.SIGINT)
    if after is not before:
        signal.signal(signal.SIGINT, before)
        pytest.fail(f"the test left SIGINT's handler as {after!r} (it was {before!r})")


def tiny_model(seed: int, architecture: str = TINY_ARCH) -> Any:
    """A tiny open_clip model whose weights depend on ``seed`` (and differ from a fresh build's).

    Every parameter gets seeded noise on top of the initialisation: a checkpoint made from it can only be told
    apart from a freshly built model if loading it really sets the weights, whatever seed the build uses.
    """
    import torch

    from gapdiag.api import load_model

    model = load_model(architecture, device="cpu").model
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.02 * torch.randn(param.shape, generator=generator))
    return model


def export_tiny(path: Path, seed: int, architecture: str = TINY_ARCH) -> Path:
    """Write :func:`tiny_model` as a self-describing .safetensors checkpoint (what ``gapdiag train`` writes)."""
    import open_clip

    from gapdiag.training.checkpoint_files import export_safetensors

    model = tiny_model(seed, architecture)
    return export_safetensors(model, architecture, open_clip.get_model_config(architecture), path)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``gapdiag-tiny-vit`` with seeded random weights, written by ``gapdiag.training.checkpoint_files.export_safetensors``.

    Session-scoped and shared: tests that need to change a checkpoint copy it or export their own.
    """
    return export_tiny(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", seed=0)


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    """A manifest of 8 real digit images, two captions each, labels and class names (16 texts)."""
    path, _ = digits_manifest(tmp_path / "data", n=8)
    return path


def instrument_encoding(
    setattr_: Callable[[Any, str, Any], None],
    *,
    chunk_size: int = 4,
    nan_after: int | None = None,
    kill_after: int | None = None,
) -> dict[str, int]:
    """Patch :mod:`gapdiag.embedding.encode` to commit every ``chunk_size`` items and to count what the towers encode.

    ``setattr_`` is ``monkeypatch.setattr`` in a test, or plain ``setattr`` in a worker subprocess. The model
    that ``build_model`` returns has its ``encode_image``/``encode_text`` wrapped: they add the batch length to
    the returned counts, and image outputs become NaN once more than ``nan_after`` images were encoded. With ``kill_after``, the
    process SIGKILLs itself when asked for more images once ``kill_after`` were encoded (the chunks before
    are committed by then): a kill at an exact point, with no clock in the test.

    Returns:
        ``{"image": n, "text": n}``, updated as the model encodes.
    """
    import torch

    import gapdiag.embedding.encode as enc

    counts = {"image": 0, "text": 0}
    build_model = enc.build_model

    def counting_build_model(*args: Any, **kwargs: Any) -> Any:
        loaded = build_model(*args, **kwargs)
        towers = {"image": loaded.model.encode_image, "text": loaded.model.encode_text}

        def wrap(kind: str) -> Callable[..., Any]:
            def encode(x: Any, *a: Any, **k: Any) -> Any:
                if kind == "image" and kill_after is not None and counts[kind] >= kill_after:
                    os.kill(os.getpid(), signal.SIGKILL)
                counts[kind] += len(x)
                out = towers[kind](x, *a, **k)
                if kind == "image" and nan_after is not None and counts[kind] > nan_after:
                    out = torch.full_like(out, float("nan"))
                return out

            return encode

        loaded.model.encode_image = wrap("image")
        loaded.model.encode_text = wrap("text")
        return loaded

    embed_dataset = enc.embed_dataset

    def embed_dataset_in_small_chunks(*args: Any, **kwargs: Any) -> Any:
        # Overrides whatever chunk size the caller (gapdiag.api.embed) passes.
        return embed_dataset(*args, **{**kwargs, "chunk_size": chunk_size})

    setattr_(enc, "build_model", counting_build_model)
    setattr_(enc, "embed_dataset", embed_dataset_in_small_chunks)
    return counts


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` run first, each in its collection order (a stable sort on the marker alone).

    Under ``pytest -n 2`` the first items are dealt to the workers in turn, so the long tests (a retraining,
    the docs examples, the wheel install) start at once, side by side, and the short ones fill in around them:
    in collection order the retraining came last and ran alone for minutes. The order depends on the markers
    only, never on recorded durations, so a run's results cannot depend on timing.
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
