"""The one-way arrows of docs/architecture.md, read from the imports of the source (AST, nothing imported).

Commands speak only to the api (plus the error types and presentation helpers); metrics are pure (no cache,
models or data); readers know no cache; the library never imports the command line.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gapdiag"

#: What a command module may import from gapdiag.
COMMAND_ALLOWED = ("gapdiag.api", "gapdiag.errors", "gapdiag.report.presentation", "gapdiag.commands")


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


#: The cache room: the package gapdiag/cache/ and every module in it.
CACHE_ROOM = ("gapdiag.cache",)


#: The face: what only the command line may import.
FACE = ("gapdiag.cli", "gapdiag.commands")


@pytest.mark.parametrize(("room", "forbidden"), [
    # metrics are pure functions of arrays: no store, model, reader, rendering or screen
    ("metrics", (*CACHE_ROOM, "gapdiag.models", "gapdiag.data", "gapdiag.embedding", "gapdiag.report",
                 "gapdiag.figures", "gapdiag.training", "gapdiag.check", "gapdiag.api", *FACE)),
    # readers know no cache (the api hands them the memo folder) and no screen
    ("data", (*CACHE_ROOM, "gapdiag.models", "gapdiag.embedding", "gapdiag.api", *FACE)),
    # the store knows keys, not models, readers or renderings
    ("cache", ("gapdiag.models", "gapdiag.data", "gapdiag.embedding", "gapdiag.report", "gapdiag.figures",
               "gapdiag.api", *FACE)),
    # figures draw the record; the report page gets its figures from the api, never by importing them
    ("report", ("gapdiag.figures", *CACHE_ROOM, "gapdiag.api", *FACE)),
    # the vectors every room passes know no metric and no store
    ("vectors.py", ("gapdiag.metrics", *CACHE_ROOM, "gapdiag.api", *FACE)),
])
def test_rooms_do_not_reach_out(room, forbidden):
    files = [PACKAGE / room] if room.endswith(".py") else sorted((PACKAGE / room).rglob("*.py"))
    assert files and all(f.is_file() for f in files)
    assert violations(files, forbidden) == []


#: The rooms (packages) and the shared modules at the top of gapdiag/ (docs/architecture.md, "Files").
TOP_LEVEL = {"api", "cache", "check", "commands", "data", "embedding", "figures", "metrics", "models", "report",
             "training", "__init__.py", "__main__.py", "cli.py", "device.py", "errors.py", "fsutil.py",
             "outputs.py", "progress.py", "settings.py", "vectors.py", "py.typed"}


def test_the_top_level_is_the_rooms_and_a_few_shared_modules():
    """Issue #26: the folders show the rooms. A new module goes into its room; one more top-level entry is a
    decision to write down here and in docs/architecture.md."""
    assert {p.name for p in PACKAGE.iterdir() if p.name != "__pycache__"} == TOP_LEVEL


def test_no_module_repeats_its_package_name():
    """``cache/cache_keys.py`` says "cache" twice; the folder already says it (issue #26)."""
    found = [f"{path.relative_to(PACKAGE)}" for path in PACKAGE.rglob("*.py")
             if path.parent != PACKAGE and path.stem.startswith(path.parent.name.rstrip("s"))]
    assert found == []


def test_the_library_never_imports_the_command_line():
    library = [p for p in sorted(PACKAGE.rglob("*.py"))
               if p.name not in ("cli.py", "__main__.py") and "commands" not in p.relative_to(PACKAGE).parts]
    assert violations(library, ("gapdiag.cli", "gapdiag.commands")) == []


# ------------------------------------------------------------------------- lazy imports (issue #13)

#: Third-party libraries slow to import (or optional) enough that a function may import them lazily, and with
#: them a gapdiag module that loads one of them when it is imported.
HEAVY_LIBRARIES = frozenset({"torch", "open_clip", "timm", "torchvision", "umap", "numba", "matplotlib", "sklearn",
                             "faiss", "plotly", "pyarrow", "PIL", "webdataset", "safetensors", "scipy", "transformers"})


def module_source(root: Path, name: str) -> Path | None:
    """The source file of module ``name`` under ``root`` (a package's ``__init__.py``); None if there is none."""
    path = root.joinpath(*name.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(root: Path, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The modules an import statement names: ``from gapdiag import plot`` gapdiag.plot, ``from gapdiag.plot
    import x`` gapdiag.plot (a parent package is loaded too; :func:`heavy_libraries_loaded` follows it)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level or not node.module:
        return []
    names = [f"{node.module}.{a.name}" for a in node.names]
    return list(dict.fromkeys(n if module_source(root, n) is not None else node.module for n in names))


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def import_time_statements(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """The imports a module runs when it is imported: none in a function, none under ``if TYPE_CHECKING``."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        elif _is_type_checking(node):
            found += import_time_statements(node.orelse)
        else:  # if/try/with/class blocks run at import
            for block in ("body", "orelse", "finalbody", "handlers"):
                found += import_time_statements([n for n in getattr(node, block, []) if isinstance(n, ast.AST)])
    return found


@functools.cache
def heavy_libraries_loaded(root: Path, name: str) -> frozenset[str]:
    """The heavy libraries that importing gapdiag module ``name`` loads: its import-time imports and those of its
    parent packages, followed through every gapdiag module they load (read from the source, nothing imported)."""
    seen, todo, heavy = set(), [name], set()
    while todo:
        module = todo.pop()
        parents = [".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)]
        for loaded in [module, *parents]:
            path = module_source(root, loaded)
            if loaded in seen or path is None:
                continue
            seen.add(loaded)
            for imported in import_time_modules(root, path):
                if imported.split(".")[0] in HEAVY_LIBRARIES:
                    heavy.add(imported.split(".")[0])
                elif imported.split(".")[0] == name.split(".")[0]:
                    todo.append(imported)
    return frozenset(heavy)


@functools.cache
def import_time_modules(root: Path, path: Path) -> tuple[str, ...]:
    """Every module the file ``path`` imports when it is imported."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return tuple(m for node in import_time_statements(tree.body) for m in imported_modules(root, node))


def lazy_internal_imports(root: Path, package: str = "gapdiag") -> set[tuple[str, str]]:
    """``(file, module)`` for every function-level import of a gapdiag module that loads no heavy library the
    importing module does not load already (a laziness that hides a dependency and saves nothing)."""
    found = set()
    for path in sorted((root / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        own = heavy_libraries_loaded(root, module_name(root, path))
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if not isinstance(node, (ast.Import, ast.ImportFrom)):
                    continue
                for target in imported_modules(root, node):
                    is_internal = target == package or target.startswith(package + ".")
                    if is_internal and not heavy_libraries_loaded(root, target) - own:
                        found.add((path.relative_to(root / package).as_posix(), target))
    return found


def test_the_lazy_import_walker_follows_modules_to_heavy_libraries(tmp_path):
    package = tmp_path / "gapdiag"
    (package / "sub").mkdir(parents=True)
    sources = {
        "__init__.py": "",
        "sub/__init__.py": "from gapdiag import heavy\n",
        "sub/leaf.py": "",
        "heavy.py": "import numpy\nif TYPE_CHECKING:\n    import scipy\ntry:\n    import torch.nn\n"
                    "except ImportError:\n    pass\ndef f():\n    import matplotlib\n",
        "light.py": "import numpy\n",
        "user.py": "def f():\n    from gapdiag.sub import leaf\n    from gapdiag import light\n",
        "has_torch.py": "import torch\nclass C:\n    def f(self):\n        import gapdiag.heavy\n",
    }
    for name, text in sources.items():
        (package / name).write_text(text)
    assert heavy_libraries_loaded(tmp_path, "gapdiag.heavy") == {"torch"}
    assert heavy_libraries_loaded(tmp_path, "gapdiag.sub.leaf") == {"torch"}  # through its package's __init__
    assert heavy_libraries_loaded(tmp_path, "gapdiag.light") == set()
    # gapdiag.sub.leaf loads torch (allowed); gapdiag.light loads nothing heavy; has_torch loads torch already.
    assert lazy_internal_imports(tmp_path) == {("user.py", "gapdiag.light"), ("has_torch.py", "gapdiag.heavy")}


def test_function_level_imports_are_only_for_heavy_libraries():
    """Issue #13: a gapdiag import sits at module top level; a function imports a gapdiag module lazily only when
    that module loads a heavy library (torch, matplotlib, ...) that the importing module does not load already."""
    found = sorted(lazy_internal_imports(PACKAGE.parent))
    assert found == [], "move these imports to the top of the module (break a cycle by moving code): " + "; ".join(
        f"{file} imports {module} in a function" for file, module in found)


# ------------------------------------------------------------------------- no cycles (issue #26, item 3)


def module_graph(root: Path, package: str = "gapdiag") -> dict[str, set[str]]:
    """Module -> the gapdiag modules it imports, every import counted: at the top, in functions and under
    ``if TYPE_CHECKING`` (a cycle closed through a type hint is a cycle too). ``from gapdiag.cache import
    integrity`` names the module ``gapdiag.cache.integrity``, not the package that holds it."""
    graph: dict[str, set[str]] = {}
    for path in sorted((root / package).rglob("*.py")):
        name = module_name(root, path)
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                targets.update(t for t in imported_modules(root, node) if t == package or t.startswith(package + "."))
        graph[name] = targets - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of ``graph`` with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_the_cycle_finder_sees_a_cycle_through_a_type_hint(tmp_path):
    package = tmp_path / "gapdiag"
    package.mkdir()
    sources = {"__init__.py": "", "a.py": "from gapdiag import b\n",
               "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from gapdiag.a import x\n",
               "c.py": "def f():\n    import gapdiag.a\n", "d.py": "import gapdiag.c\n"}
    for name, text in sources.items():
        (package / name).write_text(text)
    assert cycles(module_graph(tmp_path)) == [["gapdiag.a", "gapdiag.b"]]
    (package / "a.py").write_text("import gapdiag.d\n")
    assert cycles(module_graph(tmp_path)) == [["gapdiag.a", "gapdiag.c", "gapdiag.d"]]


def test_no_module_imports_itself_back():
    """No two gapdiag modules import each other, directly or round a loop, not even through a type hint (the
    cache store and its writer, the gate's evaluation and its rendering did): break a loop by moving code."""
    assert cycles(module_graph(PACKAGE.parent)) == []


# ---------------------------------------------- settings resolved once, at the edge (issue #26, item 3)

#: Where the settings are resolved: the api's verbs (the edge), and the modules that define the resolution.
EDGE = ("gapdiag.api", "gapdiag.settings", "gapdiag.device")
#: Calls that resolve a setting: the device (``auto`` -> cuda/mps/cpu) and the cache root (a default path).
RESOLVING_CALLS = {("gapdiag.device", "resolve"), ("gapdiag.settings", "default_cache_dir"),
                   ("gapdiag.settings", "cache_root"), ("gapdiag.settings", "resolve"), ("gapdiag.settings", "current"),
                   ("gapdiag.settings.Settings", "build")}


def resolving_calls(path: Path) -> list[tuple[int, str]]:
    """``(line, "module.name")`` of each call in ``path`` to a function of :data:`RESOLVING_CALLS`, however it was
    imported (``from gapdiag import device as devices``, ``from gapdiag.settings import Settings``...)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: dict[str, str] = {}  # local name -> the module, class or function it stands for
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names})
        elif isinstance(node, ast.Import):
            names.update({a.asname or a.name: a.name for a in node.names})
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in names:
            target = (names[func.value.id], func.attr)
        elif isinstance(func, ast.Name) and "." in names.get(func.id, ""):
            target = tuple(names[func.id].rsplit(".", 1))
        else:
            continue
        if target in RESOLVING_CALLS:
            found.append((node.lineno, ".".join(target)))
    return found


def test_the_resolving_call_finder_sees_every_spelling(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("from gapdiag import device as devices\nfrom gapdiag.settings import Settings, default_cache_dir\n"
                      "def f():\n    devices.resolve('auto')\n    Settings.build()\n    default_cache_dir()\n"
                      "    devices.parse('cpu')\n")
    assert resolving_calls(source) == [(4, "gapdiag.device.resolve"), (5, "gapdiag.settings.Settings.build"),
                                       (6, "gapdiag.settings.default_cache_dir")]


def test_settings_are_resolved_only_at_the_edge():
    """The device and the cache root are resolved once, by the api's verbs, and handed down as values: no room
    below resolves ``auto`` or falls back to a default cache path (issue #26). The metrics keep accepting
    ``device="auto"`` from direct library calls (their own defaults); the api never hands them ``auto``
    (``tests/test_api.py::test_measure_hands_the_metrics_a_resolved_device``)."""
    below = [p for p in sorted(PACKAGE.rglob("*.py"))
             if not within(module_name(PACKAGE.parent, p), EDGE)]
    assert [f"{path.relative_to(PACKAGE)}:{line} calls {call}" for path in below
            for line, call in resolving_calls(path)] == []


# ------------------------------------------------------- typed verbs, no private name crossing (item 4)


def test_nothing_below_the_door_imports_the_api():
    """The api calls the rooms; no room calls it back (no verb handed down as a callback has a way back either:
    the orchestration of plot, report, check and compare lives in the api itself)."""
    below = [p for p in sorted(PACKAGE.rglob("*.py")) if p.name not in ("cli.py", "__init__.py", "__main__.py")
             and not {"api", "commands"} & set(p.relative_to(PACKAGE).parts)]
    assert violations(below, ("gapdiag.api",)) == []


def private_crossings(root: Path, package: str = "gapdiag") -> set[tuple[str, str]]:
    """``(file, what)`` for each import of a private name (``_x``) or a private module from another package:
    ``from gapdiag.check.rules import _SLACK`` in check/evaluate.py, ``gapdiag.metrics.linalg`` in figures/."""
    found = set()
    for path in sorted((root / package).rglob("*.py")):
        here = module_name(root, path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom) or node.level or not (node.module or "").startswith(package):
                continue
            private_modules = [m for m in imported_modules(root, node)
                               if _owner(m) and not here.startswith(_owner(m) + ".")]
            private_names = [f"{node.module}.{a.name}" for a in node.names
                             if a.name.startswith("_") and not a.name.startswith("__") and node.module != here]
            found.update((path.relative_to(root / package).as_posix(), what) for what in private_modules + private_names)
    return found


def _owner(module: str) -> str:
    """The package a private module belongs to (``gapdiag.metrics`` for ``gapdiag.metrics.linalg``), or the
    module itself when no part of its name is private (anyone may import it)."""
    parts = module.split(".")
    private = [i for i, part in enumerate(parts) if i and part.startswith("_") and not part.startswith("__")]
    return ".".join(parts[:private[0]]) if private else ""


def test_the_private_crossing_finder_sees_names_and_modules(tmp_path):
    package = tmp_path / "gapdiag"
    (package / "a").mkdir(parents=True)
    sources = {"__init__.py": "", "a/__init__.py": "", "a/_inner.py": "X = 1\n", "a/user.py": "from gapdiag.a._inner import X\n",
               "b.py": "from gapdiag.a._inner import X\nfrom gapdiag.a.user import _y\nfrom gapdiag.a import __version__\n"}
    for name, text in sources.items():
        (package / name).write_text(text)
    assert private_crossings(tmp_path) == {("b.py", "gapdiag.a._inner"), ("b.py", "gapdiag.a.user._y")}


def test_no_private_name_crosses_a_module_boundary():
    """A name or module that starts with ``_`` stays in its module or package: what another room needs is public
    (the api's ``to_jsonable``, the gate's ``STATUS_ICON``) or moves to where it is used."""
    # Inside the metrics room its owner's tests hold the rule (issue #26, item 5 inside metrics).
    found = {(file, what) for file, what in private_crossings(PACKAGE.parent) if not file.startswith("metrics/")}
    assert found == set()


# --------------------------------------------------------------------- plain plumbing (issue #26, item 5)


def test_typer_is_used_as_documented():
    """No Typer class is patched when the CLI is imported, and no command's signature is rewritten: each command
    lists its options (the shared ones as annotated types) and uses Typer's own ``cls=`` hook for --help."""
    import typer
    from typer.core import TyperOption

    from gapdiag.cli import app

    assert TyperOption.display_type_rich.__module__ == "typer.core"
    group = typer.main.get_command(app)
    commands = [c for name, c in group.commands.items() if name != "cache"]
    commands += list(group.commands["cache"].commands.values())
    assert len(commands) >= 13
    for command in commands:
        registered = command.callback.__wrapped__  # Typer wraps what it is given; that must be the plain function
        assert not hasattr(registered, "__wrapped__") and "__signature__" not in vars(registered), command.name


def test_no_keyword_is_split_off_by_reading_a_signature():
    """Which keyword goes where is written down, never read off a function (``inspect.signature``,
    ``__kwdefaults__``, ``__signature__``) at run time; the metrics room is its owner's (issue #26, item 5)."""
    found = [f"{path.relative_to(PACKAGE)}:{node.lineno}" for path in sorted(PACKAGE.rglob("*.py"))
             if "metrics" not in path.relative_to(PACKAGE).parts
             for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
             if isinstance(node, ast.Attribute) and node.attr in ("signature", "__kwdefaults__", "__signature__")]
    assert found == []


#: The concepts written once (issue #26, item 5), and the module that writes each.
ONE_PLACE = {"atomic_write_json": "fsutil.py", "json_text": "fsutil.py", "json_default": "fsutil.py",
             "canonical_json": "fsutil.py", "hash_json": "fsutil.py", "sorted_choice": "metrics/sampling.py",
             "seeded_samples": "metrics/sampling.py"}


def test_each_shared_concept_is_defined_once():
    """One atomic JSON writer, one JSON text, one JSON hash, one seeded draw: a second definition anywhere (there
    were two atomic_write_json, a second hash_json in data/base.py, a second json_default in report/record.py) is
    a copy-paste twin waiting to drift."""
    defined = [(node.name, path.relative_to(PACKAGE).as_posix()) for path in sorted(PACKAGE.rglob("*.py"))
               for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
               if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in ONE_PLACE]
    assert sorted(defined) == sorted(ONE_PLACE.items())


def test_no_sorted_choice_is_drawn_by_hand_outside_the_metrics():
    """The figures draw their pairs and points with gapdiag.metrics.sampling (the same generator streams as
    before, so the same figure bytes); inside the metrics room its owner's tests hold the rule."""
    found = [f"{path.relative_to(PACKAGE)}:{node.lineno}" for path in sorted(PACKAGE.rglob("*.py"))
             if "metrics" not in path.relative_to(PACKAGE).parts
             for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
             if isinstance(node, ast.Attribute) and node.attr == "choice"]
    assert found == []
