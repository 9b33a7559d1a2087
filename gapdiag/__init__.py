"""gapdiag: diagnose the embedding space of multimodal contrastive models (CLIP and kin).

>>> import gapdiag
>>> report = gapdiag.measure()          # doctest: +SKIP
>>> report["modality_gap/image-text"]   # doctest: +SKIP

Public API (imported lazily so that ``import gapdiag`` and the CLI start fast): :func:`measure`, :func:`embed`,
:func:`export`, :func:`intervene`, :func:`apply_intervention`, :func:`load_data`, :func:`load_model`, :class:`Report`,
:class:`EmbeddingSet`, and :class:`Monitor` for a training loop.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "measure": ("gapdiag.api", "measure"),
    "embed": ("gapdiag.api", "embed"),
    "export": ("gapdiag.api", "export"),
    "intervene": ("gapdiag.api", "intervene"),
    "apply_intervention": ("gapdiag.api", "apply_intervention"),
    "load_data": ("gapdiag.api", "load_data"),
    "bundled_checkpoint": ("gapdiag.api", "bundled_checkpoint"),
    "load_model": ("gapdiag.api", "load_model"),
    "Report": ("gapdiag.report", "Report"),
    "EmbeddingSet": ("gapdiag.vectors", "EmbeddingSet"),
    "PairedDataset": ("gapdiag.data.base", "PairedDataset"),
    "GapdiagError": ("gapdiag.errors", "GapdiagError"),
    "Monitor": ("gapdiag.training.monitor", "Monitor"),
}

__all__ = ["__version__", *_EXPORTS]  # noqa: PLE0604 - the keys of _EXPORTS are the public names


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        module, attr = _EXPORTS[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'gapdiag' has no attribute {name!r}")
