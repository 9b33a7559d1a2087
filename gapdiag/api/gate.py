"""The verbs of the regression gate: :func:`check` (a report, or a model measured now, against a baseline) and
:func:`compare` (reports, vectors and models side by side).

They load or measure the reports (through :mod:`gapdiag.api.measuring`, with their settings and device resolved
once), hand them to :mod:`gapdiag.check` to evaluate and render, and write the CI files. Nothing here prints;
remarks for the user come back in ``notes``. ``$GITHUB_STEP_SUMMARY`` is read here, at the door.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gapdiag import device as devices
from gapdiag import settings
from gapdiag.api.embedding import compared_vectors
from gapdiag.api.measuring import ModelComparison, compare_sources, inputs_of, measure_source, similarity_in
from gapdiag.api.options import (
    EMBED_DEFAULTS,
    MODEL_OPTIONS,
    READER_OPTIONS,
    EmbedOptions,
    check_seed,
    refuse_options,
    set_options,
)
from gapdiag.cache import EmbeddingCache
from gapdiag.check.compare import Comparison, compare_reports, comparison_to_markdown, similarity_to_markdown
from gapdiag.check.config import load_rules
from gapdiag.check.evaluate import CheckResult, check_reports, two_model_bases
from gapdiag.check.render import append_step_summary, to_junit_xml, to_markdown
from gapdiag.data.base import PairedDataset
from gapdiag.device import Device
from gapdiag.fsutil import atomic_write_text
from gapdiag.metrics.sampling import check_sample_size
from gapdiag.outputs import check_outputs, write_error
from gapdiag.report import Report
from gapdiag.settings import Settings
from gapdiag.vectors import EmbeddingSet


@dataclass
class CheckRun:
    """The outcome of :func:`check`: the evaluated rules, the current report, remarks."""

    result: CheckResult
    current: Report
    notes: list[str] = field(default_factory=list)


@dataclass
class CompareRun:
    """The outcome of :func:`compare`: the table, the reports, the item-by-item view of two models
    (:class:`~gapdiag.api.measuring.ModelComparison`), the figure."""

    comparison: Comparison
    reports: list[Report]
    similarity: ModelComparison | None = None
    figure: Path | None = None


def check(
    baseline: str | Path,
    report: str | Path | None = None,
    *,
    config: str | Path | None = None,
    bootstrap: int = 0,
    force: bool = False,
    sample: int | None = None,
    seed: int | None = None,
    out: str | Path | None = None,
    markdown: str | Path | None = None,
    junit: str | Path | None = None,
    data: str | Path | PairedDataset | EmbeddingSet | None = None,
    model: str | Path | None = None,
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
) -> CheckRun:
    """Gate a report (or a model measured now with the embedding options) against a baseline report.

    Args:
        baseline: The reference report JSON.
        report: The candidate report JSON; ``None`` = measure now.
        config: ``gapdiag.toml`` or ``pyproject.toml`` with the rules; ``None``: the nearest one, else defaults.
        bootstrap: When measuring now: bootstrap resamples for the noise-aware rules.
        force: Compare reports measured on different data, definitions or sampling (warns).
        sample, seed: When measuring now; ``None``: the baseline's (the provenance guard needs them equal).
        out: Save the current report here. markdown, junit: Also write the result for CI; the Markdown is
            appended to ``$GITHUB_STEP_SUMMARY`` when that is set.
        data, model, pretrained, ..., progress: As for :func:`gapdiag.api.embed`, to measure now.

    Returns:
        A :class:`CheckRun`; ``result.raise_for_regression()`` raises on a broken rule.

    Raises:
        InputError: With ``report``, an option that would measure now (data, model, reader, sampling options).
    """
    options = EmbedOptions(
        pretrained=pretrained, random_init=random_init, split=split, format=format, image_column=image_column,
        text_columns=text_columns, label_column=label_column, class_name_column=class_name_column,
        attribute_columns=attribute_columns, templates=templates, image_root=image_root, skip_bad=skip_bad,
        device=device, precision=precision, preprocess=preprocess, batch_size=batch_size, workers=workers,
        dtype=dtype, chunk_size=chunk_size, cache_dir=cache_dir, progress=progress)
    check_seed(seed)
    given = {"data": data, "model": model, **options.given(), "sample": sample, "seed": seed, "bootstrap": bootstrap}
    if report is not None:
        measuring = ("data", *MODEL_OPTIONS, *READER_OPTIONS, "device", "sample", "seed", "bootstrap")
        refuse_options(set_options(given, measuring, EMBED_DEFAULTS), f"a saved report (--report {report})",
                       "they measure the candidate now, --report reads it (measure with them first: "
                       "`gapdiag measure ... --out report.json`)")
    check_outputs({"--out": out, "--markdown": markdown, "--junit": junit},
                  {"--baseline": baseline, "--report": report, "--config": config,
                   **inputs_of(data, model, options)})
    at = settings.resolve(cache_dir)
    base = Report.load(baseline)
    rules = load_rules(config)
    if report is not None:
        current = Report.load(report)
    else:
        current = measure_like(base, data, model, options, at, devices.resolve(device), sample=sample, seed=seed,
                               bootstrap=bootstrap)
    if out is not None:
        current.save(out)
    notes: list[str] = []
    unavailable: dict[str, str] = {}
    bases = two_model_bases(rules)
    if bases:  # CKA / mutual k-NN against the baseline's cached vectors, when a rule asks for them
        values, note = similarity_in(EmbeddingCache(at.cache_root), base, current)
        current.metrics.update({k: v for k, v in values.items() if k.split("/")[0] in bases})
        if note is not None:
            notes.append(f"{', '.join(sorted(bases))} not checked: {note}")
            unavailable = {b: f"not computed: {note}" for b in bases}
    result = check_reports(current, base, rules, force=force, unavailable=unavailable)
    md = to_markdown(result)
    if markdown is not None:
        write_text(markdown, md, "--markdown")
    if junit is not None:
        write_text(junit, to_junit_xml(result), "--junit")
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        append_step_summary(md, summary)
    return CheckRun(result, current, notes)


def measure_like(reference: Report | None, data: Any, model: str | Path | None, options: EmbedOptions, at: Settings,
                 device: Device, *, sample: int | None, seed: int | None, bootstrap: int = 0) -> Report:
    """Measure now; sample size and seed default to the reference report's so that the provenance guard can pass
    (the size is checked first: a bad one costs no embedding)."""
    ref = ((reference.provenance or {}).get("sample") or {}) if reference is not None else {}
    size = sample if sample is not None else ref.get("size")
    check_sample_size(size)
    return measure_source(data, model, options, at, device, sample=size,
                          seed=seed if seed is not None else int(ref.get("seed") or 0), bootstrap=bootstrap)


def compare(
    reports: Sequence[str | Path] = (),
    models: Sequence[str] = (),
    *,
    labels: Sequence[str] | None = None,
    force: bool = False,
    sample: int | None = None,
    seed: int | None = None,
    markdown: str | Path | None = None,
    plot: str | Path | None = None,
    data: str | Path | PairedDataset | None = None,
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
) -> CompareRun:
    """Two or more reports, cache entries or models measured now, side by side (what ``gapdiag compare`` does).

    Args:
        reports: Report JSON files, cache entry directories or precomputed embedding files (``.npz``, a folder
            of ``.npy``, ``.parquet``); the first is the reference for deltas. Two sets of vectors (and nothing
            else) are also compared item by item, as :func:`gapdiag.api.compare_models` does.
        models: Models measured now on ``data``, appended after the reports.
        labels: Column labels, one per report and model.
        force: Compare reports measured on different data, definitions or sampling (warns).
        sample, seed: When measuring now; ``None``: the first report's.
        markdown: Also write the comparison as Markdown here. plot: Write ``compare.png`` into this folder.
        data, pretrained, ..., progress: As for :func:`gapdiag.api.embed`, for the models measured now.

    Returns:
        A :class:`CompareRun`: the comparison, the reports, the item-by-item view of two models (``similarity``)
        and the figure path.
    """
    options = EmbedOptions(
        pretrained=pretrained, random_init=random_init, split=split, format=format, image_column=image_column,
        text_columns=text_columns, label_column=label_column, class_name_column=class_name_column,
        attribute_columns=attribute_columns, templates=templates, image_root=image_root, skip_bad=skip_bad,
        device=device, precision=precision, preprocess=preprocess, batch_size=batch_size, workers=workers,
        dtype=dtype, chunk_size=chunk_size, cache_dir=cache_dir, progress=progress)
    check_seed(seed)
    check_outputs({"--markdown": markdown},
                  {"REPORTS": list(reports), **inputs_of(data, list(models), options)},
                  folders={"--plot": (plot, ["compare.png"])})
    at = settings.resolve(cache_dir)
    paths = [Path(p) for p in reports]
    names = [str(p) for p in paths] + list(models)
    vectors = {p: compared_vectors(p, at) for p in paths}
    sources = [vectors[p] for p in paths if vectors[p] is not None]
    refuse_unused_compare_options(models, bool(sources), {"data": data, **options.given(), "sample": sample,
                                                          "seed": seed})
    resolved = devices.resolve(device) if sources or models else None
    loaded = [Report.load(p) if vectors[p] is None else
              measure_like(None, vectors[p], None, EmbedOptions(progress=progress), at, resolved, sample=sample,
                           seed=seed) for p in paths]
    for m in models:
        loaded.append(measure_like(loaded[0] if loaded else None, data, m, options, at, resolved, sample=sample,
                                   seed=seed))
    similarity = None
    embedded = [*sources, *models]
    if len(embedded) == 2 and len(names) == 2:  # first: it refuses two sets of different items in one line
        similarity = compare_sources(embedded[0], embedded[1], data, dataclasses.replace(options, progress=False),
                                     at, resolved)
    # Two precomputed files always have two fingerprints; equal shapes and pairing are what there is to check.
    pair = len(sources) == 2 == len(names) and not any(es.provenance.get("key") for es in sources)
    comp = compare_reports(loaded, list(labels or names), force=force, precomputed_pair=pair)
    run = CompareRun(comp, loaded, similarity)
    if markdown is not None:
        md = comparison_to_markdown(comp)
        if run.similarity is not None:
            md += "\n" + similarity_to_markdown(run.similarity, comp.labels)
        write_text(markdown, md, "--markdown")
    if plot is not None:
        # matplotlib: imported only when a figure is asked for.
        from gapdiag.figures import plot_compare, save_figures

        run.figure = save_figures({"compare": plot_compare(loaded, comp.labels)}, plot)[0]
    return run


def refuse_unused_compare_options(models: Sequence[str], vectors: bool, options: dict[str, Any]) -> None:
    """Refuse what no column of a comparison uses: the data, model and reader options without a ``--model`` (only
    models are measured on ``--data``), and with saved reports alone also the sampling and the device.

    Raises:
        InputError: Naming the options.
    """
    if models:
        return
    unused: tuple[str, ...] = ("data", *MODEL_OPTIONS, *READER_OPTIONS)
    if not vectors:
        unused += ("sample", "seed", "device")
    refuse_options(set_options(options, unused, EMBED_DEFAULTS),
                   "compared reports and vectors" if vectors else "compared reports",
                   "only a --model is measured now, on --data" if vectors else
                   "saved reports are compared as they are, nothing is measured now")


def write_text(path: str | Path, text: str, option: str) -> None:
    """Write a CI output file (``--markdown``, ``--junit``) atomically (a CI step that reads it never sees half a
    file); an unwritable path is one line naming the option."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
    except OSError as e:
        raise write_error(path, e, what=f"{option} file", option=option) from None
