"""A fitted intervention as a file: safetensors, its arrays as tensors, its method and parameters as metadata.

The file ships the fix: ``gapdiag intervene --method centering --save fix.safetensors`` writes it and
:func:`gapdiag.apply_intervention` (or :meth:`Intervention.apply` after :func:`load_intervention`) applies it to
new vectors, equal to the transform in the process that fitted it. Metadata (all strings, as safetensors wants):
``format`` (:data:`FORMAT`), ``method``, ``params`` (JSON), ``gapdiag_version`` (the version that wrote it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from gapdiag.errors import InputError
from gapdiag.fsutil import atomic_write_bytes, json_text
from gapdiag.outputs import write_error
from gapdiag.training.interventions import METHODS, Intervention

__all__ = ["FORMAT", "load_intervention", "save_intervention"]

#: The ``format`` metadata of an intervention file; bumped when its layout changes.
FORMAT = "gapdiag-intervention/1"
# The arrays each method's apply reads: a file missing one is refused when loaded, not when applied.
_ARRAYS = {
    "centering": ("mean_image", "mean_text"), "gap_shift": ("direction",), "ablation": ("dims",),
    "procrustes": ("rotation",), "whitening": ("mean_image", "whiten_image", "mean_text", "whiten_text"),
    "ot": ("source", "moved"),
}
assert set(_ARRAYS) == set(METHODS)


def save_intervention(t: Intervention, path: str | Path, *, version: str) -> Path:
    """Write ``t`` to ``path`` (atomically: an existing file is replaced whole or not at all).

    Args:
        t: The fitted transform.
        path: The ``.safetensors`` file to write.
        version: The gapdiag version that fitted it (kept in the metadata).

    Raises:
        InputError: The file cannot be written (one line naming it).
    """
    from safetensors.numpy import save  # heavy-ish and only needed when saving

    metadata = {"format": FORMAT, "method": t.method, "params": json_text(t.params), "gapdiag_version": version}
    data = save({name: np.ascontiguousarray(a) for name, a in t.arrays.items()}, metadata=metadata)
    target = Path(path)
    try:
        atomic_write_bytes(target, data)
    except OSError as e:
        raise write_error(target, e, what="intervention file", option="--save") from e
    return target


def load_intervention(path: str | Path) -> Intervention:
    """Read an intervention file written by :func:`save_intervention`.

    Raises:
        InputError: A missing or unreadable file, not a safetensors file, not an intervention (no or another
            ``format``), an unknown method, or a missing array (one line naming the file and the fix).
    """
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise InputError(f"intervention file {p} does not exist",
                         hint="write one with `gapdiag intervene --method METHOD --save FILE`")
    try:
        with safe_open(str(p), framework="numpy") as f:
            metadata = f.metadata() or {}
            arrays = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 - safe_open is no dict
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for a damaged header
        raise InputError(f"{p} is not a readable safetensors file ({type(e).__name__}: {e})",
                         hint="write it again with `gapdiag intervene --save`") from None
    if metadata.get("format") != FORMAT:
        raise InputError(f"{p} is not a gapdiag intervention file (format {metadata.get('format')!r}, expected "
                         f"{FORMAT!r})", hint="write one with `gapdiag intervene --method METHOD --save FILE`")
    method = metadata.get("method")
    if method not in _ARRAYS:
        raise InputError(f"{p} names an unknown intervention method {method!r}",
                         hint=f"this gapdiag knows {', '.join(METHODS)}; use the version that wrote it "
                              f"({metadata.get('gapdiag_version', 'unknown')})")
    missing = [name for name in _ARRAYS[method] if name not in arrays]
    try:
        params: dict[str, Any] = json.loads(metadata.get("params", ""))
    except ValueError:
        params = {}
    if missing or "dim" not in params:
        what = f"array {missing[0]!r}" if missing else "its parameters"
        raise InputError(f"{p} lacks {what} of the {method} transform", hint="write it again with --save")
    return Intervention(method, arrays, params)
