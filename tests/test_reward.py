"""Tests for verl_hoi.reward: exact scores of hand-built answers, options, hacking guards, properties.

Unless a row says otherwise the options are the defaults: weights format 0.2, label 0.4, iou 0.4,
``combine="min"``, ``match_iou=0.1``, ``object_weight=0.5``, ``triplet_iou=0.5``, ``max_pairs=100``.
So ``score = 0.2 * format + 0.4 * label + 0.4 * iou``.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from verl_hoi.answer import MAX_ITEMS, HOIPair, render_answer, render_response
from verl_hoi.reward import KEYS, RewardConfig, compute_score, reward_config, score_pairs
from verl_hoi.vocab import OBJECTS, valid_verbs

# Ids written out by hand (vocab order): objects in COCO order, verbs alphabetical.
BICYCLE, MOTORCYCLE, CUP = 1, 3, 41
DRINK_WITH, HOLD, PUSH, RIDE = 20, 36, 71, 76

# Two ground-truth pairs, boxes chosen for easy IoUs: A's boxes are 100 x 100, B's too.
A = HOIPair((0, 0, 100, 100), (50, 50, 150, 150), BICYCLE, (HOLD, RIDE))
B = HOIPair((200, 0, 300, 100), (200, 100, 300, 200), CUP, (DRINK_WITH, HOLD))
TRUTH = render_answer([A, B])


def items(*pairs: HOIPair) -> str:
    """The answer JSON with one item per pair, repeated pairs kept (``render_answer`` would merge them)."""
    return "[" + ", ".join(render_answer([pair])[1:-1] for pair in pairs) + "]"


def respond(*pairs: HOIPair, thinking: str = "two people") -> str:
    """A well-formed response holding ``pairs``, one item each."""
    return render_response(items(*pairs), thinking)


def scaled(pair: HOIPair, factor: float) -> HOIPair:
    """``pair`` with every coordinate multiplied: what a model answering in another frame writes."""
    return HOIPair(
        tuple(v * factor for v in pair.human), tuple(v * factor for v in pair.object), pair.object_id, pair.verb_ids
    )


FAR = HOIPair((900, 900, 950, 950), (960, 960, 990, 990), CUP, (HOLD,))  # overlaps nothing
A_PUSH = HOIPair(A.human, A.object, BICYCLE, (HOLD, PUSH))  # one of A's two verbs wrong
A_MOTORCYCLE = HOIPair(A.human, A.object, MOTORCYCLE, (HOLD, RIDE))  # A's object wrong
A_HALF_HUMAN = HOIPair((0, 0, 100, 50), A.object, BICYCLE, (HOLD, RIDE))  # human IoU 0.5
DRAGON = '{"human": [0, 0, 9, 9], "object": [1, 1, 5, 5], "object class": "dragon", "verb class": ["ride"]}'

# (response, options, extra_info, expected subset of the result)
CASES = [
    # perfect, in another order
    (respond(B, A), {}, None, {"score": 1.0, "format": 1.0, "label": 1.0, "iou": 1.0, "f1": 1.0, "num_matched": 2}),
    # one wrong verb on A: A's label 0.5 + 0.5 * F1({hold, push}, {hold, ride}) = 0.5 + 0.25; label (0.75 + 1) / 2
    (respond(A_PUSH, B), {}, None, {"score": 0.95, "label": 0.875, "iou": 1.0, "precision": 0.75, "recall": 0.75}),
    # same, label and iou weights only: (0.875 + 1) / 2
    (respond(A_PUSH, B), {"format_weight": 0, "label_weight": 1, "iou_weight": 1}, None, {"score": 0.9375}),
    # wrong object on A: A's label 0 + 0.5 * 1; its triplets are not true positives
    (respond(A_MOTORCYCLE, B), {}, None, {"score": 0.9, "label": 0.75, "iou": 1.0, "precision": 0.5, "recall": 0.5}),
    # A's human box half as tall: iou (0.5 + 1 + 1 + 1) / 4; still a hit at triplet_iou 0.5
    (respond(A_HALF_HUMAN, B), {}, None, {"score": 0.95, "label": 1.0, "iou": 0.875, "f1": 1.0}),
    # B missed: D = 2, one match
    (respond(A), {}, None, {"score": 0.6, "label": 0.5, "iou": 0.5, "precision": 1.0, "recall": 0.5}),
    # A duplicated: D = 3, two matches, 4 of 6 predicted triplets right
    (respond(A, A, B), {}, None, {"score": 0.2 + 0.8 * 2 / 3, "label": 2 / 3, "num_duplicates": 1, "precision": 2 / 3}),
    # an extra pair overlapping nothing: D = 3
    (respond(A, B, FAR), {}, None, {"score": 0.2 + 0.8 * 2 / 3, "iou": 2 / 3, "num_pred": 3, "num_matched": 2}),
    # flooding past max_pairs: format 0, label = iou = 2 / 4
    (respond(A, B, FAR, FAR), {"max_pairs": 3}, None, {"score": 0.4, "format": 0.0, "flooded": 1.0}),
    # flooding past what the parser reads: 100 items kept, one match, D = 100
    (respond(*[A] * 150), {}, None, {"score": 0.008, "format": 0.0, "flooded": 1.0, "num_pred": MAX_ITEMS}),
    # empty text: no answer at all
    ("", {}, None, {"score": 0.0, "format": 0.0, "answered": 0.0, "num_gt": 2, "recall": 0.0}),
    # an empty list, well formed: format only
    (respond(), {}, None, {"score": 0.2, "format": 1.0, "label": 0.0, "iou": 0.0, "f1": 0.0}),
    # boxes in another frame (all coordinates x2): A's human IoU 1/4, object IoU 2500/47500 = 1/19 < match_iou
    (respond(scaled(A, 2), scaled(B, 2)), {}, None, {"score": 0.2, "iou": 0.0, "num_matched": 0}),
    # same with match_iou 0: A matches, iou (1/4 + 1/19) / (2 * 2) = 23/304, label 1/2
    (respond(scaled(A, 2), scaled(B, 2)), {"match_iou": 0}, None, {"score": 0.4 + 0.4 * 23 / 304, "iou": 23 / 304}),
    # same with combine mean: A's pair IoU (1/4 + 1/19) / 2 = 0.15 clears match_iou 0.1
    (respond(scaled(A, 2), scaled(B, 2)), {"combine": "mean"}, None, {"score": 0.4 + 0.4 * 23 / 304}),
    # combine product: 1/4 * 1/19 < 0.1, no match
    (respond(scaled(A, 2), scaled(B, 2)), {"combine": "product"}, None, {"score": 0.2, "num_matched": 0}),
    # one invalid item (unknown object) among three: format 2/3
    (
        render_response(render_answer([A, B])[:-1] + ", " + DRAGON + "]", "x"),
        {},
        None,
        {"score": 0.2 * 2 / 3 + 0.8, "format": 2 / 3, "num_invalid": 1, "num_pred": 2},
    ),
    # single quotes: parsed by repair, not strict JSON: format 0
    (render_response(render_answer([A, B]).replace('"', "'"), "x"), {}, None, {"score": 0.8, "json_ok": 0.0}),
    # line comments: both pairs read, but not strict JSON: format 0
    (
        render_response(f"[\n{items(A)[1:-1]}, // the bike\n# the cup\n{items(B)[1:-1]}\n]", "x"),
        {},
        None,
        {"score": 0.8, "format": 0.0, "json_ok": 0.0, "label": 1.0, "iou": 1.0, "num_pred": 2},
    ),
    # one pair and a comment: A read (label = iou = 1/2), format 0
    (render_response(f"[{items(A)[1:-1]} // the bike\n]", "x"), {}, None, {"score": 0.4, "format": 0.0, "num_pred": 1}),
    # // and # inside a string are no comment: strict JSON, full format
    (respond(A, B).replace('{"human"', '{"note": "#1 // see", "human"', 1), {}, None, {"score": 1.0, "json_ok": 1.0}),
    # cut off after A: truncated, format 0, half the pairs
    (
        "<think>x</think><answer>" + render_answer([A, B])[:-30],
        {},
        None,
        {"score": 0.4, "truncated": 1.0, "num_pred": 1},
    ),
    # bare JSON without tags: answered, format 0
    (render_answer([A, B]), {}, None, {"score": 0.8, "tags_ok": 0.0, "answered": 1.0}),
    # answer tags only, with a thinking prompt: format 0
    (render_response(render_answer([A, B])), {}, None, {"score": 0.8, "tags_ok": 0.0}),
    # answer tags only, thinking not required
    (render_response(render_answer([A, B])), {"require_think": False}, None, {"score": 1.0}),
    # answer tags only, the row's prompt template has no thinking
    (render_response(render_answer([A, B])), {}, {"prompt": "hoi_r1_plain"}, {"score": 1.0}),
    # answer tags only, the row's template thinks
    (render_response(render_answer([A, B])), {}, {"prompt": "hoi_r1"}, {"score": 0.8}),
    # prefilled <think>: the response starts inside the think block
    ("two people</think><answer>" + TRUTH + "</answer>", {"prefilled_think": True}, None, {"score": 1.0}),
    # the same response without the option: the think block never opened, format 0
    ("two people</think><answer>" + TRUTH + "</answer>", {}, None, {"score": 0.8, "format": 0.0}),
    # prefilled, told per row by extra_info
    ("two people</think><answer>" + TRUTH + "</answer>", {}, {"prefilled_think": True}, {"score": 1.0}),
    # prefilled, but the model opened <think> again: format 0
    (respond(A, B), {"prefilled_think": True}, None, {"score": 0.8, "tags_ok": 0.0}),
    # object agreement only in the label
    (respond(A_PUSH, B), {"object_weight": 1}, None, {"label": 1.0, "score": 1.0}),
    # a strict triplet threshold: A's half-height human box (IoU 0.5) is no longer a hit
    (respond(A_HALF_HUMAN, B), {"triplet_iou": 0.6}, None, {"precision": 0.5, "recall": 0.5, "score": 0.95}),
]


@pytest.mark.parametrize(("response", "options", "extra_info", "expected"), CASES)
def test_compute_score_cases(response: str, options: dict, extra_info: dict | None, expected: dict) -> None:
    result = compute_score("hico_det", response, TRUTH, extra_info, **options)
    assert tuple(result) == KEYS
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-12), key


def test_perfect_is_exactly_one() -> None:
    result = compute_score("hico_det", respond(A, B), TRUTH)
    assert result["score"] == 1.0 and type(result["score"]) is float


EMPTY_TRUTH_CASES = [
    # nothing to find, nothing claimed: perfect
    (respond(), {"score": 1.0, "label": 1.0, "iou": 1.0, "f1": 1.0}),
    # one pair claimed on an image without pairs: format only
    (respond(A), {"score": 0.2, "label": 0.0, "iou": 0.0, "precision": 0.0, "f1": 0.0}),
    # saying nothing at all earns nothing
    ("", {"score": 0.0, "label": 0.0, "f1": 0.0}),
    # prose without a list earns nothing either
    ("<think>hmm</think><answer>nobody</answer>", {"score": 0.0, "answered": 0.0}),
]


@pytest.mark.parametrize(("response", "expected"), EMPTY_TRUTH_CASES)
def test_empty_ground_truth(response: str, expected: dict) -> None:
    result = compute_score("hico_det", response, "[]")
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-12), key


def test_score_pairs_without_text() -> None:
    result = score_pairs([A_PUSH, A_PUSH], [A, B])
    # D = 2, one match: label (0.5 + 0.5 * 0.5) / 2, iou 1 / 2, 1 of 4 predicted triplets right
    assert result == {
        "label": 0.375,
        "iou": 0.5,
        "num_pred": 2,
        "num_gt": 2,
        "num_matched": 1,
        "num_duplicates": 1,
        "precision": 0.25,
        "recall": 0.25,
        "f1": 0.25,
    }


def test_verl_kwargs_are_ignored() -> None:
    result = compute_score(
        "hico_det", respond(A, B), TRUTH, None, reward_router_address="127.0.0.1:1", reward_model_tokenizer=None
    )
    assert result["score"] == 1.0


BAD_OPTIONS = [
    # unknown option: the message lists the known ones
    (
        {"formt_weight": 1},
        "unknown reward option(s) formt_weight; known options: format_weight, label_weight, iou_weight, combine, "
        "match_iou, object_weight, triplet_iou, max_pairs, require_think, prefilled_think",
    ),
    # negative weight
    ({"iou_weight": -1}, "iou_weight must be a finite number >= 0; got -1"),
    # all weights zero
    (
        {"format_weight": 0, "label_weight": 0, "iou_weight": 0},
        "format_weight, label_weight and iou_weight must not all be 0",
    ),
    # a string where a number belongs, even a numeric one
    ({"label_weight": "0.5"}, "label_weight must be a finite number >= 0; got '0.5'"),
    ({"label_weight": "1e999"}, "label_weight must be a finite number >= 0; got '1e999'"),
    # a bool is not a number here
    ({"match_iou": True}, "match_iou must be a finite number in [0, 1]; got True"),
    ({"format_weight": False}, "format_weight must be a finite number >= 0; got False"),
    ({"format_weight": np.bool_(True)}, "format_weight must be a finite number >= 0; got np.True_"),
    # non-finite weights: a NaN or infinite total would make the score NaN
    ({"format_weight": float("inf")}, "format_weight must be a finite number >= 0; got inf"),
    ({"label_weight": float("-inf")}, "label_weight must be a finite number >= 0; got -inf"),
    ({"iou_weight": float("nan")}, "iou_weight must be a finite number >= 0; got nan"),
    ({"iou_weight": 1e999}, "iou_weight must be a finite number >= 0; got inf"),  # YAML's 1e999 is a float inf
    ({"iou_weight": np.float32("inf")}, "iou_weight must be a finite number >= 0; got np.float32(inf)"),
    # an integer too large for a float
    ({"label_weight": 10**400}, f"label_weight must be a finite number >= 0; got {10**400}"),
    # finite weights whose sum is not
    (
        {"format_weight": 1e308, "label_weight": 1e308, "iou_weight": 0},
        "format_weight + label_weight + iou_weight must be finite; their sum overflows",
    ),
    # None is no number
    ({"format_weight": None}, "format_weight must be a finite number >= 0; got None"),
    # unknown combination
    ({"combine": "max"}, "combine must be one of min, mean, product; got 'max'"),
    # out of range
    ({"object_weight": 1.5}, "object_weight must be a finite number in [0, 1]; got 1.5"),
    ({"triplet_iou": 0}, "triplet_iou must be in (0, 1]; got 0"),
    ({"triplet_iou": float("inf")}, "triplet_iou must be a finite number in [0, 1]; got inf"),
    ({"max_pairs": 0}, "max_pairs must be an integer >= 1; got 0"),
    ({"max_pairs": 2.5}, "max_pairs must be an integer >= 1; got 2.5"),
    ({"max_pairs": 3.0}, "max_pairs must be an integer >= 1; got 3.0"),  # a float, even integral, is no count
    ({"max_pairs": "3"}, "max_pairs must be an integer >= 1; got '3'"),
    # flags are booleans, not truthy values
    ({"prefilled_think": "yes"}, "prefilled_think must be true or false; got 'yes'"),
    ({"prefilled_think": "false"}, "prefilled_think must be true or false; got 'false'"),
    ({"prefilled_think": 0}, "prefilled_think must be true or false; got 0"),
    ({"prefilled_think": None}, "prefilled_think must be true or false; got None"),
    ({"require_think": 1}, "require_think must be true, false or null; got 1"),
    ({"require_think": 1.0}, "require_think must be true, false or null; got 1.0"),
    ({"require_think": "false"}, "require_think must be true, false or null; got 'false'"),
    # NaN is no number in range
    ({"match_iou": float("nan")}, "match_iou must be a finite number in [0, 1]; got nan"),
    # a bool is not a count
    ({"max_pairs": True}, "max_pairs must be an integer >= 1; got True"),
]


@pytest.mark.parametrize(("options", "message"), BAD_OPTIONS)
def test_bad_options_raise(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        reward_config(**options)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        compute_score("hico_det", respond(A), TRUTH, None, **options)


BAD_EXTRA_INFO = [
    # a string is not a boolean, whatever it says: "false" would be truthy
    ({"prefilled_think": "false"}, "extra_info['prefilled_think'] must be true, false or null; got 'false'"),
    ({"prefilled_think": "true"}, "extra_info['prefilled_think'] must be true, false or null; got 'true'"),
    # numbers are not booleans either
    ({"prefilled_think": 1}, "extra_info['prefilled_think'] must be true, false or null; got 1"),
    ({"prefilled_think": 0.0}, "extra_info['prefilled_think'] must be true, false or null; got 0.0"),
    ({"prefilled_think": [True]}, "extra_info['prefilled_think'] must be true, false or null; got [True]"),
    # extra_info itself must be a mapping
    ("index 3", "extra_info must be a mapping or None; got str"),
    ([("prefilled_think", True)], "extra_info must be a mapping or None; got list"),
]


@pytest.mark.parametrize(("extra_info", "message"), BAD_EXTRA_INFO)
def test_bad_extra_info_raises(extra_info: object, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        compute_score("hico_det", respond(A), TRUTH, extra_info)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("prefilled", "expected"),
    [
        (None, 0.8),  # null: the option decides (false by default), so the missing <think> costs the format
        (np.bool_(True), 1.0),  # a NumPy boolean is a boolean
        (False, 0.8),  # false, said explicitly
    ],
)
def test_extra_info_prefilled_think_values(prefilled: object, expected: float) -> None:
    response = "two people</think><answer>" + TRUTH + "</answer>"
    assert compute_score("hico_det", response, TRUTH, {"prefilled_think": prefilled})["score"] == pytest.approx(
        expected
    )


FINITE_OR_NOT = (
    st.floats()  # NaN and infinities included
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.booleans()
    | st.none()
    | st.sampled_from(["1", "0.5", "inf", "nan", "1e999", ""])
    | st.floats(width=32).map(np.float32)
)


@given(FINITE_OR_NOT, FINITE_OR_NOT, FINITE_OR_NOT, FINITE_OR_NOT, FINITE_OR_NOT, FINITE_OR_NOT)
def test_score_is_never_nan(fw: object, lw: object, iw: object, match_iou: object, ow: object, tiou: object) -> None:
    # any option value either is refused with a ValueError or gives scores in [0, 1]
    options = {
        "format_weight": fw,
        "label_weight": lw,
        "iou_weight": iw,
        "match_iou": match_iou,
        "object_weight": ow,
        "triplet_iou": tiou,
    }
    try:
        result = compute_score("hico_det", respond(A_PUSH, B), TRUTH, None, **options)
    except ValueError:
        return
    check_result(result)


def test_reward_config_accepts_numpy_numbers() -> None:
    config = reward_config(match_iou=np.float64(0.25), max_pairs=np.int64(50), prefilled_think=np.bool_(False))
    assert (config.match_iou, config.max_pairs, config.prefilled_think) == (0.25, 50, False)
    assert (type(config.match_iou), type(config.max_pairs), type(config.prefilled_think)) == (float, int, bool)


def test_float32_weights_do_not_overflow_in_float32() -> None:
    # 3 * 3e38 overflows float32 but not float64: the weights are kept as Python floats
    big = np.float32(3e38)
    result = compute_score(
        "hico_det", respond(A_PUSH, B), TRUTH, None, format_weight=big, label_weight=big, iou_weight=big
    )
    assert result["score"] == pytest.approx((1 + 0.875 + 1) / 3)


def test_cache_does_not_mix_equal_values_of_other_types() -> None:
    # 3 == 3.0 and True == 1 hash alike; a config validated for one must not be returned for the other
    assert reward_config(max_pairs=3).max_pairs == 3
    with pytest.raises(ValueError, match=r"^max_pairs must be an integer >= 1; got 3\.0$"):
        reward_config(max_pairs=3.0)
    assert reward_config(prefilled_think=True).prefilled_think is True
    with pytest.raises(ValueError, match="^prefilled_think must be true or false; got 1$"):
        reward_config(prefilled_think=1)


def test_reward_config_defaults_and_cache() -> None:
    assert reward_config() == RewardConfig()
    assert reward_config(combine="mean") is reward_config(combine="mean")
    assert reward_config(combine="mean") == RewardConfig(combine="mean")
    assert reward_config(reward_router_address=None) == RewardConfig()


BAD_TRUTHS = [
    # not an answer list at all
    ("no pairs here", "ground truth is not a valid answer JSON list"),
    # an item the parser drops (unknown object)
    ("[" + DRAGON + "]", "unknown object 'dragon'"),
    # repaired JSON is not good enough for ground truth
    (TRUTH.replace('"', "'"), "ground truth is not a valid answer JSON list"),
]


@pytest.mark.parametrize(("truth", "message"), BAD_TRUTHS)
def test_bad_ground_truth_raises(truth: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compute_score("hico_det", respond(A), truth)


def test_ground_truth_must_be_text() -> None:
    with pytest.raises(ValueError, match="ground_truth must be the answer JSON string, got list"):
        compute_score("hico_det", respond(A), [A])


UNIT_KEYS = ("score", "format", "label", "iou", "precision", "recall", "f1")
FLAG_KEYS = ("answered", "tags_ok", "json_ok", "truncated", "flooded")
COUNT_KEYS = ("num_pred", "num_gt", "num_matched", "num_invalid", "num_duplicates")


def check_result(result: dict) -> None:
    assert tuple(result) == KEYS
    for key in UNIT_KEYS:
        assert type(result[key]) is float and 0.0 <= result[key] <= 1.0, key
    for key in FLAG_KEYS:
        assert result[key] in (0.0, 1.0), key
    for key in COUNT_KEYS:
        assert type(result[key]) is int and result[key] >= 0, key


TAGS = st.sampled_from(["<think>", "</think>", "<answer>", "</answer>", "[", "]", "{", "}", ",", '"', "'"])


@given(st.lists(st.one_of(st.text(max_size=20), TAGS, st.sampled_from([TRUTH, render_answer([A])])), max_size=12))
def test_never_raises_on_text(pieces: list[str]) -> None:
    check_result(compute_score("hico_det", "".join(pieces), TRUTH))


coordinate = st.integers(min_value=0, max_value=500)


@st.composite
def pairs(draw: st.DrawFn, max_size: int = 6) -> list[HOIPair]:
    result = []
    for _ in range(draw(st.integers(0, max_size))):
        x1, y1, x2, y2, u1, v1, u2, v2 = (draw(coordinate) for _ in range(8))
        obj = draw(st.integers(0, len(OBJECTS) - 1))
        verbs = draw(st.sets(st.sampled_from(valid_verbs(obj)), min_size=1, max_size=3))
        human = (min(x1, x2), min(y1, y2), max(x1, x2) + 1, max(y1, y2) + 1)
        result.append(
            HOIPair(human, (min(u1, u2), min(v1, v2), max(u1, u2) + 1, max(v1, v2) + 1), obj, tuple(sorted(verbs)))
        )
    return result


weights = st.floats(min_value=0.01, max_value=10, allow_nan=False)


@given(pairs(), pairs(), st.sampled_from(["min", "mean", "product"]), st.floats(0, 1), weights, weights, weights)
def test_scores_stay_in_range(pred: list, truth: list, combine: str, match_iou: float, fw: float, lw: float, iw: float):
    options = {"combine": combine, "match_iou": match_iou, "format_weight": fw, "label_weight": lw, "iou_weight": iw}
    check_result(compute_score("hico_det", respond(*pred), render_answer(truth), None, **options))


@given(pairs(), weights, weights, weights, st.floats(0, 1))
def test_ground_truth_itself_scores_exactly_one(truth: list, fw: float, lw: float, iw: float, object_weight: float):
    answer = render_answer(truth)
    options = {"format_weight": fw, "label_weight": lw, "iou_weight": iw, "object_weight": object_weight}
    result = compute_score("hico_det", render_response(answer, "x"), answer, None, **options)
    assert result["score"] == 1.0


def test_ground_truth_larger_than_max_pairs_is_not_flooding():
    # 3 of the 9,658 HICO-DET test images have more than 100 pairs (up to 161)
    truth = [HOIPair((i, 0, i + 10, 10), (i, 20, i + 10, 30), CUP, (HOLD,)) for i in range(150)]
    perfect = compute_score("hico_det", respond(*truth), render_answer(truth))
    assert (perfect["score"], perfect["flooded"], perfect["num_gt"], perfect["num_pred"]) == (1.0, 0.0, 150, 150)
    flood = compute_score("hico_det", respond(*truth, FAR), render_answer(truth))
    # one item past max(max_pairs, 150): format 0; the parser reads 150 items, so label = iou = 1
    assert (flood["flooded"], flood["format"], flood["num_pred"]) == (1.0, 0.0, 150)
    assert flood["score"] == pytest.approx(0.8)
