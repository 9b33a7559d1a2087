"""``gapdiag check`` (regression gate against a baseline report) and ``gapdiag compare`` (side by side).

Parsing and printing only: :func:`gapdiag.api.check` and :func:`gapdiag.api.compare` do the work (rules,
evaluation and every output format live in :mod:`gapdiag.check`).
Exit codes of ``check``: 0 every rule holds, 1 regression (:class:`gapdiag.check.RegressionError`), 2 bad usage
or input (a :class:`gapdiag.errors.GapdiagError` or a typer usage error), 3 the gate could not decide
(:class:`gapdiag.check.GateUndecidedError`), 70 a bug (:data:`gapdiag.cli.INTERNAL_ERROR`); :func:`gapdiag.cli.run`
prints one line.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.table import Table

from gapdiag import api
from gapdiag.commands.common import (
    FLAG,
    BatchSizeOpt,
    CacheDirOpt,
    ClassNameColumnOpt,
    Command,
    DataArg,
    DataFormatOpt,
    DeviceOpt,
    DtypeOpt,
    EmbeddingOptions,
    ImageColumnOpt,
    ImageRootOpt,
    JsonOpt,
    LabelColumnOpt,
    ModelOpt,
    PrecisionOpt,
    PreprocessOpt,
    PretrainedOpt,
    QuietOpt,
    RandomInitOpt,
    SkipBadOpt,
    SplitOpt,
    TemplateOpt,
    TextColumnOpt,
    WorkersOpt,
    console,
    print_json,
)
from gapdiag.commands.printing import print_labelled, print_table

format_value, format_delta = api.presentation.format_value, api.presentation.format_delta

if TYPE_CHECKING:
    from gapdiag.api import CheckResult, Comparison

SampleOpt = Annotated[
    int | None,
    typer.Option(
        "--sample",
        help="Samples for the quadratic metrics when measuring now; default: the baseline's.",
    ),
]
SeedOpt = Annotated[
    int | None,
    typer.Option(
        "--seed",
        help="Seed when measuring now; default: the baseline's (the provenance guard needs them equal).",
    ),
]
ForceOpt = Annotated[
    bool,
    typer.Option(
        "--force", metavar=FLAG, help="Compare reports measured on different data, metric definitions or sampling, or (check) "
                        "random-init weights against trained ones (warns)."
    ),
]
MarkdownOpt = Annotated[
    Path | None,
    typer.Option(
        "--markdown", path_type=str, help="Also write the result as a Markdown table to this file.",
        rich_help_panel="Output",
    ),
]
BaselineOpt = Annotated[
    Path, typer.Option("--baseline", help="The reference report JSON (`gapdiag measure --out`).")
]
ReportOpt = Annotated[
    Path | None,
    typer.Option(
        "--report", "-r", help="The candidate's report JSON; without it, measure now with the model/data options."
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="gapdiag.toml or pyproject.toml with the rules; default: the nearest one, "
        "else built-in defaults (docs/check.md).",
    ),
]
BootstrapOpt = Annotated[
    int,
    typer.Option(
        "--bootstrap", min=0, help="When measuring now: bootstrap resamples for the noise-aware rules (0 = off)."
    ),
]
JunitOpt = Annotated[
    Path | None,
    typer.Option(
        "--junit", path_type=str, help="Also write JUnit XML (one test case per metric) to this file.",
        rich_help_panel="Output",
    ),
]
OutOpt = Annotated[
    Path | None,
    typer.Option(
        "--out",
        "-o",
        path_type=str,
        help="Write the current report JSON here (useful when measuring now).",
        rich_help_panel="Output",
    ),
]

_STATUS_STYLE = {"pass": "[green]pass[/]", "fail": "[bold red]FAIL[/]", "skip": "[dim]skip[/]"}


CompareMarkdownOpt = Annotated[
    Path | None,
    typer.Option(
        "--markdown",
        path_type=str,
        help="Also write the comparison as Markdown to this file (e.g. for a PR comment); with two checkpoints "
        "or cache entries, what changed item by item too.",
        rich_help_panel="Output",
    ),
]
CompareSampleOpt = Annotated[
    int | None,
    typer.Option(
        "--sample",
        help="Samples for the quadratic metrics when measuring --model now; default: the first report's.",
    ),
]
CompareSeedOpt = Annotated[
    int | None,
    typer.Option(
        "--seed",
        help="Seed when measuring --model now; default: the first report's (the provenance guard needs them "
        "equal).",
    ),
]


def register(app: typer.Typer) -> None:
    """Add ``check`` and ``compare`` to the gapdiag app."""
    app.command(
        cls=Command,
        epilog=(
            "Examples:\n\n"
            "`gapdiag check --baseline baseline.json --report new.json`\n\n"
            "`gapdiag check --baseline baseline.json -m new.pt -d data.csv --junit junit.xml --markdown summary.md`\n\n"
            "Exit codes: 0 every rule holds; 1 regression (a rule failed); 2 bad usage or input (unreadable report "
            "or config, reports that must not be compared, a rule no value can meet); 3 the gate could not decide "
            "(it checked nothing, or read impossible values such as a gap of -5); 70 internal error (a bug). "
            "Rules: docs/check.md."
        )
    )(check)
    app.command(
        cls=Command,
        epilog=(
            "Examples:\n\n"
            "`gapdiag compare base.json new.json`\n\n"
            "`gapdiag compare -d data.csv -m epoch1.pt -m epoch2.pt --plot figs/`\n\n"
            "`gapdiag compare released.npz candidate.npz` (two precomputed sets of the same items)"
        )
    )(compare)


def check(
    baseline: BaselineOpt,
    report: ReportOpt = None,
    config: ConfigOpt = None,
    bootstrap: BootstrapOpt = 0,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    markdown: MarkdownOpt = None,
    junit: JunitOpt = None,
    out: OutOpt = None,
    sample: SampleOpt = None,
    seed: SeedOpt = None,
    quiet: QuietOpt = False,
    data: DataArg = None,
    model: ModelOpt = None,
    pretrained: PretrainedOpt = None,
    random_init: RandomInitOpt = False,
    split: SplitOpt = None,
    image_column: ImageColumnOpt = None,
    text_column: TextColumnOpt = None,
    label_column: LabelColumnOpt = None,
    class_name_column: ClassNameColumnOpt = None,
    template: TemplateOpt = None,
    image_root: ImageRootOpt = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "fp32",
    batch_size: BatchSizeOpt = 64,
    workers: WorkersOpt = 0,
    cache_dir: CacheDirOpt = None,
    dtype: DtypeOpt = "float32",
    skip_bad: SkipBadOpt = False,
    data_format: DataFormatOpt = None,
    preprocess: PreprocessOpt = "auto",
) -> None:
    """Gate a model release: compare a report (or a checkpoint measured now) with a baseline report.

    Every metric is checked against the rules of gapdiag.toml (or built-in defaults): tolerated worsening,
    hard bounds, optional bootstrap-noise awareness. Prints a table; writes Markdown/JUnit/JSON for CI; appends
    the Markdown to $GITHUB_STEP_SUMMARY when it is set. Exit 0 when every rule holds, 1 on a regression, 3 when
    the gate could not decide (see the exit codes below).
    """
    embedding = EmbeddingOptions(
        data=data, model=model, pretrained=pretrained, random_init=random_init, split=split,
        image_column=image_column, text_column=text_column, label_column=label_column,
        class_name_column=class_name_column, template=template, image_root=image_root, device=device,
        precision=precision, batch_size=batch_size, workers=workers, cache_dir=cache_dir, dtype=dtype,
        skip_bad=skip_bad, data_format=data_format, preprocess=preprocess)
    run = api.check(baseline, report, config=config, bootstrap=bootstrap, force=force, sample=sample, seed=seed,
                    out=out, markdown=markdown, junit=junit, **embedding.api_kwargs(quiet=quiet or json_out))
    print_labelled("note", run.notes)
    result = run.result
    print_labelled("warning", result.warnings)
    if json_out:
        print_json(api.check_json(result))
    else:
        _print_check(result)
    result.raise_for_regression()


def _print_check(result: CheckResult) -> None:
    table = Table(
        title="gapdiag check",
        caption=f"rules: {result.config or 'built-in defaults'}",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for col, justify in (
        ("metric", "left"),
        ("baseline", "right"),
        ("current", "right"),
        ("delta", "right"),
        ("rule", "left"),
        ("status", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for o in result.outcomes:
        table.add_row(
            o.name,
            format_value(o.baseline),
            format_value(o.current),
            format_delta(o.delta),
            o.rule or "—",
            _STATUS_STYLE[o.status],
        )
    # On a narrow terminal the rule text folds; metric names, numbers and statuses stay whole.
    print_table(table, give_way=("rule",))
    for o in result.outcomes:
        if o.status == "fail":
            console.print(f"[red]❌ {o.name}[/]: {o.reason}", highlight=False)
    if result.passed:
        console.print(f"[green]{result.summary()}[/]")


def compare(
    reports: Annotated[
        list[Path] | None,
        typer.Argument(help="Report JSON files, cache entry directories (`gapdiag cache ls`) or precomputed "
                       "embedding files (.npz, .npy folder, .parquet: the parquet extra); the first is the reference for "
                       "deltas.",
                       show_default=False),
    ] = None,
    models: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            "-m",
            help="Measure this checkpoint/model on --data (repeat; appended after the reports). "
            "--pretrained applies to every --model.",
            rich_help_panel="Model",
        ),
    ] = None,
    labels: Annotated[
        list[str] | None,
        typer.Option(
            "--label",
            "-l",
            help="Column label per report/model, in order (repeat); default: file or model names.",
        ),
    ] = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    markdown: CompareMarkdownOpt = None,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot", path_type=str, help="Write the comparison figure to DIR/compare.png.",
            rich_help_panel="Output",
        ),
    ] = None,
    sample: CompareSampleOpt = None,
    seed: CompareSeedOpt = None,
    quiet: QuietOpt = False,
    data: DataArg = None,
    pretrained: PretrainedOpt = None,
    random_init: RandomInitOpt = False,
    split: SplitOpt = None,
    image_column: ImageColumnOpt = None,
    text_column: TextColumnOpt = None,
    label_column: LabelColumnOpt = None,
    class_name_column: ClassNameColumnOpt = None,
    template: TemplateOpt = None,
    image_root: ImageRootOpt = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "fp32",
    batch_size: BatchSizeOpt = 64,
    workers: WorkersOpt = 0,
    cache_dir: CacheDirOpt = None,
    dtype: DtypeOpt = "float32",
    skip_bad: SkipBadOpt = False,
    data_format: DataFormatOpt = None,
    preprocess: PreprocessOpt = "auto",
) -> None:
    """Compare two or more reports (or checkpoints measured now on the same data) side by side.

    Deltas are against the first column; each says in words whether the change is better, worse or the same
    (coloured green or red on a terminal; direction from the metric registry). With exactly two checkpoints (`-m A -m B`), cache entries or
    precomputed embedding files of the same items, also what changed item by item: linear CKA, mutual k-NN and
    the items whose neighbourhoods changed most.
    """
    embedding = EmbeddingOptions(
        data=data, pretrained=pretrained, random_init=random_init, split=split, image_column=image_column,
        text_column=text_column, label_column=label_column, class_name_column=class_name_column,
        template=template, image_root=image_root, device=device, precision=precision, batch_size=batch_size,
        workers=workers, cache_dir=cache_dir, dtype=dtype, skip_bad=skip_bad, data_format=data_format,
        preprocess=preprocess)
    paths, models = list(reports or []), list(models or [])
    if len(paths) + len(models) < 2:
        raise typer.BadParameter(
            "compare needs at least two reports or --model options, e.g. "
            "`gapdiag compare base.json new.json`",
            param_hint="REPORTS",
        )
    names = [str(p) for p in paths] + models
    if labels and len(labels) != len(names):
        raise typer.BadParameter(
            f"{len(labels)} labels for {len(names)} reports/models: give one per column", param_hint="--label"
        )
    run = api.compare(paths, models, labels=labels, force=force, sample=sample, seed=seed, markdown=markdown,
                      plot=plot, **embedding.api_kwargs(quiet=quiet or json_out, model=False))
    comp, similarity = run.comparison, run.similarity
    if run.figure is not None and not json_out:
        console.print(f"figure written to {run.figure}")
    print_labelled("warning", comp.warnings)
    if json_out:
        out = api.comparison_json(comp)
        if similarity is not None:
            out["similarity"] = similarity
        print_json(out)
    else:
        headers = short_labels(comp.labels)
        print_table(_comparison_table(comp, headers), give_way=("metric",))
        for header, label in zip(headers, comp.labels):
            if header != label:  # the footnote: what each short column header stands for
                console.print(f"{header}: {label}", highlight=False, soft_wrap=True)
        if similarity is not None:
            _print_similarity(similarity, headers)


def _print_similarity(similarity: dict[str, Any], labels: list[str], shown: int = 5) -> None:
    """The item-by-item view of two checkpoints: CKA and mutual k-NN per set, then the most-changed items."""
    table = Table(title=f"what changed: {labels[0]} → {labels[1]}", box=box.SIMPLE_HEAD, pad_edge=False,
                  caption=api.presentation.SIMILARITY_NOTE)
    first, *others = api.presentation.SIMILARITY_COLUMNS
    table.add_column(first.lower(), no_wrap=True)
    for header in others:
        table.add_column(header[0].lower() + header[1:], justify="right")
    for row in api.presentation.similarity_rows(similarity):
        table.add_row(*row)
    console.print(table)
    for modality, items in api.presentation.most_changed(similarity, shown):
        console.print(f"[bold]{modality}[/]: items whose neighbours changed most", highlight=False)
        for row, sample, overlap, what in items:
            console.print(f"  {row} (sample {sample}) overlap {overlap}  {what}", highlight=False, soft_wrap=True)


#: The change against the first column, in words: a CI log has no colour, and ▼ is better for a gap but
#: worse for a recall.
_VERDICT_STYLE = {"better": "green", "worse": "red", "same": "dim"}


def short_labels(labels: list[str]) -> list[str]:
    """Column headers for ``labels``: a report or checkpoint path becomes its file name without the suffix
    (``runs/a/epoch3.json`` -> ``epoch3``), numbered where two coincide; other labels stay as they are."""
    stems = [Path(label).stem if Path(label).suffix.lower() in _FILE_SUFFIXES or "/" in label else label
             for label in labels]
    stems = [stem or label for stem, label in zip(stems, labels)]
    if len(set(stems)) == len(stems):
        return stems
    return [f"{i}:{stem}" for i, stem in enumerate(stems, 1)]


_FILE_SUFFIXES = frozenset({".json", ".safetensors", ".pt", ".pth", ".bin"})


def _comparison_table(comp: Comparison, headers: list[str]) -> Table:
    """Values side by side; after each column but the first its delta and verdict, each a cell of its own, so
    that values, deltas and words line up and never run together (``gapdiag compare | cat``)."""
    table = Table(
        title="gapdiag compare",
        caption="Δ against the first column; better/worse by each metric's direction",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("metric")
    table.add_column("better", justify="center")
    table.add_column(headers[0], justify="right")
    for header in headers[1:]:
        table.add_column(header, justify="right")
        table.add_column("Δ", justify="right")
        table.add_column("", justify="left")
    for row in comp.rows:
        cells = [row.metric, {"higher": "↑", "lower": "↓", None: ""}[row.direction], format_value(row.values[0])]
        for value, delta, verdict in zip(row.values[1:], row.deltas[1:], row.verdicts[1:]):
            style = _VERDICT_STYLE.get(verdict or "", "dim")
            word = verdict if verdict in ("better", "worse") else ""
            shown = "" if math.isnan(delta) else format_delta(delta)  # absent on one side: no delta
            cells += [format_value(value), f"[{style}]{shown}[/]", f"[{style}]{word}[/]"]
        table.add_row(*cells)
    return table
