"""The teacher side of thinking distillation: what a request costs, what it says, and sending it.

- Prices and token estimates: :class:`Price`, :func:`model_price` (built-in table, overridable),
  :func:`estimate_tokens` for text and :func:`estimate_image_tokens` (OpenAI's tile formula).
- The teacher prompt: a template (``verl_hoi/data/teacher_prompt.txt`` by default; placeholders
  ``{task}`` and ``{answer}``) filled with an RL row's task prompt and ground-truth answer.
- :func:`prepare_item` turns one RL row into a :class:`TeacherItem` (chat request, cache key of
  :func:`item_key`, estimated input tokens).
- :class:`TeacherClient` sends it to any OpenAI-compatible chat endpoint: 429, 5xx, timeouts and
  connection errors are retried with exponential backoff and jitter, waiting at least what the
  server's ``Retry-After`` / ``retry-after-ms`` header asks for (:func:`retry_delay`); it raises
  :class:`ItemFailed` for a request that failed for good and :class:`FatalTeacherError` when the
  server refuses every request.

The run that drives these (cache, budget, concurrency) is :func:`verl_hoi.distill.distill`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import hashlib
import io
import json
import math
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_TEACHER_PROMPT",
    "FatalTeacherError",
    "ItemFailed",
    "Price",
    "TeacherClient",
    "TeacherItem",
    "TeacherReply",
    "estimate_image_tokens",
    "estimate_tokens",
    "item_key",
    "load_teacher_prompt",
    "model_price",
    "prepare_item",
    "render_teacher_prompt",
    "retry_delay",
]

DEFAULT_TEACHER_PROMPT = Path(__file__).parent / "data" / "teacher_prompt.txt"

# USD per million (input, output) tokens, standard tier; --input-price/--output-price override.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
}
# OpenAI's tile formula for image input tokens: base + per_tile * number of 512-px tiles.
IMAGE_TOKENS: dict[str, tuple[int, int]] = {"gpt-4o-mini": (2833, 5667)}
DEFAULT_IMAGE_TOKENS = (85, 170)
_PLACEHOLDER = re.compile(r"\{(task|answer)\}")


@dataclass(frozen=True)
class Price:
    """Price of a model in USD per million input and output tokens.

    >>> Price(0.15, 0.60).cost(1_000_000, 500_000)
    0.45
    """

    input_per_m: float
    output_per_m: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_per_m + completion_tokens * self.output_per_m) / 1e6


def model_price(model: str, input_price: float | None = None, output_price: float | None = None) -> Price | None:
    """The price of ``model`` from the built-in table, with either side overridable; None if unknown.

    >>> model_price("gpt-4o-mini")
    Price(input_per_m=0.15, output_per_m=0.6)
    >>> model_price("my-local-model") is None, model_price("my-local-model", 0, 0)
    (True, Price(input_per_m=0, output_per_m=0))
    """
    known = PRICES.get(model)
    if input_price is None and known:
        input_price = known[0]
    if output_price is None and known:
        output_price = known[1]
    if input_price is None or output_price is None:
        return None
    return Price(input_price, output_price)


def load_teacher_prompt(path: str | Path | None = None) -> str:
    """The teacher prompt template (default: the packaged one); must contain ``{task}`` and ``{answer}``.

    Raises ``FileNotFoundError`` / ``ValueError`` with the path in the message.
    """
    path = Path(path) if path is not None else DEFAULT_TEACHER_PROMPT
    template = path.read_text(encoding="utf-8")
    missing = {"task", "answer"} - set(_PLACEHOLDER.findall(template))
    if missing:
        raise ValueError(f"teacher prompt {path} lacks the placeholder(s) {', '.join(sorted(missing))}")
    return template


def render_teacher_prompt(template: str, task: str, answer: str) -> str:
    """Fill ``{task}`` and ``{answer}`` in one pass (other braces, e.g. JSON, are left alone).

    >>> render_teacher_prompt("T: {task} A: {answer} {x}", "find {answer}", "[]")
    'T: find {answer} A: [] {x}'
    """
    values = {"task": task, "answer": answer}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def estimate_tokens(text: str) -> int:
    """Rough token count of English text (about four characters per token; no tokenizer needed).

    >>> estimate_tokens("12345678")
    2
    """
    return math.ceil(len(text) / 4)


def estimate_image_tokens(size: tuple[int, int], model: str, detail: str = "auto") -> int:
    """Input tokens of one image under OpenAI's tile formula (exact for GPT-4o-family pricing).

    High detail: fit in 2048x2048, scale the short side down to 768, count 512-px tiles;
    tokens = base + per_tile * tiles (gpt-4o: 85 + 170 per tile; gpt-4o-mini: 2833 + 5667).
    ``detail="low"`` costs only the base; ``auto`` is estimated as high.

    >>> estimate_image_tokens((1024, 1024), "gpt-4o")  # 768x768 -> 2x2 tiles
    765
    >>> estimate_image_tokens((640, 480), "gpt-4o")  # never scaled up: 2x1 tiles
    425
    >>> estimate_image_tokens((640, 480), "gpt-4o-mini", "low")
    2833
    """
    base, per_tile = IMAGE_TOKENS.get(model, DEFAULT_IMAGE_TOKENS)
    if detail == "low":
        return base
    w, h = size
    scale = min(1.0, 2048 / max(w, h))
    w, h = w * scale, h * scale
    scale = 768 / min(w, h)
    if scale < 1:
        w, h = w * scale, h * scale
    return base + per_tile * math.ceil(w / 512) * math.ceil(h / 512)


@dataclass(frozen=True)
class TeacherItem:
    """One request to the teacher: ``key`` (cache key), ``messages`` (chat request), ``index``
    and ``file_name`` of the row, ``est_input_tokens`` (for the budget and the dry run)."""

    index: int
    key: str
    file_name: str
    messages: list[dict[str, Any]]
    est_input_tokens: int


def _task_text(prompt: Iterable[Mapping[str, Any]]) -> str:
    parts = [str(m["content"]) for m in prompt if m["role"] != "assistant"]
    return "\n\n".join(parts).replace("<image>", "").strip()


def _image_bytes(image: Mapping[str, Any]) -> bytes:
    if image.get("bytes") is not None:
        return bytes(image["bytes"])
    if not image.get("image"):
        raise ValueError(f"image entry has neither bytes nor an image path: keys {sorted(image)}")
    return Path(image["image"]).read_bytes()


def _teacher_image(data: bytes, target_size: tuple[int, int] | None) -> tuple[str, tuple[int, int]]:
    """Data URL of the image the teacher sees (at ``target_size`` when given) and its size."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        if target_size is None or tuple(img.size) == tuple(target_size):
            mime = Image.MIME.get(img.format or "", "image/jpeg")
            return f"data:{mime};base64,{base64.b64encode(data).decode()}", img.size
        out = io.BytesIO()
        img.convert("RGB").resize(tuple(target_size), Image.Resampling.BICUBIC).save(out, "JPEG", quality=95)
    return f"data:image/jpeg;base64,{base64.b64encode(out.getvalue()).decode()}", tuple(target_size)


def item_key(row: Mapping[str, Any], template: str, model: str) -> str:
    """Cache key of a row's teacher request: SHA-256 of its image bytes, full teacher prompt and model.

    Cheap (no image decoding), so a resumed run finds its cached rows quickly.
    """
    identity = {
        "images": [hashlib.sha256(_image_bytes(image)).hexdigest() for image in row["images"]],
        "prompt": _teacher_text(row, template),
        "model": model,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def _teacher_text(row: Mapping[str, Any], template: str) -> str:
    return render_teacher_prompt(template, _task_text(row["prompt"]), row["reward_model"]["ground_truth"])


def prepare_item(
    index: int,
    row: Mapping[str, Any],
    template: str,
    model: str,
    *,
    detail: str = "auto",
) -> TeacherItem:
    """Build the teacher request for one RL row (key as in :func:`item_key`).

    The teacher sees the image at the row's ``extra_info.model_size`` when the answer is in the
    ``resized`` frame (so its coordinates match what it sees), otherwise the original image.
    """
    extra = row.get("extra_info") or {}
    target = tuple(extra["model_size"]) if extra.get("frame") == "resized" and extra.get("model_size") else None
    text = _teacher_text(row, template)
    content: list[dict[str, Any]] = []
    est = estimate_tokens(text)
    for image in row["images"]:
        url, size = _teacher_image(_image_bytes(image), target)
        content.append({"type": "image_url", "image_url": {"url": url, "detail": detail}})
        est += estimate_image_tokens(size, model, detail)
    content.append({"type": "text", "text": text})
    return TeacherItem(
        index=index,
        key=item_key(row, template, model),
        file_name=str(extra.get("file_name", "")),
        messages=[{"role": "user", "content": content}],
        est_input_tokens=est,
    )


class FatalTeacherError(RuntimeError):
    """The server refuses every request (bad key, unknown model): stop the whole run."""


class ItemFailed(RuntimeError):
    """This request failed for good (after retries, or a 4xx about this item)."""


@dataclass(frozen=True)
class TeacherReply:
    """``text`` of the first choice, ``finish_reason``, token ``usage`` and ``attempts`` made."""

    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    attempts: int


def retry_delay(exc: BaseException, attempt: int, *, base: float = 1.0, cap: float = 60.0, rng=random) -> float:
    """Seconds to wait before retry ``attempt`` (1-based) after ``exc``.

    Exponential backoff with jitter, ``base * 2**(attempt-1) * U(0.5, 1)`` capped at ``cap``,
    but never less than the server's ``retry-after-ms`` / ``Retry-After`` (seconds or HTTP date)
    when the error carries a response; a Retry-After above 10 minutes is capped there.
    """
    delay = min(cap, base * 2 ** (attempt - 1)) * (0.5 + 0.5 * rng.random())
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    asked = None
    with contextlib.suppress(TypeError, ValueError):
        if headers.get("retry-after-ms") is not None:
            asked = float(headers["retry-after-ms"]) / 1000
        elif headers.get("retry-after") is not None:
            value = headers["retry-after"]
            try:
                asked = float(value)
            except ValueError:
                asked = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
    if asked is not None and math.isfinite(asked):
        delay = max(delay, min(max(asked, 0.0), 600.0))
    return delay


class TeacherClient:
    """Chat-completion calls with our own retry policy (the SDK's retries are switched off).

    Args:
        client: an ``openai.AsyncOpenAI`` (OpenAI or any compatible server); its ``max_retries``
            should be 0 so that every attempt is visible here.
        model: model name sent with each request.
        max_tokens, temperature: generation settings.
        max_retries: retries after the first attempt for 429, 5xx, timeouts, connection errors.
        backoff_base, backoff_cap: see :func:`retry_delay`.
        sleep: the coroutine used to wait (``asyncio.sleep``); tests pass a recorder.
    """

    def __init__(
        self,
        client: Any,
        model: str,
        *,
        max_tokens: int = 1024,
        temperature: float = 0.7,
        max_retries: int = 6,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ):
        self.client = client
        self.model = model
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.sleep = sleep
        self.requests = 0
        self.retries = 0

    async def complete(self, messages: list[dict[str, Any]]) -> TeacherReply:
        """One chat completion; raises :class:`ItemFailed` or :class:`FatalTeacherError`."""
        import openai

        for attempt in range(1, self.max_retries + 2):
            self.requests += 1
            try:
                response = await self.client.chat.completions.create(
                    model=self.model, messages=messages, max_tokens=self.max_tokens, temperature=self.temperature
                )
            except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as exc:
                raise FatalTeacherError(f"{type(exc).__name__} (HTTP {exc.status_code})") from None
            except (openai.APITimeoutError, openai.APIConnectionError, openai.RateLimitError) as exc:
                error = exc
            except openai.APIStatusError as exc:
                if exc.status_code < 500 and exc.status_code not in (408, 409):
                    raise ItemFailed(f"HTTP {exc.status_code}") from None
                error = exc
            except openai.APIError as exc:  # e.g. a reply that is not a chat completion
                raise ItemFailed(type(exc).__name__) from None
            else:
                if not response.choices:
                    raise ItemFailed("no choices in the response")
                choice = response.choices[0]
                usage = response.usage
                return TeacherReply(
                    text=choice.message.content or "",
                    finish_reason=choice.finish_reason,
                    prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                    completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
                    attempts=attempt,
                )
            if attempt > self.max_retries:
                break
            self.retries += 1
            await self.sleep(retry_delay(error, attempt, base=self.backoff_base, cap=self.backoff_cap))
        raise ItemFailed(f"{type(error).__name__} after {self.max_retries + 1} attempts")
