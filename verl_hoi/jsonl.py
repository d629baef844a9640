"""JSON Lines files written one record at a time: reading them, and repairing a write cut off midway.

Every append-only file of the project (predictions, the distillation cache) holds one JSON object
per line. A run killed mid-write can leave a last line without its newline; such a *torn tail* is
the only damage these functions repair. A bad line anywhere before it is reported with its number
and the file is left as it is.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "out.jsonl"
>>> _ = path.write_bytes(b'{"a": 1}\\n{"a": 2')
>>> repair_torn_tail(path), path.read_bytes()
(7, b'{"a": 1}\\n')
>>> _ = path.write_bytes(b'{"a": 1}\\n{"a": 2}')
>>> repair_torn_tail(path), path.read_bytes()
(0, b'{"a": 1}\\n{"a": 2}\\n')
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import orjson

__all__ = ["iter_jsonl", "repair_torn_tail"]

logger = logging.getLogger(__name__)


def _parse(line: bytes, path: str | Path, number: int) -> dict:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise ValueError(f"{path}: line {number} is not valid JSON") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: line {number} is not a JSON object")
    return value


def iter_jsonl(path: str | Path, *, allow_torn_tail: bool = True) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for every non-blank line, streamed.

    With ``allow_torn_tail``, a last line without its newline that does not parse is taken as an
    interrupted write and skipped with a warning.

    Raises:
        ValueError: a line is not a JSON object (the message names the file and the line).
    """
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield number, _parse(line, path, number)
            except ValueError:
                if allow_torn_tail and not line.endswith(b"\n"):
                    logger.warning("%s: line %d is incomplete (an interrupted write?) and is skipped", path, number)
                    continue
                raise


def repair_torn_tail(path: str | Path) -> int:
    """Make ``path`` safe to append to; returns the number of bytes removed.

    A last line without its newline is kept (a newline is added) when it is a complete JSON object,
    and removed when it is not: a write cut off midway. Every other line must be a JSON object,
    else nothing is changed. A missing file is left missing.

    Raises:
        ValueError: a line before the last is not a JSON object (the file is left as it was).
    """
    path = Path(path)
    if not path.exists():
        return 0
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        complete, tail = data, b""
    else:
        cut = data.rfind(b"\n") + 1
        complete, tail = data[:cut], data[cut:]
    for number, line in enumerate(complete.splitlines(), start=1):
        if line.strip():
            _parse(line, path, number)
    if not tail:
        return 0
    try:
        _parse(tail, path, complete.count(b"\n") + 1)
    except ValueError:
        with open(path, "r+b") as f:
            f.truncate(len(complete))
            os.fsync(f.fileno())
        logger.warning("%s: removed an incomplete last line (%d bytes) before appending", path, len(tail))
        return len(tail)
    with open(path, "ab") as f:
        f.write(b"\n")
        os.fsync(f.fileno())
    return 0
