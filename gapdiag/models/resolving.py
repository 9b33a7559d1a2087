"""``--model``/``--pretrained`` resolved to a :class:`ModelSpec`: what to build, and everything the cache key needs.

Accepted ``--model`` values (gapdiag resolves and validates; :mod:`gapdiag.models.loading` builds):

* an architecture name from open_clip's registry (``ViT-B-32``) with ``--pretrained`` = a tag
  (``laion2b_s34b_b79k``, downloaded by open_clip) or a checkpoint file;
* a checkpoint file (``.pt``/``.pth``/``.bin``/``.safetensors``) that says which architecture it is: a
  ``.safetensors`` file whose metadata holds ``open_clip_config`` (what ``gapdiag train`` writes), any file
  with an ``open_clip_config.json`` beside it, or training output (``epoch_N.pt``) in its run folder;
* ``hf-hub:org/name`` (open_clip downloads config and weights) or a local directory in that layout;
* ``hf:ID_OR_DIR``, a transformers model of the CLIP family (:mod:`gapdiag.models.huggingface`);
* a model-config JSON in open_clip's format (``{"embed_dim", "vision_cfg", "text_cfg"}`` or an
  ``open_clip_config.json`` with ``model_cfg``/``preprocess_cfg``), for architectures not in the registry.

The resolution is cheap and needs no network when the weights are local, so that a cache hit never builds the
model; it does not even import open_clip (whose import pulls in timm, torchvision and torch._dynamo): configs and
pretrained-tag facts come from :mod:`gapdiag.models.index`. Only its error paths (an unknown name, a tag that is
not one) ask open_clip for the names to suggest.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gapdiag.cache import file_sha256
from gapdiag.errors import ModelError
from gapdiag.fsutil import atomic_write_json, hash_json, loads_json
from gapdiag.models import checkpoints
from gapdiag.models import index as model_index
from gapdiag.models.huggingface import HF_PREFIX, is_hf_model, resolve_hf

#: The file suffixes ``--model``/``--pretrained`` read as checkpoint files.
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
#: Metadata key under which ``gapdiag train`` stores the model config in a .safetensors checkpoint.
SAFETENSORS_CONFIG_KEY = "open_clip_config"


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
        weight_files: A transformers model's weight files (``hf:``), hashed into the key like ``checkpoint``.
    """

    architecture: str
    pretrained: str | None = None
    checkpoint: Path | None = None
    model_cfg: dict[str, Any] | None = None
    preprocess_cfg: dict[str, Any] = field(default_factory=dict)
    display_name: str = ""
    weight_files: tuple[Path, ...] = ()

    def fingerprint(self, *, precision: str, cache_dir: Path | None = None) -> dict[str, Any]:
        """Everything about the model that changes the vectors (for the cache key); no device/batch size."""
        weights = {"weight_files_sha256": {p.name: file_sha256(p, cache_dir=cache_dir) for p in self.weight_files}
                   } if self.weight_files else {}  # only for hf: models, so that no other key changes
        return {
            **weights,
            "architecture": self.architecture,
            "model_cfg": self.model_cfg,
            "preprocess_cfg": self.preprocess_cfg,
            "pretrained": self.pretrained,
            "pretrained_cfg": _pretrained_cfg(self.architecture, self.pretrained, cache_dir),
            "checkpoint_sha256": file_sha256(self.checkpoint, cache_dir=cache_dir) if self.checkpoint else None,
            "precision": precision,
            # build_model seeds the initialisation, so weights that no checkpoint sets are reproducible too.
            "init_seed": 0,
        }

    @property
    def random_init(self) -> bool:
        """Whether the built model keeps its seeded initialisation: no pretrained tag, no checkpoint, no hub."""
        return weights_are_random(self.architecture, self.pretrained, self.checkpoint)

    def describe(self, *, cache_dir: Path | None = None) -> dict[str, Any]:
        """Provenance for reports (JSON-friendly); a random-init model says so in its name too."""
        return {
            "name": (self.display_name or self.architecture) + (" (random init)" if self.random_init else ""),
            "architecture": self.architecture,
            "pretrained": self.pretrained,
            "checkpoint": str(self.checkpoint) if self.checkpoint else None,
            "checkpoint_sha256": file_sha256(self.checkpoint, cache_dir=cache_dir) if self.checkpoint else None,
            "random_init": self.random_init,
        }


def weights_are_random(architecture: str, pretrained: str | None, checkpoint: Any) -> bool:
    """Whether a model named ``architecture`` with this ``pretrained`` tag and ``checkpoint`` has random weights.

    An architecture name or a config JSON alone is built from its seeded initialisation; a pretrained tag, a
    checkpoint file, an ``hf-hub:`` id or a ``local-dir:`` folder brings weights.
    """
    return not pretrained and not checkpoint and not architecture.startswith(("hf-hub:", "local-dir:", HF_PREFIX))


def require_weights(spec: ModelSpec, *, random_init: bool) -> None:
    """Refuse to embed with random weights unless asked to (``--random-init``), and the opt-in beside weights.

    Random weights give ordinary-looking numbers that describe no trained model (``-m ViT-B-32`` without
    ``-p``): one line listing the architecture's pretrained tags, or saying it has none, and the opt-in.

    Raises:
        ModelError: Random weights without ``random_init``, or ``random_init`` with a tag or checkpoint.
    """
    if random_init and not spec.random_init:
        weights = spec.pretrained or spec.checkpoint or spec.architecture
        raise ModelError(f"--random-init given with the weights of {weights}",
                         hint="drop --random-init to measure those weights, or drop the weights to measure random ones")
    if not spec.random_init or random_init:
        return
    import open_clip  # only on this error path: the tags are open_clip's

    opt_in = "or --random-init to measure random weights on purpose (API: random_init=True)"
    tags = open_clip.list_pretrained_tags_by_model(spec.architecture)
    if tags:
        raise ModelError(f"{spec.architecture} without --pretrained has random weights, whose numbers describe no "
                         f"trained model (pretrained tags of {spec.architecture}: {', '.join(tags)})",
                         hint=f"pass --pretrained TAG, e.g. -p {tags[0]}, {opt_in}")
    bundled = " or leave -m out for the bundled trained checkpoint," if spec.architecture.startswith(
        "gapdiag-tiny") else ""
    raise ModelError(f"{spec.display_name or spec.architecture} has no pretrained weights: without a checkpoint its "
                     "weights are random, and its numbers would describe no trained model",
                     hint=f"pass a checkpoint (-m FILE.safetensors, or this --model with -p FILE),{bundled} "
                          f"{opt_in}")


def _pretrained_cfg(architecture: str, tag: str | None, cache_dir: Path | None = None) -> dict[str, Any] | None:
    if not tag:
        return None
    # Only the parts that change the vectors; URLs and hub ids may change without changing weights.
    return model_index.pretrained_info(architecture, tag, cache_dir)[1]


#: A safetensors header longer than this is not one (the format caps it at 100 MB).
_SAFETENSORS_MAX_HEADER = 100_000_000


def _read_safetensors_config(path: Path) -> dict[str, Any] | None:
    """The ``open_clip_config`` metadata of a .safetensors file, read from its JSON header.

    The format is an 8-byte little-endian header length, then the JSON header (tensor offsets and
    ``__metadata__``); reading it directly avoids importing torch for ``framework="pt"``.
    """
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            if not 2 <= size <= _SAFETENSORS_MAX_HEADER:
                raise ValueError(f"header length {size} is out of range")
            header = loads_json(f.read(size))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")  # noqa: TRY004 - one kind of parse failure
        meta = header.get("__metadata__") or {}
    except Exception as e:  # noqa: BLE001 - any parse failure means "not a readable safetensors file"
        raise ModelError(f"{path}: not a readable .safetensors file ({type(e).__name__}: {e})",
                         hint="re-export the checkpoint") from None
    raw = meta.get(SAFETENSORS_CONFIG_KEY)
    return loads_json(raw) if raw else None


def _register_config(cfg: dict[str, Any], stem: str, cache_root: Path) -> str:
    """Name a model-config dict after ``stem`` and its content; write it where open_clip can register it.

    The file goes to ``<cache_root>/model_configs`` (so that nothing is written to the user's model folder)
    and is handed to open_clip only when the model is built (:func:`gapdiag.models.loading.build_model`).
    """
    model_cfg = cfg.get("model_cfg", cfg)
    for key in ("embed_dim", "vision_cfg", "text_cfg"):
        if key not in model_cfg:
            raise ModelError(f"model config {stem!r} has no {key!r}",
                             hint="use open_clip's format: {\"embed_dim\", \"vision_cfg\", \"text_cfg\"}")
    existing = model_index.find_config(stem)
    if existing is not None and existing == model_cfg:
        return stem
    name = f"{stem}-{hash_json(model_cfg)[:8]}"
    if model_index.find_config(name) is None:
        cfg_dir = Path(cache_root) / "model_configs"
        path = cfg_dir / f"{name}.json"
        if not (path.is_file() and loads_json(path.read_text()) == model_cfg):
            cfg_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(path, model_cfg, sort_keys=False)
        model_index.remember_config_file(name, path)
    return name


def _unknown_model(name: str) -> ModelError:
    import open_clip

    close = difflib.get_close_matches(name, open_clip.list_models(), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else "see `python -c 'import open_clip; print(open_clip.list_models())'`"
    return ModelError(f"unknown model {name!r}: not an open_clip architecture, checkpoint file or config JSON",
                      hint=hint)


def resolve_model(model: str | Path, pretrained: str | None = None, *, cache_root: Path) -> ModelSpec:
    """Turn ``--model``/``--pretrained`` into a :class:`ModelSpec` without building, downloading or importing
    open_clip. ``cache_root`` (resolved by the api) keeps the configs a checkpoint or config JSON carries
    (``<cache_root>/model_configs``) and what a pretrained tag adds to the key."""
    text = str(model)
    path = Path(text).expanduser()

    if is_hf_model(text):
        return _hf_spec(text, pretrained, cache_root)
    if text.startswith("hf-hub:"):
        return ModelSpec(architecture=text, display_name=text)

    if path.suffix == ".json":
        if not path.is_file():
            raise ModelError(f"model config not found: {path}", hint="check the path")
        try:
            cfg = loads_json(path.read_text())
        except json.JSONDecodeError as e:
            raise ModelError(f"{path}:{e.lineno}: invalid JSON in model config ({e.msg})", hint="fix the file") from None
        name = _register_config(cfg, path.stem, cache_root)
        return _with_checkpoint(ModelSpec(architecture=name, model_cfg=model_index.find_config(name),
                                          preprocess_cfg=cfg.get("preprocess_cfg", {}), display_name=path.stem),
                                pretrained, cache_root)

    if path.suffix in CHECKPOINT_SUFFIXES or path.is_dir():
        if not path.exists():
            raise ModelError(f"checkpoint not found: {path}", hint="check the path")
        if path.is_dir():
            ckpt_cfg = path / "open_clip_config.json"
            if not ckpt_cfg.is_file():
                raise ModelError(f"{path}: directory without open_clip_config.json",
                                 hint="pass the checkpoint file with --model ARCH --pretrained FILE")
            return ModelSpec(architecture=f"local-dir:{path}", display_name=path.name,
                             model_cfg=loads_json(ckpt_cfg.read_text()).get("model_cfg"))
        if pretrained:
            raise ModelError(f"--pretrained {pretrained!r} given together with checkpoint file {path}",
                             hint="use --model ARCH --pretrained FILE, or --model FILE alone")
        cfg = _read_safetensors_config(path) if path.suffix == ".safetensors" else None
        sidecar = path.parent / "open_clip_config.json"
        if cfg is None and sidecar.is_file():
            cfg = loads_json(sidecar.read_text())
        if cfg is None:
            return _training_output_spec(path, cache_root)
        name = _register_config(cfg, cfg.get("name") or path.stem, cache_root)
        return ModelSpec(architecture=name, checkpoint=path, model_cfg=model_index.find_config(name),
                         preprocess_cfg=cfg.get("preprocess_cfg", {}), display_name=path.stem)

    name = text.replace("/", "-")
    cfg = model_index.find_config(name)
    if cfg is None:
        raise _unknown_model(text)
    return _with_checkpoint(ModelSpec(architecture=name, model_cfg=cfg, display_name=name), pretrained, cache_root)


def check_trainable(model: str | Path) -> None:
    """Refuse a ``--model`` that ``gapdiag train`` (:func:`gapdiag.training.train.train`) cannot fine-tune, before
    any data is read or any file deleted.

    Training builds, steps and exports open_clip models (their ``logit_scale``, their config in the export's
    metadata); a transformers model (``hf:``) has its own heads, losses (SigLIP's sigmoid bias) and
    ``save_pretrained`` format, none of which this loop builds, steps or saves.

    Raises:
        ModelError: ``model`` is a transformers model, naming what ``train`` takes instead.
    """
    if is_hf_model(str(model)):
        raise ModelError(f"gapdiag train fine-tunes open_clip models, and {model} is a transformers model (its "
                         "training loop, loss and save format are transformers' own)",
                         hint="train an open_clip architecture or config JSON, or fine-tune bundled:NAME or an "
                              "open_clip checkpoint (model.safetensors, epoch_N.pt); a transformers model you "
                              "fine-tuned elsewhere is measured with -m hf:FOLDER")


def _training_output_spec(path: Path, cache_root: Path) -> ModelSpec:
    """The spec of a checkpoint that does not say its architecture, from its training run folder
    (:mod:`gapdiag.models.checkpoints`): ``gapdiag train``'s export or ``run.json``, open_clip's ``params.txt``."""
    run = checkpoints.run_folder(path)
    export = run / checkpoints.GAPDIAG_RUN_EXPORT if run is not None else None
    cfg = _read_safetensors_config(export) if export is not None and export.is_file() else None
    if cfg is not None:
        name = _register_config(cfg, cfg.get("name") or path.stem, cache_root)
        return ModelSpec(architecture=name, checkpoint=path, model_cfg=model_index.find_config(name),
                         preprocess_cfg=cfg.get("preprocess_cfg", {}), display_name=path.stem)
    architecture, source = checkpoints.run_folder_model(path)
    if architecture is None:
        raise ModelError(f"cannot tell the architecture of {path}",
                         hint="pass --model ARCH --pretrained FILE, or put open_clip_config.json beside it (or keep "
                              "it in its training run folder: <run>/checkpoints/ beside params.txt or run.json)")
    model_cfg = model_index.find_config(architecture)
    if model_cfg is None:
        raise ModelError(f"{source} names architecture {architecture!r}, which is not a known open_clip config",
                         hint=f"pass --model CONFIG.json --pretrained {path}")
    run_name = run.name if run is not None else ""
    return ModelSpec(architecture=architecture, checkpoint=path, model_cfg=model_cfg,
                     display_name=f"{run_name}/{path.stem}" if run_name else path.stem)


def _hf_spec(model: str, pretrained: str | None, cache_root: Path) -> ModelSpec:
    """The spec of a transformers model (:mod:`gapdiag.models.huggingface`): its config, its weight files and its
    processor (every processor and tokenizer file's SHA-256, the image settings and the caption padding)."""
    source = resolve_hf(model, pretrained, digest=lambda p: file_sha256(p, cache_dir=cache_root))
    preprocess = {"processor_files": source.processor_files, **source.processor_settings,
                  "text_padding": source.padding()}
    return ModelSpec(architecture=f"{HF_PREFIX}{source.name}", checkpoint=None, model_cfg=source.config,
                     preprocess_cfg=preprocess, display_name=f"{HF_PREFIX}{source.name}",
                     weight_files=source.weight_files)


def _with_checkpoint(spec: ModelSpec, pretrained: str | None, cache_root: Path) -> ModelSpec:
    """Attach ``--pretrained`` (a local file or an open_clip tag) to an architecture spec."""
    if not pretrained:
        return spec
    p = Path(pretrained).expanduser()
    if p.suffix in CHECKPOINT_SUFFIXES or p.exists():
        if not p.is_file():
            raise ModelError(f"checkpoint not found: {p}", hint="check the --pretrained path")
        spec.checkpoint = p
        spec.display_name = f"{spec.display_name}:{p.stem}"
        return spec
    if model_index.pretrained_info(spec.architecture, pretrained, cache_root)[0]:
        spec.pretrained = pretrained
        spec.display_name = f"{spec.display_name}:{pretrained}"
        return spec
    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(spec.architecture)
    hint = f"known tags for {spec.architecture}: {', '.join(tags)}" if tags else f"{spec.architecture} has no pretrained tags; pass a checkpoint file"
    raise ModelError(f"--pretrained {pretrained!r} is neither a file nor a tag of {spec.architecture}", hint=hint)
