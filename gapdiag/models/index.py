"""What the cache key needs to know about a model, found without importing open_clip.

Importing open_clip pulls in timm, torchvision and torch._dynamo: seconds, more than a whole warm
``gapdiag measure`` should take. A cache hit needs only the model's config and pretrained-tag facts, and
open_clip keeps both as data: its architecture configs are JSON files in its installed package (read here
from disk, located with :func:`importlib.util.find_spec`, which does not import the package), and what a
pretrained tag contributes to the key is memoised in ``<cache root>/model_configs/pretrained.json`` per
open_clip version the first time open_clip is imported to check the tag.

Lookup order follows open_clip's registry: configs gapdiag wrote in this process over gapdiag's bundled
configs over open_clip's own (a later ``add_model_config`` wins there too).
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import json
import logging
from pathlib import Path
from typing import Any

from gapdiag.fsutil import atomic_write_json, loads_json

log = logging.getLogger(__name__)

#: gapdiag's bundled tiny configs (``gapdiag-tiny-*``).
BUNDLED_CONFIG_DIR = Path(__file__).parent / "configs"
#: The keys open_clip requires of an architecture config (its registry skips files without them).
REQUIRED_KEYS = ("embed_dim", "vision_cfg", "text_cfg")
#: Parts of a pretrained tag's config that change the vectors; URLs and hub ids may change without them.
PRETRAINED_KEYS = ("mean", "std", "interpolation", "resize_mode", "quick_gelu")

_written: dict[str, Path] = {}


@functools.lru_cache(maxsize=1)
def open_clip_dir() -> Path | None:
    """The installed open_clip package directory (not imported), or None."""
    spec = importlib.util.find_spec("open_clip")
    return Path(spec.origin).parent if spec is not None and spec.origin else None


@functools.lru_cache(maxsize=1)
def open_clip_version() -> str:
    """open_clip's installed version (from its metadata; not imported)."""
    try:
        return importlib.metadata.version("open_clip_torch")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def remember_config_file(name: str, path: Path) -> None:
    """Note that ``path`` holds config ``name`` (written by gapdiag), for :func:`find_config` and the build."""
    _written[name] = path


def written_config_file(name: str) -> Path | None:
    """The config file gapdiag wrote in this process for ``name``, if any (registered with open_clip on build)."""
    return _written.get(name)


def find_config(name: str) -> dict[str, Any] | None:
    """The architecture config open_clip would return for ``name`` (``get_model_config``), or None."""
    oc = open_clip_dir()
    candidates = [_written.get(name), BUNDLED_CONFIG_DIR / f"{name}.json",
                  oc / "model_configs" / f"{name}.json" if oc else None]
    for path in candidates:
        if path is None or not path.is_file():
            continue
        cfg = _load_config(path)
        if cfg is not None:
            return cfg
    return None


@functools.lru_cache(maxsize=256)
def _load_config_cached(path: str, mtime_ns: int) -> str | None:
    try:
        cfg = loads_json(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return json.dumps(cfg) if isinstance(cfg, dict) and all(k in cfg for k in REQUIRED_KEYS) else None


def _load_config(path: Path) -> dict[str, Any] | None:
    text = _load_config_cached(str(path), path.stat().st_mtime_ns)
    return loads_json(text) if text is not None else None  # a fresh dict per call, like open_clip's deepcopy


def pretrained_info(architecture: str, tag: str, cache_root: Path | None) -> tuple[bool, dict[str, Any] | None]:
    """Whether ``tag`` is an open_clip pretrained tag of ``architecture``, and its key-relevant config.

    Answered from ``<cache_root>/model_configs/pretrained.json`` when an earlier run asked open_clip the
    same question with the same open_clip version; otherwise open_clip is imported and a known tag memoised.
    """
    memo_path = cache_root / "model_configs" / "pretrained.json" if cache_root is not None else None
    memo_key = f"{open_clip_version()}|{architecture}|{tag}"
    memo = _read_json(memo_path) if memo_path is not None else {}
    if memo_key in memo:
        return True, memo[memo_key]
    import open_clip

    cfg = open_clip.get_pretrained_cfg(architecture, tag)
    if not cfg:
        return False, None
    subset = {k: cfg[k] for k in PRETRAINED_KEYS if k in cfg} or None
    if memo_path is not None:
        _remember(memo_path, memo_key, subset)
    return True, subset


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = loads_json(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _remember(path: Path, key: str, value: Any) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, {**_read_json(path), key: value})
    except Exception as exc:  # noqa: BLE001 - an unwritable memo only costs an open_clip import next time
        log.debug("pretrained tag not memoised in %s: %s", path, exc)
