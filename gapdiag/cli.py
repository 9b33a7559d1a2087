"""The ``gapdiag`` command line: builds the Typer app from gapdiag/commands/ and runs it.

Every command lives in a module of :mod:`gapdiag.commands` (parse options, call :mod:`gapdiag.api`, print);
this file only assembles the app, registers the command groups and turns errors into one line. Every user-caused
failure is a :class:`gapdiag.errors.GapdiagError`; :func:`main` prints it as one line on stderr and exits with its code.
``--debug`` (anywhere on the command line) or ``GAPDIAG_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import warnings
from collections.abc import Iterator, Sequence

import typer

from gapdiag import __version__
from gapdiag.commands import cache as cache_commands
from gapdiag.commands import check as check_commands
from gapdiag.commands import embed as embed_commands
from gapdiag.commands import export as export_commands
from gapdiag.commands import intervene as intervene_commands
from gapdiag.commands import models as models_commands
from gapdiag.commands import plot as plot_commands
from gapdiag.commands import track as track_commands
from gapdiag.commands import train as train_commands
from gapdiag.commands.common import FLAG, Group, err_console
from gapdiag.errors import GapdiagError

app = typer.Typer(
    cls=Group,
    name="gapdiag",
    help=(
        "Diagnose the embedding space of CLIP-like models: modality gap, Cos_TP, angular value, uniformity, "
        "effective rank, retrieval R@K and clustering V-Measure.\n\n"
        "Start with `gapdiag measure` (no arguments: a bundled tiny CLIP model on bundled real data, offline). "
        "Add --debug anywhere to see tracebacks."
    ),
    no_args_is_help=True,
    epilog="Examples: `gapdiag measure`, `gapdiag embed -d captions.csv -m ViT-B-32 -p openai`, `gapdiag cache ls`",
    add_completion=True,  # --install-completion / --show-completion: Typer's, for bash, zsh, fish and PowerShell
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"gapdiag {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, metavar=FLAG,
                                 help="Print the version and exit."),
) -> None:
    """Diagnose the embedding space of CLIP-like models."""



for _group in (embed_commands, intervene_commands, train_commands, track_commands, cache_commands, plot_commands,
               check_commands, export_commands, models_commands):
    _group.register(app)


def _print_error(message: str) -> None:
    """``error: <message>`` on one stderr line; brackets in paths or values are text, not rich markup."""
    from rich.markup import escape

    line = escape(" ".join(message.split()))
    err_console.print(f"[bold red]error:[/] {line}", highlight=False, soft_wrap=True)


#: Exit code of an unexpected exception (a bug): sysexits' EX_SOFTWARE. Never 1, which ``check`` uses for "regression
#: found" (Python's own exit code for an uncaught exception), nor 2 ("your input"), nor 3 ("the gate decided nothing").
INTERNAL_ERROR = 70


def run(argv: Sequence[str] | None = None) -> int:
    """Run the CLI on ``argv`` and return the exit code (what :func:`main` and the tests call).

    An exception that is not a :class:`GapdiagError` is a bug: one line naming it and ``--debug``, exit
    :data:`INTERNAL_ERROR` (``--debug`` re-raises it with its traceback).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("GAPDIAG_DEBUG", "") not in ("", "0")
    args = [a for a in args if a != "--debug"]
    try:
        if debug:  # a developer's run: Python's own warnings, with their file and line
            return _run(args, debug)
        with warnings.catch_warnings(record=True) as caught:
            code = _run(args, debug)
        if code == 0:
            _print_warnings(caught)
        return code
    except Exception as e:  # whatever escaped is reported as one line, never as exit 1
        if debug:
            raise
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        _print_error(f"internal error (a gapdiag bug, not your input): {type(e).__name__}"
                     + (f": {first}" if first else "")
                     + " (rerun with --debug for the traceback and report it)")
        return INTERNAL_ERROR


def _print_warnings(caught: Sequence[warnings.WarningMessage]) -> None:
    """Each distinct Python warning raised during a command that succeeded, as one ``warning:`` line naming its
    kind and package, without the file, line and source text Python prints (torch's DataLoader worker advice,
    scikit-learn's convergence notes...). A command that failed prints only its one error line: the warnings
    that led to it (numpy's overflow before "contains NaN or inf") are dropped with the run.

    Warnings raised in forked worker processes stay there (nothing is printed for them); ``--debug`` shows every
    warning as Python prints it.
    """
    from rich.markup import escape

    seen: set[str] = set()
    for w in caught:
        text = " ".join(str(w.message).split())
        if not text or text in seen:
            continue
        seen.add(text)
        err_console.print(f"[yellow]warning:[/] {escape(text)} ({w.category.__name__} from {_package(w.filename)})",
                          highlight=False, soft_wrap=True)


def _package(filename: str) -> str:
    """The package a warning came from: the folder under site-packages (or gapdiag), else the file's name."""
    parts = os.path.normpath(filename).split(os.sep)
    for marker in ("site-packages", "dist-packages"):
        if marker in parts and parts.index(marker) + 1 < len(parts):
            return parts[parts.index(marker) + 1].removesuffix(".py")
    return "gapdiag" if "gapdiag" in parts else os.path.basename(filename).removesuffix(".py")


def _run(args: list[str], debug: bool) -> int:
    """:func:`run` for the parsed ``args``: GapdiagError, usage errors and interrupts become their exit codes."""
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
