"""Load any model open_clip can load, offline-safe, and describe it for the cache key.

Accepted ``--model`` values (open_clip's factory does the building; gapdiag resolves and validates):

* an architecture name from open_clip's registry (``ViT-B-32``) with ``--pretrained`` = a tag
  (``laion2b_s34b_b79k``, downloaded by open_clip) or a checkpoint file;
* a checkpoint file (``.pt``/``.pth``/``.bin``/``.safetensors``) that says which architecture it is: a
  ``.safetensors`` file whose metadata holds ``open_clip_config`` (what ``gapdiag train`` writes) or any file
  with an ``open_clip_config.json`` beside it;
* ``hf-hub:org/name`` (open_clip downloads config and weights) or a local directory in that layout;
* a model-config JSON in open_clip's format (``{"embed_dim", "vision_cfg", "text_cfg"}`` or an
  ``open_clip_config.json`` with ``model_cfg``/``preprocess_cfg``), for architectures not in the registry.

Checkpoints are loaded with ``torch.load(weights_only=True)`` or safetensors: never unpickling arbitrary
objects. The *resolution* (:func:`resolve_model`) is cheap and needs no network when the weights are local,
so that a cache hit never builds the model.
"""

from __future__ import annotations

import difflib
import json
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gapdiag.errors import ModelError
from gapdiag.fsutil import atomic_write_text

CONFIG_DIR = Path(__file__).parent / "model_configs"
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
PRECISIONS = ("fp32", "amp", "bf16")
#: Metadata key under which ``gapdiag train`` stores the model config in a .safetensors checkpoint.
SAFETENSORS_CONFIG_KEY = "open_clip_config"

_registered = False


def register_bundled_configs() -> None:
    """Register gapdiag's tiny configs (``gapdiag-tiny-*``) with open_clip, once per process."""
    global _registered
    if not _registered:
        import open_clip

        open_clip.add_model_config(CONFIG_DIR)
        _registered = True


@dataclass
class ModelSpec:
    """What to build, resolved from the user's ``--model``/``--pretrained`` without building anything.

    Attributes:
        architecture: open_clip model name (registered config, ``hf-hub:...`` or ``local-dir:...``).
        pretrained: open_clip pretrained tag, or None.
        checkpoint: Local checkpoint file to load after building, or None.
        model_cfg: The architecture's config dict when known locally (None for hf-hub before download).
        preprocess_cfg: Preprocess overrides (mean, std, interpolation, resize mode) from the config.
        display_name: What titles and reports call the model.
    """

    architecture: str
    pretrained: str | None = None
    checkpoint: Path | None = None
    model_cfg: dict[str, Any] | None = None
    preprocess_cfg: dict[str, Any] = field(default_factory=dict)
    display_name: str = ""

    def fingerprint(self, *, precision: str, cache_dir: Path | None = None) -> dict[str, Any]:
        """Everything about the model that changes the vectors (for the cache key); no device/batch size."""
        from gapdiag.cache import file_sha256

        return {
            "architecture": self.architecture,
            "model_cfg": self.model_cfg,
            "preprocess_cfg": self.preprocess_cfg,
            "pretrained": self.pretrained,
            "pretrained_cfg": _pretrained_cfg(self.architecture, self.pretrained),
            "checkpoint_sha256": file_sha256(self.checkpoint, cache_dir=cache_dir) if self.checkpoint else None,
            "precision": precision,
            # build_model seeds the initialisation, so weights that no checkpoint sets are reproducible too.
            "init_seed": 0,
        }

    def describe(self, *, cache_dir: Path | None = None) -> dict[str, Any]:
        """Provenance for reports (JSON-friendly)."""
        from gapdiag.cache import file_sha256

        return {
            "name": self.display_name or self.architecture,
            "architecture": self.architecture,
            "pretrained": self.pretrained,
            "checkpoint": str(self.checkpoint) if self.checkpoint else None,
            "checkpoint_sha256": file_sha256(self.checkpoint, cache_dir=cache_dir) if self.checkpoint else None,
        }


@dataclass
class LoadedModel:
    """A built model with its image preprocess and tokenizer, on a device, in eval mode."""

    model: Any
    preprocess: Callable[[Any], Any]
    tokenizer: Callable[[list[str]], Any]
    spec: ModelSpec
    device: Any
    precision: str

    def autocast(self) -> Any:
        """The autocast context for this precision (a no-op for fp32)."""
        import contextlib

        import torch

        if self.precision == "amp":
            return torch.autocast(device_type=self.device.type, dtype=torch.float16)
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()


def resolve_device(device: str = "auto") -> Any:
    """``auto`` -> cuda > mps > cpu; an explicit device that is not available -> ModelError."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ModelError(f"unknown device {device!r}", hint="use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError("--device cuda requested but no CUDA GPU is available", hint="use --device cpu or auto")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ModelError("--device mps requested but MPS is not available", hint="use --device cpu or auto")
    return dev


def check_precision(precision: str, device: Any) -> str:
    if precision not in PRECISIONS:
        raise ModelError(f"unknown precision {precision!r}", hint=f"use one of {', '.join(PRECISIONS)}")
    if precision != "fp32" and device.type != "cuda":
        raise ModelError(f"--precision {precision} needs a CUDA device (this run uses {device.type})",
                         hint="use --precision fp32 on CPU/MPS")
    return precision


def _pretrained_cfg(architecture: str, tag: str | None) -> dict[str, Any] | None:
    if not tag:
        return None
    import open_clip

    cfg = open_clip.get_pretrained_cfg(architecture, tag)
    # Only the parts that change the vectors; URLs and hub ids may change without changing weights.
    return {k: cfg[k] for k in ("mean", "std", "interpolation", "resize_mode", "quick_gelu") if k in cfg} or None


def _read_safetensors_config(path: Path) -> dict[str, Any] | None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # noqa: BLE001 - any parse failure means "not a readable safetensors file"
        raise ModelError(f"{path}: not a readable .safetensors file ({type(e).__name__}: {e})",
                         hint="re-export the checkpoint") from None
    raw = meta.get(SAFETENSORS_CONFIG_KEY)
    return json.loads(raw) if raw else None


def _register_config(cfg: dict[str, Any], stem: str) -> str:
    """Register a model-config dict with open_clip under a name derived from ``stem`` and its content."""
    import open_clip

    from gapdiag.cache import default_cache_dir
    from gapdiag.data.base import hash_json

    model_cfg = cfg.get("model_cfg", cfg)
    for key in ("embed_dim", "vision_cfg", "text_cfg"):
        if key not in model_cfg:
            raise ModelError(f"model config {stem!r} has no {key!r}",
                             hint="use open_clip's format: {\"embed_dim\", \"vision_cfg\", \"text_cfg\"}")
    existing = open_clip.get_model_config(stem)
    if existing is not None and existing == model_cfg:
        return stem
    name = f"{stem}-{hash_json(model_cfg)[:8]}"
    if open_clip.get_model_config(name) is None:
        # open_clip registers configs from files; keep them in the cache dir so that nothing is written to
        # the user's model folder.
        cfg_dir = default_cache_dir() / "model_configs"
        cfg_dir.mkdir(parents=True, exist_ok=True)
        path = cfg_dir / f"{name}.json"
        atomic_write_text(path, json.dumps(model_cfg, indent=2))
        open_clip.add_model_config(path)
    return name


def _unknown_model(name: str) -> ModelError:
    import open_clip

    close = difflib.get_close_matches(name, open_clip.list_models(), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else "see `python -c 'import open_clip; print(open_clip.list_models())'`"
    return ModelError(f"unknown model {name!r}: not an open_clip architecture, checkpoint file or config JSON",
                      hint=hint)


def resolve_model(model: str | Path, pretrained: str | None = None) -> ModelSpec:
    """Turn ``--model``/``--pretrained`` into a :class:`ModelSpec` without building or downloading."""
    import open_clip

    register_bundled_configs()
    text = str(model)
    path = Path(text).expanduser()

    if text.startswith("hf-hub:"):
        return ModelSpec(architecture=text, display_name=text)

    if path.suffix == ".json":
        if not path.is_file():
            raise ModelError(f"model config not found: {path}", hint="check the path")
        try:
            cfg = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ModelError(f"{path}:{e.lineno}: invalid JSON in model config ({e.msg})", hint="fix the file") from None
        name = _register_config(cfg, path.stem)
        return _with_checkpoint(ModelSpec(architecture=name, model_cfg=open_clip.get_model_config(name),
                                          preprocess_cfg=cfg.get("preprocess_cfg", {}), display_name=path.stem),
                                pretrained)

    if path.suffix in CHECKPOINT_SUFFIXES or path.is_dir():
        if not path.exists():
            raise ModelError(f"checkpoint not found: {path}", hint="check the path")
        if path.is_dir():
            ckpt_cfg = path / "open_clip_config.json"
            if not ckpt_cfg.is_file():
                raise ModelError(f"{path}: directory without open_clip_config.json",
                                 hint="pass the checkpoint file with --model ARCH --pretrained FILE")
            return ModelSpec(architecture=f"local-dir:{path}", display_name=path.name,
                             model_cfg=json.loads(ckpt_cfg.read_text()).get("model_cfg"))
        if pretrained:
            raise ModelError(f"--pretrained {pretrained!r} given together with checkpoint file {path}",
                             hint="use --model ARCH --pretrained FILE, or --model FILE alone")
        cfg = _read_safetensors_config(path) if path.suffix == ".safetensors" else None
        sidecar = path.parent / "open_clip_config.json"
        if cfg is None and sidecar.is_file():
            cfg = json.loads(sidecar.read_text())
        if cfg is None:
            raise ModelError(f"cannot tell the architecture of {path}",
                             hint="pass --model ARCH --pretrained FILE, or put open_clip_config.json beside it")
        name = _register_config(cfg, cfg.get("name") or path.stem)
        return ModelSpec(architecture=name, checkpoint=path, model_cfg=open_clip.get_model_config(name),
                         preprocess_cfg=cfg.get("preprocess_cfg", {}), display_name=path.stem)

    name = text.replace("/", "-")
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        raise _unknown_model(text)
    return _with_checkpoint(ModelSpec(architecture=name, model_cfg=cfg, display_name=name), pretrained)


def _with_checkpoint(spec: ModelSpec, pretrained: str | None) -> ModelSpec:
    """Attach ``--pretrained`` (a local file or an open_clip tag) to an architecture spec."""
    import open_clip

    if not pretrained:
        return spec
    p = Path(pretrained).expanduser()
    if p.suffix in CHECKPOINT_SUFFIXES or p.exists():
        if not p.is_file():
            raise ModelError(f"checkpoint not found: {p}", hint="check the --pretrained path")
        spec.checkpoint = p
        spec.display_name = f"{spec.display_name}:{p.stem}"
        return spec
    if open_clip.get_pretrained_cfg(spec.architecture, pretrained):
        spec.pretrained = pretrained
        spec.display_name = f"{spec.display_name}:{pretrained}"
        return spec
    tags = open_clip.list_pretrained_tags_by_model(spec.architecture)
    hint = f"known tags for {spec.architecture}: {', '.join(tags)}" if tags else f"{spec.architecture} has no pretrained tags; pass a checkpoint file"
    raise ModelError(f"--pretrained {pretrained!r} is neither a file nor a tag of {spec.architecture}", hint=hint)


def build_model(spec: ModelSpec, *, device: str = "auto", precision: str = "fp32", init_seed: int = 0) -> LoadedModel:
    """Build the model described by ``spec`` (downloading through open_clip if it must) on ``device``.

    Weights that no checkpoint overwrites are initialised from ``init_seed`` (without touching the global RNG),
    so a randomly initialised architecture gives the same vectors in every process: the cache key of
    an architecture without weights stays truthful, and every rank of a distributed job builds the same model.
    """
    import open_clip
    import torch

    register_bundled_configs()
    dev = resolve_device(device)
    check_precision(precision, dev)
    pre = spec.preprocess_cfg or {}
    transforms_kwargs = {"image_" + k: pre[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in pre}
    try:
        with warnings.catch_warnings(), _quiet_open_clip(), torch.random.fork_rng(devices=[]):
            warnings.simplefilter("ignore")
            torch.manual_seed(init_seed)
            model, _, preprocess = open_clip.create_model_and_transforms(
                spec.architecture, pretrained=spec.pretrained, device="cpu", weights_only=True, **transforms_kwargs)
    except Exception as e:  # noqa: BLE001 - turned into one line below
        raise _load_error(spec, e) from None
    if spec.checkpoint is not None:
        try:
            open_clip.load_checkpoint(model, str(spec.checkpoint), strict=True, weights_only=True)
        except Exception as e:  # noqa: BLE001
            raise _checkpoint_error(spec, e) from None
    model = model.to(dev).eval()
    tokenizer = open_clip.get_tokenizer(spec.architecture)
    return LoadedModel(model=model, preprocess=preprocess, tokenizer=tokenizer, spec=spec, device=dev,
                       precision=precision)


class _quiet_open_clip:
    """Silence open_clip's root-logger messages while building: its warning about random init and its
    ``logging.error`` about a failed download, which gapdiag reports itself as one line."""

    def __enter__(self) -> None:
        self._level = logging.getLogger().level
        logging.getLogger().setLevel(logging.CRITICAL)

    def __exit__(self, *exc: object) -> None:
        logging.getLogger().setLevel(self._level)


def _load_error(spec: ModelSpec, e: Exception) -> ModelError:
    # huggingface_hub appends a paragraph ("Last error: An error happened while trying to locate ...") that
    # says nothing the hint does not; keep the line that names the file and the repository.
    text = f"{type(e).__name__}: {e}".splitlines()[0].split(" Last error:")[0][:300]
    offline_markers = ("Failed to download", "HF Hub", "Connection", "resolve", "offline", "Max retries", "urlopen")
    if any(m.lower() in text.lower() for m in offline_markers) or spec.architecture.startswith("hf-hub:"):
        what = spec.pretrained or spec.architecture
        return ModelError(f"could not download weights for {what!r} ({text})",
                          hint="no network? download once where there is one, or pass a local checkpoint file")
    return ModelError(f"could not build model {spec.display_name or spec.architecture!r}: {text}",
                      hint="check --model/--pretrained")


def _checkpoint_error(spec: ModelSpec, e: Exception) -> ModelError:
    text = str(e)
    if "weights_only" in text or "Unpickl" in type(e).__name__ or "Unsupported global" in text:
        return ModelError(f"{spec.checkpoint}: refuses to load (it contains pickled Python objects, not only tensors)",
                          hint="save a plain state_dict or .safetensors")
    if isinstance(e, RuntimeError) and ("size mismatch" in text or "Missing key" in text or "Unexpected key" in text):
        n_size = text.count("size mismatch")
        problems = [f"{n_size} size mismatches"] if n_size else []
        problems += [what for what in ("missing keys", "unexpected keys") if what.split()[0].title() + " key" in text]
    elif isinstance(e, AssertionError) and "changed" in text:
        # open_clip's positional-embedding resizing asserts before load_state_dict can list the mismatches.
        problems = [text.splitlines()[0].rstrip("!")]
    else:
        problems = []
    if problems:
        return ModelError(
            f"checkpoint {spec.checkpoint} does not fit architecture {spec.architecture} ({', '.join(problems)})",
            hint="pass the --model the checkpoint was trained with")
    first = text.splitlines()[0][:200] if text else type(e).__name__
    return ModelError(f"cannot load checkpoint {spec.checkpoint}: {first}", hint="is it a CLIP state_dict?")


def load_model(model: str | Path, pretrained: str | None = None, *, device: str = "auto",
               precision: str = "fp32") -> LoadedModel:
    """Resolve and build in one call (what notebooks use): ``load_model("ViT-B-32", "laion2b_s34b_b79k")``."""
    return build_model(resolve_model(model, pretrained), device=device, precision=precision)
