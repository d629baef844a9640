"""``verl_hoi.cli``: one-line user errors, positive-integer options, help from docstrings, atomic writes."""

from __future__ import annotations

import argparse

import pytest

from verl_hoi.cli import (
    USAGE_ERROR,
    UsageError,
    atomic_path,
    check_output_file,
    doc_parser,
    fail,
    positive_int,
    refuse_overlap,
    write_json_atomic,
)


def test_fail_prints_one_error_line(capsys):
    assert fail(ValueError("bad.jsonl: line 3 is not valid JSON")) == USAGE_ERROR == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", "error: bad.jsonl: line 3 is not valid JSON\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0", "must be >= 1, got 0"),  # zero is not positive
        ("-4", "must be >= 1, got -4"),  # negative
        ("2.5", "not an integer: '2.5'"),  # not an integer
        ("", "not an integer: ''"),  # empty
    ],
)
def test_positive_int_rejects(text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        positive_int(text)


def test_positive_int_accepts():
    assert positive_int("1") == 1  # the smallest value
    assert positive_int(" 64 ") == 64  # int() ignores surrounding white space


def test_doc_parser_uses_summary_and_details():
    parser = doc_parser("prog", "Summary line.\n\n    prog --x\n\nDetails one.\n\nDetails two.")
    assert (parser.prog, parser.description, parser.epilog) == ("prog", "Summary line.", "Details one.\n\nDetails two.")


def test_doc_parser_errors_are_one_line(capsys):
    parser = doc_parser("prog", "Summary.\n\n    prog --n N\n\nDetails.")
    parser.add_argument("--n", type=positive_int, required=True)
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--n", "0"])
    assert exit_info.value.code == USAGE_ERROR
    assert capsys.readouterr() == ("", "error: argument --n: must be >= 1, got 0 (see prog --help)\n")


def test_atomic_path_replaces_on_success(tmp_path):
    path = tmp_path / "result.json"
    path.write_text("old")
    with atomic_path(path) as tmp:
        assert tmp.parent == tmp_path and tmp != path
        tmp.write_text("new")
        assert path.read_text() == "old"  # untouched until the block ends
    assert path.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_atomic_path_keeps_the_old_file_on_error(tmp_path):
    path = tmp_path / "result.json"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="interrupted"), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_write_json_atomic_writes_whole_files_only(tmp_path):
    path = tmp_path / "result.json"
    write_json_atomic(path, {"map": [1.5, None]})
    assert path.read_text() == '{\n "map": [\n  1.5,\n  null\n ]\n}\n'
    write_json_atomic(path, {"a": 1}, indent=2)
    assert path.read_text() == '{\n  "a": 1\n}\n'
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        write_json_atomic(path, {"map": float("nan")})
    assert path.read_text() == '{\n  "a": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_check_output_file_refuses_before_any_work(tmp_path):
    (tmp_path / "folder").mkdir()
    assert check_output_file(tmp_path / "result.json", "--json") == tmp_path / "result.json"
    with pytest.raises(UsageError, match=r"^--json .*folder: is a folder, not a file$"):
        check_output_file(tmp_path / "folder", "--json")
    with pytest.raises(UsageError, match=r"^--json .*missing/r.json: folder .*missing does not exist$"):
        check_output_file(tmp_path / "missing" / "r.json", "--json")
    assert [p.name for p in tmp_path.iterdir()] == ["folder"]  # nothing written


def test_refuse_overlap_sees_through_links(tmp_path):
    data = tmp_path / "data.parquet"
    data.write_bytes(b"rows")
    (tmp_path / "link.parquet").symlink_to(data)
    (tmp_path / "hard.parquet").hardlink_to(data)
    for alias in ("link.parquet", "hard.parquet", "sub/../data.parquet"):
        with pytest.raises(UsageError, match="is also --data: refusing to write over an input"):
            refuse_overlap({"--out": tmp_path / alias}, {"--data": data, "--model": None})
    refuse_overlap({"--out": tmp_path / "new.jsonl", "--json": None}, {"--data": data})
    assert data.read_bytes() == b"rows"
