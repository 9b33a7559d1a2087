"""The ``gapdiag`` command line: a thin shell over :mod:`gapdiag.api`.

Commands parse options, call the library and print. Every user-caused failure is a
:class:`gapdiag.errors.GapdiagError`; :func:`main` prints it as one line on stderr and exits with its code.
``--debug`` (anywhere on the command line) or ``GAPDIAG_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
from typing import Sequence

import typer

from gapdiag import __version__
from gapdiag.commands import check as _check_commands
from gapdiag.commands import plot as _plot_commands
from gapdiag.commands._common import err_console
from gapdiag.errors import GapdiagError

app = typer.Typer(
    name="gapdiag",
    help=(
        "Diagnose the embedding space of CLIP-like models: modality gap, Cos_TP, angular value, uniformity, "
        "effective rank, retrieval R@K and clustering V-Measure.\n\n"
        "Start with `gapdiag measure` (no arguments: a bundled tiny CLIP model on bundled real data, offline). "
        "Add --debug anywhere to see tracebacks."
    ),
    no_args_is_help=True,
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


_plot_commands.register(app)
_check_commands.register(app)


def run(argv: Sequence[str] | None = None) -> int:
    """Run the CLI on ``argv`` and return the exit code (what :func:`main` and the tests call)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("GAPDIAG_DEBUG", "") not in ("", "0")
    args = [a for a in args if a != "--debug"]
    try:
        app(args=args, prog_name="gapdiag", standalone_mode=False)
    except GapdiagError as e:
        if debug:
            raise
        err_console.print(f"[bold red]error:[/] {e.one_line()}", highlight=False, soft_wrap=True)
        return e.exit_code
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        err_console.print("aborted")
        return 130
    except KeyboardInterrupt:
        err_console.print("interrupted: work committed so far is kept in the cache; run again to resume")
        return 130
    except Exception as e:  # click usage errors arrive here with standalone_mode=False
        import click

        if isinstance(e, click.exceptions.ClickException):
            if debug:
                raise
            e.show()
            return e.exit_code
        if isinstance(e, click.exceptions.Exit):
            return e.exit_code
        raise
    return 0


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())
