"""Every ``--option`` that the docs, the README, the help texts or an error message name exists in the CLI.

A ``gapdiag <command> ... --option`` invocation must name an option of that command; an ``--option`` named on
its own (in prose, a hint, a help text) must exist on some command. Options of other tools (pip, pytest,
torchrun) are listed in :data:`OTHER_TOOLS`.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import typer.main
from cli_helpers import gapdiag

from gapdiag.cli import app

ROOT = Path(__file__).resolve().parent.parent
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
INVOCATION = re.compile(r"\bgapdiag\s+([a-z][a-z-]*)(?:\s+([a-z][a-z-]*))?")
#: Where an invocation ends: a code span, a shell separator or the end of the line.
END = re.compile(r"`|&&|\|\||[|;)]|\s#\s")
#: Options of other programs that the docs and messages name (pip, pytest, torchrun, SLURM, gh, apt...).
OTHER_TOOLS = frozenset({
    "--nproc-per-node", "--nnodes", "--no-deps", "--no-build-isolation", "--no-index", "--force-reinstall",
    "--system-site-packages", "--without-pip", "--python", "--user", "--upgrade", "--index-url",
    "--extra-index-url", "--pre", "--cov", "--durations", "--timeout", "--strict-markers", "--basetemp",
    "--hypothesis-profile", "--hypothesis-seed", "--randomly-seed", "--lf", "--standalone", "--rdzv-backend", "--rdzv-endpoint",
    "--node-rank", "--master-addr", "--master-port", "--gpus", "--model-id", "--debug", "--body-file",
    "--no-install-recommends", "--nodes", "--ntasks-per-node", "--gpus-per-node", "--cpus-per-task",
    "--x", "--y", "--text",  # embedding-atlas, the viewer that `gapdiag export` points to
})
#: Options of the repository's own scripts (``python benchmarks/measure.py --large``), from their argparse.
SCRIPT_OPTIONS = frozenset(
    m[1] for folder in ("benchmarks", "scripts") for script in (ROOT / folder).glob("*.py")
    for m in re.finditer(r"add_argument\(\s*[\"'](--[a-z0-9-]+)", script.read_text(encoding="utf-8")))


def _options() -> dict[tuple[str, ...], set[str]]:
    """Each command path (``("cache", "ls")``) with every option it accepts (hidden aliases, --no-x too)."""
    found: dict[tuple[str, ...], set[str]] = {}

    def walk(command: object, path: tuple[str, ...]) -> None:
        params = command.params  # type: ignore[attr-defined]
        found[path] = {o for p in params if p.param_type_name == "option"
                       for o in (*p.opts, *p.secondary_opts)} | {"--help", "--debug"}
        for name, sub in (getattr(command, "commands", None) or {}).items():
            walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return found


COMMANDS = _options()
EVERY_OPTION = set().union(*COMMANDS.values())


def _problems(text: str, where: str) -> list[str]:
    """Options in ``text`` that their command (or, outside an invocation, every command) lacks."""
    problems, claimed = [], set()
    for line_no, line in enumerate(text.splitlines(), 1):
        for call in INVOCATION.finditer(line):
            path = (call[1], call[2]) if (call[1], call[2]) in COMMANDS else (call[1],)
            if path not in COMMANDS:
                continue  # prose ("gapdiag reads ..."), not a command
            start = call.end() if len(path) == 2 else call.end(1)
            end = END.search(line, start)
            span = line[start:end.start() if end else len(line)]
            for option in OPTION.finditer(span):
                claimed.add((line_no, start + option.start()))
                if option[0] not in COMMANDS[path]:
                    problems.append(f"{where}:{line_no}: `gapdiag {' '.join(path)}` has no {option[0]}")
        for option in OPTION.finditer(line):
            if (line_no, option.start()) in claimed:
                continue
            name = option[0]
            if name not in EVERY_OPTION | OTHER_TOOLS | SCRIPT_OPTIONS:
                problems.append(f"{where}:{line_no}: no command has {name}")
    return problems


def _string_constants(path: Path) -> list[str]:
    """Every string literal of a module (messages, hints, help texts, docstrings; f-strings' text parts)."""
    return [node.value for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)]


DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_options_named_in_docs_exist(doc: Path) -> None:
    assert _problems(doc.read_text(encoding="utf-8"), doc.name) == []


def test_options_named_in_messages_and_help_exist() -> None:
    problems = []
    for module in sorted((ROOT / "gapdiag").rglob("*.py")):
        for text in _string_constants(module):
            problems += _problems(text, str(module.relative_to(ROOT)))
    assert problems == []


def test_the_checker_finds_a_missing_option() -> None:
    text = ("Run `gapdiag plot --format svg` or `gapdiag report --figure-format svg`; `--image-root DIR`.\n"
            "gapdiag compare a.json b.json --baseline x.json\n--no-such-option")
    assert _problems(text, "t") == ["t:2: `gapdiag compare` has no --baseline",
                                    "t:3: no command has --no-such-option"]


def test_flags_show_no_bool_placeholder(capsys) -> None:
    code, out, _ = gapdiag(capsys, "--help")
    assert code == 0 and "--version" in out
    assert "<bool>" not in out
    code, out, _ = gapdiag(capsys, "measure", "--help")
    assert "<bool>" not in out and "--json" in out and "<int" in out  # options with values keep their type


def test_plot_and_report_share_format_dpi_and_label_spelling() -> None:
    from gapdiag.figures import DEFAULT_DPI

    commands = typer.main.get_command(app).commands
    plot, report = ({p.name: p for p in commands[c].params} for c in ("plot", "report"))
    assert plot["fmt"].opts == report["fmt"].opts == ["--format", "-f"]
    assert report["figure_format"].hidden  # the old spelling still parses
    assert f"default {DEFAULT_DPI}," in plot["dpi"].help and plot["dpi"].help == report["dpi"].help
    compare = {p.name: p for p in typer.main.get_command(app).commands["compare"].params}
    assert sorted(plot["label"].opts) == sorted(compare["labels"].opts) == ["--label", "-l"]


def test_help_texts_match_what_the_options_do() -> None:
    from gapdiag.figures import COLOR_BY

    commands = typer.main.get_command(app).commands
    params = {name: {p.name: p for p in commands[name].params} for name in ("plot", "compare", "train")}
    assert all(f"`{value}`" in params["plot"]["color_by"].help for value in COLOR_BY)
    assert "baseline" not in params["compare"]["sample"].help + params["compare"]["seed"].help
    assert "UMAP" not in params["train"]["seed"].help
    assert "test split" not in params["train"]["data"].help
