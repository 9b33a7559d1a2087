"""Build a resolved :class:`~gapdiag.models.resolving.ModelSpec` into a :class:`LoadedModel`, offline-safe.

open_clip's factory builds the architecture (downloading a pretrained tag or an ``hf-hub:`` model if it must),
seeded so that weights no checkpoint sets are the same in every process; a checkpoint is then loaded with
``torch.load(weights_only=True)`` or safetensors (never unpickling arbitrary objects), its DDP prefix removed and
half-precision tensors read as float32; an ``hf:`` model is built by transformers
(:func:`gapdiag.models.huggingface.build_hf`). Every failure (a missing optional package, a failed download, a
checkpoint that does not fit) is one :class:`~gapdiag.errors.ModelError` line. Resolving ``--model`` is
:mod:`gapdiag.models.resolving`'s part, and needs none of this.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gapdiag.device import Device
from gapdiag.errors import ModelError
from gapdiag.models import checkpoints
from gapdiag.models import index as model_index
from gapdiag.models.hub import Hub, hub_access, offline_hint
from gapdiag.models.huggingface import build_hf, is_hf_model, resolve_hf
from gapdiag.models.resolving import ModelSpec

CONFIG_DIR = model_index.BUNDLED_CONFIG_DIR
#: The ``--precision`` values: float32, float16 autocast (CUDA) and bfloat16 autocast (CUDA).
PRECISIONS = ("fp32", "amp", "bf16")

_registered = False


def register_bundled_configs(extra: Path | None = None) -> None:
    """Register gapdiag's tiny configs (``gapdiag-tiny-*``) with open_clip, once per process, and ``extra``
    (a config file gapdiag wrote for a checkpoint or config JSON)."""
    global _registered
    import open_clip

    if not _registered:
        open_clip.add_model_config(CONFIG_DIR)
        _registered = True
    if extra is not None and extra not in _registered_files:
        open_clip.add_model_config(extra)
        _registered_files.add(extra)


_registered_files: set[Path] = set()


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


def check_precision(precision: str, device: Any) -> str:
    if precision not in PRECISIONS:
        raise ModelError(f"unknown precision {precision!r}", hint=f"use one of {', '.join(PRECISIONS)}")
    if precision != "fp32" and device.type != "cuda":
        raise ModelError(f"--precision {precision} needs a CUDA device (this run uses {device.type})",
                         hint="use --precision fp32 on CPU/MPS")
    return precision


def build_model(spec: ModelSpec, *, device: Device, precision: str = "fp32", init_seed: int = 0) -> LoadedModel:
    """Build the model described by ``spec`` (downloading through open_clip if it must) on the resolved ``device``
    (:func:`gapdiag.device.resolve`, at the api's door).

    Weights that no checkpoint overwrites are initialised from ``init_seed`` (without touching the global RNG),
    so a randomly initialised architecture gives the same vectors in every process: the cache key of
    an architecture without weights stays truthful, and every rank of a distributed job builds the same model.
    """
    dev = device.torch()
    check_precision(precision, dev)
    if is_hf_model(spec.architecture):
        return _build_hf(spec, dev, precision)
    import open_clip
    import torch

    register_bundled_configs(model_index.written_config_file(spec.architecture))
    pre = spec.preprocess_cfg or {}
    transforms_kwargs = {"image_" + k: pre[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in pre}
    with hub_access(_needs_hub(spec)) as hub:
        # The tokenizer first: it is cheap, and a missing optional package (transformers) or tokenizer download
        # then fails before minutes of building and downloading weights. An hf-hub model's tokenizer is named
        # in the config that comes with the weights, so it can only follow them.
        tokenizer = None if spec.architecture.startswith("hf-hub:") else _tokenizer(spec, hub)
        try:
            with warnings.catch_warnings(), _quiet_open_clip(), torch.random.fork_rng(devices=[]):
                warnings.simplefilter("ignore")
                torch.manual_seed(init_seed)
                model, _, preprocess = open_clip.create_model_and_transforms(
                    spec.architecture, pretrained=spec.pretrained, device="cpu", weights_only=True,
                    **transforms_kwargs)
        except Exception as e:  # noqa: BLE001 - turned into one line below
            raise _load_error(spec, e, hub) from None
        if tokenizer is None:
            tokenizer = _tokenizer(spec, hub)
    if spec.checkpoint is not None:
        try:
            _load_checkpoint(model, spec.checkpoint)
        except ModelError:
            raise  # already one line naming the file
        except Exception as e:  # noqa: BLE001
            raise _checkpoint_error(spec, e) from None
    model = model.to(dev).eval()
    return LoadedModel(model=model, preprocess=preprocess, tokenizer=tokenizer, spec=spec, device=dev,
                       precision=precision)


def _build_hf(spec: ModelSpec, dev: Any, precision: str) -> LoadedModel:
    """A transformers model (weights from its folder, so no init seed applies) on the torch device ``dev``."""
    source = resolve_hf(spec.architecture, None, digest=lambda p: "")
    model, preprocess, tokenizer = build_hf(source)
    return LoadedModel(model=model.to(dev).eval(), preprocess=preprocess, tokenizer=tokenizer, spec=spec, device=dev,
                       precision=precision)


class _quiet_open_clip:
    """Silence open_clip's root-logger messages while building: its warning about random init and its
    ``logging.error`` about a failed download, which gapdiag reports itself as one line."""

    def __enter__(self) -> None:
        self._level = logging.getLogger().level
        logging.getLogger().setLevel(logging.CRITICAL)

    def __exit__(self, *exc: object) -> None:
        logging.getLogger().setLevel(self._level)


def _needs_hub(spec: ModelSpec) -> bool:
    """Whether building ``spec`` may download: a hub model, a pretrained tag, or a tokenizer kept on the hub."""
    text_cfg = (spec.model_cfg or {}).get("text_cfg") or {}
    return (spec.architecture.startswith("hf-hub:") or bool(spec.pretrained)
            or bool(text_cfg.get("hf_tokenizer_name")) or "siglip" in spec.architecture.lower())


#: Optional packages some open_clip models need, and the gapdiag extra that installs them.
OPTIONAL_PACKAGES = {"transformers": "hf", "sentencepiece": "hf", "tokenizers": "hf"}


def _tokenizer(spec: ModelSpec, hub: Hub) -> Callable[[list[str]], Any]:
    """open_clip's tokenizer for ``spec``, or one line naming the package or download it is missing."""
    import open_clip

    try:
        with _quiet_open_clip():
            return open_clip.get_tokenizer(spec.architecture)
    except ImportError as e:
        package = (getattr(e, "name", None) or str(e)).split(".")[0]
        install = f"pip install 'gapdiag[{OPTIONAL_PACKAGES[package]}]'" if package in OPTIONAL_PACKAGES \
            else f"pip install {package}"
        raise ModelError(f"model {spec.display_name or spec.architecture!r} needs the Python package {package!r} "
                         f"for its tokenizer, which is not installed", hint=f"install it: {install}") from None
    except Exception as e:  # noqa: BLE001 - a tokenizer kept on the hub that cannot be fetched
        raise _load_error(spec, e, hub, what="the tokenizer") from None


def _load_checkpoint(model: Any, path: Path) -> None:
    """``open_clip.load_checkpoint`` with half-precision tensors read as float32.

    open_clip resizes position embeddings that do not fit the model (another image size or context length)
    with ``F.interpolate``, which has no float16 kernel on the CPU ("not implemented for 'Half'"); the model is
    float32 anyway, so upcasting first gives the same weights a float32 checkpoint would.
    """
    from unittest import mock

    import torch
    from open_clip import factory

    def read_as_float32(checkpoint_path: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        # gapdiag's reader: weights_only, an open_clip training checkpoint's state_dict, DDP's prefix on every key
        # or none (open_clip's own looks at the first key only).
        state = checkpoints.read_state_dict(Path(checkpoint_path))
        return {k: v.float() if torch.is_tensor(v) and v.dtype in (torch.float16, torch.bfloat16) else v
                for k, v in state.items()}

    with mock.patch.object(factory, "load_state_dict", read_as_float32):
        factory.load_checkpoint(model, str(path), strict=True, weights_only=True)


def _load_error(spec: ModelSpec, e: Exception, hub: Hub | None = None, *, what: str = "weights") -> ModelError:
    # huggingface_hub appends a paragraph ("Last error: An error happened while trying to locate ...") that
    # says nothing the hint does not; keep the line that names the file and the repository.
    text = f"{type(e).__name__}: {e}".splitlines()[0].split(" Last error:")[0][:300]
    # transformers, fetching a SigLIP tokenizer offline, says "We couldn't connect to ... and couldn't find them in
    # the cached files": a download that failed, not a wrong --model.
    offline_markers = ("Failed to download", "HF Hub", "Connection", "resolve", "offline", "Max retries", "urlopen",
                       "couldn't connect", "cached files", "LocalEntryNotFound")
    if any(m.lower() in text.lower() for m in offline_markers) or spec.architecture.startswith("hf-hub:"):
        name = spec.display_name or spec.pretrained or spec.architecture
        where = f"; {hub.endpoint} is unreachable: {hub.unreachable}" if hub and hub.unreachable else (
            "; HF_HUB_OFFLINE is set" if hub and hub.offline else "")
        return ModelError(f"could not download {what} for {name!r} ({text}{where})",
                          hint=offline_hint(spec.architecture, spec.pretrained))
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
