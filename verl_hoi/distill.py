"""Thinking distillation: a teacher model writes the reasoning that leads to each ground-truth answer.

For every RL parquet row the teacher (any OpenAI-compatible chat endpoint, :mod:`verl_hoi.teacher`)
sees the image, the task prompt and the ground-truth answer and writes HOI-R1's four-step
reasoning. Traces are cleaned and filtered (:mod:`verl_hoi.traces`); accepted ones become SFT
rows (:mod:`verl_hoi.sft`).

Paid calls are never lost or repeated:

- every finished request (accepted or rejected trace) is appended to ``OUT/cache.jsonl`` and
  fsync'd before the next one is recorded; the cache key is the SHA-256 of (image bytes, full
  teacher prompt, model), so a run killed at any moment resumes where it stopped. A torn last
  line (a kill in the middle of a write) is dropped on the next start; any other damage, or a
  record without its fields, stops the run with :class:`CacheError` and the file is left as it is;
- failed requests are retried by the :class:`~verl_hoi.teacher.TeacherClient` (backoff, jitter,
  ``Retry-After``);
- ``max_cost`` reserves the worst-case cost of every request before sending it and stops
  sending once the next one could exceed the budget; requests in flight still finish and are
  recorded;
- a row that cannot be used (:func:`~verl_hoi.teacher.check_row`, an image that does not decode)
  stops the run with :class:`RowError` once the requests in flight are recorded. Rows are counted
  from 0, as pyarrow and pandas index them;
- a dry run writes nothing: no folder, no lock, no cache;
- requests in batches of the Batch API not collected yet (:mod:`verl_hoi.distill_batch`, which
  shares the cache, the lock and the records built here) are never sent online: the run refuses
  to start until they are collected.

The command-line entry point is ``data_prep/distill_thinking.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verl_hoi.jsonl import iter_jsonl, repair_torn_tail
from verl_hoi.rows import row_name
from verl_hoi.teacher import (
    IMAGE_DETAILS,
    FatalTeacherError,
    ItemFailed,
    Price,
    TeacherClient,
    TeacherItem,
    TeacherReply,
    check_row,
    item_key,
    load_teacher_prompt,
    prepare_item,
)
from verl_hoi.teacher_batch import BATCHES_NAME, BatchLedger
from verl_hoi.traces import MAX_TRACE_CHARS, REJECT_REASONS, check_trace, clean_trace

__all__ = [
    "CACHE_NAME",
    "DEFAULT_CONCURRENCY",
    "LOCK_NAME",
    "OUTPUT_NAMES",
    "SFT_NAME",
    "SUMMARY_NAME",
    "CacheError",
    "DistillStats",
    "FolderBusyError",
    "RowError",
    "TraceCache",
    "cache_totals",
    "distill",
    "folder_lock",
    "pending_items",
    "prepare_row",
    "progress_bar",
    "record_problem",
    "schema_problem",
    "sft_rows",
    "trace_record",
]

CACHE_NAME = "cache.jsonl"
SFT_NAME = "sft.parquet"
SUMMARY_NAME = "summary.json"
LOCK_NAME = ".lock"
OUTPUT_NAMES = (SFT_NAME, CACHE_NAME, SUMMARY_NAME, LOCK_NAME, BATCHES_NAME)
"""Every file a run writes in its output folder."""
# Output tokens assumed per trace for the dry-run estimate (the prompt asks for under 250 words).
EXPECTED_OUTPUT_TOKENS = 400
DEFAULT_CONCURRENCY = 8
"""Requests in flight at once."""


class CacheError(ValueError):
    """The cache file is damaged before its last line, or holds a record without its fields."""


class RowError(ValueError):
    """An input row that cannot be used: ``row N (file name): what is wrong``, ``N`` counted from 0."""

    def __init__(self, index: int, row: Mapping[str, Any], problem: object):
        super().__init__(f"{row_name(index, row.get('extra_info') if isinstance(row, Mapping) else None)}: {problem}")


def _is_count(value: object) -> bool:
    return type(value) is int and value >= 0


def record_problem(record: Mapping[str, Any]) -> str | None:
    """What is wrong with a cache record, or None when :class:`TraceCache` can use it.

    ``key`` text; ``status`` ``"ok"`` with the ``thinking`` text, or ``"rejected"`` with a
    ``reason`` of :data:`~verl_hoi.traces.REJECT_REASONS`; ``prompt_tokens`` and
    ``completion_tokens`` (when present) whole numbers >= 0, ``cost`` (when present) null or a
    finite number >= 0.

    >>> record_problem({"key": "a", "status": "ok", "thinking": "One person."}) is None
    True
    >>> record_problem({"key": "a", "status": "rejected", "reason": "bored"})
    "reason must be one of empty, refusal, too_long, leak, tags, got 'bored'"
    """
    if type(record.get("key")) is not str or not record["key"]:
        return "no 'key' text"
    status = record.get("status")
    if status == "ok":
        if type(record.get("thinking")) is not str:
            return "an 'ok' record without its 'thinking' text"
    elif status == "rejected":
        if record.get("reason") not in REJECT_REASONS:
            return f"reason must be one of {', '.join(REJECT_REASONS)}, got {repr(record.get('reason'))[:40]}"
    else:
        return f"status must be 'ok' or 'rejected', got {repr(status)[:40]}"
    for name in ("prompt_tokens", "completion_tokens"):
        if name in record and not _is_count(record[name]):
            return f"{name} must be a whole number >= 0, got {repr(record[name])[:40]}"
    cost = record.get("cost")
    if cost is not None and not (type(cost) in (int, float) and math.isfinite(cost) and cost >= 0):
        return f"cost must be null or a number >= 0, got {repr(cost)[:40]}"
    return None


def _text_type(value: Any) -> bool:
    import pyarrow.types as pat

    return value is not None and (pat.is_string(value) or pat.is_large_string(value))


def _struct_field(struct: Any, name: str) -> Any:
    """The type of ``struct``'s field ``name``, or None (also when ``struct`` is not a struct)."""
    import pyarrow.types as pat

    if struct is None or not pat.is_struct(struct) or struct.get_field_index(name) < 0:
        return None
    return struct.field(struct.get_field_index(name)).type


def _list_of_structs(value: Any) -> Any:
    """The element type of a list of structs, or None."""
    import pyarrow.types as pat

    if (pat.is_list(value) or pat.is_large_list(value)) and pat.is_struct(value.value_type):
        return value.value_type
    return None


def schema_problem(schema: Any) -> str | None:
    """What keeps a parquet schema from being an RL parquet (``data_prep/hicodet_to_parquet.py``) that
    distillation reads and turns into SFT rows, or None.

    ``prompt``: a list of ``{role, content}`` text structs; ``images``: a list of structs with
    ``bytes`` (binary) or ``image`` (a path, text); ``reward_model``: a struct with the
    ``ground_truth`` text; ``extra_info`` (optional): a struct; ``data_source`` (optional): text.
    """
    import pyarrow.types as pat

    missing = {"prompt", "images", "reward_model"} - set(schema.names)
    if missing:
        return f"missing column(s) {', '.join(sorted(missing))}; is it an RL parquet?"
    prompt = _list_of_structs(schema.field("prompt").type)
    if not (_text_type(_struct_field(prompt, "role")) and _text_type(_struct_field(prompt, "content"))):
        return f"column prompt is {schema.field('prompt').type}, not a list of {{role, content}} text messages"
    image = _list_of_structs(schema.field("images").type)
    data, path = _struct_field(image, "bytes"), _struct_field(image, "image")
    if not ((data is not None and (pat.is_binary(data) or pat.is_large_binary(data))) or _text_type(path)):
        return f"column images is {schema.field('images').type}, not a list of {{bytes}} or {{image}} (path) entries"
    if not _text_type(_struct_field(schema.field("reward_model").type, "ground_truth")):
        return f"column reward_model is {schema.field('reward_model').type}, not a struct with the ground_truth text"
    if "extra_info" in schema.names and not pat.is_struct(schema.field("extra_info").type):
        return f"column extra_info is {schema.field('extra_info').type}, not a struct"
    if "data_source" in schema.names and not _text_type(schema.field("data_source").type):
        return f"column data_source is {schema.field('data_source').type}, not text"
    return None


class TraceCache:
    """Append-only JSONL cache of finished teacher requests, keyed by ``record["key"]``.

    Each :meth:`append` writes one line, flushes and fsyncs it, so a record is either fully on
    disk or absent. Opening checks every line (:func:`record_problem`) before anything is
    changed, then repairs a torn last line (:func:`verl_hoi.jsonl.repair_torn_tail`: a complete
    record missing its newline is kept, a cut-off one is removed). When a key appears twice (a
    rejected trace asked again), the last record wins. With ``readonly`` the file is only read (a
    torn last line is skipped) and a missing file is an empty cache; the file is created by the
    first :meth:`append` otherwise.

    Raises:
        CacheError: a line before the last is not a JSON object, or a record lacks its fields
            (the message names the file and the line; the file is left as it was).
    """

    def __init__(self, path: str | Path, *, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        self._records: dict[str, dict[str, Any]] = {}
        self._file = None
        self.dropped_tail = 0
        if not self.path.exists():
            return
        try:
            lines = list(iter_jsonl(self.path, allow_torn_tail=True))
        except ValueError as error:
            raise CacheError(str(error)) from None
        for number, record in lines:
            problem = record_problem(record)
            if problem is not None:
                raise CacheError(f"{self.path}: line {number}: {problem}")
            self._records[record["key"]] = record
        if not readonly:
            self.dropped_tail = repair_torn_tail(self.path)

    def get(self, key: str) -> dict[str, Any] | None:
        return self._records.get(key)

    def __contains__(self, key: str) -> bool:
        return key in self._records

    def __len__(self) -> int:
        return len(self._records)

    def records(self) -> list[dict[str, Any]]:
        return list(self._records.values())

    def append(self, record: Mapping[str, Any]) -> None:
        if self.readonly:
            raise RuntimeError(f"{self.path} was opened read-only")
        if self._file is None:
            self._file = open(self.path, "ab")  # noqa: SIM115 (kept open for the cache's lifetime)
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode() + b"\n"
        self._file.write(line)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._records[record["key"]] = dict(record)

    def close(self) -> None:
        if self._file is not None:
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

    def add(self, record: Mapping[str, Any]) -> None:
        """Count a request of this run from its cache record (:func:`trace_record`)."""
        self.prompt_tokens += record["prompt_tokens"]
        self.completion_tokens += record["completion_tokens"]
        if record["cost"] is not None:
            self.cost += record["cost"]
        if record["status"] == "ok":
            self.ok += 1
        else:
            self.rejected[record["reason"]] += 1


def trace_record(
    item: tuple[str, int, str],
    model: str,
    reply: TeacherReply,
    price: Price | None,
    max_trace_chars: int,
    **extra: Any,
) -> dict[str, Any]:
    """The cache record of a teacher reply to ``item`` (``(key, row index, file name)``): the trace
    cleaned and checked (an accepted one is stored cleaned, a rejected one as it came), tokens and
    cost; ``extra`` fields (the batch, say) come last."""
    key, index, file_name = item
    text = clean_trace(reply.text)
    reason = check_trace(text, max_chars=max_trace_chars, finish_reason=reply.finish_reason)
    return {
        "key": key,
        "index": index,
        "file_name": file_name,
        "model": model,
        "status": "ok" if reason is None else "rejected",
        "reason": reason,
        "thinking": text if reason is None else reply.text,
        "finish_reason": reply.finish_reason,
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "cost": price.cost(reply.prompt_tokens, reply.completion_tokens) if price else None,
        "time": round(time.time(), 3),
        **extra,
    }


async def distill(
    rows: Iterable[Mapping[str, Any]],
    out_dir: str | Path,
    *,
    model: str,
    teacher: TeacherClient,
    template: str | None = None,
    price: Price | None = None,
    max_cost: float | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    detail: str = IMAGE_DETAILS[0],
    max_trace_chars: int = MAX_TRACE_CHARS,
    retry_rejected: bool = False,
    dry_run: bool = False,
    total: int | None = None,
    progress: bool = True,
) -> tuple[DistillStats, list[str]]:
    """Ask the teacher for a trace for every row that the cache in ``out_dir`` does not have yet.

    Args:
        rows: RL parquet rows (see :mod:`verl_hoi.sft`), streamed once.
        out_dir: holds ``cache.jsonl`` and a lock file while the run lasts: one run per folder
            (created with its parents; a dry run only reads an existing cache).
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
            items stay cached.
        FolderBusyError: another run holds ``out_dir``, or batches there are not collected yet.
        CacheError: the cache file is damaged (it is left as it was).
        LedgerError: the ledger of batches is damaged (it is left as it was).
        RowError: a row cannot be used; the requests in flight are recorded first.
    """
    if max_cost is not None and price is None:
        raise ValueError("max_cost needs a price: give the model's input and output price")
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    template = template if template is not None else load_teacher_prompt()
    out_dir = Path(out_dir)
    stats = DistillStats(cost=0.0 if price else None)
    keys: list[str] = []
    with contextlib.ExitStack() as stack:
        if not dry_run:
            out_dir.mkdir(parents=True, exist_ok=True)
            stack.enter_context(folder_lock(out_dir))
        _refuse_batches_in_flight(out_dir)
        cache = stack.enter_context(contextlib.closing(TraceCache(out_dir / CACHE_NAME, readonly=dry_run)))
        bar = stack.enter_context(contextlib.closing(progress_bar(total, progress)))
        pending = pending_items(rows, cache, stats, keys, bar, template, model, retry_rejected)
        prepare = functools.partial(prepare_row, template=template, model=model, detail=detail)
        if dry_run:
            for index, row, _ in pending:
                stats.est_input_tokens += prepare(index, row).est_input_tokens
                stats.est_output_tokens += EXPECTED_OUTPUT_TOKENS
                stats.est_max_output_tokens += teacher.max_tokens
                bar.update(1)
        else:
            run = _Run(cache, stats, teacher, price, max_cost, max_trace_chars, max(10, 2 * concurrency), bar)
            await run.main(pending, prepare, concurrency)
    return stats, keys


def _refuse_batches_in_flight(out_dir: Path) -> None:
    in_flight = BatchLedger(out_dir / BATCHES_NAME).in_flight()
    if in_flight:
        raise FolderBusyError(
            f"{len(in_flight)} requests in {out_dir / BATCHES_NAME} are in batches not collected yet: "
            "collect them with --batch (or cancel them with --batch --cancel) before asking online"
        )


def prepare_row(index: int, row: Mapping[str, Any], **kwargs: Any) -> TeacherItem:
    """:func:`~verl_hoi.teacher.prepare_item`, its ``ValueError`` a :class:`RowError`."""
    try:
        return prepare_item(index, row, **kwargs)
    except ValueError as error:
        raise RowError(index, row, error) from None


def pending_items(
    rows: Iterable[Mapping[str, Any]],
    cache: TraceCache,
    stats: DistillStats,
    keys: list[str],
    bar: Any,
    template: str,
    model: str,
    retry_rejected: bool,
) -> Iterator[tuple[int, Mapping[str, Any], str]]:
    """``(index, row, key)`` of the rows still to ask for, in order, each key once; appends every row's
    key to ``keys`` and counts the rows into ``stats`` (the cached ones into the progress ``bar`` too).

    Raises:
        RowError: a row fails :func:`~verl_hoi.teacher.check_row` or an image file cannot be read.
    """
    seen: set[str] = set()
    for index, row in enumerate(rows):
        try:
            check_row(row)
            key = item_key(row, template, model)
        except ValueError as error:
            raise RowError(index, row, error) from None
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
            yield index, row, key


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
        self,
        pending: Iterator[tuple[int, Mapping, str]],
        prepare: Callable[[int, Mapping], TeacherItem],
        concurrency: int,
    ) -> None:
        # Workers keep draining the queue after a stop (budget or fatal error), so put() never
        # blocks on dead consumers.
        queue: asyncio.Queue = asyncio.Queue(maxsize=2 * concurrency)
        workers = [asyncio.ensure_future(self._worker(queue)) for _ in range(concurrency)]
        error = None
        try:
            try:
                for index, row, _ in pending:
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
        where = (item.key, item.index, item.file_name)
        record = trace_record(where, self.teacher.model, reply, self.price, self.max_trace_chars)
        self.cache.append(record)
        self.stats.add(record)


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


def progress_bar(total: int | None, enabled: bool, desc: str = "distill") -> Any:
    """A tqdm bar over ``total`` rows (shown only when ``enabled``)."""
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, unit="img", desc=desc, dynamic_ncols=True)


@contextlib.contextmanager
def folder_lock(out_dir: Path) -> Iterator[None]:
    """Hold ``out_dir/.lock`` (flock) while the block runs; the file is removed when it ends."""
    path = out_dir / LOCK_NAME
    while True:
        f = open(path, "a")  # noqa: SIM115 (closed below, after the unlink)
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise FolderBusyError(f"another distillation run is using {out_dir}") from None
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        if current is not None and os.path.samestat(current, os.fstat(f.fileno())):
            break
        f.close()  # the run before removed the file between our open and our lock: take the new one
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        f.close()
