"""The ``gapdiag`` command line: a thin shell over :mod:`gapdiag.api`.

Commands parse options, call the library and print. Every user-caused failure is a
:class:`gapdiag.errors.GapdiagError`; :func:`main` prints it as one line on stderr and exits with its code.
``--debug`` (anywhere on the command line) or ``GAPDIAG_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from gapdiag import __version__
from gapdiag.commands import check as _check_commands
from gapdiag.commands import export as _export_commands
from gapdiag.commands import plot as _plot_commands
from gapdiag.commands._common import (
    BatchSizeOpt,
    CacheDirOpt,
    DeviceOpt,
    EmbeddingOptions,
    JsonOpt,
    PrecisionOpt,
    PretrainedOpt,
    QuietOpt,
    SeedOpt,
    TrainSeedOpt,
    WorkersOpt,
    console,
    embedding_options,
    err_console,
    print_json,
    unbounded_console,
)
from gapdiag.errors import GapdiagError, InputError

if TYPE_CHECKING:
    from gapdiag.report import Report

app = typer.Typer(
    name="gapdiag",
    help=(
        "Diagnose the embedding space of CLIP-like models: modality gap, Cos_TP, angular value, uniformity, "
        "effective rank, retrieval R@K and clustering V-Measure.\n\n"
        "Start with `gapdiag measure` (no arguments: a bundled tiny CLIP model on bundled real data, offline). "
        "Add --debug anywhere to see tracebacks."
    ),
    no_args_is_help=True,
    epilog="Examples: `gapdiag measure`, `gapdiag embed -d captions.csv -m ViT-B-32 -p openai`, `gapdiag cache ls`",
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"gapdiag {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Diagnose the embedding space of CLIP-like models."""


# ------------------------------------------------------------------------------------------------ embed


@app.command(epilog="Example: `gapdiag embed --data captions.csv --model ViT-B-32 --pretrained laion2b_s34b_b79k`")
@embedding_options()
def embed(
    chunk_size: Annotated[int | None, typer.Option(
        "--chunk-size", min=1, help="Items per committed chunk: the most an interrupted run loses, and the unit "
                                    "of work of each torchrun rank. Default 2048.", rich_help_panel="Cache")] = None,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
    *,
    embedding: EmbeddingOptions,
) -> None:
    """Embed every modality of a dataset and store the vectors in the cache (resumable, crash-safe).

    A second run on the same model and data is a cache hit. A run that is interrupted (Ctrl-C, kill, out of
    memory) resumes from the last committed chunk. Under `torchrun --nproc-per-node N -m gapdiag embed ...`
    each rank embeds its share of the chunks and rank 0 writes the one cache entry (docs/scaling.md).
    """
    from gapdiag import api
    from gapdiag.distributed import is_main_process

    es = api.embed(chunk_size=chunk_size, **embedding.api_kwargs(quiet=quiet or json_out))
    if not is_main_process():
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
    _print_skipped(summary["skipped"])
    if summary["key"]:
        console.print(f"cache entry {summary['key']}" + (f" in {summary['path']}" if summary["path"] else ""))


def _print_skipped(rows: list[str], metrics: dict[str, str] | None = None) -> None:
    """One stderr line per dropped row (``--skip-bad``) and per metric that did not apply, with its reason."""
    from rich.markup import escape

    for line in rows:
        err_console.print(f"[yellow]skipped:[/] {escape(line)}", highlight=False, soft_wrap=True)
    for name, reason in (metrics or {}).items():
        err_console.print(f"[yellow]skipped metric:[/] {escape(name)}: {escape(reason)}", highlight=False,
                          soft_wrap=True)


# ------------------------------------------------------------------------------------------------ measure


@app.command(epilog=(
    "Examples:\n\n"
    "`gapdiag measure` (bundled tiny CLIP + digits, offline)\n\n"
    "`gapdiag measure -d coco/captions_val2017.json -m ViT-B-32 -p openai --sample 5000 --out report.json`\n\n"
    "`gapdiag measure -d embeddings.npz --metrics modality_gap,cos_tp --json`"))
@embedding_options()
def measure(
    metrics: Annotated[str | None, typer.Option(
        "--metrics", help="Comma-separated metric names (see docs/metrics.md); default: every metric that applies.")] = None,
    sample: Annotated[int | None, typer.Option(
        "--sample", min=1, help="Use this many samples (seeded) for the quadratic metrics; default exact.")] = None,
    seed: SeedOpt = 0,
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=0,
                                           help="Bootstrap resamples for confidence intervals (0 = off).")] = 0,
    retrieval_engine: Annotated[str, typer.Option(
        "--retrieval-engine",
        help="auto (fused exact pass on CPU, exact search on a GPU), faiss (exact IndexFlatIP; on a GPU: FAISS GPU "
             "or torch), blocked (fused exact), or hnsw / ivf (approximate FAISS indexes for very large sets; their "
             "agreement with exact search on 1,000 sampled queries is reported).")] = "auto",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the report JSON here.")] = None,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
    *,
    embedding: EmbeddingOptions,
) -> None:
    """Measure the embedding-space geometry: modality gap, Cos_TP, angular value, uniformity, effective rank,
    retrieval R@K, clustering V-Measure, zero-shot accuracy.

    With no arguments it measures the bundled tiny InfoNCE checkpoint on the bundled handwritten-digits data.
    """
    from gapdiag import api

    report = api.measure(
        metrics=[m.strip() for m in metrics.split(",") if m.strip()] if metrics else None,
        sample=sample, seed=seed, bootstrap=bootstrap, retrieval_engine=retrieval_engine,
        **embedding.api_kwargs(quiet=quiet or json_out))
    if out is not None:
        report.save(out)
    # On stderr, also with --json (whose `skipped` map and provenance.skipped hold the same): never silent.
    _print_skipped(list(report.provenance.get("skipped") or []), report.skipped)
    if json_out:
        from gapdiag.references import references_for

        summary = report.to_dict(include_extras=False)
        if report.extras.get("notes"):  # the one-line caveats, without the bulky arrays of the extras
            summary["extras"] = {"notes": report.extras["notes"]}
        # Published values to read the numbers against (additive key; docs/report-schema.md).
        summary["references"] = [p.to_dict() for p in references_for(report.metrics)]
        print_json(summary)
        return
    console.print(report_table(report))
    for line in reference_lines(report):
        console.print(line, style="dim", highlight=False, soft_wrap=True)
    for note in report.extras.get("notes") or []:
        console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    for direction, agreement in (report.extras.get("retrieval_agreement") or {}).items():
        console.print(f"approximate retrieval {direction}: {agreement:.1%} of the exact top-10 found (sampled queries)")
    if out is not None:
        console.print(f"report written to {out}")


# ------------------------------------------------------------------------------------------------ shift


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


@app.command(epilog="Example: `gapdiag shift --lambdas -1:1:0.25 --out shift.json` then `gapdiag plot --kind shift --shift shift.json`")
@embedding_options()
def shift(
    lambdas: Annotated[str | None, typer.Option(
        "--lambdas", help="Shift amounts λ: start:stop:step or a comma list. Default -1:1:0.25.")] = None,
    temperatures: Annotated[str | None, typer.Option(
        "--temperatures", help="Temperatures τ of the contrastive loss. Default 0.01,0.02,0.1,1.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the result JSON here.")] = None,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
    *,
    embedding: EmbeddingOptions,
) -> None:
    """Liang et al.'s embedding-shift experiment: move images and texts along the gap vector and report, per λ,
    the gap, the contrastive loss at several temperatures, R@1 and zero-shot accuracy."""
    from gapdiag import api
    from gapdiag.report import write_json

    result = api.shift(lambdas=_float_list(lambdas, "--lambdas"), temperatures=_float_list(temperatures, "--temperatures"),
                       **embedding.api_kwargs(quiet=quiet or json_out))
    if out is not None:
        write_json(result, out, what="shift result")
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
    console.print(table)
    if out is not None:
        console.print(f"written to {out}")


# ------------------------------------------------------------------------------------------------ train


@app.command(epilog=(
    "Example: `gapdiag train --data sample_data/digits/manifest.csv --split train --eval-split test "
    "--model gapdiag-tiny-vit --loss atp_cu --epochs 30 --out runs/atp`"))
def train(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory (checkpoints, metrics.jsonl, model.safetensors); resumed if it exists.")],
    data: Annotated[str | None, typer.Option(
        "--data", "-d",
        help="Training data, any format `measure --data` reads; --split picks the rows trained on and "
             "--eval-split those measured each epoch. Default: the bundled handwritten digits.",
        rich_help_panel="Data")] = None,
    model: Annotated[str, typer.Option("--model", "-m", help="Architecture/config JSON (random init) or checkpoint (fine-tune).")] = "gapdiag-tiny-vit",
    pretrained: PretrainedOpt = None,
    split: Annotated[str | None, typer.Option("--split", help="Training split of the manifest.")] = "train",
    eval_split: Annotated[str | None, typer.Option("--eval-split", help="Split for the per-epoch metrics.")] = "test",
    loss: Annotated[str, typer.Option("--loss", help="infonce, cua, cuaxu (Fahim et al.) or atp_cu (Grassucci et al.).")] = "infonce",
    lambda_atp: Annotated[float | None, typer.Option("--lambda-atp", help="λ1 of atp_cu (default 1).")] = None,
    lambda_cu: Annotated[float | None, typer.Option("--lambda-cu", help="λ2 of atp_cu (default 1).")] = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1)] = 10,
    batch_size: BatchSizeOpt = 128,
    lr: Annotated[float, typer.Option("--lr", help="AdamW learning rate (cosine schedule with warm-up).")] = 1e-3,
    temperature: Annotated[float | None, typer.Option("--temperature", help="Fix τ (e.g. 0.1); default learnable.")] = None,
    seed: TrainSeedOpt = 0,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "fp32",
    workers: WorkersOpt = 0,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", min=1, help="Epochs between checkpoints.")] = 1,
    restart: Annotated[bool, typer.Option(
        "--restart", help="Delete the previous run's checkpoints, log and model in --out and start afresh.")] = False,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Train or fine-tune an open_clip model with InfoNCE or a gap-closing loss; logs gap, Cos_TP and R@1 per
    epoch to metrics.jsonl, checkpoints periodically and resumes after an interruption.

    A folder that holds checkpoints is resumed only when every setting that changes the result (model, data,
    loss, epochs, batch size, lr, temperature, seed, precision) is the same; otherwise it stops and names the
    settings that differ. `--restart` or a new `--out` starts afresh."""
    from gapdiag import api
    from gapdiag.train import train as run_training

    weights = {k: v for k, v in (("lambda_atp", lambda_atp), ("lambda_cu", lambda_cu)) if v is not None}
    train_data = api.load_data(data, split=split)
    eval_data = api.load_data(data, split=eval_split) if eval_split else None
    result = run_training(train_data, model, out_dir=out, pretrained=pretrained, loss=loss, loss_weights=weights,
                          eval_data=eval_data, epochs=epochs, batch_size=batch_size, lr=lr, temperature=temperature,
                          seed=seed, device=device, precision=precision, workers=workers,
                          checkpoint_every=checkpoint_every, progress=not (quiet or json_out), restart=restart)
    summary = {"out": str(result.out_dir), "model": str(result.model_path), "resumed_from_epoch": result.resumed_from,
               "epochs": result.epochs}
    if json_out:
        print_json(summary)
        return
    last = result.epochs[-1] if result.epochs else {}
    console.print(f"model written to {result.model_path}")
    console.print(", ".join(f"{k}={v:.4f}" for k, v in last.items() if isinstance(v, float)))


# ------------------------------------------------------------------------------------------------ cache

cache_app = typer.Typer(help="Inspect and clean the embedding cache.", no_args_is_help=True,
                        epilog="Examples: `gapdiag cache ls`, `gapdiag cache rm 3f2a9c`, `gapdiag cache dir`")
app.add_typer(cache_app, name="cache")


@cache_app.command("ls", epilog="Example: `gapdiag cache ls --json`")
def cache_ls(cache_dir: CacheDirOpt = None, json_out: JsonOpt = False) -> None:
    """List cache entries: key, model, dataset, counts, dtype, size, created, complete."""
    from gapdiag.cache import KEY_LENGTH, EmbeddingCache

    cache = EmbeddingCache(cache_dir)
    entries = cache.ls()
    if json_out:
        print_json({"root": str(cache.root), "entries": entries})
        return
    table = Table(title=f"gapdiag cache: {cache.root}")
    # The key is what `gapdiag cache rm` takes: never fold or cut it, whatever the terminal width.
    table.add_column("key", no_wrap=True, min_width=KEY_LENGTH)
    for col in ("model", "dataset", "counts", "dtype", "size", "created", "complete"):
        table.add_column(col, overflow="fold")  # a narrow terminal wraps a value, never cuts it to "…"
    for e in entries:
        counts = ", ".join(f"{k}={v}" for k, v in (e.get("counts") or {}).items())
        size = e.get("size_bytes", e.get("size", 0)) or 0
        table.add_row(str(e.get("key")), str(e.get("model")), str(e.get("dataset")), counts, str(e.get("dtype")),
                      f"{size / 1e6:.1f} MB", str(e.get("created") or ""),
                      "yes" if e.get("complete") else f"no: {e.get('why') or e.get('error') or 'unknown'}")
    unbounded_console().print(table)


@cache_app.command("rm", epilog="Examples: `gapdiag cache rm 3f2a9c`, `gapdiag cache rm all`")
def cache_rm(key: Annotated[str, typer.Argument(help="Entry key, unique key prefix, or `all`.")],
             cache_dir: CacheDirOpt = None, json_out: JsonOpt = False) -> None:
    """Remove cache entries by key, unique key prefix, or `all`."""
    from gapdiag.cache import EmbeddingCache

    removed = EmbeddingCache(cache_dir).rm(key)
    if json_out:
        print_json({"removed": removed})
    else:
        console.print(f"removed {len(removed)} entr{'y' if len(removed) == 1 else 'ies'}")


@cache_app.command("verify", epilog="Examples: `gapdiag cache verify`, `gapdiag cache verify 3f2a9c --json`")
def cache_verify(key: Annotated[str, typer.Argument(help="Entry key, unique key prefix, or `all`.")] = "all",
                 cache_dir: CacheDirOpt = None, json_out: JsonOpt = False, quiet: QuietOpt = False) -> int:
    """Check every stored file against its checksum; exit 2 naming each corrupt entry and file."""
    from gapdiag.api import cache_verify as verify

    results = verify(key, cache_dir=cache_dir, progress=not (quiet or json_out))
    bad = [r for r in results if not r["ok"]]
    if json_out:
        print_json({"entries": results, "ok": not bad})
    else:
        for r in results:
            state = "ok" if r["ok"] else "CORRUPT"
            kind = "" if r["complete"] else " (partial: bad chunks are recomputed by the next run)"
            console.print(f"{r['key']}  {state}  {r['files']} files{kind}", highlight=False)
    if not bad:
        return 0
    named = "; ".join(f"{r['key']}/{p['file']}: {p['reason']}" for r in bad for p in r["problems"])
    err_console.print(f"[bold red]error:[/] {len(bad)} of {len(results)} cache entries corrupt: {named} "
                      f"(remove with `gapdiag cache rm KEY` and run again)", highlight=False, soft_wrap=True)
    return 2


@cache_app.command("dir", epilog="Example: `du -sh $(gapdiag cache dir)`")
def cache_dir_cmd(cache_dir: CacheDirOpt = None) -> None:
    """Print the cache directory in use."""
    from gapdiag.cache import EmbeddingCache

    # Plain echo: rich would fold a long path at the terminal width and break `$(gapdiag cache dir)`.
    typer.echo(str(EmbeddingCache(cache_dir).root))


# ------------------------------------------------------------------------------------------------ printing


def report_table(report: Report) -> Table:
    """The rich table of a report: metrics grouped by family, with direction and bootstrap interval."""
    from gapdiag.metrics import REGISTRY
    from gapdiag.presentation import (
        direction_arrow,
        format_interval,
        format_number,
        metric_family,
        order_metrics,
    )
    from gapdiag.report import split_metric_name

    prov = report.provenance
    title = f"{(prov.get('model') or {}).get('name', '?')} on {(prov.get('dataset') or {}).get('name', '?')}"
    sample = (prov.get("sample") or {}).get("size")
    table = Table(title=title, caption=f"sample={sample or 'all'} seed={(prov.get('sample') or {}).get('seed', 0)}")
    table.add_column("family", style="dim")
    table.add_column("metric")
    table.add_column("on")
    table.add_column("value", justify="right")
    if report.intervals:
        table.add_column("95% CI", justify="right")
    table.add_column("better", justify="center")
    # Grouped by family in the registry's order (gap, cone, uniformity, rank, retrieval, clustering, ...).
    for name in order_metrics(report.metrics):
        base, qualifier = split_metric_name(name)
        info = REGISTRY.get(base)
        cells = [metric_family(name), base, qualifier or "", format_number(report.metrics[name])]
        if report.intervals:
            lo_hi = report.intervals.get(name)
            cells.append(format_interval(lo_hi) if lo_hi else "")
        cells.append(direction_arrow(getattr(info, "higher_is_better", None)))
        table.add_row(*cells)
    return table


def reference_lines(report: Report) -> list[str]:
    """One line per published reference point of a metric in the report (printed under the table)."""
    from gapdiag.references import references_for

    return [f"reference {p.metric}: {p.label()}" for p in references_for(report.metrics)]


_plot_commands.register(app)
_check_commands.register(app)
_export_commands.register(app)


def _print_error(message: str) -> None:
    """``error: <message>`` on one stderr line; brackets in paths or values are text, not rich markup."""
    from rich.markup import escape

    line = escape(" ".join(message.split()))
    err_console.print(f"[bold red]error:[/] {line}", highlight=False, soft_wrap=True)


def run(argv: Sequence[str] | None = None) -> int:
    """Run the CLI on ``argv`` and return the exit code (what :func:`main` and the tests call)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("GAPDIAG_DEBUG", "") not in ("", "0")
    args = [a for a in args if a != "--debug"]
    try:
        with _interrupt_as(Interrupted):
            result = app(args=args, prog_name="gapdiag", standalone_mode=False)
    except GapdiagError as e:
        if debug:
            raise
        _print_error(e.one_line())
        return e.exit_code
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort as e:
        if isinstance(e.__cause__, EOFError):
            # click turns any EOFError escaping a command into Abort (Ctrl-D at a prompt); gapdiag has no prompts,
            # so this is an unhandled error (np.load of a 0-byte file raised it), not the user stopping the run.
            raise e.__cause__ from None
        err_console.print("aborted")
        return 130
    except (KeyboardInterrupt, Interrupted):
        err_console.print("interrupted: work committed so far is kept in the cache; run again to resume",
                          highlight=False, soft_wrap=True)
        return 130
    except _CLICK_ERRORS as e:  # usage errors (unknown option, missing argument): click's own message, exit 2
        if debug:
            raise
        if type(e).__name__ == "NoArgsIsHelpError":  # `gapdiag` alone shows the help: an answer, not an error
            e.show()
            return 0
        # One line like every other user error; the usage text is one --help away.
        ctx = getattr(e, "ctx", None)
        _print_error(e.format_message() + (f" (see `{ctx.command_path} --help`)" if ctx is not None else ""))
        return e.exit_code
    return result if isinstance(result, int) else 0


class Interrupted(BaseException):
    """Ctrl-C (SIGINT) during a command.

    Not a ``KeyboardInterrupt``: Typer turns those into a silent ``Exit(130)`` before :func:`run` sees them, which
    would swallow the "interrupted ... run again to resume" message.
    """


@contextlib.contextmanager
def _interrupt_as(exc_type: type[BaseException]) -> Iterator[None]:
    """Raise ``exc_type`` instead of ``KeyboardInterrupt`` on SIGINT while the block runs (main thread only)."""
    main_pid = os.getpid()

    def raise_interrupt(signum: int, frame: object) -> None:
        # Forked DataLoader workers inherit this handler; they expect a KeyboardInterrupt (and stay quiet).
        raise exc_type() if os.getpid() == main_pid else KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGINT, raise_interrupt)
    except ValueError:  # not the main thread: signals cannot be handled here, leave them alone
        yield
        return
    if previous is signal.SIG_IGN:  # started with SIGINT ignored (nohup, a background job): keep it so
        signal.signal(signal.SIGINT, previous)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _click_error_types() -> tuple[type[BaseException], ...]:
    """Typer >= 0.2x raises the exceptions of its bundled click copy; older Typer raises click's own."""
    types: list[type[BaseException]] = []
    try:
        from typer._click.exceptions import ClickException as TyperClickException

        types.append(TyperClickException)
    except ImportError:
        pass
    try:
        import click

        types.append(click.exceptions.ClickException)
    except ImportError:
        pass
    return tuple(types)


_CLICK_ERRORS = _click_error_types()


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())
