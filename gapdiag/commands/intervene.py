"""``gapdiag intervene``: parsing and printing over :func:`gapdiag.api.intervene`."""

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
    SkipBadOpt,
    SplitOpt,
    TemplateOpt,
    TextColumnOpt,
    WorkersOpt,
    console,
    print_json,
)
from gapdiag.commands.printing import print_labelled, print_table

_EPILOG = (
    "Examples: `gapdiag intervene` (every method on the bundled model and digits, a seeded 50/50 split); "
    "`gapdiag intervene -d data.csv -m ViT-B-32 -p openai --fit-split train --eval-split test --out iv.json` then "
    "`gapdiag plot --interventions iv.json`; `gapdiag intervene --method centering --save centering.safetensors`, "
    "then in Python `gapdiag.apply_intervention('centering.safetensors', vectors, 'image')`. "
    "Methods and formulas: docs/interventions.md."
)


def intervene(
    method: Annotated[list[str] | None, typer.Option(
        "--method", help="centering, gap_shift, ablation, procrustes, whitening or ot; repeat the option or give a "
                         "comma list. Default: all six (ot needs `pip install 'gapdiag[ot]'`).")] = None,
    fit_split: Annotated[str | None, typer.Option(
        "--fit-split", help="Fit on the manifest rows of this split (with --eval-split; never the same split). "
                            "Default: a seeded split of the samples.")] = None,
    eval_split: Annotated[str | None, typer.Option(
        "--eval-split", help="Measure on the manifest rows of this split.")] = None,
    fit_fraction: Annotated[float, typer.Option(
        "--fit-fraction", help="Without --fit-split: the share of samples fitted on (an image and all its "
                               "captions stay on one side); the rest is measured.")] = 0.5,
    fit_sample: Annotated[int, typer.Option(
        "--fit-sample", help="Fit on at most this many items of each modality (whole samples, seeded); ot on at "
                             "most 2,000 (its plan is dense).")] = api.DEFAULT_FIT_SAMPLE,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split, the fit subsample and the metrics.")] = 0,
    ot_reg: Annotated[float | None, typer.Option(
        "--ot-reg", help="Entropic regularisation of ot (squared-Euclidean cost between unit vectors, 0..4). "
                         "Default 0.05.")] = None,
    save: Annotated[Path | None, typer.Option(
        "--save", path_type=str, help="Write the fitted transform here (safetensors; one --method).")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", path_type=str, help="Write the result JSON here (for `gapdiag plot --interventions`).")] = None,
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
    """Would closing the gap help this model? Fit each post-hoc intervention (centering, gap shift, dimension
    ablation, orthogonal Procrustes, whitening, optimal transport) on one part of the items and measure the gap,
    W2 parts, Cos_TP, R@K, hubness, V-Measure and zero-shot accuracy before and after on the other part."""
    embedding = EmbeddingOptions(
        data=data, model=model, pretrained=pretrained, random_init=random_init, split=split,
        image_column=image_column, text_column=text_column, label_column=label_column,
        class_name_column=class_name_column, template=template, image_root=image_root, device=device,
        precision=precision, batch_size=batch_size, workers=workers, cache_dir=cache_dir, dtype=dtype,
        skip_bad=skip_bad, data_format=data_format, preprocess=preprocess)
    methods = [part.strip() for value in (method or []) for part in value.split(",") if part.strip()]
    result = api.intervene(methods=methods or None, fit_split=fit_split, eval_split=eval_split,
                           fit_fraction=fit_fraction, fit_sample=fit_sample, seed=seed, ot_reg=ot_reg, save=save,
                           out=out, **embedding.api_kwargs(quiet=quiet or json_out))
    print_labelled("note", result["notes"])
    if json_out:
        print_json(result)
        return
    print_intervention_table(result)
    for name in result["methods"]:
        console.print(f"- {result['results'][name]['summary']}", highlight=False)
    console.print(_split_line(result), highlight=False)
    for written, what in ((result["saved"], "transform"), (str(out) if out is not None else None, "result")):
        if written is not None:
            console.print(f"{what} written to {written}", highlight=False)


def print_intervention_table(result: api.InterventionResult) -> None:
    """Metric | before | after per method (change in brackets), on the evaluation part."""
    table = Table(title="post-hoc interventions, measured on the held-out part")
    table.add_column("metric")
    table.add_column("before", justify="right")
    for name in result["methods"]:
        table.add_column(name, justify="right")
    for metric in result["metrics"]:
        row = [metric, f"{result['before'][metric]:.3f}"]
        for name in result["methods"]:
            after = result["results"][name]["after"].get(metric)
            change = result["results"][name]["change"].get(metric)
            row.append("-" if after is None or change is None else f"{after:.3f} ({change:+.3f})")
        table.add_row(*row)
    print_table(table, give_way=("metric",))


def _split_line(result: api.InterventionResult) -> str:
    split = result["split"]
    fit = " and ".join(f"{n:,} {m}" for m, n in split["fit_items"].items())
    held = " and ".join(f"{n:,} {m}" for m, n in split["eval_items"].items())
    how = (f"a seeded split of the samples (seed {split['seed']}, {split['fit_fraction']:.0%} fit)"
           if split["kind"] == "seeded" else f"split {split['fit_split']!r} fit, {split['eval_split']!r} measured")
    return (f"fitted on {fit} items ({split['fit_samples']:,} samples; --fit-sample {split['fit_sample']:,} per "
            f"modality, ot on at most {split['ot_max_items']:,}), measured on {held} held-out items "
            f"({split['eval_samples']:,} samples); {how}")


def register(app: typer.Typer) -> None:
    """Add ``intervene`` to the gapdiag app."""
    app.command(cls=Command, epilog=_EPILOG)(intervene)
