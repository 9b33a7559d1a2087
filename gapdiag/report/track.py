"""A checkpoint series measured on one dataset (``gapdiag track``): one report per checkpoint, ordered by step.

The JSON record (``gapdiag track --out track.json``, read by ``gapdiag plot --kind track --track track.json``)::

    {"kind": "gapdiag-track", "schema_version": 1,
     "points": [{"step": 1, "checkpoint": "run/checkpoints/epoch_1.pt", "report": {<a measure report>}}, ...]}

Each ``report`` is the whole report ``gapdiag measure`` gives for that checkpoint (the same JSON schema), so every
tool that reads reports reads a point. The table (:func:`track_rows`, the Parquet file) has one row per checkpoint:
``step``, ``checkpoint``, ``checkpoint_sha256``, then one float64 column per metric (null where a checkpoint's
report lacks it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gapdiag.data.parquet import arrow
from gapdiag.errors import InputError
from gapdiag.fsutil import atomic_path
from gapdiag.outputs import write_error
from gapdiag.report.record import Report, read_json, write_json

#: What the ``kind`` field of a track record says.
TRACK_KIND = "gapdiag-track"
TRACK_SCHEMA_VERSION = 1
#: The columns of the table before the metrics.
ROW_KEYS = ("step", "checkpoint", "checkpoint_sha256")


@dataclass
class TrackPoint:
    """One checkpoint of the series: its step, its file and its report."""

    step: int
    checkpoint: str
    report: Report


@dataclass
class Track:
    """The reports of a checkpoint series on one dataset, ordered by step."""

    points: list[TrackPoint]

    @property
    def metric_names(self) -> list[str]:
        """Every metric some point has, in the order the reports list them (first report first)."""
        names: dict[str, None] = {}
        for point in self.points:
            names.update(dict.fromkeys(point.report.metrics))
        return list(names)

    def to_dict(self, *, include_extras: bool = True) -> dict[str, Any]:
        return {"kind": TRACK_KIND, "schema_version": TRACK_SCHEMA_VERSION,
                "points": [{"step": p.step, "checkpoint": p.checkpoint,
                            "report": p.report.to_dict(include_extras=include_extras)} for p in self.points]}

    def save(self, path: str | Path) -> Path:
        """Write the record atomically (one line naming the path when it cannot be written)."""
        return write_json(self.to_dict(), path, what="track")

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "track") -> Track:
        """The record ``data`` (as :meth:`to_dict` writes it), checked: one line naming ``source`` and the point."""
        hint = "pass a file written by `gapdiag track --out`"
        if not isinstance(data, dict) or data.get("kind") != TRACK_KIND:
            raise InputError(f"{source}: not a gapdiag track record (no \"kind\": \"{TRACK_KIND}\")", hint=hint)
        if data.get("schema_version") != TRACK_SCHEMA_VERSION:
            raise InputError(f"{source}: track schema_version {data.get('schema_version')!r} is not supported "
                             f"(expected {TRACK_SCHEMA_VERSION})", hint="re-run `gapdiag track --out`")
        points = data.get("points")
        if not isinstance(points, list) or not points:
            raise InputError(f"{source}: 'points' must be a non-empty list", hint=hint)
        out: list[TrackPoint] = []
        for i, point in enumerate(points):
            where = f"{source}: point {i}"
            if not isinstance(point, dict) or not isinstance(point.get("step"), int) \
                    or isinstance(point.get("step"), bool) or not isinstance(point.get("checkpoint"), str):
                raise InputError(f"{where}: needs an integer 'step' and a 'checkpoint' path", hint=hint)
            out.append(TrackPoint(point["step"], point["checkpoint"], Report.from_dict(point.get("report"),
                                                                                       source=where)))
        steps = [p.step for p in out]
        if steps != sorted(set(steps)):
            raise InputError(f"{source}: the steps {steps} are not strictly increasing", hint=hint)
        return cls(out)

    @classmethod
    def load(cls, path: str | Path) -> Track:
        """Read a track record (one line naming the file when it is missing, unreadable, not JSON or not a
        record)."""
        return cls.from_dict(read_json(path, "track record", "gapdiag track --out"), source=str(path))


def track_rows(track: Track) -> list[dict[str, Any]]:
    """One row per checkpoint: :data:`ROW_KEYS`, then every metric (``None`` where a report lacks it)."""
    names = track.metric_names
    return [{"step": p.step, "checkpoint": p.checkpoint,
             "checkpoint_sha256": (p.report.provenance.get("model") or {}).get("checkpoint_sha256"),
             **{name: p.report.metrics.get(name) for name in names}} for p in track.points]


def write_track_parquet(track: Track, path: str | Path) -> Path:
    """Write :func:`track_rows` as Parquet atomically; the schema metadata ``gapdiag`` holds the dataset's
    provenance as JSON.

    Raises:
        MissingExtraError: pyarrow (the ``parquet`` extra) is not installed (:func:`gapdiag.api.track` checks
            that before measuring any checkpoint).
    """
    import json

    pa, pq = arrow(), arrow("pyarrow.parquet", path)
    rows = track_rows(track)
    names = track.metric_names
    columns = {"step": pa.array([r["step"] for r in rows], pa.int64()),
               "checkpoint": pa.array([r["checkpoint"] for r in rows], pa.string()),
               "checkpoint_sha256": pa.array([r["checkpoint_sha256"] for r in rows], pa.string()),
               **{name: pa.array([r[name] for r in rows], pa.float64()) for name in names}}
    dataset = track.points[0].report.provenance.get("dataset") if track.points else None
    table = pa.table(columns).replace_schema_metadata({"gapdiag": json.dumps({"dataset": dataset}, default=str)})
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
    except OSError as e:
        raise write_error(path, e, what="Parquet table", option="--parquet") from None
    return path
