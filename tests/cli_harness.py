"""Run the real command lines as a user does and check what a bad input must leave behind.

Imported by the test modules (``from cli_harness import ...``); pytest puts ``tests/`` on the path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class CommandResult:
    """Exit code and captured output of one command-line run."""

    code: int
    out: str
    err: str

    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.startswith("error: ")]


def run_command(argv: Sequence[str | Path], cwd: Path | None = None, timeout: float = 600) -> CommandResult:
    """Run ``python ARGV`` (a script path or ``-m module`` and its arguments) as a user would."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"}
    done = subprocess.run(
        [sys.executable, *map(str, argv)],
        cwd=cwd or REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return CommandResult(done.returncode, done.stdout, done.stderr)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes), to check that a run changed none of them."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_user_error(result: CommandResult, *fragments: str) -> str:
    """Exit code 2, no traceback, exactly one ``error:`` line containing every fragment; returns that line."""
    assert "Traceback" not in result.err, result.err
    lines = result.error_lines()
    assert result.code == 2, (result.code, result.err)
    assert len(lines) == 1, result.err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]
