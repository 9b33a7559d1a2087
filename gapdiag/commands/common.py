"""What every CLI command shares: consoles, JSON printing, shared option types.

Errors are not handled here: commands let :class:`gapdiag.errors.GapdiagError` propagate and
:func:`gapdiag.cli.main` turns it into one line and an exit code (a traceback only with ``--debug``).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from gapdiag import api


class _NoHelpPlaceholder:
    """``--help`` shows no ``<bool>`` type placeholder: it takes no value, like every flag of gapdiag (whose
    shared option types give flags an empty ``metavar``). Typer prints a placeholder after every option it lists,
    ``<bool>`` after flags too, which reads as if they wanted a value; options with values keep ``<int>``,
    ``<path>``..."""

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)  # type: ignore[misc]
        if option is not None:
            option.metavar = ""
        return option


class Command(_NoHelpPlaceholder, TyperCommand):
    """The class of every gapdiag command (``app.command(cls=Command)``, Typer's documented way to use a command
    class of one's own)."""


class Group(_NoHelpPlaceholder, TyperGroup):
    """The class of the gapdiag app and of its command groups (``typer.Typer(cls=Group)``)."""

    def get_params(self, ctx: Any) -> Any:
        # Typer's completion options take an optional shell name; its help would show them as <bool>.
        params = super().get_params(ctx)
        for param in params:
            if param.name in ("install_completion", "show_completion"):
                param.metavar = "[bash|zsh|fish|powershell|pwsh]"
        return params


#: ``metavar`` of an on/off flag: nothing after its name in ``--help`` (it takes no value).
FLAG = ""


def one_of(*choices: str) -> str:
    """The ``metavar`` of an option with a fixed set of values: ``[umap|pca]`` in ``--help`` instead of ``<str>``
    (tests/test_help_choices.py holds each against the values the code accepts)."""
    return "[" + "|".join(choices) + "]"


#: Human output goes to stdout; progress and errors go to stderr so that ``--json`` output stays parseable.
#: Both take the terminal's width on a terminal and print whole rows off one (a pipe, a file, a CI log):
#: ``gapdiag check > log`` and ``gapdiag compare | cat`` keep every cell whole and every row on one line.
console = api.LogConsole()
err_console = api.LogConsole(stderr=True)


def print_json(obj: Any) -> None:
    """Print ``obj`` as JSON on stdout, nothing else (machine-readable output for ``--json``)."""
    sys.stdout.write(json.dumps(obj, indent=2, default=api.json_default) + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------------------------------------------------
# Options shared by every command that embeds (embed, measure, shift, export, plot, report, check, compare),
# defined once as annotated types. Each command lists them in its own signature, the way Typer documents
# shared options, and gathers them into one EmbeddingOptions for the api.
# ---------------------------------------------------------------------------------------------------------

DataArg = Annotated[str | None, typer.Option(
    "--data", "-d",
    help="Dataset: a manifest (.csv/.tsv/.jsonl/.parquet), an ImageFolder directory, a COCO captions .json, "
         "WebDataset shards (.tar, 'shard-{000..009}.tar'), precomputed embeddings (.npz/.npy dir/.parquet), or "
         "Hugging Face Parquet shards (file, folder or 'data/train-*.parquet'). "
         "Default: the bundled sample data (handwritten digits, test split). "
         "Parquet needs the parquet extra: `pip install 'gapdiag[parquet]'`.",
    rich_help_panel="Data")]
DataFormatOpt = Annotated[str | None, typer.Option(
    "--data-format", help="Read --data as this format (a reader name from docs/datasets.md, e.g. manifest or "
                          "webdataset) instead of detecting it; needed when the path fits two formats.",
    rich_help_panel="Data")]
SplitOpt = Annotated[str | None, typer.Option(
    "--split", help="Keep only manifest rows whose 'split' column equals this (e.g. test).", rich_help_panel="Data")]
ModelOpt = Annotated[str | None, typer.Option(
    "--model", "-m",
    help="open_clip architecture name (ViT-B-32), a checkpoint file (.pt/.bin/.safetensors), 'hf-hub:org/name', "
         "a transformers CLIP-family model 'hf:ORG/NAME' or 'hf:FOLDER', a bundled checkpoint "
         "('bundled:infonce', 'bundled:gap_closing'), or a model-config JSON (`gapdiag models` lists them). "
         "Default: bundled:infonce.",
    rich_help_panel="Model")]
PretrainedOpt = Annotated[str | None, typer.Option(
    "--pretrained", "-p",
    help="open_clip pretrained tag (e.g. laion2b_s34b_b79k) or a checkpoint file for --model.",
    rich_help_panel="Model")]
DeviceOpt = Annotated[str, typer.Option(
    "--device", metavar=one_of("auto", "cpu", "cuda", "cuda:N", "mps"),
    help="cuda, cuda:N (the N-th GPU), mps, cpu or auto (cuda > mps > cpu).", rich_help_panel="Model")]
RandomInitOpt = Annotated[bool, typer.Option(
    "--random-init", metavar=FLAG, help="Embed an architecture's random initial weights on purpose (--model ARCH or a config "
                          "JSON without --pretrained); without it that is refused. Recorded as random_init.",
    rich_help_panel="Model")]
PrecisionOpt = Annotated[str, typer.Option(
    "--precision", metavar=one_of("fp32", "amp", "bf16"), help="fp32, amp (autocast on CUDA) or bf16 (CUDA).", rich_help_panel="Model")]
PreprocessOpt = Annotated[str, typer.Option(
    "--preprocess", metavar=one_of("pil", "device", "auto"), help="Image decoding and transform: pil (the model's own transform, in workers), device "
                         "(decode and transform on the GPU) or auto (device on CUDA when it reproduces the "
                         "model's transform, else pil). Part of the cache key.", rich_help_panel="Model")]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Items per forward pass.",
                                           rich_help_panel="Model")]
WorkersOpt = Annotated[int, typer.Option("--workers", "-j", min=0,
                                         help="Data-loading worker processes (0 = in the main process).",
                                         rich_help_panel="Model")]
# Paths that a command writes (and --cache-dir) reach the api as the string typed (``path_type=str``): ``Path``
# would turn ``''`` into the current folder and drop the ``/`` of ``dir/``, which gapdiag.outputs must see.
CacheDirOpt = Annotated[Path | None, typer.Option(
    "--cache-dir", envvar="GAPDIAG_CACHE_DIR", path_type=str,
    help="Embedding cache directory (default: the user cache dir; env GAPDIAG_CACHE_DIR).",
    rich_help_panel="Cache")]
DtypeOpt = Annotated[str, typer.Option("--dtype", metavar=one_of("float32", "float16"),
                                       help="Stored vector dtype: float32 or float16.",
                                       rich_help_panel="Cache")]
ImageRootOpt = Annotated[Path | None, typer.Option(
    "--image-root", help="COCO captions JSON only: the folder that images[].file_name is relative to "
                         "(default: searched beside the JSON).", rich_help_panel="Data")]
SkipBadOpt = Annotated[bool, typer.Option("--skip-bad", metavar=FLAG,
                                          help="Skip bad rows instead of failing: a missing or undecodable image, a blank caption "
                                               "or label, a malformed row; each is counted and reported.",
                                          rich_help_panel="Data")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed (sampling, k-means, UMAP).")]
TrainSeedOpt = Annotated[int, typer.Option(
    "--seed", help="Random seed (weight initialisation, batch order, caption drawn per sample).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", metavar=FLAG, help="No progress output.")]
JsonOpt = Annotated[bool, typer.Option("--json", metavar=FLAG, help="Print machine-readable JSON on stdout only.")]


ImageColumnOpt = Annotated[str | None, typer.Option(
    "--image-column", help="Manifest column of image paths (default: the first of image, image_path, filepath, "
                           "path, file_name, filename).",
    rich_help_panel="Data")]
TextColumnOpt = Annotated[list[str] | None, typer.Option(
    "--text-column", help="Manifest caption column; repeat for several captions per image, in that order "
                          "(default: every caption and caption_1..N column, caption first, then by number; else "
                          "text or captions).", rich_help_panel="Data")]
LabelColumnOpt = Annotated[str | None, typer.Option(
    "--label-column", help="Manifest class-label column (default: label); class ids (0, 1, 2, ...) or class "
                           "names, one type per dataset.", rich_help_panel="Data")]
ClassNameColumnOpt = Annotated[str | None, typer.Option(
    "--class-name-column", help="Manifest column of class names for zero-shot prompts (default: class_name).",
    rich_help_panel="Data")]
TemplateOpt = Annotated[list[str] | None, typer.Option(
    "--template", help="Prompt template with {} for zero-shot classes, repeatable (default: 'a photo of a {}.').",
    rich_help_panel="Data")]


@dataclass(frozen=True)
class EmbeddingOptions:
    """The data, model and cache options of one command, as parsed (each command builds one from its own
    parameters, typed by the annotations above)."""

    data: str | None = None
    data_format: str | None = None
    model: str | None = None
    pretrained: str | None = None
    random_init: bool = False
    split: str | None = None
    image_column: str | None = None
    text_column: list[str] | None = None
    label_column: str | None = None
    class_name_column: str | None = None
    template: list[str] | None = None
    image_root: Path | None = None
    device: str = "auto"
    precision: str = "fp32"
    batch_size: int = 64
    workers: int = 0
    cache_dir: Path | None = None
    dtype: str = "float32"
    skip_bad: bool = False
    preprocess: str = "auto"

    def api_kwargs(self, *, quiet: bool, format_keyword: str = "format", model: bool = True) -> dict[str, Any]:
        """The keyword arguments of :func:`gapdiag.api.embed` (and the other verbs that embed) for these options.

        Reader options are passed only when given, so that each reader keeps its own defaults and formats that
        do not use them (precomputed embeddings) are not handed options they would reject. ``format_keyword``
        names the data format where the verb's own ``format`` is another (the figures'); ``model=False`` leaves
        out ``model`` for a verb that takes several (``compare``).
        """
        readers = {"image_column": self.image_column, "text_columns": self.text_column or None,
                   "label_column": self.label_column, "class_name_column": self.class_name_column,
                   "templates": self.template or None, "image_root": self.image_root,
                   format_keyword: self.data_format}
        return {"data": self.data, "split": self.split, **({"model": self.model} if model else {}),
                "pretrained": self.pretrained,
                "random_init": self.random_init, "device": self.device, "precision": self.precision, "batch_size": self.batch_size,
                "workers": self.workers, "cache_dir": self.cache_dir, "dtype": self.dtype,
                "skip_bad": self.skip_bad, "progress": not quiet, "preprocess": self.preprocess,
                **{k: v for k, v in readers.items() if v is not None}}
