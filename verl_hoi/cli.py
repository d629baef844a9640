"""Glue shared by the command lines (``evaluate``, ``predict``, ``visualize``): help from the module
docstring, one-line user errors with exit code 2, positive-integer options and atomic output files.

>>> fail("--top must be >= 1")
2
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["USAGE_ERROR", "UsageError", "atomic_path", "doc_parser", "fail", "positive_int"]

USAGE_ERROR = 2
"""Exit code of a user mistake (a missing file, a bad value), as argparse uses."""


class UsageError(Exception):
    """A mistake of the user's: one ``error:`` line, exit code :data:`USAGE_ERROR`."""


def fail(message: object) -> int:
    """Print ``error: <message>`` as one line on stderr; returns :data:`USAGE_ERROR` for ``main`` to return."""
    print(f"error: {message}", file=sys.stderr)
    return USAGE_ERROR


def doc_parser(prog: str, doc: str) -> argparse.ArgumentParser:
    """A parser whose description is ``doc``'s first paragraph and whose epilog is all after its second.

    The second paragraph is the usage example that ``--help`` already shows as ``usage:``.

    >>> doc_parser("prog", "Summary.\\n\\n    prog --x\\n\\nDetails.").epilog
    'Details.'
    """
    return argparse.ArgumentParser(
        prog=prog,
        description=doc.split("\n\n")[0],
        epilog=doc.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def positive_int(text: str) -> int:
    """argparse ``type`` for an integer ``>= 1``.

    >>> positive_int("3")
    3
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed over ``path`` when the block ends without error.

    On an error the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
