"""What ``gapdiag train`` measures after each epoch, through :class:`~gapdiag.training.monitor.Monitor`: the eval
data is embedded as ``measure`` embeds it, fed to a Monitor batch by batch on the model's device, as a training
loop of one's own would, and measured on every sample (the Monitor keeps them all: the values equal ``measure``'s
on the same vectors)."""

from __future__ import annotations

from typing import Any

import numpy as np

from gapdiag.data.base import PairedDataset
from gapdiag.embedding.encode import embed_in_memory
from gapdiag.errors import InputError
from gapdiag.report.presentation import format_number
from gapdiag.training.monitor import Monitor

#: Metrics on the one line printed per epoch (with the loss and τ).
EPOCH_METRICS = ("modality_gap", "cos_tp", "recall_at_1")
#: Metrics logged per epoch to ``metrics.jsonl`` (with the Monitor's ``monitor/...`` counts).
LOGGED_METRICS = (*EPOCH_METRICS, "recall_at_5", "angular_value", "effective_rank", "uniformity_wang_isola",
                  "gap_w2_squared", "gap_bures", "gap_centroid_share")


def measure_epoch(loaded: Any, data: PairedDataset, names: tuple[str, str], *,
                  batch_size: int = 256) -> dict[str, float]:
    """:data:`LOGGED_METRICS` of the model as it is now on ``data`` (image and text modality ``names``), seed 0.

    Raises:
        InputError: An evaluation sample with no image or several.
    """
    import torch

    es = embed_in_memory(data, loaded)
    n = es.n_samples
    image_samples, text_samples = es.sample_index[names[0]], es.sample_index[names[1]]
    if not np.array_equal(np.sort(image_samples), np.arange(n)):
        raise InputError(f"{data.source}: the per-epoch metrics need exactly one image per evaluation sample",
                         hint="split multi-image samples into separate rows")
    image_row = np.argsort(image_samples)
    text_rows = np.argsort(text_samples, kind="stable")  # captions grouped by sample, in item order
    bounds = np.searchsorted(text_samples[text_rows], np.arange(0, n + batch_size, batch_size))
    monitor = Monitor(LOGGED_METRICS, sample=max(n, 2), total=n, modalities=names)
    images, texts = es.vectors[names[0]], es.vectors[names[1]]
    for b, start in enumerate(range(0, n, batch_size)):
        rows = text_rows[bounds[b]:bounds[b + 1]]
        monitor.update(torch.from_numpy(np.asarray(images[image_row[start:start + batch_size]])).to(loaded.device),
                       torch.from_numpy(np.asarray(texts[rows])).to(loaded.device),
                       indices=torch.arange(start, min(start + batch_size, n)),
                       text_sample=torch.from_numpy(text_samples[rows] - start))
    return dict(monitor.compute())


def epoch_line(record: dict[str, Any], epochs: int) -> str:
    """One epoch in one plain line, for a terminal and a log alike: ``epoch 3/30  loss 2.301
    modality_gap/image-text 0.2405  cos_tp/image-text 0.8320  recall_at_1/... 0.0195  τ 0.07000  4.1s`` (the
    :data:`EPOCH_METRICS`; the record holds more)."""
    measured = "  ".join(f"{name} {format_number(value)}" for name, value in record.items()
                         if name.split("/")[0] in EPOCH_METRICS)
    return (f"epoch {record['epoch']}/{epochs}  loss {format_number(record['loss'])}  {measured}  "
            f"τ {format_number(record['temperature'])}  {record['seconds']:.1f}s")
