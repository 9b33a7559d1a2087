"""``gapdiag cache ls|rm|verify|dir``: parsing and printing over :mod:`gapdiag.api`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from gapdiag import api
from gapdiag.commands.common import (
    CacheDirOpt,
    Command,
    Group,
    JsonOpt,
    QuietOpt,
    console,
    err_console,
    print_json,
)

cache_app = typer.Typer(cls=Group, help="Inspect and clean the embedding cache.", no_args_is_help=True,
                        epilog="Examples: `gapdiag cache ls`, `gapdiag cache rm 3f2a9c`, `gapdiag cache dir`")


@cache_app.command("ls", cls=Command, epilog="Example: `gapdiag cache ls --json`")
def cache_ls(cache_dir: CacheDirOpt = None, json_out: JsonOpt = False) -> None:
    """List cache entries: key, model, dataset, counts, dtype, size, created, complete."""
    root, entries = api.cache_ls(cache_dir=cache_dir)
    if json_out:
        print_json({"root": str(root), "entries": entries})
        return
    table = Table(title=f"gapdiag cache: {root}")
    # The key is what `gapdiag cache rm` takes: never fold or cut it, whatever the terminal width.
    table.add_column("key", no_wrap=True, min_width=api.CACHE_KEY_LENGTH)
    for col in ("model", "dataset", "counts", "dtype", "size", "created", "complete"):
        table.add_column(col, overflow="fold")  # a narrow terminal wraps a value, never cuts it to "…"
    for e in entries:
        counts = ", ".join(f"{k}={v}" for k, v in (e.get("counts") or {}).items())
        size = e.get("size_bytes", e.get("size", 0)) or 0
        table.add_row(str(e.get("key")), str(e.get("model")), str(e.get("dataset")), counts, str(e.get("dtype")),
                      f"{size / 1e6:.1f} MB", str(e.get("created") or ""),
                      _state(e))
    console.print(table)


def _state(entry: dict[str, object]) -> str:
    """The "complete" cell: yes, no (and why), or damaged (and what `gapdiag cache verify` would say)."""
    if entry.get("error"):
        return f"{'damaged' if entry.get('complete') else 'no'}: {entry['error']}"
    return "yes" if entry.get("complete") else f"no: {entry.get('why') or 'unknown'}"


@cache_app.command("rm", cls=Command, epilog="Examples: `gapdiag cache rm 3f2a9c`, `gapdiag cache rm all`")
def cache_rm(key: Annotated[str, typer.Argument(help="Entry key, unique key prefix, or `all`.")],
             cache_dir: CacheDirOpt = None, json_out: JsonOpt = False) -> None:
    """Remove cache entries by key, unique key prefix, or `all`."""
    removed = api.cache_rm(key, cache_dir=cache_dir)
    if json_out:
        print_json({"removed": removed})
    else:
        console.print(f"removed {len(removed)} entr{'y' if len(removed) == 1 else 'ies'}")


@cache_app.command("verify", cls=Command, epilog="Examples: `gapdiag cache verify`, `gapdiag cache verify 3f2a9c --json`")
def cache_verify(key: Annotated[str, typer.Argument(help="Entry key, unique key prefix, or `all`.")] = "all",
                 cache_dir: CacheDirOpt = None, json_out: JsonOpt = False, quiet: QuietOpt = False) -> int:
    """Check every stored file against its checksum; exit 2 naming each corrupt entry and file."""
    results = api.cache_verify(key, cache_dir=cache_dir, progress=not (quiet or json_out))
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


@cache_app.command("dir", cls=Command, epilog="Example: `du -sh $(gapdiag cache dir)`")
def cache_dir_cmd(cache_dir: CacheDirOpt = None) -> None:
    """Print the cache directory in use."""
    # Plain echo: rich would fold a long path at the terminal width and break `$(gapdiag cache dir)`.
    typer.echo(str(api.cache_dir(cache_dir)))



def register(app: typer.Typer) -> None:
    """Add the ``cache`` group to the gapdiag app."""
    app.add_typer(cache_app, name="cache")
