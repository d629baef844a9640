"""Tests for the ``hoi`` reward manager inside verl: entry-point registration, ``load_reward_manager``,
``run_single`` on a real ``DataProto`` with a tokenized response (the tiny model's tokenizer).

Expected scores are those of tests/test_reward.py (default weights 0.2 / 0.4 / 0.4).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import verl
from omegaconf import OmegaConf
from transformers import AutoTokenizer
from verl.trainer.ppo.reward import load_reward_manager

from verl_hoi.answer import HOIPair, render_answer, render_response
from verl_hoi.reward import KEYS

BICYCLE, CUP = 1, 41
DRINK_WITH, HOLD, PUSH, RIDE = 20, 36, 71, 76
A = HOIPair((0, 0, 100, 100), (50, 50, 150, 150), BICYCLE, (HOLD, RIDE))
B = HOIPair((200, 0, 300, 100), (200, 100, 300, 200), CUP, (DRINK_WITH, HOLD))
A_PUSH = HOIPair(A.human, A.object, BICYCLE, (HOLD, PUSH))  # one of A's two verbs wrong
TRUTH = render_answer([A, B])
PERFECT = render_response(render_answer([B, A]), "two people")
PARTLY_WRONG = render_response(render_answer([A_PUSH, B]), "two people")  # label 0.875, score 0.95

PROMPT_LENGTH, RESPONSE_LENGTH = 24, 192


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def make_config(manager: str = "hoi", reward_kwargs: dict | None = None, custom: dict | None = None):
    """The ``reward`` part of a trainer config, as Hydra composes it."""
    reward = {
        "reward_manager": {"source": "register", "name": manager, "module": {"path": None, "name": None}},
        "custom_reward_function": {"path": None, "name": "compute_score", **(custom or {})},
    }
    if reward_kwargs is not None:
        reward["reward_kwargs"] = reward_kwargs
    return OmegaConf.create({"reward": reward})


def make_data(
    tokenizer,
    response: str,
    prompt: str = "Find every interaction.",
    extra_info: object = None,
    ground_truth: str = TRUTH,
):
    """One trajectory as the agent loop hands it over: left-padded prompt, right-padded response."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"][-PROMPT_LENGTH:]
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"][:RESPONSE_LENGTH]
    assert len(response_ids) < RESPONSE_LENGTH, "the test response must fit"
    pad = tokenizer.pad_token_id or 0
    prompts = [pad] * (PROMPT_LENGTH - len(prompt_ids)) + prompt_ids
    responses = response_ids + [pad] * (RESPONSE_LENGTH - len(response_ids))
    mask = [0] * (PROMPT_LENGTH - len(prompt_ids)) + [1] * (len(prompt_ids) + len(response_ids))
    mask += [0] * (RESPONSE_LENGTH - len(response_ids))
    return verl.DataProto.from_dict(
        tensors={
            "prompts": torch.tensor([prompts]),
            "responses": torch.tensor([responses]),
            "attention_mask": torch.tensor([mask]),
        },
        non_tensors={
            "data_source": np.array(["hico_det"], dtype=object),
            "reward_model": np.array([{"style": "rule", "ground_truth": ground_truth}], dtype=object),
            "extra_info": np.array([extra_info or {"index": 0, "prompt": "hoi_r1"}], dtype=object),
        },
    )


def run(manager, data) -> dict:
    return asyncio.run(manager.run_single(data))


REGISTRATION_SCRIPT = """
import importlib.util
import sys
import verl
light = "verl.experimental.reward_loop.reward_manager" not in sys.modules
importlib.util.find_spec("verl.experimental.reward_loop.reward_manager")  # a lookup must not use the hook up
from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls
try:
    cls = get_reward_manager_cls("hoi")
except ValueError:
    print("missing", light)
else:
    print(cls.__module__ + "." + cls.__name__, light)
"""


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        # default: verl loads every verl.plugins entry point; import verl alone leaves the reward loop unloaded
        ("auto", "verl_hoi.verl_plugin.reward_manager.HOIRewardManager True"),
        # only our entry point, by name
        ("verl_hoi", "verl_hoi.verl_plugin.reward_manager.HOIRewardManager True"),
        # plugins off: nothing else registers "hoi"
        ("none", "missing True"),
    ],
)
def test_registered_through_entry_point_only(policy: str, expected: str) -> None:
    env = {key: value for key, value in os.environ.items() if key not in ("VERL_USE_EXTERNAL_MODULES",)}
    env["VERL_USE_EXTERNAL_PLUGINS"] = policy
    result = subprocess.run(
        [sys.executable, "-c", REGISTRATION_SCRIPT], env=env, capture_output=True, text=True, timeout=600, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == expected


SCORE_CASES = [
    # perfect answer, default options
    (PERFECT, None, 1.0),
    # one wrong verb: 0.2 + 0.4 * 0.875 + 0.4
    (PARTLY_WRONG, None, 0.95),
    # label and IoU only: (0.875 + 1) / 2
    (PARTLY_WRONG, {"format_weight": 0, "label_weight": 1, "iou_weight": 1}, 0.9375),
    # no think block, not required: perfect
    (render_response(render_answer([A, B])), {"require_think": False}, 1.0),
    # no think block, required by default: format 0
    (render_response(render_answer([A, B])), {}, 0.8),
]


@pytest.mark.parametrize(("response", "reward_kwargs", "expected"), SCORE_CASES)
def test_run_single_scores(tokenizer, response: str, reward_kwargs: dict | None, expected: float) -> None:
    manager = load_reward_manager(make_config(reward_kwargs=reward_kwargs), tokenizer)
    assert type(manager).__name__ == "HOIRewardManager"
    result = run(manager, make_data(tokenizer, response))
    assert result["reward_score"] == pytest.approx(expected, abs=1e-12)
    assert tuple(result["reward_extra_info"]) == KEYS
    assert result["reward_extra_info"]["score"] == result["reward_score"]


def test_perfect_is_exactly_one(tokenizer) -> None:
    result = run(load_reward_manager(make_config(), tokenizer), make_data(tokenizer, PERFECT))
    assert result["reward_score"] == 1.0


PREFILL_CASES = [
    # the prompt ends with <think>: the response starts inside the block, perfect
    ("Find every interaction.\n<think>\n", None, 1.0),
    # the prompt does not: a response without <think> fails the format
    ("Find every interaction.\n", None, 0.8),
    # the row says explicitly that nothing was prefilled: the row wins
    ("Find every interaction.\n<think>\n", {"prefilled_think": False, "prompt": "hoi_r1"}, 0.8),
]


@pytest.mark.parametrize(("prompt", "extra_info", "expected"), PREFILL_CASES)
def test_prefilled_think_detected_from_prompt(tokenizer, prompt: str, extra_info: dict | None, expected: float) -> None:
    response = "two people</think><answer>" + TRUTH + "</answer>"
    manager = load_reward_manager(make_config(), tokenizer)
    result = run(manager, make_data(tokenizer, response, prompt=prompt, extra_info=extra_info))
    assert result["reward_score"] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("reward_kwargs", "message"),
    [
        ({"iou_wieght": 0.5}, r"unknown reward option\(s\) iou_wieght; known options: format_weight"),  # typo
        ({"combine": "max"}, "combine must be one of min, mean, product"),  # bad value
    ],
)
def test_bad_reward_kwargs_fail_at_construction(tokenizer, reward_kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_reward_manager(make_config(reward_kwargs=reward_kwargs), tokenizer)


ROW = {"index": 3, "file_name": "HICO_test2015_00000004.jpg", "prompt": "hoi_r1"}


@pytest.mark.parametrize(
    ("extra_info", "ground_truth", "message"),
    [
        # a string "false" is not false: the run stops and names the row
        (
            ROW | {"prefilled_think": "false"},
            TRUTH,
            "row index 3 (HICO_test2015_00000004.jpg): extra_info['prefilled_think'] must be true, false or null; "
            "got 'false'",
        ),
        # an extra_info that is not a mapping at all
        ("index 3", TRUTH, "a row's extra_info must be a mapping; got str: 'index 3'"),
        # a ground truth that is not an answer list
        (
            ROW,
            "no pairs",
            "row index 3 (HICO_test2015_00000004.jpg): ground truth is not a valid answer JSON list: "
            "no JSON list in the answer",
        ),
        # a row without index or file name is still named as well as it can be
        ({"prefilled_think": 1}, TRUTH, "row: extra_info['prefilled_think'] must be true, false or null; got 1"),
    ],
)
def test_bad_row_stops_the_run(tokenizer, extra_info: object, ground_truth: str, message: str) -> None:
    manager = load_reward_manager(make_config(), tokenizer)
    data = make_data(tokenizer, PERFECT, extra_info=extra_info, ground_truth=ground_truth)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        run(manager, data)


def test_reward_kwargs_that_are_not_a_mapping_fail_at_construction(tokenizer) -> None:
    with pytest.raises(ValueError, match=r"^reward.reward_kwargs must map option names to values; got \[1, 2\]$"):
        load_reward_manager(make_config(reward_kwargs=[1, 2]), tokenizer)


def test_custom_function_is_used_when_configured(tokenizer) -> None:
    # verl_hoi.reward as the custom function, options in custom_reward_function.reward_kwargs:
    # the manager calls it as configured and ignores reward.reward_kwargs (a typo there does not matter).
    custom = {"path": "pkg://verl_hoi.reward", "reward_kwargs": {"require_think": False}}
    manager = load_reward_manager(make_config(custom=custom, reward_kwargs={"unused": 1}), tokenizer)
    result = run(manager, make_data(tokenizer, render_response(TRUTH)))
    assert result["reward_score"] == 1.0


def test_naive_manager_with_custom_function_path(tokenizer) -> None:
    # another verl project can reuse the reward without the manager
    custom = {"path": "pkg://verl_hoi.reward", "reward_kwargs": {"format_weight": 0}}
    manager = load_reward_manager(make_config(manager="naive", custom=custom), tokenizer)
    # verl's naive manager awaits futures of the loop it was built in, so run it there
    result = manager.loop.run_until_complete(manager.run_single(make_data(tokenizer, PARTLY_WRONG)))
    assert result["reward_score"] == pytest.approx((0.4 * 0.875 + 0.4) / 0.8)
    assert tuple(result["reward_extra_info"]) == KEYS
