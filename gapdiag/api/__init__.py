"""The library API that the CLI and notebooks call: the one door.

>>> import gapdiag
>>> report = gapdiag.measure()                       # bundled tiny CLIP on bundled digits, offline
>>> report["modality_gap/image-text"]                # doctest: +SKIP
0.71
>>> es = gapdiag.embed("captions.csv", "ViT-B-32", pretrained="laion2b_s34b_b79k")  # doctest: +SKIP

Every verb takes paths or in-memory objects as explicit keywords, resolves its settings once (the cache root,
the device) and returns a documented object: :class:`~gapdiag.vectors.EmbeddingSet`,
:class:`~gapdiag.report.Report`, a dataclass (:class:`PlotResult`, :class:`ReportPage`, :class:`CheckRun`,
:class:`CompareRun`, :class:`~gapdiag.training.train.TrainResult`) or a typed mapping (:class:`ShiftResult`,
:class:`ModelComparison`, :class:`InterventionResult`, :class:`~gapdiag.cache.EntrySummary`, :class:`~gapdiag.cache.EntryCheck`). Nothing
here prints except the optional progress display on stderr.

The verbs live in one module per group, as the commands do: :mod:`~gapdiag.api.embedding` (``embed``,
``load_data``, ``load_model``), :mod:`~gapdiag.api.measuring` (``measure``, ``shift``, ``compare_models``),
:mod:`~gapdiag.api.intervening` (``intervene``, ``apply_intervention``),
:mod:`~gapdiag.api.exporting` (``export``, ``parquet_shape``), :mod:`~gapdiag.api.drawing` (``plot``, ``report``),
:mod:`~gapdiag.api.gate` (``check``, ``compare``), :mod:`~gapdiag.api.tracking` (``track``),
:mod:`~gapdiag.api.training` (``train``), :mod:`~gapdiag.api.caching` (``cache_ls``, ``cache_verify``,
``cache_rm``, ``cache_dir``) and :mod:`~gapdiag.api.catalog` (``models``); the options they
share are :mod:`~gapdiag.api.options`. Names marked "for the CLI" are what the commands, which import only this
door, show besides the verbs' results.
"""

from __future__ import annotations

from gapdiag.api.caching import cache_dir, cache_ls, cache_rm, cache_verify
from gapdiag.api.catalog import ModelCatalog, models
from gapdiag.api.drawing import PlotResult, ReportPage, plot, report
from gapdiag.api.embedding import (
    BUNDLED_CHECKPOINTS,
    DEFAULT_CHECKPOINT,
    bundled_checkpoint,
    embed,
    load_data,
    load_model,
)
from gapdiag.api.exporting import export, parquet_shape  # parquet_shape: for the CLI
from gapdiag.api.gate import CheckRun, CompareRun, check, compare
from gapdiag.api.intervening import (
    DEFAULT_FIT_SAMPLE,  # for the CLI
    InterventionResult,
    MethodResult,
    apply_intervention,
    intervene,
)
from gapdiag.api.measuring import (
    ModelComparison,
    ShiftResult,
    compare_models,
    measure,
    shift,
    similarity_to_baseline,
)
from gapdiag.api.options import EmbedOptions
from gapdiag.api.tracking import track
from gapdiag.api.training import train
from gapdiag.cache import KEY_LENGTH as CACHE_KEY_LENGTH  # for the CLI
from gapdiag.cache import EntryCheck, EntrySummary
from gapdiag.check.compare import Comparison  # for the CLI
from gapdiag.check.compare import comparison_to_json as comparison_json  # for the CLI
from gapdiag.check.evaluate import CheckResult  # for the CLI
from gapdiag.check.render import to_json as check_json  # for the CLI
from gapdiag.embedding.distributed import is_main_process  # for the CLI
from gapdiag.fsutil import json_default  # for the CLI: the JSON encoding of --json output
from gapdiag.progress import LogConsole  # for the CLI: whole lines off a terminal
from gapdiag.report import Report, presentation  # presentation: for the CLI (how numbers are shown)
from gapdiag.report.references import references_for  # for the CLI
from gapdiag.report.track import Track, TrackPoint, track_rows
from gapdiag.training.train import TrainResult
from gapdiag.vectors import EmbeddingSet


def parse_metric_list(text: str | None) -> list[str] | None:
    """``"modality_gap, cos_tp"`` -> ``["modality_gap", "cos_tp"]``; ``None``/empty -> ``None`` (every metric)."""
    names = [m.strip() for m in (text or "").split(",") if m.strip()]
    return names or None


__all__ = [
    "BUNDLED_CHECKPOINTS",
    "CACHE_KEY_LENGTH",
    "DEFAULT_CHECKPOINT",
    "DEFAULT_FIT_SAMPLE",
    "CheckResult",
    "CheckRun",
    "CompareRun",
    "Comparison",
    "EmbedOptions",
    "EmbeddingSet",
    "EntryCheck",
    "EntrySummary",
    "InterventionResult",
    "LogConsole",
    "MethodResult",
    "ModelCatalog",
    "ModelComparison",
    "PlotResult",
    "Report",
    "ReportPage",
    "ShiftResult",
    "Track",
    "TrackPoint",
    "TrainResult",
    "apply_intervention",
    "bundled_checkpoint",
    "cache_dir",
    "cache_ls",
    "cache_rm",
    "cache_verify",
    "check",
    "check_json",
    "compare",
    "compare_models",
    "comparison_json",
    "embed",
    "export",
    "intervene",
    "is_main_process",
    "json_default",
    "load_data",
    "load_model",
    "measure",
    "models",
    "parquet_shape",
    "parse_metric_list",
    "plot",
    "presentation",
    "references_for",
    "report",
    "shift",
    "similarity_to_baseline",
    "track",
    "track_rows",
    "train",
]
