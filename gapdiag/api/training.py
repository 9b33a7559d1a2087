"""The verb :func:`train`: train or fine-tune an open_clip model with one of the papers' losses."""

from __future__ import annotations

from pathlib import Path

from gapdiag import device as devices
from gapdiag import settings
from gapdiag.api.embedding import model_source, read_dataset
from gapdiag.api.options import EmbedOptions, check_seed
from gapdiag.data.base import PairedDataset
from gapdiag.models.resolving import check_trainable
from gapdiag.outputs import check_outputs
from gapdiag.training.train import RUN_FILES, TrainResult
from gapdiag.training.train import train as run_training


def train(
    data: str | Path | PairedDataset | None = None,
    model: str | Path = "gapdiag-tiny-vit",
    *,
    out_dir: str | Path,
    split: str | None = None,
    eval_split: str | None = None,
    eval_data: PairedDataset | None = None,
    pretrained: str | None = None,
    loss: str = "infonce",
    loss_weights: dict[str, float] | None = None,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 1e-3,
    weight_decay: float = 0.1,
    warmup_steps: int = 20,
    temperature: float | None = None,
    seed: int = 0,
    device: str = "auto",
    precision: str = "fp32",
    workers: int = 0,
    checkpoint_every: int = 1,
    export_dtype: str = "float32",
    restart: bool = False,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train or fine-tune an open_clip model (what ``gapdiag train`` does); see
    :func:`gapdiag.training.train.train` for the options of the run itself.

    Args:
        data: Training pairs: a dataset, or a path read with :func:`gapdiag.api.load_data` (``None`` = the
            bundled digits).
        model: An open_clip architecture name or config JSON (random init), or weights to fine-tune: a checkpoint
            file (``model.safetensors``, open_clip's ``epoch_N.pt``) or ``bundled:NAME``. A transformers model
            (``hf:``) is refused (:func:`gapdiag.models.resolving.check_trainable`).
        out_dir: The run directory (checkpoints, ``metrics.jsonl``, ``model.safetensors``); resumed if present.
        split: With a path: the rows trained on.
        eval_split: With a path: the rows measured after each epoch (``eval_data``; default: the training rows).
        eval_data: The dataset measured after each epoch, given directly.
        device: ``auto`` (cuda > mps > cpu), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``, resolved once here.
        cache_dir: The cache root (the dataset fingerprints, a checkpoint's config); ``None``: the default.
        pretrained, loss, loss_weights, epochs, batch_size, lr, weight_decay, warmup_steps, temperature, seed,
            precision, workers, checkpoint_every, export_dtype, restart, progress: The run's options
            (:func:`gapdiag.training.train.train`).

    Returns:
        The :class:`gapdiag.training.train.TrainResult` (run dir, model path, per-epoch metrics, resumed epoch).
    """
    check_seed(seed)  # before the data is read: a bad --seed costs nothing
    eval_source = getattr(eval_data, "source", None)
    train_source = getattr(data, "source", data)
    # The folder's epoch checkpoints are outputs too (a run writes them, --restart deletes them): fine-tuning one of
    # them into its own folder is refused before it is lost.
    epochs_there = (f"checkpoints/{p.name}" for p in sorted(Path(out_dir).glob("checkpoints/epoch_*.pt")))
    check_outputs({}, {"--model": model, "--pretrained": pretrained,
                       "--data": [train_source, *([eval_source] if eval_source else [])]},
                  folders={"--out": (out_dir, (*RUN_FILES, *epochs_there))})
    check_trainable(model)  # before the data is read
    at = settings.resolve(cache_dir)
    if not isinstance(data, PairedDataset):
        if eval_split:
            eval_data = read_dataset(data, EmbedOptions(split=eval_split), at)
        data = read_dataset(data, EmbedOptions(split=split), at)
    return run_training(data, model_source(model, at.sample_data), out_dir=out_dir, pretrained=pretrained, loss=loss, loss_weights=loss_weights,
                        eval_data=eval_data, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                        warmup_steps=warmup_steps, temperature=temperature, seed=seed, device=devices.resolve(device),
                        cache_root=at.cache_root, precision=precision, workers=workers,
                        checkpoint_every=checkpoint_every, export_dtype=export_dtype, progress=progress,
                        restart=restart)
