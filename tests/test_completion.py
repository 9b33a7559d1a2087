"""Shell completion: Typer's ``--install-completion`` / ``--show-completion`` (issue #30 §5, docs/cli.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import gapdiag

ROOT = Path(__file__).resolve().parent.parent


def _gapdiag(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "gapdiag", *args], capture_output=True, text=True, env=environ,
                          check=False)


def test_show_completion_prints_the_bash_script() -> None:
    run = _gapdiag("--show-completion", "bash")
    assert run.returncode == 0, run.stderr
    assert "_GAPDIAG_COMPLETE=complete_bash" in run.stdout
    assert "complete -o default -F _gapdiag_completion gapdiag" in run.stdout


def test_root_help_lists_the_completion_options(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = gapdiag(capsys, "--help")
    assert code == 0 and "--install-completion" in out and "--show-completion" in out


def test_the_shell_completes_commands_and_options() -> None:
    run = _gapdiag(env={"_GAPDIAG_COMPLETE": "complete_bash", "COMP_WORDS": "gapdiag mea", "COMP_CWORD": "1"})
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["measure"]
    run = _gapdiag(env={"_GAPDIAG_COMPLETE": "complete_bash", "COMP_WORDS": "gapdiag cache v", "COMP_CWORD": "2"})
    assert run.stdout.split() == ["verify"]
    run = _gapdiag(env={"_GAPDIAG_COMPLETE": "complete_bash", "COMP_WORDS": "gapdiag measure --dev",
                        "COMP_CWORD": "2"})
    assert run.stdout.split() == ["--device"]


def test_install_completion_writes_the_script_where_bash_reads_it(tmp_path: Path) -> None:
    run = _gapdiag("--install-completion", "bash", env={"HOME": str(tmp_path), "SHELL": "/bin/bash"})
    assert run.returncode == 0, run.stderr
    script = tmp_path / ".bash_completions" / "gapdiag.sh"
    assert "_GAPDIAG_COMPLETE=complete_bash" in script.read_text()
    assert str(script.relative_to(tmp_path)) in (tmp_path / ".bashrc").read_text()
