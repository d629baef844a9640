"""Teacher requests: retry delays (backoff, jitter, Retry-After), image token estimates, the row checks and the
teacher prompt template."""

from __future__ import annotations

import copy
import random
import re
import time
from types import SimpleNamespace

import httpx
import openai
import pytest

from verl_hoi.teacher import (
    ItemFailed,
    TeacherClient,
    TeacherReply,
    check_row,
    check_template,
    estimate_image_tokens,
    load_teacher_prompt,
    render_teacher_prompt,
    reply_from_body,
    retry_delay,
)


def _error(status: int, headers: dict) -> openai.APIStatusError:
    response = httpx.Response(status, headers=headers, request=httpx.Request("POST", "http://127.0.0.1/v1"))
    return openai.APIStatusError("x", response=response, body=None)


class _Half(random.Random):
    def random(self) -> float:
        return 0.5  # jitter factor 0.5 + 0.5 * 0.5 = 0.75


@pytest.mark.parametrize(
    ("headers", "attempt", "expected"),
    [
        ({}, 1, 0.75),  # no header: base 1 s * 0.75 jitter
        ({}, 3, 3.0),  # 1 * 2**2 * 0.75
        ({}, 10, 45.0),  # capped at 60 * 0.75
        ({"Retry-After": "7"}, 1, 7.0),  # seconds from the server win over a shorter backoff
        ({"Retry-After": "0.1"}, 3, 3.0),  # a shorter Retry-After does not shorten the backoff
        ({"retry-after-ms": "2500"}, 1, 2.5),  # milliseconds variant
        ({"Retry-After": "3600"}, 1, 600.0),  # absurd waits are capped at 10 minutes
        ({"Retry-After": "soon"}, 1, 0.75),  # unparseable: ignored
    ],
)
def test_retry_delay(headers, attempt, expected):
    assert retry_delay(_error(429, headers), attempt, rng=_Half()) == pytest.approx(expected)


def test_retry_delay_http_date():
    when = time.time() + 30
    header = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(when))
    assert 25 <= retry_delay(_error(503, {"Retry-After": header}), 1, rng=_Half()) <= 31


@pytest.mark.parametrize(
    ("size", "model", "detail", "tokens"),
    [
        ((640, 480), "gpt-4o", "auto", 85 + 170 * 2),  # small: not scaled, 2x1 tiles
        ((2048, 4096), "gpt-4o", "high", 85 + 170 * 6),  # 1024x2048 -> 768x1536: 2x3 tiles
        ((640, 480), "gpt-4o-mini", "high", 2833 + 5667 * 2),  # mini's larger token counts
        ((4000, 3000), "gpt-4o-mini", "low", 2833),  # low detail: base only
    ],
)
def test_estimate_image_tokens(size, model, detail, tokens):
    assert estimate_image_tokens(size, model, detail) == tokens


def test_retry_delay_never_overflows():
    # 2 ** 2000 seconds would not fit a float: the backoff is capped before it is computed.
    assert retry_delay(_error(503, {}), 2000, rng=_Half()) == pytest.approx(45.0)


_ANSWER = '[{"human": [0, 0, 5, 9], "object": [1, 1, 4, 4], "object class": "cup", "verb class": ["hold"]}]'
_ROW = {
    "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "<image>Find them."}],
    "images": [{"bytes": b"jpeg", "min_pixels": 3136, "max_pixels": 50176}],
    "reward_model": {"style": "rule", "ground_truth": _ANSWER},
    "extra_info": {
        "file_name": "a.jpg",
        "image_size": [640, 427],
        "model_size": [252, 168],
        "frame": "resized",
        "min_pixels": 3136,
        "max_pixels": 50176,
    },
}


def set_field(row: dict, path: str, value: object) -> None:
    """Set a dotted field of a row in place (``"extra_info.frame"``, ``"images.0.bytes"``)."""
    *parents, last = path.split(".")
    target = row
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    target[int(last) if isinstance(target, list) else last] = value


def _with(path: str, value: object) -> dict:
    row = copy.deepcopy(_ROW)
    set_field(row, path, value)
    return row


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (_ROW, None),  # the converter's row
        (_with("images.0", {"image": "images/a.jpg"}), None),  # path mode, the budget filled in from the row
        (_with("reward_model.ground_truth", "[]"), None),  # an image without pairs
        ([("prompt", [])], "a row must map column names to values, got list"),  # not a row at all
        (_with("prompt", "<image>Find them."), "the prompt must be a list of chat messages, got '<image>Find them.'"),
        (_with("prompt", None), "the prompt must be a list of chat messages, got None"),
        (
            _with("prompt.1.content", 7),  # no coercion
            "a prompt message must have a text role and content, got {'role': 'user', 'content': 7}",
        ),
        (
            _with("prompt.1.role", None),
            "a prompt message must have a text role and content, got {'role': None, 'content': '<image>Find them.'}",
        ),
        (_with("prompt.1.role", "robot"), "prompt[1].role must be one of system, user, assistant, got 'robot'"),
        (_with("prompt.1.role", "assistant"), "prompt has no user message"),
        (_with("images.0", {"image": ""}), "image entry has no bytes and no image path (image='')"),
        (_with("images.0", "a.jpg"), "images[0] must be an entry with bytes or an image path, got str"),
        (_with("images.0.bytes", "jpeg"), "image entry bytes must be binary, got str"),
        (
            _with("images.0.max_pixels", True),  # bool
            "image entry has max_pixels=True but the row's boxes were made for max_pixels=50176",
        ),
        (
            _with("images.0.min_pixels", 0),
            "image entry has min_pixels=0 but the row's boxes were made for min_pixels=3136",
        ),
        (_with("images", []), "a row has one image entry, got 0"),
        (_with("prompt.1.content", "<image><image>Two?"), "the prompt has 2 <image> placeholder(s) for 1 image(s)"),
        (_with("reward_model", None), "reward_model.ground_truth must be the answer JSON text, got nothing"),
        (_with("reward_model.ground_truth", 5), "reward_model.ground_truth must be the answer JSON text, got int"),
        (_with("reward_model.ground_truth", "```json\n[]\n```"), "reward_model.ground_truth is not a valid answer: "),
        (
            _with("reward_model.ground_truth", _ANSWER.replace('"hold"', '"ride"')),
            "item 0: 'ride' is not a verb of 'cup'",
        ),
        (_with("extra_info", None), "extra_info must be an object, got None (not a verl_hoi.convert row?)"),
        (_with("extra_info", "a.jpg"), "extra_info must be an object, got 'a.jpg' (not a verl_hoi.convert row?)"),
        (_with("extra_info.model_size", None), "extra_info lacks model_size (not a verl_hoi.convert row?)"),
        (_with("extra_info.model_size", [252, True]), "extra_info.model_size must be [width, height]"),  # bool
        (_with("extra_info.image_size", [640.0, 427]), "extra_info.image_size must be [width, height]"),  # float
        (_with("extra_info.image_size", [640, 427, 3]), "extra_info.image_size must be [width, height]"),
        (_with("extra_info.file_name", 1), "extra_info.file_name must be a non-empty text, got 1"),
        (
            _with("extra_info.model_size", [10**6, 10**6]),  # the teacher would resize to it
            "model_size [1000000, 1000000] is not the smart resize [252, 168] of image_size [640, 427]",
        ),
        (_with("extra_info.max_pixels", 10**9), "max_pixels must be in 784..89478485, got 1000000000"),
        (_with("extra_info.frame", "resised"), "extra_info.frame 'resised' is not one of resized, original, norm1000"),
    ],
    ids=[
        "converter-row",
        "path-mode",
        "no-pairs",
        "not-a-mapping",
        "prompt-is-text",
        "prompt-null",
        "content-not-text",
        "role-null",
        "role-unknown",
        "no-user-message",
        "image-path-empty",
        "image-entry-is-text",
        "image-bytes-is-text",
        "max-pixels-bool",
        "min-pixels-zero",
        "no-image",
        "two-placeholders-one-image",
        "reward-model-null",
        "ground-truth-int",
        "ground-truth-fenced",
        "verb-not-of-object",
        "no-extra-info",
        "extra-info-text",
        "resized-without-model-size",
        "model-size-bool",
        "image-size-float",
        "image-size-three-numbers",
        "file-name-int",
        "model-size-not-the-resize",
        "budget-over-the-image-limit",
        "frame-unknown",
    ],
)
def test_check_row(row, message):
    if message is None:
        check_row(row)
    else:
        with pytest.raises(ValueError, match=re.escape(message)):
            check_row(row)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{task} then {answer}", None),
        ("{answer}\n{task}\n{task}", None),  # order and repeats are free
        ('{task} {answer} as {{"human": [x1, y1, x2, y2]}}', None),  # doubled braces are literal
        ("{task}", "lacks the placeholder(s) {answer}"),
        ("", "lacks the placeholder(s) {task} and {answer}"),
        ("{task} {answer} {Task}", "line 1: unknown placeholder or stray brace at '{Task}'"),  # names are exact
        ("{task}\n{ answer }", "line 2: unknown placeholder or stray brace at '{ answer }'"),
        ("{task} {answer}\n\nclose }", "line 3: unknown placeholder or stray brace at '}'"),
        ("{task} {answer} {task!r}", "line 1: unknown placeholder or stray brace at '{task!r}'"),
    ],
    ids=[
        "both",
        "repeated",
        "doubled-braces",
        "no-answer",
        "empty",
        "wrong-case",
        "spaces-inside",
        "lone-closing",
        "conversion",
    ],
)
def test_check_template(template, message):
    if message is None:
        check_template(template)
    else:
        with pytest.raises(ValueError, match=re.escape(message)):
            check_template(template)


def test_render_teacher_prompt_undoubles_braces_and_leaves_values_alone():
    rendered = render_teacher_prompt('Task: {task}\nAnswer: {answer}\nFormat: {{"a": 1}}', "find {{x}}", '[{"b": 2}]')
    assert rendered == 'Task: find {{x}}\nAnswer: [{"b": 2}]\nFormat: {"a": 1}'


def test_load_teacher_prompt_names_the_file(tmp_path):
    path = tmp_path / "p.txt"
    path.write_bytes(b"{task} \xff {answer}")
    with pytest.raises(ValueError, match=re.escape(f"{path}: not UTF-8 text (byte 7)")):
        load_teacher_prompt(path)
    path.write_text("{task}\n{answer}\n{image}\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}: line 3: unknown placeholder")):
        load_teacher_prompt(path)
    assert "{task}" in load_teacher_prompt()  # the packaged template passes


class _Completions:
    """A client whose chat completions return ``reply`` (the SDK object's shape, values as a server sent them)."""

    def __init__(self, reply: SimpleNamespace):
        self.chat = SimpleNamespace(completions=self)
        self.reply = reply

    async def create(self, **_: object) -> SimpleNamespace:
        return self.reply


def _completion(content: object, usage: SimpleNamespace | None) -> SimpleNamespace:
    choice = SimpleNamespace(message=SimpleNamespace(content=content), finish_reason="stop")
    return SimpleNamespace(choices=[choice], usage=usage)


async def test_token_counts_that_are_not_counts_are_not_recorded():
    usage = SimpleNamespace(prompt_tokens=1000.5, completion_tokens=True)
    reply = await TeacherClient(_Completions(_completion("Two people.", usage)), "m").complete([])
    assert (reply.text, reply.prompt_tokens, reply.completion_tokens) == ("Two people.", 0, 0)
    reply = await TeacherClient(_Completions(_completion(None, None)), "m").complete([])
    assert (reply.text, reply.prompt_tokens, reply.completion_tokens) == ("", 0, 0)


async def test_a_reply_whose_content_is_not_text_fails_the_item():
    with pytest.raises(ItemFailed, match="the reply's content is a list, not text"):
        await TeacherClient(_Completions(_completion([{"type": "text"}], None)), "m").complete([])


@pytest.mark.parametrize(
    ("body", "reply"),
    [
        (
            {"choices": [{"message": {"content": "Two."}, "finish_reason": "length"}], "usage": {"prompt_tokens": 7}},
            TeacherReply("Two.", "length", 7, 0, 1),
        ),
        ({"choices": [{"message": {"content": None}, "finish_reason": None}]}, TeacherReply("", None, 0, 0, 1)),
        ({"choices": [], "usage": None}, "no choices in the response"),
        ({"choices": [{"message": {"content": ["x"]}}]}, "the reply's content is a list, not text"),
        ({"choices": [{"message": "Two."}]}, "the reply is not a chat completion"),
        ({"choices": "Two."}, "the reply is not a chat completion"),
        ({"error": {"message": "no"}}, "the reply is not a chat completion"),
        ([1], "the reply is not a chat completion"),
    ],
    ids=["text", "no-content", "no-choices", "content-list", "message-text", "choices-text", "error", "list"],
)
def test_reply_from_body_reads_a_completion_as_the_client_does(body, reply):
    if isinstance(reply, TeacherReply):
        assert reply_from_body(body) == reply
    else:
        with pytest.raises(ItemFailed, match=re.escape(reply)):
            reply_from_body(body)


def test_the_request_body_is_the_clients_call():
    teacher = TeacherClient(None, "m", max_tokens=99, temperature=0.2)
    messages = [{"role": "user", "content": "Find them."}]
    assert teacher.body(messages) == {"model": "m", "messages": messages, "max_tokens": 99, "temperature": 0.2}
