"""Thin adapters from a :class:`~gapdiag.training.monitor.Monitor` result (any ``{name: number}`` dict) to the
experiment trackers, each an optional extra: TensorBoard (``pip install 'gapdiag[tensorboard]'``), MLflow
(``'gapdiag[mlflow]'``) and Weights & Biases (``'gapdiag[wandb]'``). They log the numbers and nothing else: names
stay gapdiag's (``modality_gap/image-text``; ``prefix`` puts them under a section), the step is the caller's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from gapdiag.errors import InputError


def scalars(result: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numbers of ``result`` as ``{prefix + name: float}`` (what every tracker can plot)."""
    return {f"{prefix}{name}": float(value) for name, value in result.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)}


def _missing(package: str, extra: str) -> InputError:
    return InputError(f"logging to {extra} needs the {package} package, which is not installed",
                      hint=f"pip install 'gapdiag[{extra}]'")


def log_tensorboard(result: Mapping[str, Any], writer: Any, step: int, *, prefix: str = "gapdiag/") -> None:
    """Write each number as a TensorBoard scalar at ``step`` and flush.

    Args:
        result: A Monitor result or any ``{name: number}`` dict.
        writer: A ``torch.utils.tensorboard.SummaryWriter`` (or tensorboardX's), or a log directory: a writer is
            opened there and closed again.
        step: The global step (epoch, iteration) the values belong to.
        prefix: Put before every name (TensorBoard groups tags by their first ``/``).
    """
    own = not hasattr(writer, "add_scalar")
    if own:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch's writer needs the tensorboard package
            raise _missing("tensorboard", "tensorboard") from None
        writer = SummaryWriter(log_dir=str(writer))
    for name, value in scalars(result, prefix).items():
        writer.add_scalar(name, value, global_step=step)
    writer.flush()
    if own:
        writer.close()


def log_mlflow(result: Mapping[str, Any], step: int, *, run_id: str | None = None, prefix: str = "") -> None:
    """Log each number as an MLflow metric at ``step``, in one batch: to the active run, or to ``run_id`` (where
    the tracking URI the caller set points)."""
    try:
        import mlflow
    except ImportError:
        raise _missing("mlflow", "mlflow") from None
    values = scalars(result, prefix)
    if run_id is None:
        mlflow.log_metrics(values, step=step)
        return
    from mlflow.entities import Metric

    timestamp = int(time.time() * 1000)
    mlflow.MlflowClient().log_batch(run_id, metrics=[Metric(k, v, timestamp, step) for k, v in values.items()])


def log_wandb(result: Mapping[str, Any], step: int, *, run: Any = None, prefix: str = "") -> None:
    """Log each number to a Weights & Biases run at ``step`` (``run``, default the current ``wandb.run``).

    Raises:
        InputError: No run (call ``wandb.init`` first), or wandb not installed.
    """
    if run is None:
        try:
            import wandb
        except ImportError:
            raise _missing("wandb", "wandb") from None
        run = wandb.run
        if run is None:
            raise InputError("log_wandb: no W&B run is active", hint="call wandb.init(...) first, or pass run=")
    run.log(scalars(result, prefix), step=step)
