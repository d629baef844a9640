"""Prediction lines read into detections (``verl_hoi.prediction_files``): bad lines are one ``ValueError`` naming
the line, a score is needed only by the policies that rank by it, and any JSON line is read or refused that
way; the zero-shot setting a parquet's rows record, and one passed in Python. The command line:
test_evaluate_cli.py and test_evaluate_cli_bad_input.py."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from verl_hoi.prediction_files import data_zero_shot, evaluate_predictions, line_detections
from verl_hoi.scored_triplets import score_policy_choices
from verl_hoi.vocab import NUM_HOI

NAME = "HICO_test2015_00000001.jpg"
RESPONSE = {"file_name": NAME, "response": "[]", "frame": "original", "image_size": [640, 427]}
BAD_LINES = [
    # a size budget that is not two integers
    (
        RESPONSE | {"frame": "resized", "min_pixels": "3136", "max_pixels": 1003520},
        "rank",
        "'min_pixels' and 'max_pixels' must be integers >= 1; got ['3136', 1003520]",
    ),
    # a budget qwen-vl-utils cannot meet
    (
        RESPONSE | {"frame": "resized", "min_pixels": 9000, "max_pixels": 100},
        "rank",
        "need 0 < min_pixels <= max_pixels, got min_pixels=9000, max_pixels=100",
    ),
    # offsets running backwards
    (
        RESPONSE | {"token_logprobs": [-1.0, -2.0], "token_offsets": [1, 0]},
        "logprob",
        "token_offsets must not decrease and must lie in [0, 2] (the response's length)",
    ),
    # an offset past the end of the response
    (
        RESPONSE | {"token_logprobs": [-1.0], "token_offsets": [3]},
        "logprob",
        "token_offsets must not decrease and must lie in [0, 2] (the response's length)",
    ),
    # offsets that are floats
    (
        RESPONSE | {"token_logprobs": [-1.0], "token_offsets": [0.0]},
        "logprob",
        "token_offsets must be a list of integers; got [0.0]",
    ),
    # an infinite log-probability (only through the API: JSON has no infinity)
    (
        RESPONSE | {"token_logprobs": [-1.0, float("-inf")], "token_offsets": [0, 1]},
        "logprob",
        "token_logprobs[1] is not a finite number: -inf",
    ),
    # booleans are not log-probabilities
    (
        RESPONSE | {"token_logprobs": [True], "token_offsets": [0]},
        "logprob",
        "token_logprobs must be a list of numbers; got [True]",
    ),
    # a response line's size must be the image's
    (
        RESPONSE | {"image_size": [427, 640]},
        "rank",
        "'image_size' [427, 640] is not the image's size [640, 427] "
        "(a prediction for another image, or for a resized copy?)",
    ),
    # a box coordinate that is NaN (only through the API)
    (
        {"file_name": NAME, "detections": [{"human": [0, 0, float("nan"), 1], "object": [0, 0, 1, 1], "hoi": 0}]},
        "rank",
        "detection 0: 'human' [0, 0, nan, 1] has a coordinate that is not a finite number within ±1e+06",
    ),
    # an infinite score (only through the API)
    (
        {
            "file_name": NAME,
            "detections": [{"human": [0, 0, 1, 1], "object": [0, 0, 1, 1], "hoi": 0, "score": float("inf")}],
        },
        "given",
        "detection 0: 'score' must be a finite number; got inf",
    ),
    # the second detection is the bad one
    (
        {
            "file_name": NAME,
            "detections": [{"human": [0, 0, 1, 1], "object": [0, 0, 1, 1], "hoi": 0}, {"human": [0, 0, 1, 1]}],
        },
        "constant",
        "detection 1: no 'object'",
    ),
    # an unknown policy
    (RESPONSE, "best", "unknown score policy 'best'; valid policies: auto, given, rank, constant, logprob"),
]


@pytest.mark.parametrize(("line", "policy", "message"), BAD_LINES)
def test_bad_prediction_lines(line, policy, message):
    with pytest.raises(ValueError) as error:
        line_detections(line, score_policy=policy, image_size=(640, 427), where="p.jsonl: line 7")
    assert str(error.value) in (f"p.jsonl: line 7: {message}", message)  # the policy check names no line


def test_detections_without_a_score_are_fine_when_not_ranked_by_it():
    line = {"file_name": NAME, "detections": [{"human": [0, 0, 1, 1], "object": [0, 0, 2, 2], "hoi": 7}]}
    assert line_detections(line, score_policy="rank").score.tolist() == [1.0]


LINE_KEYS = [
    *("file_name", "detections", "response", "frame", "image_size", "model_size", "min_pixels", "max_pixels"),
    *("prefilled_think", "token_logprobs", "token_offsets", "human", "object", "hoi", "score"),
]
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["", "original", "resized", "norm1000", "[]", NAME])
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.sampled_from(LINE_KEYS), inner, max_size=6),
    max_leaves=20,
)


VALID_LINES = [
    {"file_name": NAME, "detections": [{"human": [1, 2, 30, 40], "object": [5, 6, 70, 80], "hoi": 245, "score": 0.5}]},
    RESPONSE
    | {
        "response": '[{"human": [1, 2, 30, 40], "object": [5, 6, 70, 80], "object class": "bench", '
        '"verb class": ["sit on"]}]',
        "frame": "resized",
        "model_size": [644, 420],
        "min_pixels": 3136,
        "max_pixels": 1003520,
        "prefilled_think": False,
        "token_logprobs": [-0.5, -1.0],
        "token_offsets": [0, 3],
    },
]


@given(
    st.sampled_from(VALID_LINES),
    st.dictionaries(st.sampled_from(LINE_KEYS), JSON_VALUES, max_size=3),
    st.lists(st.sampled_from(LINE_KEYS), max_size=2),
    st.sampled_from(score_policy_choices()),
)
def test_any_json_line_is_read_or_refused_with_a_value_error(
    valid: dict, changes: dict, removed: list, policy: str
) -> None:
    # a valid line with keys replaced by any JSON or removed: detections with finite boxes and no NaN
    # score, or a ValueError naming the line (one error line), never another exception
    line = {key: value for key, value in (valid | changes).items() if key not in removed}
    if "detections" in changes and isinstance(changes["detections"], dict):
        line["detections"] = [valid.get("detections", [{}])[0] | changes["detections"]]  # one detection changed
    try:
        dets = line_detections(line, score_policy=policy, image_size=(640, 427), where="p.jsonl: line 1")
    except ValueError as error:
        assert str(error).startswith(("p.jsonl: line 1: ", "unknown score policy"))
        return
    assert np.isfinite(dets.human).all() and np.isfinite(dets.object).all() and not np.isnan(dets.score).any()
    assert ((dets.hoi >= 0) & (dets.hoi < NUM_HOI)).all()


def parquet_rows(path, extra_infos: list[dict]):
    """A parquet of rows as a validation dump needs them, with these ``extra_info`` values."""
    row = {"prompt": [{"role": "user", "content": "<image>Find."}], "reward_model": {"ground_truth": "[]"}}
    pq.write_table(pa.Table.from_pylist([row | {"extra_info": extra} for extra in extra_infos]), path)
    return path


@pytest.mark.parametrize(
    ("extra_infos", "expected"),
    [
        ([{"index": 0}, {"index": 1}], None),  # nothing recorded: no key at all
        ([{"index": 0, "zero_shot": None}], None),
        ([{"index": 0, "zero_shot": "nf_uc"}, {"index": 1, "zero_shot": "nf_uc"}], "nf_uc"),
    ],
)
def test_zero_shot_setting_recorded_in_rows(tmp_path, extra_infos, expected):
    assert data_zero_shot(parquet_rows(tmp_path / "d.parquet", extra_infos)) == expected


def test_zero_shot_setting_in_python(tmp_path, sample_annotations):
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"file_name": NAME, "detections": []}) + "\n")
    result = evaluate_predictions(sample_annotations, preds, zero_shot="nf_uc")
    assert result["num_classes"] == {"full": 12, "rare": 1, "non_rare": 11, "seen": 2, "unseen": 10}
    assert result["default"] == dict.fromkeys(("full", "rare", "non_rare", "seen", "unseen"), 0.0)
    assert result["settings"]["zero_shot"] == "nf_uc"
    with pytest.raises(ValueError, match="^unknown zero-shot setting 'rf'; valid settings: rf_uc, nf_uc, uo, uv$"):
        evaluate_predictions(sample_annotations, preds, zero_shot="rf")
