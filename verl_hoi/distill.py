"""Thinking distillation: a teacher model writes the reasoning that leads to each ground-truth answer.

For every RL parquet row the teacher (any OpenAI-compatible chat endpoint) sees the image, the
task prompt and the ground-truth answer, rendered through a prompt template
(``verl_hoi/data/teacher_prompt.txt`` by default; placeholders ``{task}`` and ``{answer}``), and
writes HOI-R1's four-step reasoning. Accepted traces become SFT rows (:mod:`verl_hoi.sft`).

Paid calls are never lost or repeated:

- every finished request (accepted or rejected trace) is appended to ``OUT/cache.jsonl`` and
  fsync'd before the next one is recorded; the cache key is the SHA-256 of (image bytes, full
  teacher prompt, model), so a run killed at any moment resumes where it stopped. A torn last
  line (a kill in the middle of a write) is dropped on the next start;
- 429, 5xx, timeouts and connection errors are retried with exponential backoff and jitter,
  waiting at least what the server's ``Retry-After`` / ``retry-after-ms`` header asks for;
- ``max_cost`` reserves the worst-case cost of every request before sending it and stops
  sending once the next one could exceed the budget; requests in flight still finish and are
  recorded.

The command-line entry point is ``data_prep/distill_thinking.py``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import fcntl
import functools
import hashlib
import io
import json
import math
import os
import random
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_TEACHER_PROMPT",
    "REJECT_REASONS",
    "DistillStats",
    "FatalTeacherError",
    "FolderBusyError",
    "ItemFailed",
    "Price",
    "TeacherClient",
    "TeacherItem",
    "TeacherReply",
    "TraceCache",
    "check_trace",
    "clean_trace",
    "distill",
    "estimate_image_tokens",
    "estimate_tokens",
    "item_key",
    "load_teacher_prompt",
    "model_price",
    "prepare_item",
    "render_teacher_prompt",
    "retry_delay",
    "sft_rows",
    "cache_totals",
]

DEFAULT_TEACHER_PROMPT = Path(__file__).parent / "data" / "teacher_prompt.txt"
CACHE_NAME = "cache.jsonl"
SUMMARY_NAME = "summary.json"
# Output tokens assumed per trace for the dry-run estimate (the prompt asks for under 250 words).
EXPECTED_OUTPUT_TOKENS = 400

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

REJECT_REASONS = ("empty", "refusal", "too_long", "leak", "tags")
_REFUSAL = re.compile(
    r"^\W*(?:i'?m sorry|i am sorry|sorry,|i can'?t|i cannot|i'?m unable|i am unable|i'?m not able|"
    r"i am not able|as an ai|unfortunately,? i)",
    re.IGNORECASE,
)
_LEAK = re.compile(
    r"ground[\s-]*truth|annotat(?:ed|ion|ions|or)\b|\blabels? (?:say|says|show|given|provided)|"
    r"(?:reference|provided|given|expected|correct|target|supplied) answer|"
    r"answer (?:was |is )?(?:provided|given|supplied)|"
    r"(?:was|were|am|been|being) (?:given|provided|told|shown|supplied) (?:with )?(?:the |an |this )?"
    r"(?:answer|solution|annotations?|labels?)|according to the (?:answer|solution|labels?)",
    re.IGNORECASE,
)
_TAG = re.compile(r"</?\s*(?:think|answer)\s*>", re.IGNORECASE)
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


def clean_trace(text: str | None) -> str:
    """Strip whitespace and one ``<think>...</think>`` wrapper around the whole text.

    >>> clean_trace("  <think>Two people.</think> ")
    'Two people.'
    """
    text = (text or "").strip()
    if text[:7].lower() == "<think>" and text[-8:].lower() == "</think>":
        text = text[7:-8].strip()
    return text


def check_trace(text: str, *, max_chars: int = 4000, finish_reason: str | None = None) -> str | None:
    """Why a cleaned trace is unusable (one of ``REJECT_REASONS``), or None when it is fine.

    - ``empty``: no text; ``too_long``: over ``max_chars`` or cut by the token limit
      (``finish_reason == "length"``); ``refusal``: starts like a refusal ("I'm sorry", "I can't");
      ``leak``: says it was given the answer ("ground truth", "the provided answer",
      "annotation"); ``tags``: contains ``<think>``/``<answer>`` tags, which would break the
      target format.

    >>> check_trace("There are two people; the one on the left rides the bicycle.") is None
    True
    >>> check_trace("I'm sorry, I can't help with that."), check_trace("The ground truth lists a horse.")
    ('refusal', 'leak')
    """
    if not text.strip():
        return "empty"
    if finish_reason == "length" or len(text) > max_chars:
        return "too_long"
    if _REFUSAL.match(text[:200]):
        return "refusal"
    if _LEAK.search(text):
        return "leak"
    if _TAG.search(text):
        return "tags"
    return None


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


class TraceCache:
    """Append-only JSONL cache of finished teacher requests, keyed by ``record["key"]``.

    Each :meth:`append` writes one line, flushes and fsyncs it, so a record is either fully on
    disk or absent. Opening repairs a torn last line (truncates the file after the last complete
    line). When a key appears twice (a rejected trace asked again), the last record wins.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._records: dict[str, dict[str, Any]] = {}
        self.dropped_tail = 0
        good = 0
        if self.path.exists():
            with open(self.path, "rb") as f:
                data = f.read()
            for line in data.splitlines(keepends=True):
                try:
                    record = json.loads(line)
                except ValueError:
                    break
                if not line.endswith(b"\n") or not isinstance(record, dict) or "key" not in record:
                    break
                self._records[record["key"]] = record
                good += len(line)
            self.dropped_tail = len(data) - good
            if self.dropped_tail:
                with open(self.path, "r+b") as f:
                    f.truncate(good)
                    os.fsync(f.fileno())
        self._file = open(self.path, "ab")  # noqa: SIM115 (kept open for the cache's lifetime)

    def get(self, key: str) -> dict[str, Any] | None:
        return self._records.get(key)

    def __contains__(self, key: str) -> bool:
        return key in self._records

    def __len__(self) -> int:
        return len(self._records)

    def records(self) -> list[dict[str, Any]]:
        return list(self._records.values())

    def append(self, record: Mapping[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        self._file.write(line)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._records[record["key"]] = dict(record)

    def close(self) -> None:
        self._file.close()


class FolderBusyError(RuntimeError):
    """Another distillation run holds the output folder."""


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


@dataclass
class DistillStats:
    """Counts of one run. ``cached_ok``/``cached_rejected``: items already done by an earlier run;
    ``ok``/``rejected`` (reason -> count)/``failed``: items finished or failed in this run;
    ``skipped``: items not sent because of ``max_cost``; tokens and ``cost`` (USD, None when the
    price is unknown) of this run's requests; ``est_*``: the dry run's estimate."""

    items: int = 0
    cached_ok: int = 0
    cached_rejected: int = 0
    ok: int = 0
    rejected: Counter = field(default_factory=Counter)
    failed: int = 0
    skipped: int = 0
    requests: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = 0.0
    stopped_by_cost: bool = False
    est_input_tokens: int = 0
    est_output_tokens: int = 0
    est_max_output_tokens: int = 0

    def postfix(self) -> dict[str, str]:
        """Short live figures for a tqdm postfix."""
        cost = "?" if self.cost is None else f"{self.cost:.4f}"
        return {
            "ok": str(self.ok + self.cached_ok),
            "rej": str(sum(self.rejected.values()) + self.cached_rejected),
            "fail": str(self.failed),
            "tok": f"{self.prompt_tokens / 1000:.1f}k+{self.completion_tokens / 1000:.1f}k",
            "$": cost,
        }

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "rejected"}
        out["rejected"] = {reason: self.rejected.get(reason, 0) for reason in REJECT_REASONS}
        return out


async def distill(
    rows: Iterable[Mapping[str, Any]],
    out_dir: str | Path,
    *,
    model: str,
    teacher: TeacherClient,
    template: str | None = None,
    price: Price | None = None,
    max_cost: float | None = None,
    concurrency: int = 8,
    detail: str = "auto",
    max_trace_chars: int = 4000,
    retry_rejected: bool = False,
    dry_run: bool = False,
    total: int | None = None,
    progress: bool = True,
) -> tuple[DistillStats, list[str]]:
    """Ask the teacher for a trace for every row that the cache in ``out_dir`` does not have yet.

    Args:
        rows: RL parquet rows (see :mod:`verl_hoi.sft`), streamed once.
        out_dir: holds ``cache.jsonl`` (created) and a lock file: one run per folder.
        model: teacher model name (part of the cache key).
        teacher: the client (its ``max_tokens`` bounds the worst-case cost); with ``dry_run`` it
            sends nothing, and its ``client`` may be None.
        template: teacher prompt template (default: :func:`load_teacher_prompt`).
        price: for the cost figures and ``max_cost`` (required with ``max_cost``).
        max_cost: USD budget of this run's requests (worst case reserved before each request).
        concurrency: requests in flight at once.
        detail: OpenAI image detail (``low``, ``high``, ``auto``).
        max_trace_chars: longer traces are rejected as ``too_long``.
        retry_rejected: ask again for items whose cached trace was rejected.
        dry_run: only estimate tokens and cost of the requests that would be sent.
        total: number of rows, for the progress bar.

    Returns:
        ``(stats, keys)``: the run's :class:`DistillStats` and the cache key of every row in
        order (look each up in :class:`TraceCache` to build SFT rows).

    Raises:
        FatalTeacherError: the server refused the credentials or the model, or ``max(10, 2 *
        concurrency)`` requests in a row failed after their retries (server down); finished
        items stay cached. FolderBusyError: another run holds ``out_dir``.
    """
    if max_cost is not None and price is None:
        raise ValueError("max_cost needs a price: give the model's input and output price")
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    template = template if template is not None else load_teacher_prompt()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stats = DistillStats(cost=0.0 if price else None)
    keys: list[str] = []
    with _folder_lock(out_dir), contextlib.closing(TraceCache(out_dir / CACHE_NAME)) as cache:
        bar = _progress(total, progress)
        pending = _pending(rows, cache, stats, keys, bar, template, model, retry_rejected)
        prepare = functools.partial(prepare_item, template=template, model=model, detail=detail)
        try:
            if dry_run:
                for index, row in pending:
                    stats.est_input_tokens += prepare(index, row).est_input_tokens
                    stats.est_output_tokens += EXPECTED_OUTPUT_TOKENS
                    stats.est_max_output_tokens += teacher.max_tokens
                    bar.update(1)
            else:
                run = _Run(cache, stats, teacher, price, max_cost, max_trace_chars, max(10, 2 * concurrency), bar)
                await run.main(pending, prepare, concurrency)
        finally:
            bar.close()
    return stats, keys


def _pending(rows, cache, stats, keys, bar, template, model, retry_rejected) -> Iterator[tuple[int, Mapping]]:
    """``(index, row)`` of the rows still to ask for, in order; counts the cached ones into ``stats``."""
    seen: set[str] = set()
    for index, row in enumerate(rows):
        key = item_key(row, template, model)
        keys.append(key)
        stats.items += 1
        record = cache.get(key)
        if key in seen:
            bar.update(1)
        elif record is not None and (record["status"] == "ok" or not retry_rejected):
            seen.add(key)
            if record["status"] == "ok":
                stats.cached_ok += 1
            else:
                stats.cached_rejected += 1
            bar.update(1)
        else:
            seen.add(key)
            yield index, row


class _Run:
    """The asynchronous part of :func:`distill`: workers, budget, cache records, progress."""

    def __init__(self, cache, stats, teacher, price, max_cost, max_trace_chars, max_failures_in_a_row, bar):
        self.cache, self.stats, self.teacher, self.price = cache, stats, teacher, price
        self.max_cost, self.max_trace_chars, self.bar = max_cost, max_trace_chars, bar
        self.reserved = 0.0
        self.fatal: FatalTeacherError | None = None
        self.failures_in_a_row = 0
        self.max_failures_in_a_row = max_failures_in_a_row

    async def main(
        self, pending: Iterator[tuple[int, Mapping]], prepare: Callable[[int, Mapping], TeacherItem], concurrency: int
    ) -> None:
        # Workers keep draining the queue after a stop (budget or fatal error), so put() never
        # blocks on dead consumers.
        queue: asyncio.Queue = asyncio.Queue(maxsize=2 * concurrency)
        workers = [asyncio.ensure_future(self._worker(queue)) for _ in range(concurrency)]
        error = None
        try:
            try:
                for index, row in pending:
                    if self.fatal or self.stats.stopped_by_cost:
                        self._skip()  # keep reading: every row's cache key is needed for the output
                    else:
                        await queue.put(prepare(index, row))
            except Exception as exc:  # an unreadable row: record the requests in flight, then raise
                error = exc
            for _ in workers:
                await queue.put(None)
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            self.stats.requests = self.teacher.requests
            self.stats.retries = self.teacher.retries
        if error is not None:
            raise error
        if self.fatal:
            raise self.fatal

    def _skip(self) -> None:
        self.stats.skipped += 1
        self.bar.update(1)

    async def _worker(self, queue: asyncio.Queue) -> None:
        while (item := await queue.get()) is not None:
            if self.fatal or not self._reserve(item):
                self._skip()
                continue
            try:
                reply = await self.teacher.complete(item.messages)
            except ItemFailed as exc:
                self.stats.failed += 1
                self.failures_in_a_row += 1
                if self.failures_in_a_row >= self.max_failures_in_a_row and not self.fatal:
                    self.fatal = FatalTeacherError(f"{self.failures_in_a_row} requests in a row failed (last: {exc})")
            except FatalTeacherError as exc:
                self.fatal = exc
                self.stats.skipped += 1
            else:
                self.failures_in_a_row = 0
                self._record(item, reply)
            finally:
                self.reserved -= self._worst_case(item)
            self.bar.update(1)
            self.bar.set_postfix(self.stats.postfix(), refresh=False)

    def _worst_case(self, item: TeacherItem) -> float:
        return self.price.cost(item.est_input_tokens, self.teacher.max_tokens) if self.price else 0.0

    def _reserve(self, item: TeacherItem) -> bool:
        if self.stats.stopped_by_cost:
            return False
        if self.max_cost is not None and self.stats.cost + self.reserved + self._worst_case(item) > self.max_cost:
            self.stats.stopped_by_cost = True
            return False
        self.reserved += self._worst_case(item)
        return True

    def _record(self, item: TeacherItem, reply: TeacherReply) -> None:
        s = self.stats
        cost = self.price.cost(reply.prompt_tokens, reply.completion_tokens) if self.price else None
        text = clean_trace(reply.text)
        reason = check_trace(text, max_chars=self.max_trace_chars, finish_reason=reply.finish_reason)
        self.cache.append(
            {
                "key": item.key,
                "index": item.index,
                "file_name": item.file_name,
                "model": self.teacher.model,
                "status": "ok" if reason is None else "rejected",
                "reason": reason,
                "thinking": text if reason is None else reply.text,
                "finish_reason": reply.finish_reason,
                "prompt_tokens": reply.prompt_tokens,
                "completion_tokens": reply.completion_tokens,
                "cost": cost,
                "time": round(time.time(), 3),
            }
        )
        s.prompt_tokens += reply.prompt_tokens
        s.completion_tokens += reply.completion_tokens
        if cost is not None:
            s.cost += cost
        if reason is None:
            s.ok += 1
        else:
            s.rejected[reason] += 1


def sft_rows(rows: Iterable[Mapping[str, Any]], keys: list[str], cache: TraceCache) -> Iterator[dict[str, Any]]:
    """SFT rows (:func:`verl_hoi.sft.sft_row`) for the rows whose cached trace was accepted, in row order.

    ``keys`` are the cache keys returned by :func:`distill` for the same ``rows``; a key shared
    by several rows (the same image and prompt) gives each of them its row.
    """
    from verl_hoi.sft import sft_row

    for row, key in zip(rows, keys, strict=True):
        record = cache.get(key)
        if record is not None and record["status"] == "ok":
            yield sft_row(row, record["thinking"])


def cache_totals(cache: TraceCache) -> dict[str, Any]:
    """Totals over every cached request: ``ok``, ``rejected`` (reason -> count), ``prompt_tokens``,
    ``completion_tokens``, ``cost`` (USD; None when some record has no price)."""
    records = cache.records()
    reasons = Counter(r["reason"] for r in records if r["status"] != "ok")
    costs = [r.get("cost") for r in records]
    return {
        "ok": sum(r["status"] == "ok" for r in records),
        "rejected": {reason: reasons.get(reason, 0) for reason in REJECT_REASONS},
        "prompt_tokens": sum(r.get("prompt_tokens", 0) for r in records),
        "completion_tokens": sum(r.get("completion_tokens", 0) for r in records),
        "cost": None if any(c is None for c in costs) else round(sum(costs), 6),
    }


def _progress(total: int | None, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, unit="img", desc="distill", dynamic_ncols=True)


@contextlib.contextmanager
def _folder_lock(out_dir: Path) -> Iterator[None]:
    with open(out_dir / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderBusyError(f"another distillation run is using {out_dir}") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
