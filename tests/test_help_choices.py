"""``--help`` shows the choices of an option that has them (``[umap|pca]``), not its type (``<str>``), and the choices
it shows are the ones the code accepts (issue #30 §5)."""

from __future__ import annotations

import pytest
import typer.main

from gapdiag.cache.keys import DTYPES
from gapdiag.cli import app
from gapdiag.embedding.preprocess import PREPROCESS_BACKENDS
from gapdiag.figures.embedding_map import COLOR_BY, METHODS
from gapdiag.figures.files import FORMATS as PLOT_FORMATS
from gapdiag.figures.kinds import KINDS
from gapdiag.metrics.engine import RETRIEVAL_ENGINES
from gapdiag.models.loading import PRECISIONS
from gapdiag.report.export import MAP_METHODS
from gapdiag.report.html import FIGURE_FORMATS
from gapdiag.training.losses import LOSSES

#: (command, option) -> the values the code accepts; the metavar must list exactly these.
CHOICES = {
    ("measure", "--device"): ("auto", "cpu", "cuda", "cuda:N", "mps"),
    ("train", "--device"): ("auto", "cpu", "cuda", "cuda:N", "mps"),
    ("measure", "--precision"): PRECISIONS,
    ("measure", "--preprocess"): PREPROCESS_BACKENDS,
    ("embed", "--dtype"): DTYPES,
    ("measure", "--retrieval-engine"): RETRIEVAL_ENGINES,
    ("plot", "--kind"): (*KINDS, "all"),
    ("report", "--kind"): (*(k for k in KINDS if k != "compare"), "all"),
    ("plot", "--method"): METHODS,
    ("report", "--method"): METHODS,
    ("plot", "--color-by"): COLOR_BY,
    ("plot", "--format"): PLOT_FORMATS,
    ("report", "--format"): FIGURE_FORMATS,
    ("export", "--map"): MAP_METHODS,
    ("train", "--loss"): tuple(LOSSES),
}


def _option(command: str, name: str) -> typer.core.TyperOption:
    cli = typer.main.get_command(app)
    (option,) = [p for p in cli.commands[command].params if name in p.opts]  # type: ignore[attr-defined]
    return option


@pytest.mark.parametrize(("command", "name"), list(CHOICES))
def test_the_metavar_lists_the_choices_the_code_accepts(command: str, name: str) -> None:
    metavar = _option(command, name).metavar
    assert metavar is not None and metavar.startswith("[") and metavar.endswith("]"), (command, name, metavar)
    assert sorted(metavar[1:-1].split("|")) == sorted(CHOICES[command, name]), (command, name, metavar)


def test_report_help_offers_no_compare_kind() -> None:
    option = _option("report", "--kind")
    assert "compare" not in (option.help or "") and "compare" not in (option.metavar or "")


def _all_options() -> list[tuple[str, typer.core.TyperOption]]:
    found = []

    def walk(command: object, path: str) -> None:
        found.extend((path, p) for p in command.params if p.param_type_name == "option")  # type: ignore[attr-defined]
        for name, sub in (getattr(command, "commands", None) or {}).items():
            walk(sub, f"{path} {name}".strip())

    walk(typer.main.get_command(app), "")
    return found


def test_every_visible_option_has_help() -> None:
    missing = [f"gapdiag {path} {option.opts[0]}" for path, option in _all_options()
               if not option.hidden and not (option.help or "").strip() and option.opts[0] != "--help"]
    assert missing == [], f"options without help: {missing}"


def test_skip_bad_help_names_every_row_it_drops() -> None:
    text = _option("measure", "--skip-bad").help or ""
    assert all(word in text for word in ("image", "caption", "label")), text


def test_image_column_help_names_every_default() -> None:
    from gapdiag.data.manifest import IMAGE_COLUMNS

    text = _option("measure", "--image-column").help or ""
    assert all(name in text for name in IMAGE_COLUMNS), text


def test_seed_help_names_only_what_the_command_seeds() -> None:
    assert "k-means" not in (_option("plot", "--seed").help or "")
    assert "UMAP" in (_option("plot", "--seed").help or "")
