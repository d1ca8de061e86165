"""Assertions shared by the error-text tests: one line on stderr, exit code 2, no traceback."""

from __future__ import annotations

from typer.testing import CliRunner

from ensemble.cli import app

runner = CliRunner()


def ens(*args: object):
    """Run `ens ARGS...` in-process and return the click Result."""
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(result, *fragments: str) -> str:
    """Assert the command failed as DESIGN.md says (exit 2, one `error: ` line naming each
    fragment, no traceback) and return that line."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]
