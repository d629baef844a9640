"""Teacher requests: retry delays (backoff, jitter, Retry-After) and image token estimates."""

from __future__ import annotations

import random
import time

import httpx
import openai
import pytest

from verl_hoi.teacher import estimate_image_tokens, retry_delay


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
