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
    DuplicateKey,
    ImageTextItems,
    PairedDataset,
    Skips,
    image_text_dataset,
    not_utf8,
    unique_keys,
)
from gapdiag.data.columns import CaptionSource, sample_captions
from gapdiag.data.images import TarMember
from gapdiag.data.labels import class_names_by_id, encode_labels, label_value
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


def _json_captions(meta: dict[str, Any], loc: str) -> tuple[str, Any] | None:
    """The json member's caption field and its value (``captions``, ``caption`` or ``text``), if it has one.

    Raises:
        DatasetError: Two of those fields are present (which one holds the captions would be a guess).
    """
    present = [k for k in ("captions", "caption", "text") if meta.get(k) is not None]
    if len(present) > 1:
        raise DatasetError(f"{loc}.json: fields {present[0]!r} and {present[1]!r} both hold captions; keep one")
    return (present[0], meta[present[0]]) if present else None


def _index_shard(shard: Path, skips: Skips) -> dict[str, dict[str, Any]]:
    """Key -> {ext: TarMember for images, decoded value for txt/json/cls}, in shard order.

    A sample's members sit together, once each (webdataset groups consecutive members by key): a key seen again
    after another key, or a member name seen twice, is an error. A shard cut short (no end-of-archive block, a
    member past the end, an unreadable header) fails, or with ``skip_bad`` keeps the samples read whole before
    the cut and drops the one being read and the rest (one line).

    Raises:
        DatasetError: Not a tar file, a repeated sample key, or (without ``skip_bad``) a truncated shard.
    """
    from webdataset.tariterators import base_plus_ext

    samples: dict[str, dict[str, Any]] = {}
    try:
        tar = tarfile.open(shard, mode="r:")  # noqa: SIM115 - closed by the `with` below; open errors differ
    except tarfile.ReadError as exc:
        raise DatasetError(
            f"{shard}: not an uncompressed tar shard ({exc}); re-pack it with `tar -cf`"
        ) from None
    last = current = None  # the last member read whole, and the sample of the last member begun
    members_of: dict[str, set[str]] = {}
    size = shard.stat().st_size
    try:
        with tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, ext = base_plus_ext(member.name)
                if key is None or Path(key).name.startswith("."):
                    continue
                ext = ext.lower()
                seen = members_of.setdefault(key, set())
                if ext in seen or (seen and key != current):
                    raise DatasetError(
                        f"{shard.name}: member {member.name!r} repeats sample {key!r} (a sample's members must sit "
                        f"together, once each, as webdataset reads them); pack the shard again"
                    )
                seen.add(ext)
                current = key
                if member.offset_data + member.size > size:
                    raise tarfile.ReadError(f"member {member.name!r} ends past the end of the file")
                fields = samples.setdefault(key, {})
                if ext in IMAGE_KEYS:
                    fields[ext] = TarMember(shard, member.name, member.offset_data, member.size)
                elif ext in _TEXT_KEYS:
                    fields[ext] = _member_value(tar, member, shard, ext)
                last = member.name
            _check_archive_end(shard, tar.offset, size)
    except (tarfile.ReadError, EOFError, OSError) as exc:
        # The tar headers run past the end of the file (an interrupted download or copy).
        after = f" after member {last!r}" if last else ""
        dropped = f"sample {current!r} and the rest of the shard" if current else "the rest of the shard"
        skips.bad(f"{shard}: truncated or corrupt tar shard{after}: {exc}", "download or pack the shard again",
                  dropped)
        samples.pop(current, None)
    return samples


def _check_archive_end(shard: Path, offset: int, size: int) -> None:
    """What follows the last member must be the zero blocks that close an archive (at least one of 512 bytes).

    tarfile stops quietly at a header cut short past the first member, and at the end of the file: a shard cut
    exactly between two members (an interrupted download) reads as a whole, shorter one without this check.

    Raises:
        tarfile.ReadError: No end-of-archive block, or other bytes after the last member.
    """
    if size - offset < tarfile.BLOCKSIZE:
        raise tarfile.ReadError("no end-of-archive block")
    with open(shard, "rb") as f:
        f.seek(offset)
        for block in iter(lambda: f.read(1 << 16), b""):
            if block.strip(b"\0"):
                raise tarfile.ReadError(f"unreadable tar header at byte {offset}")


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
        return loads_json(raw, object_pairs_hook=unique_keys)
    except json.JSONDecodeError as exc:
        raise DatasetError(
            f"{shard.name}:{member.name}: invalid JSON at line {exc.lineno}, column {exc.colno} ({exc.msg})"
        ) from None
    except DuplicateKey as exc:
        raise DatasetError(f"{shard.name}:{member.name}: key {exc.args[0]!r} appears twice; keep one") from None


def _caption_sources(fields: dict[str, Any], meta: dict[str, Any], loc: str) -> list[CaptionSource]:
    """A sample's captions: its ``txt`` member, then its json caption field.

    img2dataset writes the caption twice, as the ``txt`` member and as json ``caption``: a json caption string
    equal to the ``txt`` member is that same caption, counted once.
    """
    key = loc.rsplit(":", 1)[-1]
    sources: list[CaptionSource] = []
    if "txt" in fields:
        sources.append((f"member '{key}.txt'", loc, fields["txt"]))
    field = _json_captions(meta, loc)
    if field is not None:
        name, value = field
        if not ("txt" in fields and isinstance(value, str) and value.strip() == fields["txt"].strip()):
            sources.append((f"json field {name!r}", loc, value))
    return sources


def _sample_label(fields: dict[str, Any], meta: dict[str, Any], loc: str) -> Any:
    """The sample's label: its ``cls`` member (a class id, webdataset's convention), else its json ``label``.

    Raises:
        DatasetError: A ``cls`` member that is not a class id, or one that differs from the json ``label``.
    """
    cls, label = fields.get("cls"), meta.get("label")
    if cls is None or not cls.strip():
        return label
    value = label_value(cls, loc)
    if isinstance(value, str):
        raise DatasetError(f"{loc}: cls member holds {cls!r}, not a class id (a whole number 0, 1, 2, ...); "
                           f"put class names in the json 'label'")
    if label is not None and label_value(label, loc) != value:
        raise DatasetError(f"{loc}: cls member {value} and json label {label!r} differ (keep one)")
    return value


def read_webdataset(spec: str | Path, *, skip_bad: bool = False, memo_dir: Path | None = None) -> PairedDataset:
    """Read WebDataset shards into an image-text :class:`PairedDataset`.

    Args:
        spec: A ``.tar`` path, a brace pattern (``data/shard-{000..003}.tar``) or a folder of shards.
        skip_bad: Drop samples without an image or without a caption, blank captions, and the rest of a
            truncated shard, instead of failing; each is listed in ``extra["skipped"]``.

    Raises:
        DatasetError: A sample without image or caption, a blank caption, a caption that is not text, a
            malformed ``cls``/``json`` member, a repeated sample key, a truncated shard, or labels on only some
            samples.
    """
    shards = shard_paths(spec)
    skips = Skips(skip_bad)
    items = ImageTextItems()
    raw_labels: list[Any] = []
    names: list[str | None] = []
    for shard in shards:
        for key, fields in _index_shard(shard, skips).items():
            loc = f"{shard.name}:{key}"
            image = next((fields[k] for k in IMAGE_KEYS if k in fields), None)
            meta = fields.get("json", {})
            if not isinstance(meta, dict):
                raise DatasetError(f"{loc}.json: expected a JSON object, got {type(meta).__name__}")
            sources = _caption_sources(fields, meta, loc)
            if image is None:
                skips.bad(f"{loc}: sample has no image ({'/'.join(IMAGE_KEYS)} member)",
                          "fix the shard or pass --skip-bad", "sample")
                continue
            if not sources:
                skips.bad(f"{loc}: sample has no caption (txt member or json 'caption')",
                          "fix the shard or pass --skip-bad", "sample")
                continue
            caps = sample_captions(sources, loc, skips, text_lists=False, sample="sample")
            if not caps:
                continue
            items.add(image, loc, caps)
            raw_labels.append(_sample_label(fields, meta, loc))
            names.append(meta.get("class_name"))

    labels = class_names = None
    has_label = [lab is not None and str(lab).strip() != "" for lab in raw_labels]
    if any(has_label):
        if not all(has_label):
            first = items.image_locations[has_label.index(False)]
            raise DatasetError(f"{first}: sample has no label while others have one (label every sample)")
        labels, class_names = encode_labels(raw_labels, items.image_locations)
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
        skipped=skips.lines,
        memo_dir=memo_dir,
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
def load_webdataset(spec: str, *, skip_bad: bool = False, memo_dir: Path | None = None) -> PairedDataset:
    """Read WebDataset shards (see :func:`read_webdataset`)."""
    return read_webdataset(spec, skip_bad=skip_bad, memo_dir=memo_dir)
