"""The options the verbs share: one typed record of them, and the checks made before any work.

Every verb that embeds takes the same keywords (the data, the model and how each is read or run, the device
and the cache root); it gathers them into one :class:`EmbedOptions` and hands that record down, so that the
api's modules pass one typed value instead of a ``**options`` dict. The checks run first thing, so that a bad
value costs no embedding and reads the same from the CLI and from a notebook. Messages name the CLI option
(``--seed``) because that is what most users typed. Which option applies to which input is tabled in
docs/cli.md ("Options that do not apply").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gapdiag.errors import InputError

#: Seeds NumPy's legacy generator, scikit-learn and ``torch.manual_seed`` all accept: 0 .. 2**32 - 1.
SEED_MAX = 2**32 - 1


def check_seed(seed: Any, option: str = "--seed") -> None:
    """Raise a one-line :class:`InputError` unless ``seed`` is ``None`` (a default) or an integer in
    ``0..SEED_MAX``.

    A seed outside that range is refused by scikit-learn's k-means and NumPy's generators only after the
    embedding, as a traceback; checked here it costs nothing.
    """
    if seed is None:
        return
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= SEED_MAX:
        raise InputError(f"{option} {seed!r} is outside 0..{SEED_MAX}",
                         hint=f"pass {option} with a whole number from 0 to {SEED_MAX} (2**32 - 1)")


@dataclass(frozen=True)
class EmbedOptions:
    """The keywords of :func:`gapdiag.api.embed` that every verb which embeds shares (besides ``data`` and
    ``model``), as given: how the data is read, how the model runs, where the cache is.

    Attributes:
        pretrained: open_clip tag or checkpoint file for an architecture name.
        random_init: Embed an architecture's random initial weights on purpose.
        split: Keep one split of the data.
        format: Reader name (``--data-format``); ``None``: detected from the path.
        image_column, text_columns, label_column, class_name_column, attribute_columns, templates, image_root:
            The reader options of :func:`gapdiag.data.load_dataset` (``None``: the reader's default).
        skip_bad: Drop unreadable samples (reported) instead of failing.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``, resolved once by the verb.
        precision: ``fp32``, ``amp`` or ``bf16``.
        preprocess: ``pil``, ``device`` or ``auto``.
        batch_size: Items per forward pass.
        workers: Data-loading worker processes.
        dtype: Stored vector dtype (``float32`` or ``float16``).
        chunk_size: Items per committed chunk (``None``: the default).
        cache_dir: The cache root (``None``: ``$GAPDIAG_CACHE_DIR`` or the user cache dir).
        progress: Show progress on stderr.
    """

    pretrained: str | None = None
    random_init: bool = False
    split: str | None = None
    format: str | None = None
    image_column: str | None = None
    text_columns: Sequence[str] | None = None
    label_column: str | None = None
    class_name_column: str | None = None
    attribute_columns: Sequence[str] | None = None
    templates: Sequence[str] | None = None
    image_root: str | Path | None = None
    skip_bad: bool = False
    device: str = "auto"
    precision: str = "fp32"
    preprocess: str = "auto"
    batch_size: int = 64
    workers: int = 0
    dtype: str = "float32"
    chunk_size: int | None = None
    cache_dir: str | Path | None = None
    progress: bool = True

    def reader(self) -> dict[str, Any]:
        """The keywords of :func:`gapdiag.data.load_dataset` these options give (``split`` and ``skip_bad``
        aside); only those given, so that each reader keeps its own defaults and refuses what it cannot use."""
        return {name: getattr(self, name) for name in READER_OPTIONS
                if name not in ("split",) and getattr(self, name) is not None}

    def given(self) -> dict[str, Any]:
        """Keyword -> value of every option, for :func:`set_options` (which tells given from default)."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}


#: The CLI spelling of the api keywords a refusal names (what most users typed).
CLI_NAMES: dict[str, str] = {
    "data": "--data", "model": "--model", "models": "--model", "pretrained": "--pretrained",
    "random_init": "--random-init", "split": "--split", "format": "--data-format", "image_column": "--image-column",
    "text_columns": "--text-column", "label_column": "--label-column", "class_name_column": "--class-name-column",
    "attribute_columns": "attribute_columns", "templates": "--template", "image_root": "--image-root",
    "device": "--device", "precision": "--precision", "preprocess": "--preprocess", "batch_size": "--batch-size",
    "workers": "--workers", "dtype": "--dtype", "chunk_size": "--chunk-size", "skip_bad": "--skip-bad",
    "sample": "--sample", "seed": "--seed", "bootstrap": "--bootstrap", "metrics": "--metrics",
    "method": "--method", "color_by": "--color-by", "max_pairs": "--max-pairs", "reports": "--report",
    "labels": "--label", "shift": "--shift", "interventions": "--interventions", "track": "--track",
    "track_metrics": "--metrics",
}
#: Options of :func:`gapdiag.api.embed` that matter only when a model embeds images and captions.
MODEL_OPTIONS = ("model", "pretrained", "random_init", "precision", "preprocess", "batch_size", "workers", "dtype",
                 "chunk_size", "skip_bad")
#: Options that matter only when a dataset file is read (the reader's; ``split`` and ``format`` too).
READER_OPTIONS = ("split", "format", "image_column", "text_columns", "label_column", "class_name_column",
                  "attribute_columns", "templates", "image_root")
#: The defaults of the shared options: a value that differs from these was given by the user. Read from
#: :class:`EmbedOptions`, whose defaults every verb's signature repeats (``tests/test_api.py`` holds them equal).
EMBED_DEFAULTS: dict[str, Any] = {field.name: field.default for field in dataclasses.fields(EmbedOptions)}


def set_options(options: Mapping[str, Any], names: Iterable[str], defaults: Mapping[str, Any]) -> list[str]:
    """The options among ``names`` that ``options`` sets to something other than their default.

    ``None``, ``False`` and an empty list mean "not given" whatever the default; a value equal to the default
    cannot be told from the default (``--batch-size 64``) and changes nothing, so it passes.
    """
    return [name for name in names if name in options and options[name] not in (None, False, [], ())
            and not (name in defaults and _same(options[name], defaults[name]))]


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError):  # arrays and other values without a plain equality
        return False


def refuse_options(names: Sequence[str], what: str, why: str) -> None:
    """Refuse the options ``names`` as not applying to ``what`` (one line naming each, and ``why``).

    Raises:
        InputError: When ``names`` is not empty.
    """
    if not names:
        return
    flags = ", ".join(dict.fromkeys(CLI_NAMES.get(n, n) for n in names))
    verb = "does" if len(names) == 1 else "do"
    raise InputError(f"{flags} {verb} not apply to {what}", hint=f"drop {flags}: {why}")


def refuse_beside_vectors(options: Mapping[str, Any], what: str) -> None:
    """Refuse the model and reader options among ``options`` for vectors that are already computed (``what``:
    precomputed embeddings, a cache entry, an embedding set in memory)."""
    refuse_options(set_options(options, (*MODEL_OPTIONS, *READER_OPTIONS), EMBED_DEFAULTS), what,
                   "the vectors are already computed (no model embeds them, no dataset is read)")
