"""Hugging Face transformers models of the CLIP family (``-m hf:ID_OR_DIR``), with their own processor and tokenizer.

Any model that ``transformers.AutoModel`` builds and that has ``get_image_features`` and ``get_text_features``:
CLIPModel, SiglipModel, Siglip2Model, ChineseCLIPModel, AltCLIPModel, ... The vectors are exactly what those two
methods return for the inputs the model's own ``AutoProcessor`` makes (image processor and tokenizer, with the
padding the model was trained with: ``max_length`` for SigLIP, the longest caption of the batch otherwise).

``ID_OR_DIR`` is a folder written by ``save_pretrained`` (model, processor and tokenizer in one folder) or a hub id,
which is read from the local Hugging Face cache and downloaded only when it is not there. Resolution
(:func:`resolve_hf`) reads the folder's files without importing transformers, so that a cache hit never builds the
model; the cache key holds the model config, the SHA-256 of every weight file and of every processor and tokenizer
file, and the processor settings themselves (resize, crop, mean, std, padding).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gapdiag.errors import ModelError
from gapdiag.fsutil import loads_json
from gapdiag.models.hub import hub_access

#: The ``--model`` prefix of a transformers model.
HF_PREFIX = "hf:"
#: Weight files transformers loads with torch (``.safetensors``, or ``.bin`` read with ``weights_only=True``).
WEIGHT_SUFFIXES = (".safetensors", ".bin")
#: The files of a folder that hold the processor's and tokenizer's settings and vocabularies (hashed into the key).
PROCESSOR_SUFFIXES = (".json", ".txt", ".model", ".vocab", ".tiktoken")
#: Processor files whose settings the key also keeps in clear (what a reader of ``meta.json`` wants to see).
PROCESSOR_SETTINGS_FILES = ("preprocessor_config.json", "processor_config.json")
#: The files of a hub repository that are fetched: configs, processor and tokenizer files, PyTorch weights (not the
#: TensorFlow, Flax or ONNX copies many CLIP repositories also hold, often larger than the model itself).
HUB_FILES = ["*.json", "*.txt", "*.model", "*.vocab", "*.tiktoken", "*.safetensors", "pytorch_model*.bin"]
#: Model types whose text tower was trained on captions padded to the full length (the model card's usage).
PAD_TO_MAX_LENGTH = ("siglip", "siglip2")
#: Text towers built on RoBERTa's embeddings, which number positions from ``pad_token_id + 1`` (fairseq's
#: convention): ``max_position_embeddings`` 514 holds 512 tokens (AltCLIP's XLM-R; RoBERTa text towers).
OFFSET_POSITIONS = ("altclip_text_model", "roberta", "xlm-roberta", "xlm-roberta-xl", "camembert")
#: What to tell a user whose hub model is neither local nor downloadable.
OFFLINE_HINT = ("no network? download it where there is one (`hf download {id}`), copy the Hugging Face cache here "
                "and set HF_HUB_OFFLINE=1, or pass the folder it was saved to: -m hf:./FOLDER")


def is_hf_model(model: str) -> bool:
    """Whether ``--model`` names a transformers model (``hf:ID_OR_DIR``)."""
    return str(model).startswith(HF_PREFIX)


@dataclass
class HFSource:
    """A transformers model resolved to a local folder: what the cache key and the build need."""

    name: str  # as the user wrote it after ``hf:`` (a hub id or a path)
    folder: Path
    config: dict[str, Any]
    weight_files: tuple[Path, ...]
    processor_files: dict[str, str]  # file name -> SHA-256
    processor_settings: dict[str, Any]

    @property
    def model_type(self) -> str:
        return str(self.config.get("model_type") or "")

    def padding(self) -> dict[str, Any]:
        """How captions are padded and truncated for this model (part of the cache key)."""
        if self.model_type in PAD_TO_MAX_LENGTH:
            return {"padding": "max_length", "truncation": True}
        return {"padding": "longest", "truncation": True}


def resolve_hf(model: str, pretrained: str | None, *, digest: Any) -> HFSource:
    """Find the folder of ``hf:ID_OR_DIR`` and read what the key needs, without importing transformers.

    Args:
        model: ``hf:`` followed by a folder or a hub id.
        pretrained: Must be None: the folder or hub id names the weights.
        digest: ``path -> SHA-256`` (the memoised :func:`gapdiag.cache.file_sha256`).

    Raises:
        ModelError: ``--pretrained`` given, a missing folder, a hub id neither cached nor downloadable, a folder
            without ``config.json`` or weights.
    """
    name = model[len(HF_PREFIX):]
    if pretrained:
        raise ModelError(f"--pretrained {pretrained!r} given with {model}: the folder or hub id names the weights",
                         hint=f"drop --pretrained (pass another folder or hub id with -m {HF_PREFIX}...)")
    if not name:
        raise ModelError(f"{model!r} names no model", hint="pass -m hf:HUB_ID or -m hf:FOLDER")
    folder = _local_folder(name)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ModelError(f"{folder}: no config.json, so not a transformers model folder",
                         hint="pass the folder model.save_pretrained() wrote")
    try:
        config = loads_json(config_path.read_text())
    except ValueError as e:
        raise ModelError(f"{config_path}: invalid JSON ({e})", hint="re-save the model") from None
    files = sorted(p for p in folder.iterdir() if p.is_file())
    weights = tuple(p for p in files if p.suffix in WEIGHT_SUFFIXES and not p.name.startswith("training_args"))
    if any(p.suffix == ".safetensors" for p in weights):  # what transformers loads when both are there
        weights = tuple(p for p in weights if p.suffix == ".safetensors")
    if not weights:
        raise ModelError(f"{folder}: no weight file (*.safetensors or *.bin)", hint="pass the folder "
                         "model.save_pretrained() wrote, with its weights")
    processor = {p.name: digest(p) for p in files if p.suffix in PROCESSOR_SUFFIXES and p.name != "config.json"}
    settings = {}
    for file in PROCESSOR_SETTINGS_FILES:
        if (folder / file).is_file():
            try:
                settings[file] = loads_json((folder / file).read_text())
            except ValueError as e:
                raise ModelError(f"{folder / file}: invalid JSON ({e})", hint="re-save the processor") from None
    return HFSource(name=name, folder=folder, config=config, weight_files=weights, processor_files=processor,
                    processor_settings=settings)


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).expanduser().exists() or name.count("/") > 1


def _local_folder(name: str) -> Path:
    """The folder ``name`` is, or the local snapshot of hub id ``name`` (downloaded if the hub answers)."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path.resolve()
    if _looks_like_path(name):
        raise ModelError(f"model folder not found: {path}", hint="check the path after hf:")
    from huggingface_hub import snapshot_download

    with contextlib.suppress(Exception):  # not in the local cache (or no such id): ask the hub below
        return Path(snapshot_download(name, local_files_only=True, allow_patterns=HUB_FILES))
    with hub_access(True) as hub:
        try:
            return Path(snapshot_download(name, allow_patterns=HUB_FILES))
        except Exception as e:  # noqa: BLE001 - turned into one line naming what to do
            text = f"{type(e).__name__}: {e}".splitlines()[0].split(" Last error:")[0][:200]
            offline = " (HF_HUB_OFFLINE is set)" if hub.offline else (
                f"; {hub.endpoint} is unreachable: {hub.unreachable}" if hub.unreachable else "")
            raise ModelError(f"couldn't load {HF_PREFIX}{name}: not in the local Hugging Face cache and not "
                             f"downloaded{offline} ({text})", hint=OFFLINE_HINT.format(id=name)) from None


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers' progress bars and warnings off while building: gapdiag reports failures in one line."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def build_hf(source: HFSource) -> tuple[Any, Any, Any]:
    """Build ``(model, preprocess, tokenizer)`` for :class:`gapdiag.models.loading.LoadedModel` on the CPU, float32.

    Raises:
        ModelError: transformers not installed, a model without ``get_image_features``/``get_text_features``, or a
            folder transformers cannot load.
    """
    try:
        import transformers  # noqa: F401 - only to name the missing package
    except ImportError:
        raise ModelError(f"model {HF_PREFIX}{source.name} needs the Python package 'transformers', which is not "
                         "installed", hint="install it: pip install 'gapdiag[hf]'") from None
    from transformers import AutoModel, AutoProcessor

    with _quiet_transformers():
        try:
            model = AutoModel.from_pretrained(source.folder, local_files_only=True)
            processor = AutoProcessor.from_pretrained(source.folder, local_files_only=True)
        except Exception as e:  # noqa: BLE001 - turned into one line
            text = f"{type(e).__name__}: {e}".splitlines()[0][:300]
            raise ModelError(f"transformers cannot load {HF_PREFIX}{source.name} ({text})",
                             hint="pass a folder with the model, processor and tokenizer save_pretrained() wrote"
                             ) from None
    missing = [m for m in ("get_image_features", "get_text_features") if not callable(getattr(model, m, None))]
    if missing:
        raise ModelError(f"{HF_PREFIX}{source.name} is a {type(model).__name__}, which has no {' or '.join(missing)}",
                         hint="pass a CLIP-family model (CLIPModel, SiglipModel, ChineseCLIPModel, AltCLIPModel, ...)")
    image_processor = getattr(processor, "image_processor", None)
    tokenizer = getattr(processor, "tokenizer", None)
    if image_processor is None or tokenizer is None:
        raise ModelError(f"{HF_PREFIX}{source.name}: its processor ({type(processor).__name__}) lacks an image "
                         "processor or a tokenizer", hint="save the model's full processor (processor.save_pretrained)")
    return (HFFeatures(model.float().eval()), HFImagePreprocess(image_processor),
            HFTokenize(tokenizer, source.padding(), _max_length(source.config, tokenizer)))


def _max_length(config: dict[str, Any], tokenizer: Any) -> int | None:
    """The longest caption the text tower takes: its position embeddings (a tokenizer may allow more, or set no
    limit), less the positions a RoBERTa-style tower skips (:data:`OFFSET_POSITIONS`)."""
    text_cfg = config.get("text_config") or {}
    positions = text_cfg.get("max_position_embeddings")
    if isinstance(positions, int) and text_cfg.get("model_type") in OFFSET_POSITIONS:
        positions -= int(text_cfg.get("pad_token_id") or 0) + 1
    limit = getattr(tokenizer, "model_max_length", None)
    candidates = [n for n in (positions, limit) if isinstance(n, int) and 0 < n < 1_000_000]
    return min(candidates) if candidates else None


def features(output: Any) -> Any:
    """The embedding tensor of ``get_*_features``: the tensor itself (transformers 4) or its ``pooler_output``
    (transformers 5 returns a ``BaseModelOutputWithPooling`` whose pooled output is the projected embedding)."""
    return output if hasattr(output, "shape") else output.pooler_output


class HFFeatures:
    """A transformers model behind open_clip's two calls: ``encode_image(inputs)`` and ``encode_text(tokens)``."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def to(self, device: Any) -> HFFeatures:
        self.model = self.model.to(device)
        return self

    def eval(self) -> HFFeatures:
        self.model.eval()
        return self

    def encode_image(self, inputs: Any) -> Any:
        """``get_image_features`` of pixel values (a tensor) or of all the image processor's outputs (a dict)."""
        if isinstance(inputs, dict):
            return features(self.model.get_image_features(**inputs))
        return features(self.model.get_image_features(pixel_values=inputs))

    def encode_text(self, tokens: Any) -> Any:
        """``get_text_features`` of the tokenizer's outputs (ids, attention mask, token types)."""
        return features(self.model.get_text_features(**tokens))


@dataclass
class HFImagePreprocess:
    """The model's image processor on one PIL image: a ``C x H x W`` tensor, or a dict of tensors when the processor
    also returns masks or shapes (SigLIP 2's patches)."""

    image_processor: Any

    def __call__(self, image: Any) -> Any:
        out = self.image_processor(images=image, return_tensors="pt")
        items = {k: v[0] for k, v in out.items()}
        return items["pixel_values"] if list(items) == ["pixel_values"] else items


@dataclass
class HFTokenize:
    """The model's tokenizer on a batch of captions, padded the way the model was trained (a ``BatchEncoding``)."""

    tokenizer: Any
    padding: dict[str, Any]
    max_length: int | None

    def __call__(self, texts: list[str]) -> Any:
        return self.tokenizer(list(texts), return_tensors="pt", max_length=self.max_length, **self.padding)
