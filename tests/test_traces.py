"""Trace cleaning and the reject filters."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from verl_hoi.traces import REJECT_REASONS, check_trace, clean_trace


@pytest.mark.parametrize(
    ("text", "finish_reason", "reason"),
    [
        ("Two people stand by a horse; the left one holds its reins.", "stop", None),  # a fine trace
        ("", "stop", "empty"),  # nothing
        ("One person.", "length", "too_long"),  # cut by the token limit
        ("x" * 4001, "stop", "too_long"),  # over max_chars
        ("I'm sorry, but I can't help with that.", "stop", "refusal"),  # refusal
        ("Sorry, I cannot identify people.", "stop", "refusal"),  # refusal, other wording
        ("As an AI, I cannot see images.", "stop", "refusal"),  # refusal, AI disclaimer
        ("The ground truth shows one pair.", "stop", "leak"),  # names the ground truth
        ("Matching the provided answer, one person rides.", "stop", "leak"),  # names the given answer
        ("I was given the annotations, so: hold.", "stop", "leak"),  # says it was given labels
        ("One person.</think><answer>[]</answer>", "stop", "tags"),  # would break the target format
        ("The person says sorry to the dog and pets it.", "stop", None),  # 'sorry' not at the start
    ],
)
def test_check_trace(text, finish_reason, reason):
    assert check_trace(clean_trace(text), finish_reason=finish_reason) == reason


@given(st.text(max_size=300))
def test_check_trace_never_raises(text):
    assert check_trace(clean_trace(text)) in (None, *REJECT_REASONS)
