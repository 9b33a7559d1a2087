"""``gapdiag models``: what ``--model`` can name (parsing and printing over :func:`gapdiag.api.models`)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from gapdiag import api
from gapdiag.commands.common import FLAG, CacheDirOpt, Command, JsonOpt, console, print_json

ArchitecturesOpt = Annotated[bool, typer.Option(
    "--architectures/--no-architectures", metavar=FLAG,
    help="List open_clip's architectures and their pretrained tags too (imports open_clip: a few seconds).")]


def models(cache_dir: CacheDirOpt = None, json_out: JsonOpt = False, architectures: ArchitecturesOpt = True) -> None:
    """List the models --model can name: the bundled checkpoints (bundled:NAME), the models with vectors in the
    cache, the hub models in the local Hugging Face cache (usable offline), and open_clip's architectures with
    their pretrained tags (-m ARCH -p TAG)."""
    catalog = api.models(cache_dir=cache_dir, architectures_too=architectures)
    if json_out:
        print_json(catalog.to_dict())
        return
    bundled = Table(title="Bundled checkpoints (-m bundled:NAME)")
    for column in ("model", "path", "note"):
        bundled.add_column(column, overflow="fold")
    for b in catalog.bundled:
        note = ", ".join(n for n, on in (("default", b.default), ("missing", not b.present)) if on)
        bundled.add_row(b.model, b.path, note)
    console.print(bundled)
    cached = Table(title="Models with vectors in the gapdiag cache")
    cached.add_column("model", overflow="fold")
    cached.add_column("entries", justify="right")
    for name, count in catalog.cached.items():
        cached.add_row(name, str(count))
    console.print(cached if catalog.cached else "No vectors in the gapdiag cache yet.")
    hub = Table(title="In the local Hugging Face cache (work offline)")
    hub.add_column("--model", overflow="fold")
    hub.add_column("size", justify="right")
    for h in catalog.hub_cache:
        hub.add_row(h["model"], f"{h['size_bytes'] / 1e6:.1f} MB")
    console.print(hub if catalog.hub_cache else "No model in the local Hugging Face cache.")
    if catalog.architectures:
        arch = Table(title="open_clip architectures (-m NAME -p TAG; a tag downloads its weights once)")
        arch.add_column("architecture", no_wrap=True)
        arch.add_column("pretrained tags", overflow="fold")
        for a in catalog.architectures:
            arch.add_row(a["name"], ", ".join(a["pretrained"]) or "(none: pass a checkpoint file)")
        console.print(arch)


def register(app: typer.Typer) -> None:
    app.command("models", cls=Command, epilog="Examples: `gapdiag models --no-architectures`, "
                                              "`gapdiag models --json`")(models)
