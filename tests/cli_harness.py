"""Run the real command lines as a user does and check what a bad input must leave behind; make the bad image
files such inputs hold.

Imported by the test modules (``from cli_harness import ...``); pytest puts ``tests/`` on the path.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE_JPEG = REPO / "recipes" / "sample" / "images" / "HICO_test2015_00000004.jpg"  # 640x427


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


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels and holds none (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def truncated(path: Path) -> bytes:
    """The first half of the file at ``path`` (a download cut off midway)."""
    data = path.read_bytes()
    return data[: len(data) // 2]


PARQUET = object()
"""In a :func:`write_files` table: stands for the bytes of a parquet the test built (a validation dump's rows)."""


def jsonl(*lines: object) -> str:
    """``lines`` as JSONL text, one JSON value per line."""
    return "".join(json.dumps(line) + "\n" for line in lines)


def write_files(folder: Path, files: dict[str, object], parquet: bytes) -> None:
    """Create ``files`` under ``folder``: ``None`` a folder, :data:`PARQUET` the bytes ``parquet``, bytes or text."""
    for name, content in files.items():
        path = folder / name
        if content is None:
            path.mkdir()
        elif content is PARQUET:
            path.write_bytes(parquet)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(str(content))


def assert_bad_input(module: str, folder: Path, args: Sequence[str], expect: str | tuple[str, ...]) -> None:
    """``python -m module args`` in ``folder`` fails as a user mistake: the whole ``error:`` line is ``expect`` (or
    holds each of its fragments), nothing on stdout, and no file in ``folder`` changed or appeared."""
    before = snapshot(folder)
    result = run_command(["-m", module, *args], cwd=folder)
    if isinstance(expect, str):
        assert assert_user_error(result) == f"error: {expect}"
    else:
        assert_user_error(result, *expect)
    assert result.out == ""  # no table before the error
    assert snapshot(folder) == before
