"""Operations on datasets: drop unreadable images (``--skip-bad``), drop samples, concatenate datasets."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from gapdiag.data.base import PairedDataset
from gapdiag.data.images import load_image
from gapdiag.errors import DatasetError
from gapdiag.fsutil import hash_json


def find_unreadable(dataset: PairedDataset, *, threads: int = 4) -> list[tuple[str, int, str]]:
    """Decode every image item once; return ``(modality, item index, one-line reason)`` for each failure.

    This costs one extra decode per image, paid only with ``--skip-bad``: the embedding pass can then assume
    every remaining image decodes, which keeps chunked resume simple and exact. The reason says what is wrong and
    that the sample is dropped (``"m.csv:5: cannot decode image ... (sample dropped)"``), as the readers' lines do.
    """

    def check(args: tuple[str, int]) -> tuple[str, int, str] | None:
        name, i = args
        modality = dataset.modalities[name]
        try:
            load_image(modality.items[i], modality.location(i))
        except DatasetError as e:
            return name, i, f"{e.message} (sample dropped)"
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
        # Without a base fingerprint (built in memory) none is made up: the api fingerprints the content instead.
        fingerprint=hash_json({"base": dataset.fingerprint, "dropped": sorted(reasons)}) if dataset.fingerprint else "",
    )


def skip_unreadable(dataset: PairedDataset) -> tuple[PairedDataset, list[str]]:
    """Find unreadable images and drop their samples; returns the filtered dataset and one line per skip."""
    bad = find_unreadable(dataset)
    reasons = [reason for _, _, reason in bad]
    samples = {int(dataset.modalities[name].sample_index[i]) for name, i, _ in bad}
    return drop_samples(dataset, samples, reasons), reasons


def concat_datasets(datasets: list[PairedDataset], *, name: str | None = None) -> PairedDataset:
    """Stack datasets with the same modalities into one (samples renumbered, class ids offset per dataset).

    Used to train one model on several sources (the bundled checkpoints see digits and shapes). Class names are
    concatenated; a dataset without labels contributes label -1, so the result has labels only if all have them.
    """
    if not datasets:
        raise DatasetError("concat_datasets needs at least one dataset")
    names = datasets[0].modality_names
    for d in datasets[1:]:
        if d.modality_names != names or [m.kind for m in d.modalities.values()] != [
            m.kind for m in datasets[0].modalities.values()
        ]:
            raise DatasetError(
                f"cannot concatenate {d.source} ({d.modality_names}) with {datasets[0].source} ({names})",
                hint="datasets must have the same modalities",
            )
    offsets = np.cumsum([0] + [d.n_samples for d in datasets[:-1]])
    modalities = {}
    for name_ in names:
        parts = [d.modalities[name_] for d in datasets]
        items: list = [item for m in parts for item in m.items]
        locations = [m.location(i) for m in parts for i in range(len(m))]
        sample_index = np.concatenate([m.sample_index + off for m, off in zip(parts, offsets)]).astype(
            np.int64
        )
        modalities[name_] = dataclasses.replace(
            parts[0], items=items, sample_index=sample_index, locations=locations
        )
    labels = None
    class_names = None
    if all(d.labels is not None and d.class_names for d in datasets):
        class_offsets = np.cumsum([0] + [len(d.class_names or []) for d in datasets[:-1]])
        labels = np.concatenate([d.labels + off for d, off in zip(datasets, class_offsets)]).astype(np.int64)
        class_names = [c for d in datasets for c in (d.class_names or [])]
    return PairedDataset(
        name=name or "+".join(d.name for d in datasets),
        source="+".join(d.source for d in datasets),
        modalities=modalities,
        n_samples=int(sum(d.n_samples for d in datasets)),
        labels=labels,
        class_names=class_names,
        templates=datasets[0].templates,
        # A hash of empty fingerprints would be one key for every such stack: leave it to the content fingerprint.
        fingerprint=hash_json([d.fingerprint for d in datasets]) if all(d.fingerprint for d in datasets) else "",
    )
