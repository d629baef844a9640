"""Thinking distillation through the OpenAI Batch API: the requests, cache and SFT rows of online mode
(:func:`verl_hoi.distill.distill`) at the Batch API's price, resumable at any moment, each request paid once.

A run (:func:`distill_batch`):

1. confirms the batches an earlier run was creating when it stopped (looked up by their tag,
   :meth:`~verl_hoi.teacher_batch.BatchAPI.find`); one the server never made is forgotten, and its
   requests are submitted again;
2. reads the rows once, with online mode's checks and cache keys: cached requests are skipped,
   requests in batches not collected yet are left to them, and the others become input lines
   (``custom_id`` = cache key) of batches under the API's limits (:class:`BatchLimits`). Each
   batch enters the ledger (:class:`~verl_hoi.teacher_batch.BatchLedger`) before its file is
   uploaded, and again with its id as soon as the server has made it. With a queue limit, a batch
   waits (checking the pending ones) until the estimated input tokens of the folder's pending
   batches leave room for its own;
3. checks the pending batches every ``poll_interval`` seconds. A finished batch's output and error
   files are read; each reply is cleaned, checked and cached as online
   (:func:`~verl_hoi.distill.trace_record`, with the batch id), and only then is the batch marked
   collected, so a run stopped in between caches nothing twice;
4. submits again, in new batches, the requests of a batch that failed or expired and those whose
   line came back with an error worth another try (429, 5xx, not run), at most ``resubmit`` times
   in a run; the others count as failed and the next run tries them again. The unfinished requests
   of a cancelled batch are not resubmitted.

``max_cost`` (at the Batch API's prices) reserves the worst case of each request (estimated input,
``max_tokens`` output) before it goes into a batch; batches of earlier runs are not charged to it.
With ``cancel`` nothing is submitted: pending batches are cancelled and what they finished is
collected. A dry run reads the rows and the ledger, counts batches, tokens and cost, and writes
nothing. :func:`batch_status` describes the ledger's batches.
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verl_hoi.distill import (
    CACHE_NAME,
    EXPECTED_OUTPUT_TOKENS,
    DistillStats,
    TraceCache,
    folder_lock,
    pending_items,
    prepare_row,
    progress_bar,
    trace_record,
)
from verl_hoi.teacher import IMAGE_DETAILS, Price, TeacherClient, TeacherItem, load_teacher_prompt
from verl_hoi.teacher_batch import (
    BATCHES_NAME,
    FINISHED,
    MAX_BATCH_BYTES,
    MAX_BATCH_REQUESTS,
    PENDING,
    BatchAPI,
    BatchEntry,
    BatchLedger,
    BatchResult,
    read_results,
    request_line,
)
from verl_hoi.traces import MAX_TRACE_CHARS

__all__ = ["DEFAULT_POLL_INTERVAL", "DEFAULT_RESUBMIT", "BatchLimits", "BatchStats", "batch_status", "distill_batch"]

DEFAULT_POLL_INTERVAL = 60.0
"""Seconds between two checks of the pending batches."""
DEFAULT_RESUBMIT = 2
"""Times a run submits a request again after its batch failed or expired, or its line errored."""
CANCELLABLE = ("validating", "in_progress")


@dataclass(frozen=True)
class BatchLimits:
    """What one batch may hold (``max_requests``, ``max_bytes`` of input file; the API's limits by
    default) and the estimated input tokens the folder's pending batches may hold together
    (``max_queued_tokens``: the account's batch queue limit for the model; None for no limit)."""

    max_requests: int = MAX_BATCH_REQUESTS
    max_bytes: int = MAX_BATCH_BYTES
    max_queued_tokens: int | None = None

    def __post_init__(self):
        if not (1 <= self.max_requests <= MAX_BATCH_REQUESTS and 1 <= self.max_bytes <= MAX_BATCH_BYTES):
            raise ValueError(f"a batch holds 1 to {MAX_BATCH_REQUESTS} requests and 1 to {MAX_BATCH_BYTES} bytes")
        if self.max_queued_tokens is not None and self.max_queued_tokens < 1:
            raise ValueError(f"max_queued_tokens must be >= 1, got {self.max_queued_tokens}")


@dataclass
class BatchStats(DistillStats):
    """:class:`~verl_hoi.distill.DistillStats` of a batch run: ``requests`` counts the requests submitted,
    ``retries`` those of them submitted again; ``batches``: batches submitted (or, in a dry run, to be);
    ``batches_resumed``: batches of earlier runs this run waited for; ``in_batches``: rows whose request
    was in them; ``cancelled``: requests of cancelled batches left undone."""

    batches: int = 0
    batches_resumed: int = 0
    in_batches: int = 0
    cancelled: int = 0


class _Group:
    """The batch being filled: its input lines (in an anonymous temporary file, none when only counting),
    its items, their estimated input tokens and their worst-case cost."""

    def __init__(self, write: bool):
        self.file = tempfile.TemporaryFile() if write else None  # noqa: SIM115 (closed by close())
        self.items: list[TeacherItem] = []
        self.size = 0
        self.tokens = 0
        self.worst = 0.0

    def fits(self, item: TeacherItem, line: bytes, limits: BatchLimits) -> bool:
        if not self.items:
            return True
        queue = limits.max_queued_tokens
        return (
            len(self.items) < limits.max_requests
            and self.size + len(line) <= limits.max_bytes
            and (queue is None or self.tokens + item.est_input_tokens <= queue)
        )

    def add(self, item: TeacherItem, line: bytes, worst: float) -> None:
        if self.file is not None:
            self.file.write(line)
        self.items.append(item)
        self.size += len(line)
        self.tokens += item.est_input_tokens
        self.worst += worst

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


@dataclass
class _BatchRun:
    """Submitting, waiting and collecting for :func:`distill_batch` (``api`` None: a dry run)."""

    cache: TraceCache
    ledger: BatchLedger
    stats: BatchStats
    api: BatchAPI | None
    teacher: TeacherClient
    price: Price | None
    max_cost: float | None
    max_trace_chars: int
    limits: BatchLimits
    resubmit: int
    poll_interval: float
    sleep: Callable[[float], Any]
    notify: Callable[[str], Any]
    cancelling: bool = False
    reserved: float = 0.0  # worst case of this run's batches not collected yet
    spent: float = 0.0  # cost of the results of this run's batches
    worst: dict[str, float] = field(default_factory=dict)  # tag -> worst case of each batch this run submitted
    attempts: Counter = field(default_factory=Counter)  # key -> submissions in this run
    retry: dict[str, list[Any]] = field(default_factory=dict)  # key -> [key, index, file name] to submit again
    shown: dict[str, str] = field(default_factory=dict)  # tag -> the last progress line shown

    @property
    def dry_run(self) -> bool:
        return self.api is None

    # ---------------------------------------------------------------- submitting

    def resolve(self) -> None:
        """Confirm the batches an earlier run was creating when it stopped, or forget those never made."""
        for entry in self.ledger.open_entries():
            if entry.id is None:
                batch = self.api.find(entry.tag, entry.created)
                if batch is None:
                    self.ledger.drop(entry)
                    self.notify(f"a batch of {entry.requests} requests was never created: they are submitted again")
                    continue
                entry.id, entry.status = batch.id, _known(batch.status, PENDING[0])
                self.ledger.save()
            self.stats.batches_resumed += 1
            for key in entry.request_keys():
                self.attempts[key] = 1

    def submit(self, items: Iterable[TeacherItem]) -> None:
        """Put ``items`` into batches under the limits and the budget, and submit each batch once full."""
        group = _Group(write=not self.dry_run)
        try:
            for item in items:
                worst = self.price.cost(item.est_input_tokens, self.teacher.max_tokens) if self.price else 0.0
                if not self._reserve(worst):
                    self.stats.skipped += 1
                    continue
                line = request_line(item, self.teacher)
                if not group.fits(item, line, self.limits):
                    self._send(group)
                    group.close()
                    group = _Group(write=not self.dry_run)
                group.add(item, line, worst)
            if group.items:
                self._send(group)
        finally:
            group.close()

    def _reserve(self, worst: float) -> bool:
        if self.dry_run:
            return True
        if self.stats.stopped_by_cost:
            return False
        if self.max_cost is not None and self.spent + self.reserved + worst > self.max_cost:
            self.stats.stopped_by_cost = True
            return False
        self.reserved += worst
        return True

    def _send(self, group: _Group) -> None:
        s = self.stats
        for item in group.items:
            s.retries += self.attempts[item.key] > 0
            self.attempts[item.key] += 1
            s.est_input_tokens += item.est_input_tokens
            s.est_output_tokens += EXPECTED_OUTPUT_TOKENS
            s.est_max_output_tokens += self.teacher.max_tokens
        s.requests += len(group.items)
        s.batches += 1
        if self.dry_run:
            return
        self._make_room(group.tokens)
        entry = self.ledger.add([[item.key, item.index, item.file_name] for item in group.items], group.tokens)
        self.worst[entry.tag] = group.worst
        entry.input_file_id = self.api.upload(group.file)
        self.ledger.save()
        batch = self.api.create(entry.input_file_id, entry.tag, entry.created)
        entry.id, entry.status = batch.id, _known(batch.status, PENDING[0])
        self.ledger.save()
        self.notify(f"submitted batch {batch.id}: {entry.requests} requests")

    def cancel(self) -> None:
        """Ask the server to cancel every pending batch; nothing is submitted from now on."""
        self.cancelling = True
        for entry in self.ledger.open_entries():
            if self.api.retrieve(entry.id).status in CANCELLABLE:
                self.api.cancel(entry.id)
                self.notify(f"cancelling batch {entry.id}")

    # ---------------------------------------------------------------- waiting and collecting

    def _make_room(self, tokens: int) -> None:
        """Wait until the pending batches leave room in the queue for ``tokens`` more (or none is pending)."""
        limit = self.limits.max_queued_tokens
        while limit is not None and self.ledger.open_entries():
            self.poll()
            queued = sum(entry.tokens for entry in self.ledger.open_entries())
            if queued + tokens <= limit or not self.ledger.open_entries():
                return
            self.sleep(self.poll_interval)

    def poll(self) -> None:
        """Check every pending batch once and collect the finished ones."""
        for entry in self.ledger.open_entries():
            batch = self.api.retrieve(entry.id)
            self._show(entry, batch)
            if batch.status in FINISHED:
                self._collect(entry, batch)

    def wait(self, again: Callable[[], Iterator[TeacherItem]]) -> None:
        """Check the pending batches until all are collected, submitting again what should be."""
        while True:
            self.poll()
            if self.retry:
                self.submit(again())
            if not self.ledger.open_entries():
                return
            self.sleep(self.poll_interval)

    def _show(self, entry: BatchEntry, batch: Any) -> None:
        counts = batch.request_counts
        done = f", {counts.completed}/{counts.total} done" if counts is not None else ""
        line = f"batch {entry.id}: {batch.status}{done}"
        if self.shown.get(entry.tag) != line:
            self.shown[entry.tag] = line
            self.notify(line)
        status = _known(batch.status, entry.status)
        if status != entry.status:
            entry.status = status
            self.ledger.save()

    def _collect(self, entry: BatchEntry, batch: Any) -> None:
        results: dict[str, BatchResult] = {}
        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id:
                results.update((result.key, result) for result in read_results(self.api.content(file_id)))
        if batch.status == "failed" and batch.errors is not None and batch.errors.data:
            error = batch.errors.data[0]
            self.notify(f"batch {entry.id} failed: {error.code}: {error.message}")
        outcomes = Counter(self._outcome(entry, batch.status, item, results.get(item[0])) for item in entry.items)
        self.reserved -= self.worst.pop(entry.tag, 0.0)
        entry.collected, entry.items, entry.results = True, [], dict(sorted(outcomes.items()))
        self.ledger.save()
        self.notify(
            f"batch {entry.id} {batch.status}: " + ", ".join(f"{n} {what}" for what, n in entry.results.items())
        )

    def _outcome(self, entry: BatchEntry, status: str, item: list[Any], result: BatchResult | None) -> str:
        """Cache, resubmit or count one request of a finished batch; returns what became of it."""
        key = item[0]
        if result is not None and result.reply is not None:
            record = self.cache.get(key)
            if record is None or record.get("batch") != entry.id:  # not cached by a run stopped before
                record = trace_record(
                    tuple(item), self.teacher.model, result.reply, self.price, self.max_trace_chars, batch=entry.id
                )
                self.cache.append(record)
                self.stats.add(record)
                if entry.tag in self.worst:
                    self.spent += record["cost"] or 0.0
            return record["status"]
        retryable = result is None or result.retry
        if retryable and (status == "cancelled" or self.cancelling):
            self.stats.cancelled += 1
            return "cancelled"
        if retryable and self.attempts[key] <= self.resubmit:
            self.retry[key] = item
            return "resubmitted"
        self.stats.failed += 1
        return "failed"

    def again(self, rows: Callable[[], Iterable[Mapping[str, Any]]], prepare: Callable) -> Iterator[TeacherItem]:
        """The requests to submit again, prepared anew from their rows; those whose row is gone or
        changed count as failed."""
        wanted = {index: key for key, index, _ in self.retry.values()}
        self.retry = {}
        for index, row in enumerate(rows()):
            if not wanted:
                break
            if index in wanted:
                item = prepare(index, row)
                if item.key == wanted[index]:
                    del wanted[index]
                    yield item
        self.stats.failed += len(wanted)


def _known(status: object, otherwise: str) -> str:
    """A batch status the ledger keeps: the server's when it is one of the API's, else ``otherwise``."""
    return status if status in (*PENDING, *FINISHED) else otherwise


def distill_batch(
    rows: Callable[[], Iterable[Mapping[str, Any]]],
    out_dir: str | Path,
    *,
    teacher: TeacherClient,
    api: BatchAPI | None,
    template: str | None = None,
    price: Price | None = None,
    max_cost: float | None = None,
    detail: str = IMAGE_DETAILS[0],
    max_trace_chars: int = MAX_TRACE_CHARS,
    retry_rejected: bool = False,
    resubmit: int = DEFAULT_RESUBMIT,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    limits: BatchLimits = BatchLimits(),  # noqa: B008 (frozen)
    cancel: bool = False,
    dry_run: bool = False,
    total: int | None = None,
    progress: bool = True,
    notify: Callable[[str], Any] = lambda message: None,
    sleep: Callable[[float], Any] = time.sleep,
) -> tuple[BatchStats, list[str]]:
    """Get a trace for every row the cache in ``out_dir`` does not have yet, through the Batch API.

    Args:
        rows: returns the RL parquet rows, streamed, each time it is called (again only for requests
            to submit again).
        out_dir: holds ``cache.jsonl``, the ledger ``batches.json`` and, while the run lasts, the
            lock of online mode (created with its parents; a dry run only reads).
        teacher: the model and the generation settings of each request (its client is not used).
        api: the Batch API's calls; None only with ``dry_run``.
        template, price, max_cost, detail, max_trace_chars, retry_rejected: as for
            :func:`~verl_hoi.distill.distill`; ``price`` and ``max_cost`` at the Batch API's prices.
        resubmit: times a request is submitted again in this run after its batch failed or expired
            or its line errored.
        poll_interval: seconds between two checks of the pending batches.
        limits: what a batch and the queue of pending batches may hold.
        cancel: submit nothing, cancel the pending batches and collect what they finished.
        dry_run: only count the batches, tokens and cost of the requests that would be submitted.
        total: number of rows, for the progress bar.
        notify: called with a line on each batch submitted, changed or collected.
        sleep: waits between two checks.

    Returns:
        ``(stats, keys)`` as :func:`~verl_hoi.distill.distill` returns them.

    Raises:
        FatalTeacherError: the server refused the key, the model or a call, or kept failing; what
            was submitted stays in the ledger and a rerun resumes it.
        FolderBusyError, CacheError, RowError: as for :func:`~verl_hoi.distill.distill`.
        LedgerError: the ledger is damaged (it is left as it is).
    """
    if max_cost is not None and price is None:
        raise ValueError("max_cost needs a price: give the model's input and output price")
    if api is None and not dry_run:
        raise ValueError("a run that is not a dry run needs the api")
    if resubmit < 0 or not poll_interval > 0:
        raise ValueError(f"resubmit must be >= 0 and poll_interval > 0, got {resubmit} and {poll_interval}")
    template = template if template is not None else load_teacher_prompt()
    out_dir = Path(out_dir)
    stats = BatchStats(cost=0.0 if price else None)
    keys: list[str] = []
    with contextlib.ExitStack() as stack:
        if not dry_run:
            out_dir.mkdir(parents=True, exist_ok=True)
            stack.enter_context(folder_lock(out_dir))
        cache = stack.enter_context(contextlib.closing(TraceCache(out_dir / CACHE_NAME, readonly=dry_run)))
        ledger = BatchLedger(out_dir / BATCHES_NAME)
        run = _BatchRun(
            cache,
            ledger,
            stats,
            None if dry_run else api,
            teacher,
            price=price,
            max_cost=max_cost,
            max_trace_chars=max_trace_chars,
            limits=limits,
            resubmit=resubmit,
            poll_interval=poll_interval,
            sleep=sleep,
            notify=notify,
        )
        if not dry_run:
            run.resolve()
        if cancel:
            run.cancel()
        in_flight = ledger.in_flight()
        prepare = functools.partial(prepare_row, template=template, model=teacher.model, detail=detail)
        with contextlib.closing(progress_bar(total, progress, "batch")) as bar:
            pending = pending_items(rows(), cache, stats, keys, bar, template, teacher.model, retry_rejected)

            def fresh() -> Iterator[TeacherItem]:
                for index, row, key in pending:
                    if key in in_flight:
                        stats.in_batches += 1
                    elif cancel:
                        stats.skipped += 1
                    else:
                        yield prepare(index, row)
                    bar.update(1)

            run.submit(fresh())
        if not dry_run:
            run.wait(lambda: run.again(rows, prepare))
    return stats, keys


_STATES = {"completed": "done", "failed": "failed", "expired": "expired", "cancelled": "cancelled"}


def batch_status(ledger: BatchLedger, api: BatchAPI) -> list[str]:
    """A line for each batch of ``ledger`` (a pending one as the server has it now) and a line of totals:
    batches pending, done, failed, expired and cancelled."""
    if not ledger.entries:
        return [f"no batch was submitted from {ledger.path.parent}"]
    lines, totals = [], Counter()
    for entry in ledger.entries:
        status = entry.status
        if entry.collected:
            what = "collected: " + ", ".join(f"{n} {outcome}" for outcome, n in entry.results.items())
        elif entry.id is None:
            what = "creation not confirmed: the next run finds the batch or submits its requests again"
        else:
            batch = api.retrieve(entry.id)
            status = batch.status
            counts = batch.request_counts
            what = f"{counts.completed} done, {counts.failed} failed" if counts is not None else "not started"
            if status in FINISHED:
                what += "; results not collected yet (run with --batch)"
        totals[_STATES.get(status, "pending")] += 1
        lines.append(f"{entry.id or '(none yet)'}  {status}  {entry.requests} requests, {what}")
    lines.append("batches: " + ", ".join(f"{totals[state]} {state}" for state in ("pending", *_STATES.values())))
    return lines
