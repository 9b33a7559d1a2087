"""Errors that the CLI turns into one clear line (no traceback unless ``--debug``).

Every error a user can cause by bad input derives from :class:`GapdiagError`. The message must say what is
wrong, where (file, row, column) and how to fix it, in one line.
"""

from __future__ import annotations


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
