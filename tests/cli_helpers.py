"""The one way tests run the CLI in-process and check a user error (exit 2, one ``error:`` line, no traceback)."""

from __future__ import annotations

from typing import Any

from gapdiag.cli import run


def gapdiag(capsys: Any, *args: object) -> tuple[int, str, str]:
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    code = run([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, out: str, err: str, *fragments: str, exit_code: int = 2) -> str:
    """A user-caused failure: ``exit_code``, nothing on stdout, one ``error:`` line naming ``fragments``.

    Returns the line, for further checks.
    """
    assert code == exit_code, (code, err)
    assert out == "", out
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]
