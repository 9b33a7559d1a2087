"""Errors that the CLI turns into one clear line (no traceback unless ``--debug``).

Every error a user can cause by bad input derives from :class:`GapdiagError`. The message must say what is
wrong, where (file, row, column) and how to fix it, in one line.

Optional packages behind pip extras (pyarrow: ``gapdiag[parquet]``, plotly: ``gapdiag[interactive]``; not
needed to measure, check, plot or compare, 233 MiB installed together, docs/install.md) are imported
through :func:`require` alone, so that a missing one reads the same everywhere: the feature and the exact
install command instead of a ``ModuleNotFoundError`` traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class GapdiagError(Exception):
    """Base class: a user-facing failure with a one-line message and an exit code."""

    exit_code: int = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class InputError(GapdiagError, ValueError):
    """Bad user input: a file, a row, an option or an array that cannot be used."""


class DatasetError(InputError):
    """A dataset that cannot be read: missing or corrupt file, empty caption, bad column."""


class ModelError(InputError):
    """A model that cannot be loaded: unknown name, checkpoint that does not fit, no network for a download."""


class CacheError(GapdiagError):
    """The embedding cache cannot be used: unwritable directory, disk full, corrupt entry."""


class EmbeddingError(GapdiagError):
    """Embedding produced unusable values (NaN/inf)."""


class ConfigError(InputError):
    """A configuration file (gapdiag.toml, pyproject.toml) that is malformed."""


class ProvenanceError(InputError):
    """Two reports that must not be compared (different data or metric definitions)."""


class MissingExtraError(GapdiagError):
    """A feature whose optional package (a pip extra of gapdiag) is not installed or cannot be imported."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its class name if it has none), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


#: The pip extra that installs each optional top-level package.
EXTRAS: dict[str, str] = {"pyarrow": "parquet", "plotly": "interactive"}

#: The feature names used in messages (one spelling each, so the messages and the docs agree).
PARQUET = "Parquet support"
INTERACTIVE_MAP = "the interactive map"


def install_command(extra: str) -> str:
    """The command that installs ``extra`` (quoted: the brackets are a glob in most shells)."""
    return f"pip install 'gapdiag[{extra}]'"


def require(module: str, feature: str) -> ModuleType:
    """``importlib.import_module(module)`` for ``feature``, or one line saying which extra to install.

    Args:
        module: A module of an optional package (``"pyarrow.parquet"``); its top-level name is a key of
            :data:`EXTRAS`.
        feature: What needs it, for the message (:data:`PARQUET`, :data:`INTERACTIVE_MAP`), prefixed with
            the file it is for where there is one (``"data.parquet: Parquet support"``).

    Raises:
        MissingExtraError: The package is not installed (exit code 2), or is installed but fails to import
            (a broken or mismatched build): the message names the feature and the install command.
    """
    top = module.partition(".")[0]
    extra = EXTRAS[top]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        # Only the package itself missing is "not installed"; anything else is a broken install, said as such.
        missing = isinstance(exc, ModuleNotFoundError) and (exc.name or "").partition(".")[0] == top
        if missing:
            raise MissingExtraError(f"{feature} needs {top}, which is not installed",
                                    hint=f"install it with: {install_command(extra)}") from None
        raise MissingExtraError(f"{feature} needs {top}, which is installed but cannot be imported "
                                f"({first_line(exc)})",
                                hint=f"reinstall it: pip install --force-reinstall {top}") from None

