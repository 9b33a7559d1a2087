"""What ``gapdiag check`` and ``gapdiag compare`` do, as library calls behind :func:`gapdiag.api.check` and
:func:`gapdiag.api.compare`: load or measure the reports, evaluate, write the CI files.

Nothing here prints; remarks for the user come back in ``notes``. The api hands in its own ``measure`` (and
the two-model comparisons) so that one code path serves the CLI and notebooks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gapdiag.check.compare import Comparison, compare_reports, comparison_to_markdown, similarity_to_markdown
from gapdiag.check.config import load_rules
from gapdiag.check.evaluate import CheckResult, check_reports, two_model_bases
from gapdiag.check.render import append_step_summary, to_junit_xml, to_markdown
from gapdiag.fsutil import atomic_write_text
from gapdiag.options import EMBED_DEFAULTS, MODEL_OPTIONS, READER_OPTIONS, refuse_options, set_options
from gapdiag.outputs import write_error
from gapdiag.report import Report
from gapdiag.vectors import EmbeddingSet

Measure = Callable[..., Report]


@dataclass
class CheckRun:
    """The outcome of :func:`gapdiag.api.check`: the evaluated rules, the current report, remarks."""

    result: CheckResult
    current: Report
    notes: list[str] = field(default_factory=list)


@dataclass
class CompareRun:
    """The outcome of :func:`gapdiag.api.compare`: the table, the item-by-item view of two models, the figure."""

    comparison: Comparison
    reports: list[Report]
    similarity: dict[str, Any] | None = None
    figure: Path | None = None


def measure_like(measure: Measure, reference: Report | None, *, sample: int | None, seed: int | None,
                 bootstrap: int = 0, **options: Any) -> Report:
    """Measure now; sample size and seed default to the reference report's so that the provenance guard can pass."""
    ref = ((reference.provenance or {}).get("sample") or {}) if reference is not None else {}
    return measure(sample=sample if sample is not None else ref.get("size"),
                   seed=seed if seed is not None else int(ref.get("seed") or 0), bootstrap=bootstrap, **options)


def run_check(
    measure: Measure,
    similarity_to_baseline: Callable[..., tuple[dict[str, float], str | None]],
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
    **embed_options: Any,
) -> CheckRun:
    """Gate ``report`` (or a model measured now) against ``baseline`` (see :func:`gapdiag.api.check`)."""
    base = Report.load(baseline)
    rules = load_rules(config)
    if report is not None:
        current = Report.load(report)
    else:
        current = measure_like(measure, base, sample=sample, seed=seed, bootstrap=bootstrap, **embed_options)
    if out is not None:
        current.save(out)
    notes: list[str] = []
    unavailable: dict[str, str] = {}
    bases = two_model_bases(rules)
    if bases:  # CKA / mutual k-NN against the baseline's cached vectors, when a rule asks for them
        values, note = similarity_to_baseline(base, current, cache_dir=embed_options.get("cache_dir"))
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
    append_step_summary(md)
    return CheckRun(result, current, notes)


def run_compare(
    measure: Measure,
    compare_models: Callable[..., dict[str, Any]],
    load_vectors: Callable[[Path], EmbeddingSet | None],
    reports: Sequence[str | Path] = (),
    models: Sequence[str] = (),
    *,
    labels: Sequence[str] | None = None,
    force: bool = False,
    sample: int | None = None,
    seed: int | None = None,
    markdown: str | Path | None = None,
    plot: str | Path | None = None,
    **embed_options: Any,
) -> CompareRun:
    """Reports, vectors (cache entries, precomputed files) and models measured now, side by side (see
    :func:`gapdiag.api.compare`); ``load_vectors`` gives a path's vectors, or None for a report file."""
    paths = [Path(p) for p in reports]
    names = [str(p) for p in paths] + list(models)
    vectors = {p: load_vectors(p) for p in paths}
    sources = [vectors[p] for p in paths if vectors[p] is not None]
    refuse_unused_compare_options(models, bool(sources), {**embed_options, "sample": sample, "seed": seed})
    measuring = {k: v for k, v in embed_options.items() if k in ("device", "progress")}
    loaded = [Report.load(p) if vectors[p] is None else
              measure_like(measure, None, sample=sample, seed=seed, data=vectors[p], **measuring) for p in paths]
    for m in models:
        loaded.append(measure_like(measure, loaded[0] if loaded else None, sample=sample, seed=seed,
                                   **{**embed_options, "model": m}))
    similarity = None
    embedded = [*sources, *models]
    if len(embedded) == 2 and len(names) == 2:  # first: it refuses two sets of different items in one line
        rest = {k: v for k, v in embed_options.items() if k not in ("progress", "model", "data")}
        similarity = compare_models(embedded[0], embedded[1], embed_options.get("data"), progress=False, **rest)
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
        from gapdiag.figures.compare import plot_compare
        from gapdiag.figures.files import save_figures

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
