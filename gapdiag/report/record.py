"""The versioned result record of a measurement (what ``measure --out`` writes and ``check`` reads).

Schema (``schema_version`` 1; documented in docs/report-schema.md)::

    {
      "schema_version": 1,
      "gapdiag_version": "0.1.0",
      "metric_definitions_version": 1,
      "created": "2026-11-25T12:00:00+00:00",
      "provenance": {
        "model": {"name": ..., "pretrained": ..., "checkpoint_sha256": ..., "config_sha256": ..., "precision": ...},
        "dataset": {"name": ..., "source": ..., "fingerprint": ..., "n_samples": ..., "counts": {...}},
        "sample": {"size": null | int, "seed": int},
        "device": "cpu"
      },
      "metrics": {"modality_gap/image-text": 0.81, "angular_value/image": 0.2, ...},
      "intervals": {"modality_gap/image-text": [lo, hi], ...},   # optional (bootstrap)
      "skipped": {"v_measure_class/joint": "needs class labels"},  # optional: metrics that did not apply, why
      "extras": {...}                                              # optional arrays as lists (gap vector, spectra)
    }

Metric names are ``base`` or ``base/qualifier``: the base is a key of the metric registry
(``gapdiag.metrics.REGISTRY``), the qualifier names the modality, modality pair (``image-text``), direction
(``text_to_image``) or set (``joint``) it was computed on.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gapdiag import __version__
from gapdiag.errors import InputError
from gapdiag.fsutil import atomic_write_json, json_default, loads_json
from gapdiag.outputs import output_file, write_error

SCHEMA_VERSION = 1
# Bump when a metric's definition changes so that old and new reports are never silently compared.
# 2: TwoNN on the distinct points (duplicates had collapsed it); separability below chance reads 1/M; values
#    within rounding past a registry bound are set to it, further out skipped (issue #25).
METRIC_DEFINITIONS_VERSION = 2


def split_metric_name(name: str) -> tuple[str, str | None]:
    """``"modality_gap/image-text"`` -> ``("modality_gap", "image-text")``."""
    base, _, qualifier = name.partition("/")
    return base, (qualifier or None)


@dataclass
class Report:
    """A measurement: metric values plus provenance. ``to_dict``/``from_dict`` round-trip the JSON schema."""

    metrics: dict[str, float]
    provenance: dict[str, Any] = field(default_factory=dict)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    gapdiag_version: str = __version__
    metric_definitions_version: int = METRIC_DEFINITIONS_VERSION
    schema_version: int = SCHEMA_VERSION

    def __getitem__(self, name: str) -> float:
        return self.metrics[name]

    @property
    def skipped(self) -> dict[str, str]:
        """Metrics that could not be computed on this data, each with its reason (``extras["skipped"]``)."""
        return dict(self.extras.get("skipped") or {})

    def to_dict(self, *, include_extras: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema_version": self.schema_version,
            "gapdiag_version": self.gapdiag_version,
            "metric_definitions_version": self.metric_definitions_version,
            "created": self.created,
            "provenance": self.provenance,
            "metrics": {k: _json_float(v) for k, v in self.metrics.items()},
        }
        if self.intervals:
            out["intervals"] = {k: [_json_float(a), _json_float(b)] for k, (a, b) in self.intervals.items()}
        if self.skipped:
            out["skipped"] = self.skipped  # top level: `--json` leaves extras out, but never the reasons
        extras = {k: v for k, v in self.extras.items() if k != "skipped"}
        if include_extras and extras:
            out["extras"] = extras
        return out

    def to_json(self, *, include_extras: bool = True, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(include_extras=include_extras), indent=indent, default=json_default)

    def save(self, path: str | Path) -> Path:
        """Write the report atomically (temp file + rename), so a crash never leaves half a report.

        Raises:
            InputError: The path cannot be written (one line naming it).
        """
        return write_json(self.to_dict(), path, what="report")

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "report") -> Report:
        if not isinstance(data, dict) or "metrics" not in data or not isinstance(data["metrics"], dict):
            raise InputError(f"{source}: not a gapdiag report (no 'metrics' object)",
                             hint="pass a file written by `gapdiag measure --out`")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise InputError(f"{source}: report schema_version {version!r} is not supported (expected {SCHEMA_VERSION})",
                             hint="re-run `gapdiag measure --out` with this gapdiag version")
        metrics: dict[str, float] = {}
        for k, v in data["metrics"].items():
            if v is None:
                metrics[k] = math.nan
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                metrics[k] = float(v)
            else:
                raise InputError(f"{source}: metric {k!r} has non-numeric value {v!r}",
                                 hint="metrics must map names to numbers")
        try:
            intervals = {k: (float(a), float(b)) for k, (a, b) in (data.get("intervals") or {}).items()}
        except (AttributeError, TypeError, ValueError):
            raise InputError(f"{source}: 'intervals' must map metric names to [low, high] pairs",
                             hint="pass a file written by `gapdiag measure --out`") from None
        if not all(isinstance(data.get(k) or {}, dict) for k in ("provenance", "skipped", "extras")):
            raise InputError(f"{source}: 'provenance', 'skipped' and 'extras' must be JSON objects",
                             hint="pass a file written by `gapdiag measure --out`")
        return cls(
            metrics=metrics,
            provenance=data.get("provenance", {}),
            intervals=intervals,
            extras={**(data.get("extras") or {}), **({"skipped": data["skipped"]} if data.get("skipped") else {})},
            created=data.get("created", ""),
            gapdiag_version=data.get("gapdiag_version", "unknown"),
            metric_definitions_version=data.get("metric_definitions_version", -1),
            schema_version=version,
        )

    @classmethod
    def load(cls, path: str | Path) -> Report:
        """Read a report (one line naming the file when it is missing, unreadable, not JSON or not a report)."""
        return cls.from_dict(read_json(path, "report", "gapdiag measure --out"), source=str(path))


def read_json(path: str | Path, what: str, written_by: str) -> Any:
    """The JSON in ``path``, a ``what`` that ``written_by`` writes (``"report"``, ``"gapdiag measure --out"``), or
    one line naming the file: not found, a folder, not UTF-8 text, not JSON (with its line), or unreadable.

    Raises:
        InputError: The file cannot be read as JSON, said as above.
    """
    path = Path(path)
    written = f"pass a {what} written by `{written_by}`"
    try:
        return loads_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found", hint=f"check the path or run `{written_by}` first") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path}:{e.lineno}: not valid JSON ({e.msg})", hint=written) from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a {what}",
                         hint=f"pass the {what} JSON file inside it") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file (not UTF-8), so not a {what}", hint=written) from None
    except OSError as e:
        raise InputError(f"{path}: cannot read the {what} ({e.strerror or e})",
                         hint="check the path and its permissions") from None


def write_json(obj: Any, path: str | Path, *, what: str = "file") -> Path:
    """Write ``obj`` as indented JSON atomically (temp file + rename): a crash never leaves half a file.

    Raises:
        InputError: The path is empty or names a folder (``out/``), or cannot be written (one line naming it and
            the ``what``).
    """
    path = output_file(path, what)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, obj, sort_keys=False, allow_nan=True)
    except OSError as e:
        raise write_error(path, e, what=what) from None
    return path


def _json_float(v: float) -> float | None:
    v = float(v)
    return None if math.isnan(v) or math.isinf(v) else v
