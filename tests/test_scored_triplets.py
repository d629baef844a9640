"""Responses to scored detections: triplet expansion, frames, the score policies and their registry, the top-100
cap."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import verl_hoi.scored_triplets
from verl_hoi.prediction_files import line_detections
from verl_hoi.scored_triplets import (
    item_spans,
    rank_scores,
    register_score_policy,
    resolve_policy,
    response_detections,
    score_policy_choices,
)
from verl_hoi.vocab import hoi_id, object_id, verb_id


def item(obj: str, verbs: list[str], x: int = 0) -> dict:
    return {"human": [x, 0, x + 10, 10], "object": [x, 5, x + 20, 25], "object class": obj, "verb class": verbs}


def answer(*items: dict) -> str:
    return "<think>ok</think><answer>" + json.dumps(list(items)) + "</answer>"


ORIGINAL = {"frame": "original", "image_size": (100, 100), "model_size": (112, 112)}


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, []),  # nothing
        (1, [1.0]),  # alone: top score
        (2, [1.0, 0.5]),  # first and last
        (5, [1.0, 0.875, 0.75, 0.625, 0.5]),  # 1 - 0.5 * i / 4
    ],
)
def test_rank_scores(n, expected):
    assert rank_scores(n).tolist() == expected


def test_one_triplet_per_verb_in_answer_order():
    text = answer(item("cup", ["wash", "hold"]), item("bicycle", ["ride"], x=50))
    dets = response_detections(text, **ORIGINAL)
    cup, bike = object_id("cup"), object_id("bicycle")
    # verbs of a pair in id order (hold < wash), pairs in answer order
    assert dets.hoi.tolist() == [hoi_id(verb_id(v), o) for v, o in (("hold", cup), ("wash", cup), ("ride", bike))]
    assert dets.score.tolist() == [1.0, 0.75, 0.5]
    assert dets.human.tolist()[2] == [50.0, 0.0, 60.0, 10.0]
    assert dets.num_pairs == 2 and dets.num_invalid == 0


def test_boxes_come_back_to_the_original_frame():
    # resized frame 112 x 56 for a 224 x 112 image: everything doubles.
    dets = response_detections(
        answer(item("cup", ["hold"])), frame="resized", image_size=(224, 112), model_size=(112, 56)
    )
    assert dets.human.tolist() == [[0.0, 0.0, 20.0, 20.0]] and dets.object.tolist() == [[0.0, 10.0, 40.0, 50.0]]


def test_invalid_items_and_garbage_give_no_detections():
    bad = answer({"human": [0, 0, 1], "object": [0, 0, 1, 1], "object class": "cup", "verb class": "hold"})
    dets = response_detections(bad, **ORIGINAL)
    assert len(dets.hoi) == 0 and dets.num_invalid == 1
    assert len(response_detections("no answer at all", **ORIGINAL).hoi) == 0


def test_top_100_per_image_keeps_the_first_by_rank():
    items = [item("cup", ["hold", "wash", "drink with"], x=k) for k in range(40)]  # 120 triplets
    dets = response_detections(answer(*items), **ORIGINAL)
    assert len(dets.hoi) == 100
    assert dets.score[0] == 1.0 and dets.human[-1].tolist() == [33.0, 0.0, 43.0, 10.0]


def test_constant_policy():
    dets = response_detections(answer(item("cup", ["hold", "wash"])), score_policy="constant", **ORIGINAL)
    assert dets.score.tolist() == [1.0, 1.0]


def tokens_of(text: str, logprob_of: dict[int, float]) -> tuple[list[float], list[int]]:
    """Character-level tokens: logprob_of[i] for the item i whose text holds the character, else -0.1."""
    spans = item_spans(text)
    logprobs = []
    for c in range(len(text)):
        owner = next((i for i, (a, b) in enumerate(spans) if a <= c < b), None)
        logprobs.append(logprob_of.get(owner, -0.1))
    return logprobs, list(range(len(text)))


def test_logprob_policy_ranks_items_by_their_mean_token_logprob():
    text = answer(item("cup", ["hold", "wash"]), item("bicycle", ["ride"], x=50))
    logprobs, offsets = tokens_of(text, {0: -2.0, 1: -0.5})
    dets = response_detections(text, score_policy="logprob", token_logprobs=logprobs, token_offsets=offsets, **ORIGINAL)
    # both triplets of item 0 share its mean (-2.0); the bicycle item is more confident
    assert dets.score.tolist() == [-2.0, -2.0, -0.5]


def test_logprob_policy_with_an_invalid_item_in_between():
    bad = {"human": "x", "object": [0, 0, 1, 1], "object class": "cup", "verb class": "hold"}
    text = answer(item("cup", ["hold"]), bad, item("bicycle", ["ride"], x=50))
    logprobs, offsets = tokens_of(text, {0: -1.0, 1: -9.0, 2: -3.0})
    dets = response_detections(text, score_policy="logprob", token_logprobs=logprobs, token_offsets=offsets, **ORIGINAL)
    assert dets.score.tolist() == [-1.0, -3.0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"score_policy": "given"}, "does not apply"),  # responses carry no scores
        ({"score_policy": "best"}, "does not apply"),  # unknown
        ({"score_policy": "logprob"}, "needs token_logprobs"),  # nothing to score with
        ({"score_policy": "logprob", "token_logprobs": [0.0], "token_offsets": []}, "entries"),  # misaligned
    ],
)
def test_bad_policies(kwargs, message):
    with pytest.raises(ValueError, match=message):
        response_detections(answer(item("cup", ["hold"])), **ORIGINAL, **kwargs)


@pytest.fixture
def registry(monkeypatch):
    """A copy of the score-policy registry for the test to register in; the built-in one comes back afterwards."""
    monkeypatch.setattr(verl_hoi.scored_triplets, "_POLICIES", dict(verl_hoi.scored_triplets._POLICIES))


def test_built_in_policies_and_auto():
    assert score_policy_choices() == ("auto", "given", "rank", "constant", "logprob")
    assert resolve_policy("auto", "detections") == "given" and resolve_policy("auto", "responses") == "rank"
    assert resolve_policy("logprob", "responses") == "logprob"


def test_registered_policies_apply_where_their_inputs_exist(registry):
    register_score_policy("confidence", lambda inputs: -inputs.given, uses_given_scores=True)
    register_score_policy("surprise", lambda inputs: -inputs.logprobs, uses_logprobs=True)
    detection = {"human": [1, 1, 9, 9], "object": [5, 5, 20, 20], "hoi": 7}
    line = {"file_name": "a.jpg", "detections": [detection | {"score": 0.25}]}
    assert line_detections(line, score_policy="confidence").score.tolist() == [-0.25]
    with pytest.raises(ValueError, match=r"^line: detection 0: no 'score' \(score policy 'confidence' ranks by it\)$"):
        line_detections({"file_name": "a.jpg", "detections": [detection]}, score_policy="confidence")
    with pytest.raises(ValueError, match="^line: score policy 'surprise' needs responses, not detections$"):
        line_detections(line, score_policy="surprise")
    text = answer(item("cup", ["hold"]))
    logprobs, offsets = tokens_of(text, {0: -2.0})
    dets = response_detections(
        text, score_policy="surprise", token_logprobs=logprobs, token_offsets=offsets, **ORIGINAL
    )
    assert dets.score.tolist() == [2.0]
    with pytest.raises(ValueError, match="^score policy 'surprise' needs token_logprobs and token_offsets"):
        response_detections(text, score_policy="surprise", **ORIGINAL)
    with pytest.raises(
        ValueError, match="'confidence' does not apply to responses; use rank, constant, logprob or surprise$"
    ):
        response_detections(text, score_policy="confidence", **ORIGINAL)


def test_register_score_policy_refuses_taken_names_and_impossible_policies(registry):
    for name in ("auto", "rank"):
        with pytest.raises(ValueError, match=f"score policy '{name}' is already defined"):
            register_score_policy(name, lambda inputs: np.zeros(inputs.count))
    with pytest.raises(ValueError, match="would apply to nothing"):
        register_score_policy("both", lambda inputs: inputs.given, uses_given_scores=True, uses_logprobs=True)
    assert score_policy_choices() == ("auto", "given", "rank", "constant", "logprob")


def test_a_policy_returning_another_shape_is_an_error(registry):
    register_score_policy("one", lambda inputs: np.ones(1))
    with pytest.raises(ValueError, match=r"score policy 'one' returned shape \(1,\), expected \(2,\)"):
        response_detections(answer(item("cup", ["hold", "wash"])), score_policy="one", **ORIGINAL)


@pytest.mark.parametrize(
    ("text", "spans"),
    [
        ('[{"a": 1}, {"b": {"c": 2}}]', [(1, 9), (11, 26)]),  # nested braces stay inside their item
        ("[{'a': '}{'}]", [(1, 12)]),  # braces in single-quoted strings do not count
        ('<think>{"x": 1}</think>[{"a": 1}]', [(24, 32)]),  # the think block is skipped
        ('[{"a": 1}, {"b": ', [(1, 9)]),  # a cut-off item has no span
    ],
)
def test_item_spans(text, spans):
    assert item_spans(text) == spans


@given(st.text(alphabet="{}[]\"',: ab<>/thinkswer", max_size=200), st.sampled_from(["rank", "constant", "logprob"]))
def test_never_raises_on_hostile_text(text, policy):
    logprobs, offsets = [-1.0] * len(text), list(range(len(text)))
    dets = response_detections(text, score_policy=policy, token_logprobs=logprobs, token_offsets=offsets, **ORIGINAL)
    assert len(dets.hoi) == len(dets.score) == len(dets.human)
    assert not np.isnan(dets.score).any()
