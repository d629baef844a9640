"""``verl_hoi.jsonl``: reading append-only JSONL files and repairing a torn tail (what the lines of a
predictions file may hold is tested in ``tests/test_prediction_files.py``)."""

from __future__ import annotations

import pytest

from verl_hoi.jsonl import iter_jsonl, repair_torn_tail


def test_cut_off_last_line_is_skipped(tmp_path, sample_annotations):
    path = tmp_path / "p.jsonl"
    path.write_text('{"file_name": "a", "detections": []}\n{"file_name": "b", "detec')
    assert [line["file_name"] for _, line in iter_jsonl(path)] == ["a"]
    path.write_text('{"file_name": "a"\n{"file_name": "b"}\n')  # broken line in the middle: an error
    with pytest.raises(ValueError, match="line 1 is not valid JSON"):
        list(iter_jsonl(path))


def test_torn_tail_is_an_error_when_not_allowed(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"file_name": "a"}\n{"file_name": "b", "detec')
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        list(iter_jsonl(path, allow_torn_tail=False))


@pytest.mark.parametrize(
    ("content", "removed", "after"),
    [
        (b"", 0, b""),  # empty: nothing to do
        (b'{"a": 1}\n', 0, b'{"a": 1}\n'),  # complete
        (b'{"a": 1}\n{"a": 2', 7, b'{"a": 1}\n'),  # cut inside the second record: only that part goes
        (b'{"a": 1}\n{"a": 2}', 0, b'{"a": 1}\n{"a": 2}\n'),  # complete record without its newline: kept
        (b'{"a": 1}\n[1, 2]', 6, b'{"a": 1}\n'),  # a tail that is not an object is not a record
        (b'{"a": 1}\n\n{"a', 3, b'{"a": 1}\n\n'),  # blank lines are not records and stay
    ],
)
def test_repair_torn_tail_removes_only_an_incomplete_record(tmp_path, content, removed, after):
    path = tmp_path / "out.jsonl"
    path.write_bytes(content)
    assert repair_torn_tail(path) == removed
    assert path.read_bytes() == after


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"a": 1\n{"a": 2}\n{"a', "line 1 is not valid JSON"),  # damage before the tail
        (b'{"a": 1}\n"text"\n{"a', "line 2 is not a JSON object"),
    ],
)
def test_repair_torn_tail_leaves_a_damaged_file_as_it_is(tmp_path, content, message):
    path = tmp_path / "out.jsonl"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        repair_torn_tail(path)
    assert path.read_bytes() == content
    assert not repair_torn_tail(tmp_path / "missing.jsonl") and not (tmp_path / "missing.jsonl").exists()
