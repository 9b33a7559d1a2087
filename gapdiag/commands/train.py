"""``gapdiag train``: parsing and printing over :func:`gapdiag.api.train`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gapdiag import api
from gapdiag.commands.common import (
    FLAG,
    BatchSizeOpt,
    Command,
    DeviceOpt,
    JsonOpt,
    PrecisionOpt,
    PretrainedOpt,
    QuietOpt,
    TrainSeedOpt,
    WorkersOpt,
    console,
    one_of,
    print_json,
)

_EPILOG = (
    "Example: `gapdiag train --data sample_data/digits/manifest.csv --split train --eval-split test "
    "--model gapdiag-tiny-vit --loss atp_cu --epochs 30 --out runs/atp`")


def train(
    out: Annotated[Path, typer.Option("--out", "-o", path_type=str, help="Run directory (checkpoints, metrics.jsonl, model.safetensors); resumed if it exists.")],
    data: Annotated[str | None, typer.Option(
        "--data", "-d",
        help="Training data, any format `measure --data` reads; --split picks the rows trained on and "
             "--eval-split those measured each epoch. Default: the bundled handwritten digits.",
        rich_help_panel="Data")] = None,
    model: Annotated[str, typer.Option(
        "--model", "-m",
        help="open_clip architecture or config JSON (random init), or weights to fine-tune: a checkpoint "
             "(model.safetensors, epoch_N.pt) or bundled:NAME. Not hf: (transformers models train with their "
             "own tools).")] = "gapdiag-tiny-vit",
    pretrained: PretrainedOpt = None,
    split: Annotated[str | None, typer.Option("--split", help="Training split of the manifest.")] = "train",
    eval_split: Annotated[str | None, typer.Option("--eval-split", help="Split for the per-epoch metrics.")] = "test",
    loss: Annotated[str, typer.Option("--loss", metavar=one_of("infonce", "cua", "cuaxu", "atp_cu"), help="infonce, cua, cuaxu (Fahim et al.) or atp_cu (Grassucci et al.).")] = "infonce",
    lambda_atp: Annotated[float | None, typer.Option("--lambda-atp", help="λ1 of atp_cu (default 1).")] = None,
    lambda_cu: Annotated[float | None, typer.Option("--lambda-cu", help="λ2 of atp_cu (default 1).")] = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Passes over the training data.")] = 10,
    batch_size: BatchSizeOpt = 128,
    lr: Annotated[float, typer.Option("--lr", help="AdamW learning rate (cosine schedule with warm-up).")] = 1e-3,
    temperature: Annotated[float | None, typer.Option("--temperature", help="Fix τ (e.g. 0.1); default learnable.")] = None,
    seed: TrainSeedOpt = 0,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "fp32",
    workers: WorkersOpt = 0,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", min=1, help="Epochs between checkpoints.")] = 1,
    restart: Annotated[bool, typer.Option(
        "--restart", metavar=FLAG, help="Delete the previous run's checkpoints, log and model in --out and start afresh.")] = False,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Train or fine-tune an open_clip model with InfoNCE or a gap-closing loss; logs gap, Cos_TP and R@1 per
    epoch to metrics.jsonl, checkpoints periodically and resumes after an interruption.

    A folder that holds checkpoints is resumed only when every setting that changes the result (model, data,
    loss, epochs, batch size, lr, temperature, seed, precision) is the same; otherwise it stops and names the
    settings that differ. `--restart` or a new `--out` starts afresh."""
    weights = {k: v for k, v in (("lambda_atp", lambda_atp), ("lambda_cu", lambda_cu)) if v is not None}
    result = api.train(data, model, split=split, eval_split=eval_split, out_dir=out, pretrained=pretrained,
                       loss=loss, loss_weights=weights, epochs=epochs, batch_size=batch_size, lr=lr,
                       temperature=temperature, seed=seed, device=device, precision=precision, workers=workers,
                       checkpoint_every=checkpoint_every, progress=not (quiet or json_out), restart=restart)
    summary = {"out": str(result.out_dir), "model": str(result.model_path), "resumed_from_epoch": result.resumed_from,
               "epochs": result.epochs}
    if json_out:
        print_json(summary)
        return
    last = result.epochs[-1] if result.epochs else {}
    console.print(f"model written to {result.model_path}")
    console.print(", ".join(f"{k}={v:.4f}" for k, v in last.items() if isinstance(v, float)))



def register(app: typer.Typer) -> None:
    """Add ``train`` to the gapdiag app."""
    app.command(cls=Command, epilog=_EPILOG)(train)
