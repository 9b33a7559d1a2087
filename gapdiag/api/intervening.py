"""The verb :func:`intervene`: would closing the gap help this model? Every post-hoc intervention of
:mod:`gapdiag.training.interventions`, fitted on one part of the items and measured on another.

The fit part and the evaluation part never share a sample: by default a seeded split of the *samples* (an image
and all its captions land on the same side), or two named splits of a manifest (``fit_split``/``eval_split``),
which must differ and may not hold the same image twice. The metrics are measured on the evaluation part before
and after each transform, with the registry's own definitions (:func:`gapdiag.metrics.compute_all`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from gapdiag import __version__, settings
from gapdiag import device as devices
from gapdiag import metrics as metrics_package
from gapdiag.api.embedding import report_provenance, vectors_of
from gapdiag.api.measuring import image_and_text, inputs_of, status_printer
from gapdiag.api.options import EmbedOptions, check_seed
from gapdiag.check.bootstrap import resample_embedding_set
from gapdiag.data.base import PairedDataset
from gapdiag.errors import InputError
from gapdiag.outputs import check_outputs
from gapdiag.report import write_json
from gapdiag.vectors import EmbeddingSet

if TYPE_CHECKING:  # gapdiag.training.interventions imports SciPy: loaded only when an intervention runs
    from gapdiag.training.interventions import Intervention

#: Fit on at most this many items of each modality by default (``--fit-sample``).
DEFAULT_FIT_SAMPLE = 10_000
#: The metrics measured before and after, on the evaluation part (class metrics added when the data has them).
EVAL_METRICS: tuple[str, ...] = ("modality_gap", "gap_w2_squared", "gap_bures", "cos_tp", "recall_at_1",
                                 "recall_at_5", "hubness_skewness")
#: Table order of the metric bases (the registry's order interleaves them).
_ORDER = ("modality_gap", "gap_w2_squared", "gap_w2_centroid", "gap_bures", "cos_tp", "recall_at_1", "recall_at_5",
          "hubness_skewness", "v_measure_class", "zero_shot_accuracy")
#: The W2 split's centroid part ``‖Δ‖² = W2² − Bures``, added beside the registry's values under this base name.
CENTROID_PART = "gap_w2_centroid"

DEFINITION = (
    "Each method is fitted on the fit part (a seeded split of samples, or --fit-split) and applied to the "
    "evaluation part (the other samples, or --eval-split); never the same samples. Metrics are the registry's "
    "(docs/metrics.md), on the evaluation part before and after; gap_w2_centroid = gap_w2_squared - gap_bures "
    "(= modality_gap^2). Methods and formulas: docs/interventions.md."
)


class MethodResult(TypedDict):
    """One method's outcome: what was fitted, the metrics after, the change and its summary in words."""

    method: str
    #: The fitted scalars (``lambda``, ``k``, ``reg``...) and the fit's size (``n_fit_image``, ``n_fit_text``).
    params: dict[str, float]
    after: dict[str, float]
    #: after − before, per metric.
    change: dict[str, float]
    summary: str
    fit_seconds: float
    eval_seconds: float


class InterventionResult(TypedDict):
    """What :func:`intervene` returns (and writes to ``out``)."""

    methods: list[str]
    #: Metric names in table order.
    metrics: list[str]
    before: dict[str, float]
    results: dict[str, MethodResult]
    #: How the items were split: ``kind`` (``seeded`` or ``splits``), the seed or split names, the samples and
    #: items on each side, ``fit_sample`` (the cap) and the items each modality was fitted on.
    split: dict[str, Any]
    definition: str
    saved: str | None
    #: Remarks for the user (a method left out, and why).
    notes: list[str]
    provenance: dict[str, Any]


def intervene(
    data: str | Path | PairedDataset | EmbeddingSet | None = None,
    model: str | Path | None = None,
    *,
    methods: Sequence[str] | None = None,
    fit_split: str | None = None,
    eval_split: str | None = None,
    fit_fraction: float = 0.5,
    fit_sample: int = DEFAULT_FIT_SAMPLE,
    seed: int = 0,
    ot_reg: float | None = None,
    save: str | Path | None = None,
    out: str | Path | None = None,
    pretrained: str | None = None,
    random_init: bool = False,
    split: str | None = None,
    format: str | None = None,
    image_column: str | None = None,
    text_columns: Sequence[str] | None = None,
    label_column: str | None = None,
    class_name_column: str | None = None,
    attribute_columns: Sequence[str] | None = None,
    templates: Sequence[str] | None = None,
    image_root: str | Path | None = None,
    skip_bad: bool = False,
    device: str = "auto",
    precision: str = "fp32",
    preprocess: str = "auto",
    batch_size: int = 64,
    workers: int = 0,
    dtype: str = "float32",
    chunk_size: int | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> InterventionResult:
    """Fit every post-hoc intervention on one part of the items and measure it on another.

    Args:
        methods: Any of ``centering, gap_shift, ablation, procrustes, whitening, ot``; ``None``: all.
        fit_split: Fit on this split of the data (with ``eval_split``; the two must differ).
        eval_split: Measure on this split.
        fit_fraction: Without named splits, the share of samples (seeded) fitted on; the rest is evaluated.
        fit_sample: Fit on at most this many items of each modality (whole samples, seeded); ``ot`` on at most
            2,000 (its plan is dense).
        seed: Seed of the split, of the fit subsample and of the metrics' own draws.
        ot_reg: Entropic regularisation of ``ot``; ``None``: 0.05 (``DEFAULT_OT_REG`` of
            :mod:`gapdiag.training.interventions`).
        save: Write the fitted transform here (safetensors; needs exactly one method).
        out: Also write the result JSON here (for ``gapdiag plot --interventions``).
        data, model, pretrained, ..., progress: As for :func:`gapdiag.api.measure`.

    Returns:
        The :class:`InterventionResult`: the metrics before, and per method after, the change and a summary.

    Raises:
        InputError: Bad options (checked before any work), too few samples to split, the same split named twice
            or splits that share an image, a method that cannot be fitted on this data.
    """
    # SciPy (and POT for ot) only when an intervention runs, never on the import of the api.
    from gapdiag.training.interventions import DEFAULT_OT_REG, METHODS, OT_MAX_ITEMS, fit_intervention

    chosen = _check_request(METHODS, methods, fit_split, eval_split, split, fit_fraction, fit_sample, seed, save)
    chosen, notes = without_missing_ot(chosen, named=bool(methods))
    options = EmbedOptions(
        pretrained=pretrained, random_init=random_init, split=split, format=format, image_column=image_column,
        text_columns=text_columns, label_column=label_column, class_name_column=class_name_column,
        attribute_columns=attribute_columns, templates=templates, image_root=image_root, skip_bad=skip_bad,
        device=device, precision=precision, preprocess=preprocess, batch_size=batch_size, workers=workers,
        dtype=dtype, chunk_size=chunk_size, cache_dir=cache_dir, progress=progress)
    check_outputs({"--out": out, "--save": save}, inputs_of(data, model, options))
    resolved = devices.resolve(device)
    at = settings.resolve(cache_dir)
    if fit_split is not None:
        fit_es = vectors_of(data, model, dataclasses.replace(options, split=fit_split), at, resolved)
        eval_es = vectors_of(data, model, dataclasses.replace(options, split=eval_split), at, resolved)
        refuse_shared_items(fit_es, eval_es, fit_split, eval_split)
        split_info: dict[str, Any] = {"kind": "splits", "fit_split": fit_split, "eval_split": eval_split}
    else:
        es = vectors_of(data, model, options, at, resolved)
        fit_ids, eval_ids = held_out_samples(es.n_samples, fit_fraction, seed)
        fit_es, eval_es = resample_embedding_set(es, fit_ids), resample_embedding_set(es, eval_ids)
        split_info = {"kind": "seeded", "seed": seed, "fit_fraction": fit_fraction}
    image, text = image_and_text(eval_es)
    fit_es = cap_fit_items(fit_es, (image, text), fit_sample, seed)
    split_info.update(_sizes(fit_es, eval_es, (image, text), fit_sample), ot_max_items=OT_MAX_ITEMS)
    status = status_printer(progress)
    names = _metric_names(eval_es)
    search_on = str(devices.search_device(resolved))
    before = evaluate(eval_es, names, seed=seed, device=search_on)
    results: dict[str, MethodResult] = {}
    fitted: Intervention | None = None
    for method in chosen:
        if status is not None:
            status(f"{method}: fitting on {split_info['fit_items'][image]:,} {image} and "
                   f"{split_info['fit_items'][text]:,} {text} items")
        start = time.perf_counter()
        fitted = fit_intervention(method, fit_es.vectors[image], fit_es.vectors[text],
                                  x_sample=fit_es.sample_index[image], y_sample=fit_es.sample_index[text],
                                  seed=seed, ot_reg=DEFAULT_OT_REG if ot_reg is None else ot_reg)
        fit_seconds = time.perf_counter() - start
        if status is not None:
            status(f"{method}: measuring the evaluation part")
        start = time.perf_counter()
        after = evaluate(transformed(eval_es, fitted, image, text), names, seed=seed, device=search_on)
        change = {k: after[k] - before[k] for k in before if k in after}
        results[method] = {"method": method, "params": dict(fitted.params), "after": after, "change": change,
                           "summary": summary_in_words(method, before, after), "fit_seconds": fit_seconds,
                           "eval_seconds": time.perf_counter() - start}
    saved = None
    if save is not None and fitted is not None:
        from gapdiag.training.intervention_files import save_intervention  # safetensors: only when saving

        saved = str(save_intervention(fitted, save, version=__version__))
    result: InterventionResult = {
        "methods": list(chosen), "metrics": list(before), "before": before, "results": results,
        "split": split_info, "definition": DEFINITION, "saved": saved, "notes": notes,
        "provenance": report_provenance(eval_es, sample=None, seed=seed, device=resolved)}
    if out is not None:
        write_json(result, out, what="intervention result")
    return result


def apply_intervention(transform: str | Path | Intervention, vectors: Any, side: str = "image") -> np.ndarray:
    """Apply a fitted intervention (a file from ``gapdiag intervene --save`` or an :class:`Intervention`) to new
    ``(n, d)`` vectors: ``side="image"`` for images, ``"text"`` for texts and class embeddings.

    Returns:
        float32 unit rows, equal to what the fitting process computed for the same vectors.

    Raises:
        InputError: An unreadable or foreign file, bad vectors, a dimension other than the fit's.
    """
    from gapdiag.training.intervention_files import load_intervention  # SciPy, safetensors
    from gapdiag.training.interventions import Intervention

    if not isinstance(transform, Intervention):
        transform = load_intervention(transform)
    return transform.apply(vectors, side)


def _check_request(known: Sequence[str], methods: Sequence[str] | None, fit_split: str | None, eval_split: str | None,
                   split: str | None, fit_fraction: float, fit_sample: int, seed: int,
                   save: str | Path | None) -> list[str]:
    """Every option checked before any embedding; the methods to run, in the order of ``known``."""
    check_seed(seed)
    chosen = list(known) if not methods else list(dict.fromkeys(methods))
    unknown = [m for m in chosen if m not in known]
    if unknown:
        raise InputError(f"unknown --method {unknown[0]!r}", hint=f"choose from {', '.join(known)}")
    if (fit_split is None) != (eval_split is None):
        raise InputError("--fit-split and --eval-split go together",
                         hint="name both (e.g. --fit-split train --eval-split test), or neither for a seeded split")
    if fit_split is not None and fit_split == eval_split:
        raise InputError(f"--fit-split and --eval-split are both {fit_split!r}: an intervention fitted and "
                         "measured on the same items says nothing about new ones",
                         hint="name two different splits, or leave both out for a seeded split of the samples")
    if fit_split is not None and split is not None:
        raise InputError("--split does not apply with --fit-split/--eval-split",
                         hint="drop --split: the two splits say which items are read")
    if isinstance(fit_fraction, bool) or not (isinstance(fit_fraction, (int, float)) and 0 < fit_fraction < 1):
        raise InputError(f"--fit-fraction {fit_fraction!r} must lie strictly between 0 and 1",
                         hint="e.g. --fit-fraction 0.5: half of the samples fit, the other half evaluate")
    if isinstance(fit_sample, bool) or not isinstance(fit_sample, (int, np.integer)) or fit_sample < 2:
        raise InputError(f"--fit-sample {fit_sample!r} must be a whole number of at least 2",
                         hint=f"the default is {DEFAULT_FIT_SAMPLE:,} items per modality")
    if save is not None and len(chosen) != 1:
        raise InputError("--save writes one fitted transform: name one --method",
                         hint="e.g. --method centering --save centering.safetensors")
    return [m for m in known if m in chosen]


def pot_installed() -> bool:
    """Whether POT (the ``ot`` package of the extra ``gapdiag[ot]``) can be imported, without importing it."""
    return importlib.util.find_spec("ot") is not None


def without_missing_ot(chosen: list[str], *, named: bool) -> tuple[list[str], list[str]]:
    """``chosen`` without ``ot`` when POT is missing, and a note saying so; an error, before any work, when the
    user named ``ot``."""
    if "ot" not in chosen or pot_installed():
        return chosen, []
    if named:
        raise InputError("--method ot needs POT, the Python Optimal Transport library, which is not installed",
                         hint="pip install 'gapdiag[ot]' (or pip install pot), or leave out --method ot")
    return [m for m in chosen if m != "ot"], ["ot left out: POT is not installed (pip install 'gapdiag[ot]')"]


def held_out_samples(n_samples: int, fit_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split of the samples ``0..n_samples-1`` into fit and evaluation ids (sorted, disjoint, both
    non-empty): the first ``round(fit_fraction · n)`` of a seeded permutation fit, the rest evaluate.

    Raises:
        InputError: Fewer than 4 samples (each side needs at least 2 to measure anything).
    """
    if n_samples < 4:
        raise InputError(f"the data has {n_samples} sample(s): a held-out evaluation needs at least 4",
                         hint="use more data")
    order = np.random.default_rng(seed).permutation(n_samples)
    n_fit = min(max(round(fit_fraction * n_samples), 2), n_samples - 2)
    return np.sort(order[:n_fit]), np.sort(order[n_fit:])


def cap_fit_items(es: EmbeddingSet, modalities: Sequence[str], cap: int, seed: int) -> EmbeddingSet:
    """``es`` cut to whole samples (seeded order) so that no modality in ``modalities`` has more than ``cap``
    items; ``es`` itself when it is within the cap."""
    counts = {m: np.bincount(es.sample_index[m], minlength=es.n_samples) for m in modalities}
    if all(int(c.sum()) <= cap for c in counts.values()):
        return es
    order = np.random.default_rng(seed + 1).permutation(es.n_samples)  # not the split's permutation
    within = np.all([np.cumsum(counts[m][order]) <= cap for m in modalities], axis=0)
    keep = order[: max(int(np.argmin(within)) if not within.all() else within.size, 1)]
    return resample_embedding_set(es, np.sort(keep))


def refuse_shared_items(fit_es: EmbeddingSet, eval_es: EmbeddingSet, fit_split: str, eval_split: str) -> None:
    """Two named splits that hold the same image (the same vector) would measure the fit on what it saw."""
    image, _ = image_and_text(fit_es)
    seen = {np.ascontiguousarray(row).tobytes() for row in np.asarray(fit_es.vectors[image])}
    for i, row in enumerate(np.asarray(eval_es.vectors[image])):
        if np.ascontiguousarray(row).tobytes() in seen:
            raise InputError(f"{image} item {i} of split {eval_split!r} is also in split {fit_split!r} (the same "
                             "vector): the evaluation would not be held out",
                             hint="give each image one split in the manifest, or leave both out for a seeded split")


def _sizes(fit_es: EmbeddingSet, eval_es: EmbeddingSet, modalities: Sequence[str], cap: int) -> dict[str, Any]:
    return {"fit_samples": fit_es.n_samples, "eval_samples": eval_es.n_samples, "fit_sample": cap,
            "fit_items": {m: int(fit_es.vectors[m].shape[0]) for m in modalities},
            "eval_items": {m: int(eval_es.vectors[m].shape[0]) for m in modalities}}


def _metric_names(es: EmbeddingSet) -> list[str]:
    names = list(EVAL_METRICS)
    if es.labels is not None:
        names.append("v_measure_class")
        if es.class_embeddings is not None:
            names.append("zero_shot_accuracy")
    return names


def transformed(es: EmbeddingSet, t: Intervention, image: str, text: str) -> EmbeddingSet:
    """The two modalities of ``es`` moved by ``t`` (class embeddings move with the texts)."""
    classes = None if es.class_embeddings is None else t.apply(es.class_embeddings, "text")
    return dataclasses.replace(
        es, vectors={image: t.apply(es.vectors[image], "image"), text: t.apply(es.vectors[text], "text")},
        sample_index={image: es.sample_index[image], text: es.sample_index[text]}, class_embeddings=classes,
        attributes=None, attribute_embeddings=None)


def evaluate(es: EmbeddingSet, names: Sequence[str], *, seed: int, device: str) -> dict[str, float]:
    """The metrics ``names`` of ``es`` (exact, every item), plus the W2 centroid part of each pair."""
    values, _ = metrics_package.compute_all(es, list(names), seed=seed, device=device)
    for key in [k for k in values if k.startswith("gap_w2_squared/")]:
        pair = key.split("/", 1)[1]
        values[f"{CENTROID_PART}/{pair}"] = values[key] - values[f"gap_bures/{pair}"]
    rank = {base: i for i, base in enumerate(_ORDER)}
    return dict(sorted(values.items(), key=lambda kv: rank.get(kv[0].split("/")[0], len(rank))))


def _closed(before: float, after: float) -> str:
    if before <= 0:
        return "none (there was none)"
    share = 1.0 - after / before
    return f"{share:.0%}".replace("%", " %") if share >= 0 else f"none (it grows {-share:.0%})".replace("%", " %")


def summary_in_words(method: str, before: dict[str, float], after: dict[str, float]) -> str:
    """E.g. ``centering closes 97 % of the centroid gap and 2 % of the shape gap; R@1 image→text +0.4 points,
    text→image -0.2 points; class V-Measure +6.0 points``: the centroid gap is ``‖Δ‖``, the shape gap the
    Bures term, points are hundredths of the metric."""
    def first(base: str) -> str | None:
        return next((k for k in before if k.startswith(base + "/") and k in after), None)

    parts = []
    gap, bures = first("modality_gap"), first("gap_bures")
    if gap and bures:
        parts.append(f"{method} closes {_closed(before[gap], after[gap])} of the centroid gap and "
                     f"{_closed(before[bures], after[bures])} of the shape gap")
    recalls = [k for k in before if k.startswith("recall_at_1/") and k in after]
    if recalls:
        parts.append("R@1 " + ", ".join(f"{k.split('/')[1].replace('_to_', '→')} "
                                        f"{100 * (after[k] - before[k]):+.1f} points" for k in recalls))
    for base, label in (("v_measure_class", "class V-Measure"), ("zero_shot_accuracy", "zero-shot accuracy")):
        key = first(base)
        if key:
            parts.append(f"{label} {100 * (after[key] - before[key]):+.1f} points")
    return "; ".join(parts)
