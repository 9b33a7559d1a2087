"""The files a training run writes: its epoch checkpoints (``torch.save``, sealed by a content digest) and its
exported ``model.safetensors`` (self-describing: the open_clip config in the metadata, byte-identical for the same
weights). The loop that decides when to write them is :mod:`gapdiag.training.train`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gapdiag import fsutil
from gapdiag.models.resolving import SAFETENSORS_CONFIG_KEY


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` atomically (:func:`gapdiag.fsutil.atomic_path`)."""
    import torch

    with fsutil.atomic_path(path) as tmp:
        torch.save(obj, tmp)


def checkpoint_digest(state: Any) -> str:
    """SHA-256 of a checkpoint's contents: every tensor's dtype, shape and bytes, every other value's ``repr``,
    mappings in sorted key order (the same contents give the same digest however they were built).

    Stored in the checkpoint under :data:`gapdiag.training.train.DIGEST_KEY` and verified on resume.
    """
    import hashlib

    import torch

    digest = hashlib.sha256()

    def add(obj: Any) -> None:
        if torch.is_tensor(obj):
            flat = obj.detach().to("cpu").contiguous().reshape(-1)
            digest.update(f"T{obj.dtype}{tuple(obj.shape)}".encode())
            digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
        elif isinstance(obj, dict):
            digest.update(f"D{len(obj)}".encode())
            for key in sorted(obj, key=repr):
                digest.update(repr(key).encode())
                add(obj[key])
        elif isinstance(obj, (list, tuple)):
            digest.update(f"L{len(obj)}".encode())
            for item in obj:
                add(item)
        else:
            digest.update(f"V{obj!r}".encode())

    add(state)
    return digest.hexdigest()


def _deterministic_safetensors(data: bytes) -> bytes:
    """``data`` (a .safetensors file) with its JSON header in a fixed order: metadata keys sorted, tensors by
    offset. safetensors writes the metadata in hash-map order, random per process, so identical exports had
    different bytes (another hash, another cache key). The tensor bytes and their offsets are unchanged."""
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + size])
    meta = header.pop("__metadata__", None)
    ordered = {**({"__metadata__": dict(sorted(meta.items()))} if meta is not None else {}),
               **dict(sorted(header.items(), key=lambda kv: (kv[1]["data_offsets"][0], kv[0])))}
    text = json.dumps(ordered, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header to 8 bytes with spaces
    return len(text).to_bytes(8, "little") + text + data[8 + size:]


def export_safetensors(model: Any, architecture: str, model_cfg: dict[str, Any], path: Path, *,
                       dtype: str = "float32", extra: dict[str, str] | None = None) -> Path:
    """Write ``model``'s weights as .safetensors with its config in the metadata (self-describing checkpoint)."""
    import torch
    from safetensors.torch import save

    cast = {"float32": torch.float32, "float16": torch.float16}[dtype]
    state = {k: v.detach().to("cpu", cast if v.is_floating_point() else v.dtype).contiguous()
             for k, v in model.state_dict().items()}
    meta = {SAFETENSORS_CONFIG_KEY: json.dumps({"name": architecture, "model_cfg": model_cfg}), **(extra or {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    with fsutil.atomic_path(path) as tmp:
        tmp.write_bytes(_deterministic_safetensors(save(state, metadata=meta)))
        tmp.chmod(0o644)  # a shared checkpoint should be readable like any other file
    return path
