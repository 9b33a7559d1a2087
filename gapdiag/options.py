"""Checks of the options the verbs share, made before any work: a value in its range, an option that applies.

The api (and the rooms it hands options to: :mod:`gapdiag.draw`, :mod:`gapdiag.check.run`) calls them first
thing, so that a bad value costs no embedding and reads the same from the CLI and from a notebook. Messages name
the CLI option (``--seed``) because that is what most users typed. Which option applies to which input is
tabled in docs/cli.md ("Options that do not apply").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
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


#: The CLI spelling of the api keywords a refusal names (what most users typed).
CLI_NAMES: dict[str, str] = {
    "data": "--data", "model": "--model", "models": "--model", "pretrained": "--pretrained",
    "random_init": "--random-init", "split": "--split", "format": "--data-format", "image_column": "--image-column",
    "text_columns": "--text-column", "label_column": "--label-column", "class_name_column": "--class-name-column",
    "templates": "--template", "image_root": "--image-root", "device": "--device", "precision": "--precision",
    "preprocess": "--preprocess", "batch_size": "--batch-size", "workers": "--workers", "dtype": "--dtype",
    "chunk_size": "--chunk-size", "skip_bad": "--skip-bad", "sample": "--sample", "seed": "--seed",
    "bootstrap": "--bootstrap", "metrics": "--metrics", "method": "--method", "color_by": "--color-by",
    "max_pairs": "--max-pairs", "reports": "--report", "labels": "--label", "shift": "--shift",
}
#: Options of :func:`gapdiag.api.embed` that matter only when a model embeds images and captions.
MODEL_OPTIONS = ("model", "pretrained", "random_init", "precision", "preprocess", "batch_size", "workers", "dtype",
                 "chunk_size", "skip_bad")
#: Options that matter only when a dataset file is read (the reader's; ``split`` and ``format`` too).
READER_OPTIONS = ("split", "format", "image_column", "text_columns", "label_column", "class_name_column",
                  "templates", "image_root")


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


#: The defaults of :func:`gapdiag.api.embed`'s keywords (``tests/test_cli_edges.py`` holds them equal to its
#: signature): a value that differs from these was given by the user.
EMBED_DEFAULTS: dict[str, Any] = {"device": "auto", "precision": "fp32", "batch_size": 64, "workers": 0,
                                  "dtype": "float32", "skip_bad": False, "chunk_size": None, "preprocess": "auto",
                                  "random_init": False}


def refuse_beside_vectors(options: Mapping[str, Any], what: str) -> None:
    """Refuse the model and reader options among ``options`` for vectors that are already computed (``what``:
    precomputed embeddings, a cache entry, an embedding set in memory)."""
    refuse_options(set_options(options, (*MODEL_OPTIONS, *READER_OPTIONS), EMBED_DEFAULTS), what,
                   "the vectors are already computed (no model embeds them, no dataset is read)")
