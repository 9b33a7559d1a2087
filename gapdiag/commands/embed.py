"""``gapdiag embed``, ``gapdiag measure`` and ``gapdiag shift``: parsing and printing over :mod:`gapdiag.api`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from gapdiag import api
from gapdiag.commands.common import (
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
    SeedOpt,
    SkipBadOpt,
    SplitOpt,
    TemplateOpt,
    TextColumnOpt,
    WorkersOpt,
    console,
    one_of,
    print_json,
)
from gapdiag.commands.printing import (
    print_labelled,
    print_skipped,
    print_table,
    reference_lines,
    report_table,
)
from gapdiag.errors import InputError

_EMBED_EPILOG = "Example: `gapdiag embed --data captions.csv --model ViT-B-32 --pretrained laion2b_s34b_b79k`"
_MEASURE_EPILOG = (
    "Examples:\n\n"
    "`gapdiag measure` (bundled tiny CLIP + digits, offline)\n\n"
    "`gapdiag measure -d coco/captions_val2017.json -m ViT-B-32 -p openai --sample 5000 --out report.json`\n\n"
    "`gapdiag measure -d embeddings.npz --metrics modality_gap,cos_tp --json`")
_SHIFT_EPILOG = ("Example: `gapdiag shift --lambdas -1:1:0.25 --out shift.json` then `gapdiag plot --kind shift --shift shift.json`")


def embed(
    chunk_size: Annotated[int | None, typer.Option(
        "--chunk-size", min=1, help="Items per committed chunk: the most an interrupted run loses, and the unit "
                                    "of work of each torchrun rank. Default 2048.", rich_help_panel="Cache")] = None,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
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
    """Embed every modality of a dataset and store the vectors in the cache (resumable, crash-safe).

    A second run on the same model and data is a cache hit. A run that is interrupted (Ctrl-C, kill, out of
    memory) resumes from the last committed chunk. Under `torchrun --nproc-per-node N -m gapdiag embed ...`
    each rank embeds its share of the chunks and rank 0 writes the one cache entry (docs/scaling.md).
    """
    embedding = EmbeddingOptions(
        data=data, model=model, pretrained=pretrained, random_init=random_init, split=split,
        image_column=image_column, text_column=text_column, label_column=label_column,
        class_name_column=class_name_column, template=template, image_root=image_root, device=device,
        precision=precision, batch_size=batch_size, workers=workers, cache_dir=cache_dir, dtype=dtype,
        skip_bad=skip_bad, data_format=data_format, preprocess=preprocess)
    es = api.embed(chunk_size=chunk_size, **embedding.api_kwargs(quiet=quiet or json_out))
    if not api.is_main_process():
        return  # rank 0 reports for the whole distributed job
    prov = es.provenance
    summary = {"key": prov.get("key"), "path": prov.get("path"), "model": (prov.get("model") or {}).get("name"),
               "dataset": (prov.get("dataset") or {}).get("name"), "counts": es.counts(), "dim": es.dim,
               "dtype": str(next(iter(es.vectors.values())).dtype), "skipped": prov.get("skipped") or []}
    if json_out:
        print_json(summary)
        return
    console.print(f"[bold]{summary['model']}[/] on [bold]{summary['dataset']}[/]: "
                  + ", ".join(f"{n} {name}" for name, n in summary["counts"].items())
                  + f", d={summary['dim']}, {summary['dtype']}")
    print_skipped(summary["skipped"])
    if summary["key"]:
        console.print(f"cache entry {summary['key']}" + (f" in {summary['path']}" if summary["path"] else ""))



def measure(
    metrics: Annotated[str | None, typer.Option(
        "--metrics", help="Comma-separated metric names (see docs/metrics.md); default: every metric that applies.")] = None,
    sample: Annotated[int | None, typer.Option(
        "--sample", help="Use this many samples (seeded) for the quadratic metrics; default exact.")] = None,
    seed: SeedOpt = 0,
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=0,
                                           help="Bootstrap resamples for confidence intervals (0 = off).")] = 0,
    retrieval_engine: Annotated[str, typer.Option(
        "--retrieval-engine", metavar=one_of("auto", "faiss", "blocked", "hnsw", "ivf"),
        help="auto (fused exact pass on CPU, exact search on a GPU), faiss (exact IndexFlatIP; on a GPU: FAISS GPU "
             "or torch), blocked (fused exact), or hnsw / ivf (approximate FAISS indexes for very large sets; their "
             "agreement with exact search on 1,000 sampled queries is reported).")] = "auto",
    out: Annotated[Path | None, typer.Option("--out", "-o", path_type=str,
                                             help="Write the report JSON here.")] = None,
    threads: Annotated[int | None, typer.Option(
        "--threads", min=1, help="CPU threads of the pair passes (uniformity, retrieval); default: every core. "
                                 "The numbers do not depend on it.")] = None,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
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
    """Measure the embedding-space geometry: modality gap, Cos_TP, angular value, uniformity, effective rank,
    retrieval R@K, clustering V-Measure, zero-shot accuracy.

    With no arguments it measures the bundled tiny InfoNCE checkpoint on the bundled handwritten-digits data.
    """
    embedding = EmbeddingOptions(
        data=data, model=model, pretrained=pretrained, random_init=random_init, split=split,
        image_column=image_column, text_column=text_column, label_column=label_column,
        class_name_column=class_name_column, template=template, image_root=image_root, device=device,
        precision=precision, batch_size=batch_size, workers=workers, cache_dir=cache_dir, dtype=dtype,
        skip_bad=skip_bad, data_format=data_format, preprocess=preprocess)
    report = api.measure(
        metrics=api.parse_metric_list(metrics),
        sample=sample, seed=seed, bootstrap=bootstrap, retrieval_engine=retrieval_engine, threads=threads,
        out=out, **embedding.api_kwargs(quiet=quiet or json_out))
    # On stderr, also with --json (whose `skipped` map and provenance.skipped hold the same): never silent.
    print_skipped(list(report.provenance.get("skipped") or []), report.skipped)
    if json_out:
        summary = report.to_dict(include_extras=False)
        # The one-line caveats and the short item lists, without the bulky arrays of the extras.
        shown = api.presentation.listed_extras(report.extras)
        if shown:
            summary["extras"] = shown
        # Published values to read the numbers against (additive key; docs/report-schema.md).
        summary["references"] = [p.to_dict() for p in api.references_for(report.metrics)]
        print_json(summary)
        return
    print_table(report_table(report), give_way=("family", "metric"))
    for line in reference_lines(report):
        console.print(line, style="dim", highlight=False, soft_wrap=True)
    print_labelled("note", report.extras.get("notes") or [], to=console)
    for end, modality, items in api.presentation.conforming_items(report.extras):
        console.print(f"{end} conforming {modality}: {'; '.join(items)}", highlight=False, soft_wrap=True,
                      markup=False)
    for direction, agreement in (report.extras.get("retrieval_agreement") or {}).items():
        console.print(f"approximate retrieval {direction}: {agreement:.1%} of the exact top-10 found (sampled queries)")
    if out is not None:
        console.print(f"report written to {out}")



def _float_list(text: str | None, option: str) -> list[float] | None:
    """Parse ``0.01,0.02`` or a range ``-1:1:0.25`` (start:stop:step, stop included)."""
    if text is None:
        return None
    try:
        if ":" in text:
            start, stop, step = (float(v) for v in text.split(":"))
            if step <= 0:
                raise ValueError
            n = round((stop - start) / step) + 1
            return [round(start + i * step, 10) for i in range(max(n, 0))]
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{option} {text!r} is not a list of numbers",
                         hint="use comma-separated values (0.01,0.1,1) or start:stop:step (-1:1:0.25)") from None



def shift(
    lambdas: Annotated[str | None, typer.Option(
        "--lambdas", help="Shift amounts λ: start:stop:step or a comma list. Default -1:1:0.25.")] = None,
    temperatures: Annotated[str | None, typer.Option(
        "--temperatures", help="Temperatures τ of the contrastive loss. Default 0.01,0.02,0.1,1.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", path_type=str,
                                             help="Write the result JSON here.")] = None,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
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
    """Liang et al.'s embedding-shift experiment: move images and texts along the gap vector and report, per λ,
    the gap, the contrastive loss at several temperatures, R@1 and zero-shot accuracy."""
    embedding = EmbeddingOptions(
        data=data, model=model, pretrained=pretrained, random_init=random_init, split=split,
        image_column=image_column, text_column=text_column, label_column=label_column,
        class_name_column=class_name_column, template=template, image_root=image_root, device=device,
        precision=precision, batch_size=batch_size, workers=workers, cache_dir=cache_dir, dtype=dtype,
        skip_bad=skip_bad, data_format=data_format, preprocess=preprocess)
    result = api.shift(lambdas=_float_list(lambdas, "--lambdas"), temperatures=_float_list(temperatures, "--temperatures"),
                       out=out, **embedding.api_kwargs(quiet=quiet or json_out))
    if json_out:
        print_json(result)
        return
    table = Table(title="embedding shift (Liang et al. 2022)")
    table.add_column("λ", justify="right")
    table.add_column("gap", justify="right")
    temps = list(result["loss"])
    for t in temps:
        table.add_column(f"loss τ={t}", justify="right")
    table.add_column("R@1 i→t", justify="right")
    table.add_column("R@1 t→i", justify="right")
    zs = result.get("zero_shot_accuracy")
    if zs:
        table.add_column("zero-shot", justify="right")
    r1 = result["recall_at_1"]
    directions = list(r1)
    for i, lam in enumerate(result["lambdas"]):
        row = [f"{lam:+.2f}", f"{result['gap'][i]:.3f}"] + [f"{result['loss'][t][i]:.3f}" for t in temps]
        row += [f"{r1[d][i]:.3f}" for d in directions[:2]]
        if zs:
            row.append(f"{zs[i]:.3f}")
        table.add_row(*row)
    print_table(table)
    if out is not None:
        console.print(f"written to {out}")



def register(app: typer.Typer) -> None:
    """Add ``embed``, ``measure`` and ``shift`` to the gapdiag app."""
    app.command(cls=Command, epilog=_EMBED_EPILOG)(embed)
    app.command(cls=Command, epilog=_MEASURE_EPILOG)(measure)
    app.command(cls=Command, epilog=_SHIFT_EPILOG)(shift)
