"""``--skip-bad``: find unreadable images before embedding and drop their samples from every modality."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from gapdiag.data.base import PairedDataset, hash_json
from gapdiag.errors import DatasetError


def find_unreadable(dataset: PairedDataset, *, threads: int = 4) -> list[tuple[str, int, str]]:
    """Decode every image item once; return ``(modality, item index, one-line reason)`` for each failure.

    This costs one extra decode per image, paid only with ``--skip-bad``: the embedding pass can then assume
    every remaining image decodes, which keeps chunked resume simple and exact.
    """
    from gapdiag.data.images import load_image

    def check(args: tuple[str, int]) -> tuple[str, int, str] | None:
        name, i = args
        modality = dataset.modalities[name]
        try:
            load_image(modality.items[i], modality.location(i))
        except DatasetError as e:
            return name, i, e.one_line()
        return None

    jobs = [(name, i) for name, m in dataset.modalities.items() if m.kind == "image" for i in range(len(m))]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return [r for r in pool.map(check, jobs) if r is not None]


def drop_samples(dataset: PairedDataset, bad_samples: set[int], reasons: list[str]) -> PairedDataset:
    """A copy of ``dataset`` without ``bad_samples`` (all their items, in every modality), samples renumbered.

    The fingerprint changes with the list of dropped items, so the cache never mixes filtered and unfiltered data.
    """
    if not bad_samples:
        return dataset
    keep = np.array([s not in bad_samples for s in range(dataset.n_samples)])
    if not keep.any():
        raise DatasetError(f"{dataset.source}: every sample has an unreadable image", hint="check the image files")
    new_id = np.cumsum(keep) - 1
    modalities = {}
    for name, m in dataset.modalities.items():
        item_keep = keep[m.sample_index]
        idx = np.flatnonzero(item_keep)
        items = m.items[idx] if isinstance(m.items, np.ndarray) else [m.items[i] for i in idx]
        locations = [m.locations[i] for i in idx] if m.locations is not None else None
        modalities[name] = dataclasses.replace(m, items=items, sample_index=new_id[m.sample_index[idx]].astype(np.int64),
                                               locations=locations)
    return dataclasses.replace(
        dataset,
        modalities=modalities,
        n_samples=int(keep.sum()),
        labels=dataset.labels[keep] if dataset.labels is not None else None,
        attributes={k: np.asarray(v)[keep] for k, v in dataset.attributes.items()} if dataset.attributes else None,
        fingerprint=hash_json({"base": dataset.fingerprint, "dropped": sorted(reasons)}),
    )


def skip_unreadable(dataset: PairedDataset) -> tuple[PairedDataset, list[str]]:
    """Find unreadable images and drop their samples; returns the filtered dataset and one line per skip."""
    bad = find_unreadable(dataset)
    reasons = [reason for _, _, reason in bad]
    samples = {int(dataset.modalities[name].sample_index[i]) for name, i, _ in bad}
    return drop_samples(dataset, samples, reasons), reasons
