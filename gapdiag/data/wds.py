"""WebDataset reader: uncompressed ``.tar`` shards of ``<key>.<ext>`` members grouped into samples.

Shards are named by one ``.tar`` path, a brace pattern (``shard-{000..003}.tar``, expanded by
:mod:`webdataset`) or a directory of ``.tar`` files. Members are grouped into samples by key with
webdataset's own rule (:func:`webdataset.tariterators.base_plus_ext`); per sample:

- image: ``jpg``, ``jpeg``, ``png`` or ``webp``;
- captions: ``txt`` (one caption), and/or ``json`` with ``caption``, ``text`` or ``captions`` (a string or a list);
- label: ``cls`` (an integer) or ``json["label"]`` (int or string); optional ``json["class_name"]``.

Only the tar headers are scanned (no image bytes are read): each image becomes a
:class:`~gapdiag.data.images.TarMember` (shard, offset, size) that :func:`~gapdiag.data.images.load_image`
reads on demand, so a set of millions of images never sits in memory.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

from gapdiag.data.base import (
    ImageTextItems,
    PairedDataset,
    class_names_by_id,
    encode_labels,
    image_text_dataset,
    not_utf8,
)
from gapdiag.data.images import TarMember
from gapdiag.data.registry import register_reader
from gapdiag.errors import DatasetError
from gapdiag.fsutil import loads_json

IMAGE_KEYS: tuple[str, ...] = ("jpg", "jpeg", "png", "webp")
_TEXT_KEYS = ("txt", "json", "cls")


def is_shard_spec(spec: str) -> bool:
    """True for a ``.tar`` path or a brace pattern of ``.tar`` paths."""
    return spec.endswith(".tar") or ("{" in spec and ".tar" in spec)


def shard_paths(spec: str | Path) -> list[Path]:
    """The shard files a spec names: one ``.tar``, a brace pattern, or a directory of ``.tar`` files.

    Raises:
        DatasetError: A shard that does not exist, or a directory without shards.
    """
    from webdataset.shardlists import expand_urls

    path = Path(spec)
    if path.is_dir():
        shards = sorted(p for p in path.iterdir() if p.suffix == ".tar" and p.is_file())
        if not shards:
            raise DatasetError(f"{path}: no .tar shards in this folder")
        return shards
    shards = [Path(s) for s in expand_urls(str(spec))]
    for shard in shards:
        if not shard.is_file():
            raise DatasetError(f"{shard}: shard not found (check the path or the brace pattern {spec})")
    return shards


def _captions_from_json(meta: dict[str, Any]) -> list[str]:
    for key in ("captions", "caption", "text"):
        value = meta.get(key)
        if value is not None:
            return [str(v) for v in value] if isinstance(value, list) else [str(value)]
    return []


def _index_shard(shard: Path) -> dict[str, dict[str, Any]]:
    """Key -> {ext: TarMember for images, decoded value for txt/json/cls}, in shard order."""
    from webdataset.tariterators import base_plus_ext

    samples: dict[str, dict[str, Any]] = {}
    try:
        tar = tarfile.open(shard, mode="r:")  # noqa: SIM115 - closed by the `with` below; open errors differ
    except tarfile.ReadError as exc:
        raise DatasetError(
            f"{shard}: not an uncompressed tar shard ({exc}); re-pack it with `tar -cf`"
        ) from None
    last = None  # the last member read whole, to say where a truncated shard stops
    size = shard.stat().st_size
    try:
        with tar:
            for member in tar:
                if not member.isfile():
                    continue
                if member.offset_data + member.size > size:
                    raise tarfile.ReadError(f"member {member.name!r} ends past the end of the file")
                key, ext = base_plus_ext(member.name)
                if key is None or Path(key).name.startswith("."):
                    continue
                ext = ext.lower()
                fields = samples.setdefault(key, {})
                if ext in IMAGE_KEYS:
                    fields[ext] = TarMember(shard, member.name, member.offset_data, member.size)
                elif ext in _TEXT_KEYS:
                    fields[ext] = _member_value(tar, member, shard, ext)
                last = member.name
            # tarfile ends quietly at a header cut short past the first member: what follows the last member
            # must be the zero blocks that close an archive.
            if not _only_zeros(shard, tar.offset):
                raise tarfile.ReadError(f"unreadable tar header at byte {tar.offset}")
    except (tarfile.ReadError, EOFError, OSError) as exc:
        # The tar headers run past the end of the file (an interrupted download or copy).
        after = f" after member {last!r}" if last else ""
        raise DatasetError(
            f"{shard}: truncated or corrupt tar shard{after} ({exc}); download or pack the shard again"
        ) from None
    return samples


def _only_zeros(path: Path, start: int) -> bool:
    with open(path, "rb") as f:
        f.seek(start)
        for block in iter(lambda: f.read(1 << 16), b""):
            if block.strip(b"\0"):
                return False
    return True


def _member_value(tar: tarfile.TarFile, member: tarfile.TarInfo, shard: Path, ext: str) -> Any:
    """The decoded text of a ``txt``/``cls`` member, or the parsed object of a ``json`` member."""
    data = tar.extractfile(member).read()  # type: ignore[union-attr]
    if len(data) < member.size:
        raise tarfile.ReadError(f"member {member.name!r} ends early")
    try:
        raw = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise not_utf8(data, f"{shard.name}:{member.name}", "write captions as UTF-8") from None
    if ext != "json":
        return raw
    try:
        return loads_json(raw)
    except json.JSONDecodeError as exc:
        raise DatasetError(
            f"{shard.name}:{member.name}: invalid JSON at line {exc.lineno}, column {exc.colno} ({exc.msg})"
        ) from None


def read_webdataset(spec: str | Path, *, skip_bad: bool = False) -> PairedDataset:
    """Read WebDataset shards into an image-text :class:`PairedDataset`.

    Args:
        spec: A ``.tar`` path, a brace pattern (``data/shard-{000..003}.tar``) or a folder of shards.
        skip_bad: Drop samples without an image, without a caption or with a blank caption, instead of
            failing; they are listed in ``extra["skipped"]``.

    Raises:
        DatasetError: A sample without image or caption, a blank caption, a malformed ``cls``/``json`` member,
            or labels on only some samples.
    """
    shards = shard_paths(spec)
    skipped: list[str] = []
    items = ImageTextItems()
    raw_labels: list[Any] = []
    names: list[str | None] = []
    for shard in shards:
        for key, fields in _index_shard(shard).items():
            loc = f"{shard.name}:{key}"
            image = next((fields[k] for k in IMAGE_KEYS if k in fields), None)
            meta = fields.get("json", {})
            if not isinstance(meta, dict):
                raise DatasetError(f"{loc}.json: expected a JSON object, got {type(meta).__name__}")
            caps = ([fields["txt"]] if "txt" in fields else []) + _captions_from_json(meta)
            problem = None
            if image is None:
                problem = f"{loc}: sample has no image ({'/'.join(IMAGE_KEYS)} member)"
            elif not caps:
                problem = f"{loc}: sample has no caption (txt member or json 'caption')"
            elif any(not c.strip() for c in caps):
                problem = f"{loc}: empty caption"
            if problem:
                if not skip_bad:
                    raise DatasetError(f"{problem} (fix the shard or pass --skip-bad)")
                skipped.append(problem)
                continue
            items.add(image, loc, [(cap.strip(), loc) for cap in caps])
            raw_labels.append(fields.get("cls", meta.get("label")))
            names.append(meta.get("class_name"))

    labels = class_names = None
    has_label = [lab is not None and str(lab).strip() != "" for lab in raw_labels]
    if any(has_label):
        if not all(has_label):
            first = items.image_locations[has_label.index(False)]
            raise DatasetError(f"{first}: sample has no label while others have one (label every sample)")
        labels, class_names = encode_labels(raw_labels, f"{shards[0].parent} labels")
        if class_names is None and all(n is not None for n in names):
            class_names = class_names_by_id(
                labels, [str(n) for n in names], items.image_locations, "json 'class_name'"
            )
    return image_text_dataset(
        name=shards[0].parent.name if len(shards) > 1 else shards[0].stem,
        source=str(spec),
        format="webdataset",
        items=items,
        files=shards,
        options={"skip_bad": skip_bad},
        labels=labels,
        class_names=class_names,
        skipped=skipped,
    )


def _detect(spec: str) -> str | None:
    p = Path(spec)
    if is_shard_spec(spec) and ("{" in spec or p.is_file()):
        return f"shards {p.name}"
    if p.is_dir():
        shards = sorted(f.name for f in p.glob("*.tar") if f.is_file())
        if shards:
            return f"shards {shards[0]}" + (f" and {len(shards) - 1} more" if len(shards) > 1 else "")
    return None


@register_reader(
    "webdataset",
    detect=_detect,
    accepted="WebDataset .tar shards",
    help="Uncompressed .tar shards of <key>.<ext> members: an image, txt/json captions, optional cls label.",
    aliases=("wds",),
    order=40,
)
def load_webdataset(spec: str, *, skip_bad: bool = False) -> PairedDataset:
    """Read WebDataset shards (see :func:`read_webdataset`)."""
    return read_webdataset(spec, skip_bad=skip_bad)
