"""The teacher side of thinking distillation: what a request costs, what it says, and sending it.

- Prices and token estimates: :class:`Price`, :func:`model_price` (built-in table, overridable; the
  Batch API's at :data:`BATCH_DISCOUNT`), :func:`estimate_tokens` for text and
  :func:`estimate_image_tokens` (OpenAI's tile formula).
- The teacher prompt: a template (``verl_hoi/data/teacher_prompt.txt`` by default; placeholders
  ``{task}`` and ``{answer}``, a literal brace written ``{{`` or ``}}``) filled with an RL row's task
  prompt and ground-truth answer.
- :func:`check_row` checks an RL row's fields before anything is read from it, as training checks
  them (:mod:`verl_hoi.rows`); :func:`prepare_item` turns it into a :class:`TeacherItem` (chat request,
  cache key of :func:`item_key`, estimated input tokens), decoding the image in full
  (:mod:`verl_hoi.images`): a corrupt, truncated or oversized image, or one whose size is not
  ``extra_info.image_size``, is a ``ValueError``, never sent.
- :class:`TeacherClient` sends it to any OpenAI-compatible chat endpoint: 429, 5xx, timeouts and
  connection errors are retried with exponential backoff and jitter, waiting at least what the
  server's ``Retry-After`` / ``retry-after-ms`` header asks for (:func:`retry_delay`); it raises
  :class:`ItemFailed` for a request that failed for good and :class:`FatalTeacherError` when the
  server refuses every request (:func:`error_kind` sorts the errors, for the Batch API's calls too).
  :meth:`TeacherClient.body` is the request body, the same in a Batch API input line, and
  :func:`reply_from_body` reads a chat completion sent back as JSON (a Batch API output line).

The run that drives these (cache, budget, concurrency) is :func:`verl_hoi.distill.distill`; the Batch
API's side is :mod:`verl_hoi.teacher_batch`.
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

from verl_hoi.images import decode_image
from verl_hoi.prompts import IMAGE_PLACEHOLDER
from verl_hoi.rows import RowMeta, check_image_size, check_row_entry, image_name, row_image_bytes

__all__ = [
    "BATCH_DISCOUNT",
    "DEFAULT_BACKOFF_BASE",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_TEACHER_PROMPT",
    "DEFAULT_TEMPERATURE",
    "IMAGE_DETAILS",
    "ROLES",
    "FatalTeacherError",
    "ItemFailed",
    "Price",
    "TeacherClient",
    "TeacherItem",
    "TeacherReply",
    "check_row",
    "check_template",
    "error_kind",
    "estimate_image_tokens",
    "estimate_tokens",
    "item_key",
    "load_teacher_prompt",
    "model_price",
    "prepare_item",
    "render_teacher_prompt",
    "reply_from_body",
    "retry_delay",
    "retryable_status",
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
BATCH_DISCOUNT = 0.5
"""The Batch API's price as a fraction of the standard one."""
# OpenAI's tile formula for image input tokens: base + per_tile * number of 512-px tiles.
IMAGE_TOKENS: dict[str, tuple[int, int]] = {"gpt-4o-mini": (2833, 5667)}
DEFAULT_IMAGE_TOKENS = (85, 170)
IMAGE_DETAILS: tuple[str, ...] = ("auto", "low", "high")
"""OpenAI's image detail levels; the first is the default (estimated as ``high``)."""
DEFAULT_MAX_TOKENS = 1024
DEFAULT_TEMPERATURE = 0.7
DEFAULT_TIMEOUT = 120.0
"""Seconds one teacher request may take."""
DEFAULT_MAX_RETRIES = 6
DEFAULT_BACKOFF_BASE = 1.0
_TOKEN = re.compile(r"\{\{|\}\}|\{(task|answer)\}|[{}]")


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


def model_price(
    model: str, input_price: float | None = None, output_price: float | None = None, *, batch: bool = False
) -> Price | None:
    """The price of ``model`` from the built-in table, with either side overridable; None if unknown.

    With ``batch`` the table's prices are the Batch API's (:data:`BATCH_DISCOUNT` of the standard
    ones); a price given here is taken as it is, for the mode in use.

    >>> model_price("gpt-4o-mini")
    Price(input_per_m=0.15, output_per_m=0.6)
    >>> model_price("gpt-4o-mini", batch=True), model_price("gpt-4o-mini", None, 1.0, batch=True)
    (Price(input_per_m=0.075, output_per_m=0.3), Price(input_per_m=0.075, output_per_m=1.0))
    >>> model_price("my-local-model") is None, model_price("my-local-model", 0, 0)
    (True, Price(input_per_m=0, output_per_m=0))
    """
    known = PRICES.get(model)
    if known and batch:
        known = (known[0] * BATCH_DISCOUNT, known[1] * BATCH_DISCOUNT)
    if input_price is None and known:
        input_price = known[0]
    if output_price is None and known:
        output_price = known[1]
    if input_price is None or output_price is None:
        return None
    return Price(input_price, output_price)


def load_teacher_prompt(path: str | Path | None = None) -> str:
    """The teacher prompt template (default: the packaged one), checked by :func:`check_template`.

    Raises:
        OSError: the file cannot be read (missing, a folder, no permission).
        ValueError: the file is not UTF-8 text or not a valid template (the message starts with the path).
    """
    path = Path(path) if path is not None else DEFAULT_TEACHER_PROMPT
    data = path.read_bytes()
    try:
        template = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text (byte {error.start})") from None
    try:
        check_template(template)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    return template


def check_template(template: str) -> None:
    """Check a teacher prompt template: ``{task}`` and ``{answer}`` present, no other brace unless doubled.

    >>> check_template("Task: {task} Answer: {answer} as {{json}}")
    >>> check_template("Task: {task}\\nAnswer: {answer} for {image}")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: line 2: unknown placeholder or stray brace at '{image}'; the placeholders are ...

    Raises:
        ValueError: a placeholder is missing, or a brace is neither a placeholder's nor doubled (with its line).
    """
    found = set()
    for match in _TOKEN.finditer(template):
        if match.group(1):
            found.add(match.group(1))
        elif len(match.group(0)) == 1:
            line = template.count("\n", 0, match.start()) + 1
            at = template[match.start() : match.start() + 20].split("\n")[0]
            raise ValueError(
                f"line {line}: unknown placeholder or stray brace at {at!r}; "
                "the placeholders are {task} and {answer}, and a literal brace is written {{ or }}"
            )
    missing = [f"{{{name}}}" for name in ("task", "answer") if name not in found]
    if missing:
        raise ValueError(f"lacks the placeholder(s) {' and '.join(missing)}")


def render_teacher_prompt(template: str, task: str, answer: str) -> str:
    """Fill ``{task}`` and ``{answer}`` and undouble ``{{``/``}}`` in one pass (braces in the values stay).

    >>> render_teacher_prompt("T: {task} A: {answer} {{x}}", "find {answer}", "[]")
    'T: find {answer} A: [] {x}'
    """
    values = {"task": task, "answer": answer}
    return _TOKEN.sub(lambda m: values[m.group(1)] if m.group(1) else m.group(0)[0], template)


def estimate_tokens(text: str) -> int:
    """Rough token count of English text (about four characters per token; no tokenizer needed).

    >>> estimate_tokens("12345678")
    2
    """
    return math.ceil(len(text) / 4)


def estimate_image_tokens(size: tuple[int, int], model: str, detail: str = IMAGE_DETAILS[0]) -> int:
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


ROLES = ("system", "user", "assistant")
"""Roles of the chat messages an RL row's prompt may hold."""


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    return "an empty list" if isinstance(value, list) and not value else type(value).__name__


def check_row(row: Mapping[str, Any]) -> None:
    """Check the fields of an RL parquet row that distillation reads; the image is decoded later, by
    :func:`prepare_item`. Nothing is coerced: a number where text is expected is an error.

    - ``extra_info``, ``images`` and ``prompt`` as training checks them
      (:func:`verl_hoi.rows.check_row_entry`: the SFT row made from it is checked so);
    - the prompt's roles are in :data:`ROLES`, with at least one ``user`` message;
    - the image entry is an object (the SFT row copies it);
    - ``reward_model.ground_truth``: answer JSON that :func:`verl_hoi.answer.parse_answer` reads as a
      strict JSON list with no invalid item.

    Raises:
        ValueError: what is wrong, naming the field.
    """
    from verl_hoi.answer import parse_answer

    if not isinstance(row, Mapping):
        raise ValueError(f"a row must map column names to values, got {_kind(row)}")
    meta = RowMeta.from_dict(row.get("extra_info"))
    check_row_entry(meta, row.get("images"), row.get("prompt"))
    prompt = row["prompt"]
    for i, message in enumerate(prompt):
        if message["role"] not in ROLES:
            raise ValueError(f"prompt[{i}].role must be one of {', '.join(ROLES)}, got {message['role']!r:.40}")
    if not any(message["role"] == "user" for message in prompt):
        raise ValueError("prompt has no user message")
    image = row["images"][0]
    if not isinstance(image, Mapping):
        raise ValueError(f"images[0] must be an entry with bytes or an image path, got {_kind(image)}")
    reward = row.get("reward_model")
    answer = reward.get("ground_truth") if isinstance(reward, Mapping) else None
    if type(answer) is not str:
        raise ValueError(f"reward_model.ground_truth must be the answer JSON text, got {_kind(answer)}")
    parsed = parse_answer(answer, max_items=max(1, len(answer)))
    if parsed.errors or not parsed.json_ok:
        why = parsed.errors[0] if parsed.errors else "not a strict JSON list"
        raise ValueError(f"reward_model.ground_truth is not a valid answer: {why}")


def _task_text(prompt: Iterable[Mapping[str, Any]]) -> str:
    parts = [m["content"] for m in prompt if m["role"] != "assistant"]
    return "\n\n".join(parts).replace(IMAGE_PLACEHOLDER, "").strip()


def _image_entry(row: Mapping[str, Any]) -> tuple[RowMeta, dict[str, Any]]:
    """The metadata and the image entry of a row checked by :func:`check_row`."""
    meta = RowMeta.from_dict(row["extra_info"])
    return meta, check_row_entry(meta, row["images"], row["prompt"], prompt=False)


def _teacher_image(data: bytes, entry: Mapping[str, Any], meta: RowMeta) -> tuple[str, tuple[int, int]]:
    """Data URL of the image the teacher sees and its size: at ``model_size`` when the answer is in the
    ``resized`` frame (so its coordinates match what it sees), otherwise the original image."""
    from PIL import Image

    target = meta.model_size if meta.frame == "resized" else None
    with decode_image(data, image_name(entry)) as img:
        check_image_size(img.size, meta)
        if target is None or img.size == target:
            mime = Image.MIME.get(img.format or "", "image/jpeg")
            return f"data:{mime};base64,{base64.b64encode(data).decode()}", img.size
        out = io.BytesIO()
        img.convert("RGB").resize(target, Image.Resampling.BICUBIC).save(out, "JPEG", quality=95)
    return f"data:image/jpeg;base64,{base64.b64encode(out.getvalue()).decode()}", target


def _key(files: list[bytes], text: str, model: str) -> str:
    identity = {"images": [hashlib.sha256(data).hexdigest() for data in files], "prompt": text, "model": model}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def item_key(row: Mapping[str, Any], template: str, model: str) -> str:
    """Cache key of a row's teacher request: SHA-256 of its image bytes, full teacher prompt and model.

    Cheap (no image decoding), so a resumed run finds its cached rows quickly.

    Raises:
        ValueError: the row's image file cannot be read.
    """
    return _key([row_image_bytes(_image_entry(row)[1])], _teacher_text(row, template), model)


def _teacher_text(row: Mapping[str, Any], template: str) -> str:
    return render_teacher_prompt(template, _task_text(row["prompt"]), row["reward_model"]["ground_truth"])


def prepare_item(
    index: int,
    row: Mapping[str, Any],
    template: str,
    model: str,
    *,
    detail: str = IMAGE_DETAILS[0],
) -> TeacherItem:
    """Build the teacher request for one RL row checked by :func:`check_row` (key as in :func:`item_key`).

    The teacher sees the image at the row's ``extra_info.model_size`` when the answer is in the
    ``resized`` frame (so its coordinates match what it sees), otherwise the original image.

    Raises:
        ValueError: the image cannot be read or decoded, has more than
            :data:`verl_hoi.images.MAX_IMAGE_PIXELS` pixels, or is not of the row's ``extra_info.image_size``.
    """
    meta, entry = _image_entry(row)
    data = row_image_bytes(entry)
    text = _teacher_text(row, template)
    url, size = _teacher_image(data, entry, meta)
    content = [
        {"type": "image_url", "image_url": {"url": url, "detail": detail}},
        {"type": "text", "text": text},
    ]
    return TeacherItem(
        index=index,
        key=_key([data], text, model),
        file_name=meta.file_name,
        messages=[{"role": "user", "content": content}],
        est_input_tokens=estimate_tokens(text) + estimate_image_tokens(size, model, detail),
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
    delay = min(cap, base * 2 ** min(attempt - 1, 60)) * (0.5 + 0.5 * rng.random())  # no float overflow
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


def retryable_status(status: int) -> bool:
    """Whether a request answered with HTTP ``status`` may succeed when sent again: 408, 409, 429 and 5xx.

    >>> [retryable_status(status) for status in (400, 408, 429, 500)]
    [False, True, True, True]
    """
    return status >= 500 or status in (408, 409, 429)


def error_kind(exc: BaseException) -> str:
    """How to treat an ``openai`` error: ``"fatal"`` (the key, the access or the model is refused, so
    every request would fail), ``"retry"`` (429, 5xx, timeouts, dropped connections: try again later)
    or ``"item"`` (this request only, e.g. a 400 or a reply that is not what was asked for)."""
    import openai

    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError | openai.NotFoundError):
        return "fatal"
    if isinstance(exc, openai.APIConnectionError):  # timeouts included
        return "retry"
    if isinstance(exc, openai.APIStatusError) and retryable_status(exc.status_code):
        return "retry"
    return "item"


def _tokens(usage: Any, name: str) -> int:
    """A token count of the reply's usage; 0 when the server sent none or something that is not a count."""
    value = getattr(usage, name, None)
    return value if type(value) is int and value >= 0 else 0


def _reply(response: Any, attempt: int) -> TeacherReply:
    """The :class:`TeacherReply` of a chat completion; raises :class:`ItemFailed` when it holds no text."""
    if not response.choices:
        raise ItemFailed("no choices in the response")
    choice = response.choices[0]
    text = choice.message.content
    if text is not None and type(text) is not str:
        raise ItemFailed(f"the reply's content is a {type(text).__name__}, not text")
    return TeacherReply(
        text=text or "",
        finish_reason=choice.finish_reason if type(choice.finish_reason) is str else None,
        prompt_tokens=_tokens(response.usage, "prompt_tokens"),
        completion_tokens=_tokens(response.usage, "completion_tokens"),
        attempts=attempt,
    )


def reply_from_body(body: object) -> TeacherReply:
    """The :class:`TeacherReply` of a chat completion sent back as JSON (the body of a Batch API output
    line), read as the client reads one; raises :class:`ItemFailed` when it is not a chat completion
    with text.

    >>> reply_from_body({"choices": [{"message": {"content": "Two."}, "finish_reason": "stop"}]}).text
    'Two.'
    """
    from openai.types.chat import ChatCompletion

    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not all(
        isinstance(choice, dict) and isinstance(choice.get("message"), dict) for choice in choices
    ):
        raise ItemFailed("the reply is not a chat completion")
    return _reply(ChatCompletion.construct(**body), 1)


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
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float = DEFAULT_TEMPERATURE,
        max_retries: int = DEFAULT_MAX_RETRIES,
        backoff_base: float = DEFAULT_BACKOFF_BASE,
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

    def body(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """The chat-completion request for ``messages``: the keyword arguments of the client's call and
        the body of a Batch API input line."""
        return {
            "model": self.model,
            "messages": messages,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }

    async def complete(self, messages: list[dict[str, Any]]) -> TeacherReply:
        """One chat completion; raises :class:`ItemFailed` or :class:`FatalTeacherError`."""
        import openai

        for attempt in range(1, self.max_retries + 2):
            self.requests += 1
            try:
                response = await self.client.chat.completions.create(**self.body(messages))
            except openai.APIError as exc:
                kind = error_kind(exc)
                if kind == "fatal":
                    raise FatalTeacherError(f"{type(exc).__name__} (HTTP {exc.status_code})") from None
                if kind == "item":
                    status = isinstance(exc, openai.APIStatusError)
                    raise ItemFailed(f"HTTP {exc.status_code}" if status else type(exc).__name__) from None
                error = exc
            else:
                return _reply(response, attempt)
            if attempt > self.max_retries:
                break
            self.retries += 1
            await self.sleep(retry_delay(error, attempt, base=self.backoff_base, cap=self.backoff_cap))
        raise ItemFailed(f"{type(error).__name__} after {self.max_retries + 1} attempts")
