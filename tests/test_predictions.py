"""``verl_hoi.predictions``: reading prediction files (the line kinds, verl validation dumps and their
errors are exercised through the command line in ``tests/test_evaluate_cli.py``)."""

from __future__ import annotations

import pytest

from verl_hoi.predictions import read_jsonl


def test_cut_off_last_line_is_skipped(tmp_path, sample_annotations):
    path = tmp_path / "p.jsonl"
    path.write_text('{"file_name": "a", "detections": []}\n{"file_name": "b", "detec')
    assert [line["file_name"] for _, line in read_jsonl(path)] == ["a"]
    path.write_text('{"file_name": "a"\n{"file_name": "b"}\n')  # broken line in the middle: an error
    with pytest.raises(ValueError, match="line 1 is not valid JSON"):
        list(read_jsonl(path))
