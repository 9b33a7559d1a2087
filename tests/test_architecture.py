"""The one-way arrows of docs/architecture.md, read from the imports of the source (AST, nothing imported).

Commands speak only to the api (plus the error types and presentation helpers); metrics are pure (no cache,
models or data); readers know no cache; the library never imports the command line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gapdiag"

#: What a command module may import from gapdiag.
COMMAND_ALLOWED = ("gapdiag.api", "gapdiag.errors", "gapdiag.presentation", "gapdiag.commands")


def gapdiag_imports(path: Path) -> list[tuple[int, str]]:
    """Every ``gapdiag...`` module imported by ``path`` (top level, in functions, under TYPE_CHECKING)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from gapdiag import api` imports the module gapdiag.api; `from gapdiag import __version__` gapdiag.
            if node.module == "gapdiag":
                found += [(node.lineno, f"gapdiag.{a.name}" if a.name != "__version__" else "gapdiag")
                          for a in node.names]
            else:
                found.append((node.lineno, node.module))
    return [(line, name) for line, name in found if name == "gapdiag" or name.startswith("gapdiag.")]


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def violations(files: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    return [f"{path.name}:{line} imports {name}"
            for path in files for line, name in gapdiag_imports(path) if within(name, forbidden)]


def test_the_import_walker_sees_every_form(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("import gapdiag.cache\nfrom gapdiag import api, plot\nfrom gapdiag.metrics.engine import x\n"
                      "def f():\n    from gapdiag.data import base\nimport numpy\nfrom . import y\n")
    assert [n for _, n in gapdiag_imports(source)] == [
        "gapdiag.cache", "gapdiag.api", "gapdiag.plot", "gapdiag.metrics.engine", "gapdiag.data"]
    assert violations([source], ("gapdiag.metrics",)) and not violations([source], ("gapdiag.models",))


def test_commands_import_only_the_api_and_presentation():
    commands = sorted((PACKAGE / "commands").glob("*.py"))
    assert len(commands) >= 6  # embed, train, cache, plot, check, export (+ the shared helpers)
    bad = [f"{path.name}:{line} imports {name}" for path in commands for line, name in gapdiag_imports(path)
           if not within(name, COMMAND_ALLOWED)]
    assert bad == [], "commands speak only to gapdiag.api: " + "; ".join(bad)


def test_cli_only_assembles_the_commands():
    bad = [name for _, name in gapdiag_imports(PACKAGE / "cli.py")
           if not within(name, ("gapdiag", "gapdiag.commands", "gapdiag.errors"))]
    assert bad == []


#: Every module of the cache room (gapdiag/cache*.py).
CACHE_ROOM = ("gapdiag.cache", "gapdiag.cache_keys", "gapdiag.cache_files", "gapdiag.cache_writer",
              "gapdiag.cache_integrity")


@pytest.mark.parametrize(("room", "forbidden"), [
    ("metrics", (*CACHE_ROOM, "gapdiag.models", "gapdiag.data", "gapdiag.cli", "gapdiag.commands")),
    ("data", (*CACHE_ROOM, "gapdiag.cli", "gapdiag.commands")),
])
def test_pure_rooms_do_not_reach_out(room, forbidden):
    assert {p.stem for p in PACKAGE.glob("cache*.py")} == {name.split(".")[1] for name in CACHE_ROOM}
    assert violations(sorted((PACKAGE / room).rglob("*.py")), forbidden) == []


def test_the_library_never_imports_the_command_line():
    library = [p for p in sorted(PACKAGE.rglob("*.py"))
               if p.name not in ("cli.py", "__main__.py") and "commands" not in p.relative_to(PACKAGE).parts]
    assert violations(library, ("gapdiag.cli", "gapdiag.commands")) == []
