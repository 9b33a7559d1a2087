"""Training output as a ``--model``: open_clip's ``epoch_N.pt`` and ``gapdiag train``'s run folders.

open_clip's trainer (``open_clip_train.main``) writes ``logs/<name>/checkpoints/epoch_<n>.pt``: a dict
``{"epoch", "name", "state_dict", "optimizer"}`` whose ``state_dict`` keys start with ``module.`` when the run was
distributed (DDP wraps the model), and ``logs/<name>/params.txt`` with one ``key: value`` line per argument, among
them ``model: ViT-B-32``. ``gapdiag train`` writes ``<out>/checkpoints/epoch_<n>.pt`` in the same format, with the
run's settings in ``<out>/run.json`` and, at the end, ``<out>/model.safetensors`` with the config in its metadata.

This module tells the architecture of such a checkpoint from its run folder (plain text: no torch import, so a
cache hit stays light), reads its weights with ``torch.load(weights_only=True)`` or safetensors (never a free
unpickle) and says at which step a checkpoint was saved (for ``gapdiag track``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from gapdiag.errors import ModelError
from gapdiag.fsutil import loads_json

#: The prefix ``torch.nn.parallel.DistributedDataParallel`` puts before every key of the wrapped model.
DDP_PREFIX = "module."
#: The argument file open_clip's trainer writes beside ``checkpoints/``.
OPEN_CLIP_PARAMS = "params.txt"
#: The settings file ``gapdiag train`` writes beside ``checkpoints/``.
GAPDIAG_RUN_SETTINGS = "run.json"
#: The self-describing export ``gapdiag train`` writes beside ``checkpoints/`` when the run ends.
GAPDIAG_RUN_EXPORT = "model.safetensors"
#: open_clip training arguments that build a model other than the named config; gapdiag builds the config as
#: registered, so a run that set one of them is refused rather than measured with another activation or size.
_MODEL_CHANGING_PARAMS = ("force_custom_text", "force_image_size")


def run_folder(checkpoint: Path) -> Path | None:
    """The training run folder of ``checkpoint`` (``<run>/checkpoints/<file>``), or None."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else None


def read_params_txt(path: Path) -> dict[str, str]:
    """open_clip's ``params.txt``: one ``name: value`` line per training argument, values as written."""
    params: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        name, sep, value = line.partition(": ")
        if sep and name.strip():
            params[name.strip()] = value.strip()
    return params


def open_clip_run_architecture(params_path: Path) -> str:
    """The architecture an open_clip training run built, from its ``params.txt`` (``model: ViT-B-32``).

    A run with ``force_quick_gelu: True`` built open_clip's ``-quickgelu`` config of the same model; the other
    arguments that change the model are refused (one line naming the file and the argument).

    Raises:
        ModelError: No ``model`` line, or a model-changing argument set.
    """
    params = read_params_txt(params_path)
    model = params.get("model", "")
    if not model:
        raise ModelError(f"{params_path}: no 'model: ARCH' line, so the checkpoints' architecture is unknown",
                         hint="pass --model ARCH --pretrained FILE")
    for name in _MODEL_CHANGING_PARAMS:
        if params.get(name, "None") not in ("None", "False", ""):
            raise ModelError(f"{params_path}: the run set {name}: {params[name]}, a model other than {model} as "
                             "registered", hint="write that model's config JSON and pass --model CONFIG.json "
                                                "--pretrained FILE")
    if params.get("force_quick_gelu") == "True" and not model.endswith("-quickgelu"):
        model += "-quickgelu"
    return model


def gapdiag_run_architecture(run_json: Path) -> str:
    """The architecture a ``gapdiag train`` run trained, from its ``run.json`` (``model.architecture``).

    Raises:
        ModelError: ``run.json`` unreadable or without the architecture.
    """
    try:
        settings = loads_json(run_json.read_text(encoding="utf-8"))
        architecture = settings["model"]["architecture"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelError(f"{run_json}: not a gapdiag train run.json ({type(e).__name__}: {e})",
                         hint="pass --model ARCH --pretrained FILE") from None
    if not isinstance(architecture, str) or not architecture:
        raise ModelError(f"{run_json}: model.architecture is {architecture!r}, not a name",
                         hint="pass --model ARCH --pretrained FILE")
    return architecture


def strip_ddp_prefix(state: dict[str, Any], path: Path) -> dict[str, Any]:
    """``state`` without DDP's ``module.`` prefix: every key loses it, or none has it.

    A state dict with some keys prefixed and some not was not saved from one model (open_clip's own reader looks at
    the first key only and would cut seven characters from the others): refused, naming one key of each kind.

    Raises:
        ModelError: Some keys prefixed, some not.
    """
    prefixed = [k for k in state if isinstance(k, str) and k.startswith(DDP_PREFIX)]
    if not prefixed:
        return state
    if len(prefixed) != len(state):
        plain = next(k for k in state if not (isinstance(k, str) and k.startswith(DDP_PREFIX)))
        raise ModelError(f"{path}: its state_dict mixes keys with the DDP prefix {DDP_PREFIX!r} ({prefixed[0]!r}) "
                         f"and without it ({plain!r}), so it is not the weights of one model",
                         hint="save model.state_dict() of one model (unwrapped, or all keys wrapped)")
    return {k[len(DDP_PREFIX):]: v for k, v in state.items()}


def read_state_dict(path: Path) -> dict[str, Any]:
    """The weights in ``path``: a .safetensors file, or a torch file holding a state dict or a training checkpoint
    (a dict with ``state_dict``), read with ``torch.load(weights_only=True)``, DDP's prefix removed.

    Raises:
        ModelError: Not a mapping of names to tensors (e.g. ``state_dict`` missing or empty), or mixed prefixes.
        Exception: What ``torch.load`` raises for a file that holds other pickled objects (the caller names it).
    """
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        checkpoint: Any = load_file(str(path), device="cpu")
    else:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else checkpoint
    if not isinstance(state, dict) or not state or not all(torch.is_tensor(v) for v in state.values()):
        what = "an empty state_dict" if isinstance(state, dict) and not state else "no state_dict of tensors"
        raise ModelError(f"{path}: {what} (keys: {', '.join(map(str, list(checkpoint)[:6])) or 'none'})"
                         if isinstance(checkpoint, dict) else f"{path}: {what} (a {type(checkpoint).__name__})",
                         hint="pass a state_dict, an open_clip training checkpoint or a .safetensors file")
    return strip_ddp_prefix(state, path)


_STEP_IN_NAME = re.compile(r"(?:^|[^a-z])(?:epoch|step|ep|iter|it|checkpoint|ckpt)[_\-=]?(\d+)(?!\d)", re.IGNORECASE)


def step_from_name(path: Path) -> int | None:
    """The step a checkpoint's file name says, or None: a word (``epoch``, ``step``, ``ckpt``...) followed by a
    number (``epoch_12.pt`` -> 12, ``step-3000.safetensors`` -> 3000), or a name that is only a number
    (``1000.pt``). Any other number is not read as a step (``ViT-B-32.pt`` names an architecture, not step 32).
    """
    stem = path.name.split(".")[0]
    if stem.isdigit():
        return int(stem)
    matches = _STEP_IN_NAME.findall(stem)
    return int(matches[-1]) if matches else None


def step_from_metadata(path: Path) -> int | None:
    """The step a checkpoint stores: ``epoch`` (or ``step``) of a training checkpoint, or the same key of a
    .safetensors file's metadata; None when it stores none. Reads the file (``weights_only=True``)."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    else:
        try:
            meta = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - weights_only refuses pickled objects; any failure is named
            what = ("it contains pickled Python objects, not only tensors" if "weights_only" in str(e)
                    or "Unpickl" in type(e).__name__ else f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")
            raise ModelError(f"{path}: refuses to load ({what})", hint="save a plain state_dict or .safetensors") \
                from None
    if not isinstance(meta, dict):
        return None
    for key in ("step", "epoch", "gapdiag_step", "gapdiag_epoch"):
        value = meta.get(key)
        if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
            return int(value)
    return None


def run_folder_model(checkpoint: Path) -> tuple[str | None, Path | None]:
    """The architecture of a checkpoint in a training run folder, and the file that says so; (None, None) when
    ``checkpoint`` is not in a run folder gapdiag can read.

    ``gapdiag train``'s ``run.json`` first, then open_clip's ``params.txt``. (The run's ``model.safetensors``,
    which carries the whole config, is read by the caller: it knows safetensors configs.)
    """
    run = run_folder(checkpoint)
    if run is None:
        return None, None
    if (run / GAPDIAG_RUN_SETTINGS).is_file():
        return gapdiag_run_architecture(run / GAPDIAG_RUN_SETTINGS), run / GAPDIAG_RUN_SETTINGS
    if (run / OPEN_CLIP_PARAMS).is_file():
        return open_clip_run_architecture(run / OPEN_CLIP_PARAMS), run / OPEN_CLIP_PARAMS
    return None, None


#: Files ``gapdiag track`` takes from a folder: what ``--model`` loads as a checkpoint file.
TRACKED_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
#: open_clip's copy of the newest epoch (its save-most-recent option): a folder or glob leaves it out (it would be that
#: epoch twice); named as a file it is taken.
OPEN_CLIP_LATEST = "epoch_latest.pt"
_GLOB_CHARACTERS = frozenset("*?[")


def _expand(item: str | Path) -> list[Path]:
    """The checkpoint files ``item`` names: itself, the checkpoint files of a folder (of its ``checkpoints/``
    for a training run folder, so that the run's final export is not counted twice), or a glob's matches; a
    folder or glob leaves out open_clip's ``epoch_latest.pt``."""
    text = str(item)
    path = Path(text).expanduser()
    if _GLOB_CHARACTERS & set(text) and not path.exists():
        anchor = Path(path.anchor) if path.is_absolute() else Path(".")
        pattern = str(path.relative_to(anchor)) if path.is_absolute() else text
        found = sorted(p for p in anchor.glob(pattern) if p.is_file() and p.name != OPEN_CLIP_LATEST)
        if not found:
            raise ModelError(f"no checkpoint matches {text!r}", hint="check the pattern (quote it, e.g. "
                                                                     "'run/checkpoints/epoch_*.pt')")
        return found
    if path.is_dir():
        folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
        found = sorted(p for p in folder.iterdir()
                       if p.is_file() and p.suffix in TRACKED_SUFFIXES and p.name != OPEN_CLIP_LATEST)
        if not found:
            raise ModelError(f"{folder}: no checkpoint files ({', '.join(TRACKED_SUFFIXES)}) in this folder",
                             hint="pass the checkpoints' folder, files or a glob such as 'run/checkpoints/epoch_*.pt'")
        return found
    if not path.is_file():
        raise ModelError(f"checkpoint not found: {path}", hint="check the path")
    return [path]


def find_checkpoints(items: list[str | Path] | tuple[str | Path, ...]) -> list[tuple[int, Path]]:
    """The checkpoints ``items`` name (files, folders, globs), each with its step, ordered by step.

    The step is the one in the file name (:func:`step_from_name`), else the one the checkpoint stores
    (:func:`step_from_metadata`); a single checkpoint that says neither is step 0. A file named twice counts once.

    Raises:
        ModelError: Nothing found, a checkpoint with no step in its name or contents, or two checkpoints at one
            step (ambiguous: which one is that step?), each naming the files.
    """
    if not items:
        raise ModelError("no checkpoints given", hint="pass checkpoint files, their folder or a glob")
    seen: dict[Path, Path] = {}
    for item in items:
        for path in _expand(item):
            seen.setdefault(path.resolve(), path)
    by_step: dict[int, Path] = {}
    for path in seen.values():
        step = step_from_name(path)
        if step is None:
            step = step_from_metadata(path)
        if step is None and len(seen) == 1:
            step = 0  # a series of one needs no order
        if step is None:
            raise ModelError(f"{path}: no step in its name or its contents, so it cannot be placed in the series",
                             hint="name it with its step (epoch_3.pt, step_3000.safetensors) or store 'epoch' in it")
        if step in by_step:
            raise ModelError(f"{by_step[step]} and {path} are both step {step}",
                             hint="pass one checkpoint per step (e.g. the files of one run)")
        by_step[step] = path
    return sorted(by_step.items())
