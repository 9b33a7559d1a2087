"""The README's Quickstart is what CI runs: two command lines, the second verbatim in .ci/run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _quickstart_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    return [line for block in blocks for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_quickstart_has_exactly_two_command_lines():
    commands = _quickstart_commands()
    assert len(commands) == 2, commands
    install_and_run, install_and_test = commands
    assert install_and_run.rstrip().endswith("gapdiag measure")
    assert 'pip install -e ".[test]"' in install_and_test and "pytest" in install_and_test


def test_ci_runs_the_test_line_verbatim():
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert _quickstart_commands()[1] in ci_lines


def test_every_doc_the_readme_names_exists():
    names = set(re.findall(r"docs/[\w.-]+\.md", (ROOT / "README.md").read_text()))
    assert names
    missing = sorted(n for n in names if not (ROOT / n).is_file())
    assert not missing, missing
