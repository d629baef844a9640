"""Thinking distillation: a teacher model writes the reasoning that leads to each ground-truth answer.

For every RL parquet row the teacher (any OpenAI-compatible chat endpoint, :mod:`verl_hoi.teacher`)
sees the image, the task prompt and the ground-truth answer and writes HOI-R1's four-step
reasoning. Traces are cleaned and filtered (:mod:`verl_hoi.traces`); accepted ones become SFT
rows (:mod:`verl_hoi.sft`).

Paid calls are never lost or repeated:

- every finished request (accepted or rejected trace) is appended to ``OUT/cache.jsonl`` and
  fsync'd before the next one is recorded; the cache key is the SHA-256 of (image bytes, full
  teacher prompt, model), so a run killed at any moment resumes where it stopped. A torn last
  line (a kill in the middle of a write) is dropped on the next start;
- failed requests are retried by the :class:`~verl_hoi.teacher.TeacherClient` (backoff, jitter,
  ``Retry-After``);
- ``max_cost`` reserves the worst-case cost of every request before sending it and stops
  sending once the next one could exceed the budget; requests in flight still finish and are
  recorded.

The command-line entry point is ``data_prep/distill_thinking.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verl_hoi.teacher import (
    FatalTeacherError,
    ItemFailed,
    Price,
    TeacherClient,
    TeacherItem,
    TeacherReply,
    item_key,
    load_teacher_prompt,
    prepare_item,
)
from verl_hoi.traces import REJECT_REASONS, check_trace, clean_trace

__all__ = [
    "DistillStats",
    "FolderBusyError",
    "TraceCache",
    "cache_totals",
    "distill",
    "sft_rows",
]

CACHE_NAME = "cache.jsonl"
SUMMARY_NAME = "summary.json"
# Output tokens assumed per trace for the dry-run estimate (the prompt asks for under 250 words).
EXPECTED_OUTPUT_TOKENS = 400


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
