"""The verb that follows a checkpoint series: :func:`track` (``gapdiag track``), one :func:`measure` per checkpoint.

Each checkpoint is measured exactly as ``gapdiag measure -m CKPT`` measures it (through
:func:`gapdiag.api.measuring.measure_source`), so its vectors go to the embedding cache and its report to the
measured-report memo: tracking a series again after one more epoch embeds and measures only the new checkpoint.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from gapdiag import device as devices
from gapdiag import settings
from gapdiag.api.measuring import measure_source
from gapdiag.api.options import EmbedOptions, check_seed
from gapdiag.data.base import PairedDataset
from gapdiag.data.parquet import arrow
from gapdiag.metrics.sampling import check_sample_size
from gapdiag.models.checkpoints import find_checkpoints
from gapdiag.outputs import check_outputs
from gapdiag.report.track import Track, TrackPoint, write_track_parquet


def track(
    checkpoints: Sequence[str | Path],
    data: str | Path | PairedDataset | None = None,
    *,
    model: str | None = None,
    metrics: Sequence[str] | None = None,
    sample: int | None = None,
    seed: int = 0,
    retrieval_engine: str = "auto",
    block_size: int = 2048,
    threads: int | None = None,
    out: str | Path | None = None,
    parquet: str | Path | None = None,
    split: str | None = None,
    format: str | None = None,
    image_column: str | None = None,
    text_columns: Sequence[str] | None = None,
    label_column: str | None = None,
    class_name_column: str | None = None,
    templates: Sequence[str] | None = None,
    image_root: str | Path | None = None,
    skip_bad: bool = False,
    device: str = "auto",
    precision: str = "fp32",
    preprocess: str = "auto",
    batch_size: int = 64,
    workers: int = 0,
    dtype: str = "float32",
    chunk_size: int | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> Track:
    """Measure every checkpoint of a series on one dataset, ordered by step.

    Args:
        checkpoints: Checkpoint files, folders of them (a training run folder's ``checkpoints/``) or globs;
            ordered by the step in the file name (``epoch_3.pt``) or stored in the checkpoint (``epoch``).
        data: The dataset, as for :func:`gapdiag.api.measure` (``None``: the bundled data).
        model: The architecture of checkpoints that do not say theirs (each is then ``-m ARCH -p CKPT``);
            ``None``: each checkpoint says it (safetensors metadata, ``open_clip_config.json``, its run folder).
        metrics, sample, seed, retrieval_engine, block_size, threads: As for :func:`gapdiag.api.measure`.
        out: Also save the track record (JSON, :mod:`gapdiag.report.track`) here.
        parquet: Also save the table (one row per checkpoint, one column per metric) as Parquet here.
        split, format, image_column, text_columns, label_column, class_name_column, templates, image_root,
            skip_bad, device, precision, preprocess, batch_size, workers, dtype, chunk_size, cache_dir, progress:
            As for :func:`gapdiag.api.embed`.

    Returns:
        A :class:`~gapdiag.report.track.Track`: one point (step, checkpoint, report) per checkpoint.

    Raises:
        ModelError: No checkpoint found, one without a step, two at one step, or one that does not load.
        MissingExtraError: ``parquet`` is given and pyarrow is not installed (``pip install 'gapdiag[parquet]'``);
            said before any checkpoint is measured.
    """
    options = EmbedOptions(
        split=split, format=format, image_column=image_column, text_columns=text_columns, label_column=label_column,
        class_name_column=class_name_column, templates=templates, image_root=image_root, skip_bad=skip_bad,
        device=device, precision=precision, preprocess=preprocess, batch_size=batch_size, workers=workers,
        dtype=dtype, chunk_size=chunk_size, cache_dir=cache_dir, progress=progress)
    check_sample_size(sample)
    check_seed(seed)
    series = find_checkpoints(list(checkpoints))  # before any work: a bad series costs no embedding
    check_outputs({"--out": out, "--parquet": parquet},
                  {"CHECKPOINTS": [path for _, path in series], "--data": data})
    if parquet is not None:
        arrow("pyarrow.parquet", f"--parquet {parquet}")  # the parquet extra, before any checkpoint is measured
    at, resolved = settings.resolve(cache_dir), devices.resolve(device)
    points = []
    for step, path in series:
        name, weights = (model, str(path)) if model else (str(path), None)
        report = measure_source(data, name, dataclasses.replace(options, pretrained=weights), at, resolved,
                                metrics=metrics, sample=sample, seed=seed, retrieval_engine=retrieval_engine,
                                block_size=block_size, threads=threads)
        points.append(TrackPoint(step=step, checkpoint=str(path), report=report))
    result = Track(points)
    if out is not None:
        result.save(out)
    if parquet is not None:
        write_track_parquet(result, parquet)
    return result
