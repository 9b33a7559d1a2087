"""The models room's seam (issue #30 §2): resolving ``--model`` to a spec is apart from building it, and every module
keeps the house size rule (about 500 lines)."""

from __future__ import annotations

import ast
from pathlib import Path

MODELS = Path(__file__).resolve().parents[1] / "gapdiag" / "models"
#: The house rule: about 500 lines a module (docs/architecture.md).
MAX_LINES = 500


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at its top or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return found


def test_every_models_module_keeps_the_size_rule() -> None:
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in sorted(MODELS.glob("*.py"))}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_resolving_a_model_never_reaches_the_builder() -> None:
    """Resolution is what a cache hit runs: it reads files and configs, and never imports the builder (which
    imports open_clip and torch in its functions)."""
    imports = imported_modules(MODELS / "resolving.py")
    assert not {m for m in imports if m.startswith(("gapdiag.models.loading", "open_clip.factory", "torch"))}
    assert "gapdiag.models.resolving.ModelSpec" in imported_modules(MODELS / "loading.py")
