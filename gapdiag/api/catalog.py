"""The verb :func:`models`: every model gapdiag can be given by name, for ``gapdiag models``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gapdiag.api.caching import cache_ls
from gapdiag.api.embedding import BUNDLED_CHECKPOINTS, BUNDLED_PREFIX, DEFAULT_CHECKPOINT
from gapdiag.data.sample import sample_data_dir
from gapdiag.errors import DatasetError
from gapdiag.models.catalog import Architecture, HubModel, architectures, hub_models, summary
from gapdiag.settings import Settings


@dataclass
class Bundled:
    """A checkpoint shipped with gapdiag (``-m bundled:NAME``)."""

    model: str
    path: str
    present: bool
    default: bool


@dataclass
class ModelCatalog:
    """What ``--model`` can name, in four lists (what ``gapdiag models --json`` prints).

    Attributes:
        bundled: The checkpoints shipped with gapdiag, by name.
        cached: The model names the gapdiag cache holds vectors of, with how many entries each.
        hub_cache: The model repositories in the local Hugging Face cache (loadable offline), named for ``--model``.
        architectures: open_clip's architectures (and gapdiag's tiny ones), each with its pretrained tags.
    """

    bundled: list[Bundled] = field(default_factory=list)
    cached: dict[str, int] = field(default_factory=dict)
    hub_cache: list[HubModel] = field(default_factory=list)
    architectures: list[Architecture] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The four lists as JSON-ready values."""
        return asdict(self)


def models(*, cache_dir: str | Path | None = None, architectures_too: bool = True) -> ModelCatalog:
    """List the models gapdiag can load by name: bundled, with vectors in the cache, in the local hub cache, and
    open_clip's architectures with their pretrained tags.

    Args:
        cache_dir: The gapdiag cache root (default: ``GAPDIAG_CACHE_DIR`` or the user cache dir).
        architectures_too: Include open_clip's architectures (imports open_clip: a few seconds).
    """
    try:
        folder = sample_data_dir(Settings.build(cache_dir).sample_data) / "checkpoints"
    except DatasetError:  # no sample data at all: the bundled names are listed as absent, not an error
        folder = Path("sample_data") / "checkpoints"
    bundled = [Bundled(model=BUNDLED_PREFIX + name, path=str(folder / f"{name}.safetensors"),
                       present=(folder / f"{name}.safetensors").is_file(), default=name == DEFAULT_CHECKPOINT)
               for name in BUNDLED_CHECKPOINTS]
    _, entries = cache_ls(cache_dir=cache_dir)
    return ModelCatalog(bundled=bundled, cached=summary([dict(e) for e in entries]), hub_cache=hub_models(),
                        architectures=architectures() if architectures_too else [])
