"""The data loader of ``--preprocess device``: workers read bytes, the model's device decodes and transforms.

DataLoader workers only read each image's bytes (a file, a tar member, a Parquet cell) into uint8 tensors in
pinned memory; the main process copies them to the device without blocking, decodes them there (nvJPEG on
CUDA, see :func:`gapdiag.embedding.preprocess.decode_batch`) and applies the tensor transform. DataLoader's
``prefetch_factor`` keeps a few batches read ahead, so reading overlaps the forward passes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from gapdiag.data.base import Modality
from gapdiag.data.images import load_image, missing_image_message
from gapdiag.embedding.preprocess import DecodeStats, decode_batch, tensor_transform
from gapdiag.errors import DatasetError, InputError


@dataclass
class _ByteItems:
    """Map-style dataset for DataLoader workers: ``(index, uint8 byte tensor)``; errors come back as values."""

    modality: Modality

    def __len__(self) -> int:
        return len(self.modality)

    def __getitem__(self, i: int) -> Any:
        import torch

        item = self.modality.items[i]
        try:
            data = item.read_bytes() if hasattr(item, "read_bytes") else open(item, "rb").read()  # noqa: SIM115
        except FileNotFoundError:
            return i, missing_image_message(self.modality.location(i), item)
        except OSError as e:
            return i, f"{self.modality.location(i)}: cannot read image {item}: {e.strerror or e}"
        except DatasetError as e:  # raised in a worker it would come back wrapped in a multi-line message
            return i, e.one_line()
        return i, torch.frombuffer(bytearray(data), dtype=torch.uint8)


def _collate(batch: list[Any]) -> Any:
    return batch  # images differ in size: decoded one by one on the device


def encode_images_on_device(loaded: Any, modality: Modality,
                            batches: list[list[int]], *, workers: int, on_batch: Callable[[int], None],
                            assembler: Any, to_numpy: Callable[[Any], np.ndarray],
                            stats: Any = None) -> Iterator[tuple[int, np.ndarray]]:
    """Encode the images of ``batches`` on ``loaded.device``; yields whole chunks as ``assembler`` releases them."""
    import torch
    from torch.utils.data import DataLoader

    transform = tensor_transform(loaded.preprocess)
    if transform is None:
        raise InputError("--preprocess device: this model's image transform has steps the tensor path does not "
                         "reproduce", hint="use --preprocess pil (or auto)")
    stats = stats if stats is not None else DecodeStats()
    on_cuda = loaded.device.type == "cuda"
    loader = DataLoader(_ByteItems(modality), batch_sampler=batches, num_workers=workers, collate_fn=_collate,
                        pin_memory=on_cuda, persistent_workers=False, prefetch_factor=4 if workers > 0 else None)
    for batch in loader:
        for _, payload in batch:
            if isinstance(payload, str):
                raise DatasetError(payload)
        indices = [i for i, _ in batch]

        def fallback(pos: int, indices: list[int] = indices) -> Any:
            i = indices[pos]
            return load_image(modality.items[i], modality.location(i))

        # nvJPEG takes its input from (pinned) host memory and writes the pixels on the device.
        images = decode_batch([p for _, p in batch], loaded.device, stats, fallback)
        pixels = transform.batch(images)
        with torch.inference_mode(), loaded.autocast():
            features = loaded.model.encode_image(pixels)
        vectors = to_numpy(features)
        on_batch(len(vectors))
        yield from assembler.add(vectors)
