"""What models can be named: open_clip's architectures and their pretrained tags, and the hub models already in the
local Hugging Face cache (usable offline), for ``gapdiag models``."""

from __future__ import annotations

from typing import Any, TypedDict

from gapdiag.models.huggingface import HF_PREFIX
from gapdiag.models.loading import register_bundled_configs


class Architecture(TypedDict):
    """An open_clip architecture (``-m NAME``) and its pretrained tags (``-p TAG``; empty: weights from a file)."""

    name: str
    pretrained: list[str]


class HubModel(TypedDict):
    """A model repository in the local Hugging Face cache and how ``--model`` names it."""

    id: str
    model: str  # ``hf-hub:ID`` (open_clip's layout) or ``hf:ID`` (transformers)
    size_bytes: int


def architectures() -> list[Architecture]:
    """Every architecture open_clip can build (its registry and gapdiag's tiny configs), with its pretrained tags."""
    import open_clip

    register_bundled_configs()
    return [Architecture(name=name, pretrained=list(open_clip.list_pretrained_tags_by_model(name)))
            for name in open_clip.list_models()]


def hub_models() -> list[HubModel]:
    """The model repositories in the local Hugging Face cache (where ``HF_HOME``/``HF_HUB_CACHE`` put it) that gapdiag
    can load: open_clip's layout (``open_clip_config.json``) or a transformers model (``config.json``)."""
    from huggingface_hub import scan_cache_dir

    try:
        repos = scan_cache_dir().repos
    except Exception:  # noqa: BLE001 - no cache folder yet (CacheNotFound) or an unreadable one: nothing cached
        return []
    found = []
    for repo in sorted(repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        files = {f.file_name for rev in repo.revisions for f in rev.files}
        prefix = "hf-hub:" if "open_clip_config.json" in files else HF_PREFIX if "config.json" in files else None
        if prefix:
            found.append(HubModel(id=repo.repo_id, model=prefix + repo.repo_id, size_bytes=int(repo.size_on_disk)))
    return found


def summary(entries: list[dict[str, Any]]) -> dict[str, int]:
    """How many cache entries each model name has (the models whose vectors gapdiag has cached)."""
    counts: dict[str, int] = {}
    for entry in entries:
        name = str(entry.get("model") or "?")
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))
