"""Checks of the options the verbs share, made before any work: a value in its range, an option that applies.

The api calls them first thing, so that a bad value costs no embedding and reads the same from the CLI and
from a notebook. Messages name the CLI option (``--seed``) because that is what most users typed.
"""

from __future__ import annotations

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
