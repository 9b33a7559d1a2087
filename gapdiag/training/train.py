"""Train or fine-tune an open_clip model with one of the papers' objectives (``gapdiag train``).

Each epoch draws, for every training sample, its image and one of its captions (seeded), and minimises the
chosen loss from :data:`gapdiag.training.losses.LOSSES`. After each epoch the model is measured on ``eval_data``
through :class:`gapdiag.Monitor` (gap, Cos_TP, R@1 and more: :mod:`gapdiag.training.evaluation`), one line is
printed and a record appended to ``<out>/metrics.jsonl``; every ``checkpoint_every`` epochs a checkpoint in
open_clip's training format (``{"epoch", "name", "state_dict", "optimizer"}``) is written atomically to
``<out>/checkpoints/epoch_<n>.pt``. A run started again on the same ``out`` resumes from the newest checkpoint,
with the same data order as an uninterrupted run. The final weights are exported as
``<out>/model.safetensors`` with the model config in its metadata, so ``--model <out>/model.safetensors``
needs nothing else.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gapdiag import fsutil
from gapdiag.cache import file_sha256
from gapdiag.data.base import Modality, PairedDataset
from gapdiag.data.images import load_image
from gapdiag.device import Device
from gapdiag.errors import InputError
from gapdiag.fsutil import hash_json
from gapdiag.models.loading import LoadedModel, build_model
from gapdiag.models.resolving import ModelSpec, check_trainable, resolve_model
from gapdiag.progress import print_line, progress_bar
from gapdiag.training.checkpoint_files import atomic_torch_save, checkpoint_digest, export_safetensors
from gapdiag.training.evaluation import EPOCH_METRICS, epoch_line, measure_epoch  # noqa: F401 (re-exported)


@dataclass
class TrainResult:
    """Where the run wrote its outputs and what it measured per epoch."""

    out_dir: Path
    model_path: Path
    epochs: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: int = 0


def _pairs(dataset: PairedDataset) -> tuple[str, str]:
    images = [m.name for m in dataset.modalities.values() if m.kind == "image"]
    texts = [m.name for m in dataset.modalities.values() if m.kind == "text"]
    if len(images) != 1 or len(texts) != 1:
        raise InputError(f"{dataset.source}: training needs exactly one image and one text modality "
                         f"(found {dataset.counts()})", hint="use a manifest with an image and caption columns")
    return images[0], texts[0]


def _epoch_order(dataset: PairedDataset, text_name: str, epoch: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample order and one caption per sample for ``epoch``: a pure function of (seed, epoch), so resume is exact."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(dataset.n_samples)
    text_index = dataset.modalities[text_name].sample_index
    by_sample = np.argsort(text_index, kind="stable")
    counts = np.bincount(text_index, minlength=dataset.n_samples)
    if (counts == 0).any():
        missing = int(np.flatnonzero(counts == 0)[0])
        raise InputError(f"{dataset.source}: sample {missing} has no caption", hint="every training sample needs one")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pick = starts + (rng.random(dataset.n_samples) * counts).astype(np.int64)
    return order, by_sample[pick]


class _TrainItems:
    """Map-style dataset: (preprocessed image, caption) for DataLoader workers."""

    def __init__(self, dataset: PairedDataset, image_name: str, preprocess: Any) -> None:
        image = dataset.modalities[image_name]
        # one image item per sample is required by the pairing below
        self.image_of_sample = np.full(dataset.n_samples, -1, dtype=np.int64)
        self.image_of_sample[image.sample_index] = np.arange(len(image))
        if len(image) != dataset.n_samples or (self.image_of_sample < 0).any():
            raise InputError(f"{dataset.source}: training needs exactly one image per sample",
                             hint="split multi-image samples into separate rows")
        self.image = image
        self.preprocess = preprocess

    def __getitem__(self, sample: int) -> Any:
        i = int(self.image_of_sample[sample])
        return self.preprocess(load_image(self.image.items[i], self.image.location(i)))

    def __len__(self) -> int:
        return len(self.image_of_sample)


def _latest_checkpoint(ckpt_dir: Path) -> tuple[int, Path] | None:
    found = sorted((int(p.stem.split("_")[1]), p) for p in ckpt_dir.glob("epoch_*.pt") if p.stem.split("_")[1].isdigit())
    return found[-1] if found else None


#: What a checkpoint stores the run's settings under; a run resumes only when they equal the new run's.
SETTINGS_KEY = "gapdiag_settings"
#: What a checkpoint stores the SHA-256 of everything else it holds under
#: (:func:`gapdiag.training.checkpoint_files.checkpoint_digest`).
DIGEST_KEY = "gapdiag_sha256"
#: Files of a run directory that ``restart`` deletes (nothing else in the folder is touched).
RUN_FILES = ("metrics.jsonl", "model.safetensors", "run.json")


def run_settings(spec: Any, data: PairedDataset, eval_data: PairedDataset | None, *, cache_root: Path | None = None,
                 **settings: Any) -> dict[str, Any]:
    """Everything that changes the trained weights or the logged metrics (not the device, workers or export).

    ``epochs`` is among them because it sets the length of the cosine schedule: the same epoch of a 10- and a
    20-epoch run trains with different learning rates. ``cache_root`` memoises the checkpoint's digest.
    """
    model = {"architecture": spec.architecture, "pretrained": spec.pretrained,
             "config": hash_json(spec.model_cfg)[:16] if spec.model_cfg else None,
             "checkpoint_sha256": file_sha256(spec.checkpoint, cache_dir=cache_root) if spec.checkpoint else None}
    return {"model": model, "data": data.fingerprint or str(data.source), "n_samples": data.n_samples,
            "eval_data": None if eval_data is None else (eval_data.fingerprint or str(eval_data.source)),
            **settings}


def _settings_differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """``["loss infonce -> cua", "data (another fingerprint)"]``: one phrase per setting that differs."""
    out = []
    for key in sorted(set(saved) | set(now)):
        a, b = saved.get(key), now.get(key)
        if a == b:
            continue
        if key in ("model", "data", "eval_data") and a is not None and b is not None:
            out.append(f"{key} (another {'checkpoint or architecture' if key == 'model' else 'fingerprint'})")
        else:
            out.append(f"{key} {a!r} -> {b!r}")
    return out


def _load_resume_state(path: Path, out: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """The newest checkpoint, refused in one line when it is unreadable or from a run with other settings."""
    import torch

    hint = f"start afresh with --restart (deletes {out}'s checkpoints) or use a new --out folder"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated zip, pickled objects, not a torch file at all
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise InputError(f"{path}: cannot resume from this checkpoint ({type(e).__name__}: {reason})",
                         hint=f"delete it to resume from the one before, or {hint}") from None
    if not isinstance(state, dict) or not {"state_dict", "optimizer", "scheduler"} <= set(state):
        raise InputError(f"{path}: not a gapdiag train checkpoint (no state_dict/optimizer/scheduler)",
                         hint=f"delete it, or {hint}")
    # torch.load checks no checksum: a flipped bit in the tensor data loads as other weights.
    stored = state.pop(DIGEST_KEY, None)
    if stored is None:
        raise InputError(f"{path}: cannot resume from this checkpoint (it carries no checksum, so damage to it "
                         "could not be told apart from weights)", hint=f"delete it, or {hint}")
    if stored != checkpoint_digest(state):
        raise InputError(f"{path}: cannot resume from this checkpoint (its contents do not match the checksum "
                         "written with it: the file is damaged)",
                         hint=f"delete it to resume from the one before, or {hint}")
    saved = state.get(SETTINGS_KEY)
    if saved is None:
        raise InputError(f"{out}: its checkpoints do not record the settings they were trained with, so resuming "
                         "cannot be checked", hint=hint)
    differences = _settings_differences(saved, settings)
    if differences:
        raise InputError(f"{out} holds a run with other settings ({'; '.join(differences)}): a run resumes only "
                         "with the same settings", hint=hint)
    return state


def _refuse_replacing_another_run(out: Path, settings: dict[str, Any]) -> None:
    """A folder with no checkpoint may still hold a finished run (its checkpoints deleted to save space): its
    model, ``run.json`` and log are replaced only by a run with the same settings (which trains it again, to the
    same bytes), never by another one, nor when ``run.json`` cannot tell.

    Raises:
        InputError: Naming the settings that differ, or the run file that cannot be read, and ``--restart``.
    """
    found = [name for name in RUN_FILES if (out / name).exists()]
    if not found:
        return
    hint = f"start afresh with --restart (deletes {out}'s run files) or use a new --out folder"
    path = out / "run.json"
    try:
        saved = fsutil.loads_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{out} holds {', '.join(found)} of a run whose settings are unknown (no run.json)",
                         hint=hint) from None
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read the settings of the run in {out} ({type(e).__name__})",
                         hint=hint) from None
    now = json.loads(fsutil.json_text(settings, sort_keys=False))  # as run.json holds them
    differences = _settings_differences(saved, now) if isinstance(saved, dict) else ["run.json is not an object"]
    if differences:
        raise InputError(f"{out} holds a finished run with other settings ({'; '.join(differences)}; from {path}): "
                         "a run is replaced only by one with the same settings", hint=hint)


def _cut_log(log_path: Path, epochs_done: int) -> list[dict[str, Any]]:
    """The logged records of the epochs a resumed run keeps, with the log cut to them (empty for a new run).

    A killed run may have logged one more epoch than its newest checkpoint holds; that line goes.
    """
    kept = [fsutil.loads_json(line) for line in log_path.read_text().splitlines()[:epochs_done]] \
        if epochs_done and log_path.exists() else []
    fsutil.atomic_write_text(log_path, "".join(json.dumps(record) + "\n" for record in kept))
    return kept


def restart_run(out: Path) -> None:
    """Delete what a previous run wrote in ``out`` (checkpoints, log, export) and nothing else."""
    for ckpt in (out / "checkpoints").glob("epoch_*.pt"):
        ckpt.unlink()
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)


# Over 80 lines only by its 21 options and their documentation; the code is about 50 lines.
def train(
    data: PairedDataset,
    model: str | Path = "gapdiag-tiny-vit",
    *,
    out_dir: str | Path,
    pretrained: str | None = None,
    loss: str = "infonce",
    loss_weights: dict[str, float] | None = None,
    eval_data: PairedDataset | None = None,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 1e-3,
    weight_decay: float = 0.1,
    warmup_steps: int = 20,
    temperature: float | None = None,
    seed: int = 0,
    device: Device,
    cache_root: Path,
    precision: str = "fp32",
    workers: int = 0,
    checkpoint_every: int = 1,
    export_dtype: str = "float32",
    progress: bool = True,
    restart: bool = False,
) -> TrainResult:
    """Train ``model`` on ``data`` with ``loss`` (see :data:`gapdiag.training.losses.LOSSES`).

    Args:
        data: Training pairs (one image and one text modality; a sample's captions are drawn uniformly).
        model: An open_clip architecture name or config JSON (random init) or checkpoint file (fine-tuning: a
            ``model.safetensors``, open_clip's ``epoch_N.pt`` in its run folder); not a transformers model
            (:func:`gapdiag.models.resolving.check_trainable`).
        out_dir: Run directory: ``checkpoints/``, ``metrics.jsonl``, ``model.safetensors``. Resumed if present.
        loss: ``infonce``, ``cua``, ``cuaxu`` or ``atp_cu`` (InfoNCE + λ1·L_ATP + λ2·L_CU).
        loss_weights: Keyword weights of the loss (e.g. ``{"lambda_atp": 1.0, "lambda_cu": 1.0}``).
        eval_data: Data for the per-epoch metrics (gap, Cos_TP, R@1); default: ``data``.
        temperature: Fix τ (e.g. 0.1 as in Grassucci et al.); ``None`` = learnable, open_clip's init 1/0.07.
        seed: Seeds initialisation and data order; the same seed gives the same weights.
        device: The resolved device (:func:`gapdiag.device.resolve`, at the api's door).
        cache_root: The cache root (resolved by the api), where a checkpoint's model config is kept.
        precision: ``fp32``; ``amp`` or ``bf16`` autocast on CUDA.
        restart: Delete a previous run's checkpoints, log and export in ``out_dir`` and start afresh. Without
            it, a run in a folder that holds checkpoints resumes from the newest one, and only when every
            setting that changes the result (model, data, loss and weights, epochs, batch size, lr, weight
            decay, warm-up, temperature, seed, precision) is the same; otherwise it stops with one line naming
            the settings that differ.

    Raises:
        InputError: Bad options or data; a checkpoint to resume from that is unreadable or from another run.
        ModelError: A model that cannot be resolved or trained (:func:`gapdiag.models.resolving.check_trainable`).
    """
    from gapdiag.training.losses import get_loss  # imports torch at its top

    if epochs < 1 or batch_size < 2:
        raise InputError(f"need epochs >= 1 and batch size >= 2 (got {epochs}, {batch_size})")
    loss_fn = get_loss(loss)
    weights = dict(loss_weights or {})
    image_name, text_name = _pairs(data)
    out = Path(out_dir)
    ckpt_dir = out / "checkpoints"
    check_trainable(model)
    spec = resolve_model(model, pretrained, cache_root=cache_root)  # a bad --model deletes nothing with --restart
    if restart:
        restart_run(out)

    settings = run_settings(spec, data, eval_data, cache_root=cache_root, loss=loss, loss_weights=weights, epochs=epochs,
                            batch_size=batch_size, lr=lr, weight_decay=weight_decay, warmup_steps=warmup_steps,
                            temperature=temperature, seed=seed, precision=precision)
    latest = _latest_checkpoint(ckpt_dir)
    # Read and verify before building anything: a refused resume costs no model build.
    resume = _load_resume_state(latest[1], out, settings) if latest is not None else None
    start_epoch = latest[0] if latest is not None else 0
    if resume is None:
        _refuse_replacing_another_run(out, settings)  # before anything is written, the folder included
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    if resume is None:
        fsutil.atomic_write_json(out / "run.json", settings, sort_keys=False)  # for people
    stepper = _Stepper.build(spec, device=device, precision=precision, seed=seed, temperature=temperature,
                             lr=lr, weight_decay=weight_decay, warmup_steps=warmup_steps,
                             total_steps=epochs * math.ceil(data.n_samples / batch_size), loss_fn=loss_fn,
                             weights=weights)

    if resume is not None:
        stepper.load(resume)
    log_path = out / "metrics.jsonl"
    result = TrainResult(out_dir=out, model_path=out / "model.safetensors", resumed_from=start_epoch,
                         epochs=_cut_log(log_path, start_epoch))

    items = _TrainItems(data, image_name, stepper.loaded.preprocess)
    with progress_bar(progress, unit="pairs") as bar:
        task = bar.add_task(f"train {loss}", total=epochs * data.n_samples,
                            completed=start_epoch * data.n_samples)
        for epoch in range(start_epoch, epochs):
            order, caption_items = _epoch_order(data, text_name, epoch, seed)
            t0 = time.perf_counter()
            loss_sum = _train_epoch(stepper, items, data.modalities[text_name], order, caption_items,
                                    batch_size=batch_size, workers=workers, advance=lambda n: bar.advance(task, n))
            values = stepper.evaluate(eval_data or data, _pairs(eval_data or data))
            record = {"epoch": epoch + 1, "loss": loss_sum / data.n_samples, "seconds": time.perf_counter() - t0,
                      "temperature": stepper.temperature(), **values}
            result.epochs.append(record)
            with log_path.open("a") as f:
                f.write(json.dumps(record) + "\n")
            print_line(bar, epoch_line(record, epochs))
            if (epoch + 1) % checkpoint_every == 0 or epoch + 1 == epochs:
                payload = {"epoch": epoch + 1, "name": spec.architecture, **stepper.state(), SETTINGS_KEY: settings}
                atomic_torch_save({**payload, DIGEST_KEY: checkpoint_digest(payload)},
                                   ckpt_dir / f"epoch_{epoch + 1}.pt")
    export_safetensors(stepper.loaded.model, spec.architecture, spec.model_cfg or {}, result.model_path,
                       dtype=export_dtype,
                       extra={"gapdiag_loss": loss, "gapdiag_seed": str(seed), "gapdiag_epochs": str(epochs)})
    return result


@dataclass
class _Stepper:
    """The model being trained and what steps it: the loss and its weights, AdamW, the schedule, the scaler."""

    loaded: LoadedModel
    loss_fn: Callable[..., Any]
    weights: dict[str, float]
    optimizer: Any
    scheduler: Any
    scaler: Any

    @classmethod
    def build(cls, spec: ModelSpec, *, device: Device, precision: str, seed: int, temperature: float | None,
              lr: float, weight_decay: float, warmup_steps: int, total_steps: int, loss_fn: Callable[..., Any],
              weights: dict[str, float]) -> _Stepper:
        """Build the model from ``seed`` (τ fixed when ``temperature`` is given), AdamW without weight decay on
        gains and biases, and a linear warm-up then cosine schedule over ``total_steps``."""
        import torch

        torch.manual_seed(seed)
        loaded = build_model(spec, device=device, precision=precision, init_seed=seed)
        net = loaded.model
        if temperature is not None:
            with torch.no_grad():
                net.logit_scale.fill_(math.log(1.0 / temperature))
            net.logit_scale.requires_grad_(False)
        params = [p for p in net.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}], lr=lr)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: _cosine_with_warmup(step, warmup_steps, total_steps))
        scaler = torch.amp.GradScaler("cuda", enabled=precision == "amp")
        return cls(loaded, loss_fn, weights, optimizer, scheduler, scaler)

    def step(self, images: Any, captions: list[str]) -> float:
        """One optimisation step on a batch of preprocessed images and their captions; returns the loss."""
        import torch

        net, loaded = self.loaded.model, self.loaded
        tokens = loaded.tokenizer(captions).to(loaded.device)
        with loaded.autocast():
            x = net.encode_image(images.to(loaded.device), normalize=True)
            y = net.encode_text(tokens, normalize=True)
            value = self.loss_fn([x.float(), y.float()], net.logit_scale.exp(), **self.weights)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(value).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        with torch.no_grad():
            net.logit_scale.clamp_(0, math.log(100))  # as open_clip's training loop
        return float(value.detach())

    def evaluate(self, data: PairedDataset, names: tuple[str, str]) -> dict[str, float]:
        """The per-epoch metrics (:data:`LOGGED_METRICS`, through a Monitor) of the model as it is now, on ``data``."""
        self.loaded.model.eval()
        return measure_epoch(self.loaded, data, names)

    def temperature(self) -> float:
        """τ = 1 / exp(logit_scale)."""
        return float(1.0 / self.loaded.model.logit_scale.detach().exp())

    def state(self) -> dict[str, Any]:
        """The weights, optimizer and schedule a checkpoint stores (resume restores them with :meth:`load`)."""
        return {"state_dict": self.loaded.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict()}

    def load(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state` stored."""
        self.loaded.model.load_state_dict(state["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])


def _train_epoch(stepper: _Stepper, items: _TrainItems, texts: Modality, order: np.ndarray,
                 caption_items: np.ndarray, *, batch_size: int, workers: int,
                 advance: Callable[[int], object]) -> float:
    """One pass over ``order`` in batches of ``batch_size``; returns the summed loss (mean loss × pairs)."""
    from torch.utils.data import DataLoader

    stepper.loaded.model.train()
    batches = [order[b:b + batch_size] for b in range(0, len(order), batch_size)]
    batches = [b for b in batches if len(b) >= 2]  # contrastive losses need two pairs
    loader = DataLoader(items, batch_sampler=[b.tolist() for b in batches], num_workers=workers)
    loss_sum = 0.0
    for images, batch in zip(loader, batches):
        loss_sum += stepper.step(images, [texts.items[i] for i in caption_items[batch]]) * len(batch)
        advance(len(batch))
    return loss_sum


def _cosine_with_warmup(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
