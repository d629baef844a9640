"""Glue shared by the command lines: help from the module docstring, one-line user errors with exit
code 2, positive-integer options, output paths checked before any work, and atomic output files
(JSON ones included).

>>> fail("--top must be >= 1")
2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, NoReturn

__all__ = [
    "INTERRUPTED",
    "USAGE_ERROR",
    "UsageError",
    "atomic_path",
    "check_input_file",
    "check_input_folder",
    "check_output_file",
    "check_output_folder",
    "doc_parser",
    "fail",
    "first_line",
    "new_folders_removed_on_error",
    "positive_int",
    "refuse_overlap",
    "write_json_atomic",
]

USAGE_ERROR = 2
"""Exit code of a user mistake (a missing file, a bad value), as argparse uses."""

INTERRUPTED = 130
"""Exit code of a run stopped by Ctrl-C (or SIGTERM), as shells report SIGINT."""


class UsageError(Exception):
    """A mistake of the user's: one ``error:`` line, exit code :data:`USAGE_ERROR`."""


def fail(message: object) -> int:
    """Print ``error: <message>`` as one line on stderr; returns :data:`USAGE_ERROR` for ``main`` to return."""
    print(f"error: {message}", file=sys.stderr)
    return USAGE_ERROR


class _OneLineErrorParser(argparse.ArgumentParser):
    """An argument parser whose mistakes end like every other user error: one ``error:`` line, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"error: {message} (see {self.prog} --help)\n")


def doc_parser(prog: str, doc: str) -> argparse.ArgumentParser:
    """A parser whose description is ``doc``'s first paragraph and whose epilog is all after its second.

    The second paragraph is the usage example that ``--help`` already shows as ``usage:``. A bad
    option ends with one ``error:`` line and exit code :data:`USAGE_ERROR`.

    >>> doc_parser("prog", "Summary.\\n\\n    prog --x\\n\\nDetails.").epilog
    'Details.'
    """
    return _OneLineErrorParser(
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
def new_folders_removed_on_error(folder: str | Path) -> Iterator[None]:
    """On an error in the block, remove ``folder`` and the folders above it that did not exist before it,
    if they are still empty: a failed run leaves no empty output folder behind."""
    missing = [f for f in (Path(folder).absolute(), *Path(folder).absolute().parents) if not f.exists()]
    try:
        yield
    except BaseException:
        for made in missing:  # deepest first
            with suppress(OSError):
                made.rmdir()
        raise


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


def write_json_atomic(path: str | Path, value: Any, *, indent: int = 1) -> None:
    """Write ``value`` as JSON and a final newline to ``path``, whole or not at all (:func:`atomic_path`).

    Raises:
        ValueError: ``value`` holds NaN or an infinity, which JSON cannot hold (``path`` is left as it was).
    """
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=indent, allow_nan=False)
        f.write("\n")


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message (its type's name when it has none): a library's long error in one line.

    >>> first_line(ValueError("  bad value  ")), first_line(KeyError())
    ('bad value', 'KeyError')
    """
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def check_input_file(path: str | Path, option: str) -> Path:
    """``path`` as an existing regular file to read.

    Raises:
        UsageError: ``path`` is missing, a folder, or not a regular file (a device, a pipe).
    """
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a folder, not a file")
    if not path.exists():
        raise UsageError(f"{option} {path}: no such file")
    if not path.is_file():
        raise UsageError(f"{option} {path}: not a regular file")
    return path


def check_input_folder(path: str | Path, option: str) -> Path:
    """``path`` as an existing folder to read.

    Raises:
        UsageError: ``path`` is missing or not a folder.
    """
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{option} {path}: no such folder")
    if not path.is_dir():
        raise UsageError(f"{option} {path}: is a file, not a folder")
    return path


def check_output_file(path: str | Path, option: str) -> Path:
    """``path`` as a file that can be written, checked before any work is done.

    Raises:
        UsageError: ``path`` is a folder or not a regular file, its folder does not exist, or that folder
            is not writable.
    """
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a folder, not a file")
    if path.exists() and not path.is_file():
        raise UsageError(f"{option} {path}: not a regular file")
    parent = path.parent
    if not parent.is_dir():
        raise UsageError(f"{option} {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path}: folder {parent} is not writable")
    return path


def check_output_folder(path: str | Path, option: str, files: Sequence[str] = ()) -> Path:
    """``path`` as a folder that exists or can be made, where each of ``files`` can be written.

    Raises:
        UsageError: ``path`` or the nearest existing folder above it is a file, that folder is not
            writable, or one of ``files`` in it is not a file that can be written.
    """
    path = Path(path)
    full = path.absolute()
    existing = next(p for p in (full, *full.parents) if p.exists())
    if not existing.is_dir():
        where = "" if existing == full else f"{existing} "
        raise UsageError(f"{option} {path}: {where}is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path}: folder {existing} is not writable")
    if path.is_dir():
        for name in files:
            check_output_file(path / name, option)
    return path


def _same_path(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return os.path.realpath(a) == os.path.realpath(b)


def refuse_overlap(outputs: dict[str, str | Path | None], inputs: dict[str, str | Path | None]) -> None:
    """Refuse to write where the command reads: an output (file or folder) that is one of the inputs.

    Both arguments map an option name (``"--out"``) to its path; ``None`` values are ignored.

    >>> refuse_overlap({"--out": "a.jsonl"}, {"--data": "b.parquet"})
    >>> refuse_overlap({"--out": "x/../a.jsonl"}, {"--data": "a.jsonl"})
    Traceback (most recent call last):
    verl_hoi.cli.UsageError: --out a.jsonl is also --data: refusing to write over an input

    Raises:
        UsageError: an output path is an input path (links and ``..`` resolved).
    """
    for out_option, out in outputs.items():
        for in_option, source in inputs.items():
            if out is not None and source is not None and _same_path(Path(out), Path(source)):
                raise UsageError(
                    f"{out_option} {os.path.normpath(out)} is also {in_option}: refusing to write over an input"
                )
