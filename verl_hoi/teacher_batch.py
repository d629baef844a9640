"""The OpenAI Batch API's side of thinking distillation: input lines, limits, result lines, the calls, and the
ledger of the batches submitted.

- :func:`request_line`: one input line; its ``custom_id`` is the item's cache key
  (:func:`verl_hoi.teacher.item_key`), its body the online request's (:meth:`TeacherClient.body`).
  :data:`MAX_BATCH_REQUESTS` and :data:`MAX_BATCH_BYTES` are the API's limits per batch.
- :func:`read_results`: the lines of a batch's output and error files as :class:`BatchResult` (a reply,
  or what went wrong and whether sending the request again may help).
- :class:`BatchAPI`: file upload and download, batch create, retrieve and cancel, retried as online
  requests are (:func:`verl_hoi.teacher.error_kind`). Creating a batch is never repeated blindly: each
  carries a tag in its metadata, looked up (:meth:`BatchAPI.find`) before another try.
- :class:`BatchLedger`: ``batches.json`` in the output folder, every batch submitted and what became
  of it, replaced whole (never half-written) before and after each call that changes something on the
  server, so a run stopped at any moment is resumed without submitting a request twice.

The run that drives these is :func:`verl_hoi.distill_batch.distill_batch`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from verl_hoi.cli import atomic_path
from verl_hoi.teacher import (
    DEFAULT_BACKOFF_BASE,
    DEFAULT_MAX_RETRIES,
    FatalTeacherError,
    ItemFailed,
    TeacherClient,
    TeacherItem,
    TeacherReply,
    error_kind,
    reply_from_body,
    retry_delay,
    retryable_status,
)

__all__ = [
    "BATCHES_NAME",
    "BATCH_ENDPOINT",
    "FINISHED",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_REQUESTS",
    "PENDING",
    "SUBMITTING",
    "BatchAPI",
    "BatchEntry",
    "BatchLedger",
    "BatchResult",
    "LedgerError",
    "read_results",
    "request_line",
]

logger = logging.getLogger(__name__)
T = TypeVar("T")

BATCHES_NAME = "batches.json"
BATCH_ENDPOINT = "/v1/chat/completions"
COMPLETION_WINDOW = "24h"
MAX_BATCH_REQUESTS = 50_000
"""Requests per batch the API takes."""
MAX_BATCH_BYTES = 200 * 1024 * 1024
"""Size of a batch's input file the API takes."""
TAG_FIELD = "verl_hoi_tag"
"""The metadata field of a batch that holds its ledger entry's tag."""
CLOCK_SKEW = 3600.0
"""Seconds the server's clock may be behind ours when a tagged batch is looked up."""
SUBMITTING = "submitting"
"""Ledger status of a batch whose creation was not confirmed yet."""
PENDING = ("validating", "in_progress", "finalizing", "cancelling")
FINISHED = ("completed", "failed", "expired", "cancelled")


def request_line(item: TeacherItem, teacher: TeacherClient) -> bytes:
    """The Batch API input line of ``item``, ``custom_id`` its cache key, body as online, with its newline."""
    line = {"custom_id": item.key, "method": "POST", "url": BATCH_ENDPOINT, "body": teacher.body(item.messages)}
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


@dataclass(frozen=True)
class BatchResult:
    """What a batch returned for the request ``key``: the ``reply``, or the ``error`` and whether sending
    the request again may help (``retry``)."""

    key: str
    reply: TeacherReply | None = None
    error: str | None = None
    retry: bool = False


def _result(line: Mapping[str, Any]) -> BatchResult | None:
    key = line.get("custom_id")
    if type(key) is not str:
        return None
    response = line.get("response")
    status = response.get("status_code") if isinstance(response, dict) else None
    if status == 200:
        try:
            return BatchResult(key, reply=reply_from_body(response.get("body")))
        except ItemFailed as error:
            return BatchResult(key, error=str(error))
    if type(status) is int:
        return BatchResult(key, error=f"HTTP {status}", retry=retryable_status(status))
    error = line.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    return BatchResult(key, error=code if type(code) is str else "no response", retry=True)


def read_results(data: bytes) -> Iterator[BatchResult]:
    """The results in a batch's output or error file.

    A request the server ran is its reply (HTTP 200) or its HTTP status, retried when
    :func:`~verl_hoi.teacher.retryable_status` says so; a request it did not run (the batch expired or
    was cancelled) carries the error code and is always worth sending again. A line that is not a JSON
    object with a ``custom_id`` is skipped with a warning: its request counts as unanswered.

    >>> line = b'{"custom_id": "k", "response": null, "error": {"code": "batch_expired"}}'
    >>> list(read_results(line))
    [BatchResult(key='k', reply=None, error='batch_expired', retry=True)]
    """
    for number, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            line = None
        result = _result(line) if isinstance(line, dict) else None
        if result is None:
            logger.warning("a batch result file's line %d is not a result with a custom_id; skipped", number)
            continue
        yield result


def _describe(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)
    return f"{type(exc).__name__} (HTTP {status})" if status is not None else type(exc).__name__


class BatchAPI:
    """The Batch API's calls through an ``openai.OpenAI`` client (``max_retries=0``: the retries are these).

    429, 5xx, timeouts and dropped connections are retried ``max_retries`` times with the online
    backoff (:func:`~verl_hoi.teacher.retry_delay`); any other error, or one still there after the
    retries, raises :class:`~verl_hoi.teacher.FatalTeacherError` (what was submitted stays in the
    ledger). ``sleep`` waits between tries (tests pass a recorder).
    """

    def __init__(
        self,
        client: Any,
        *,
        max_retries: int = DEFAULT_MAX_RETRIES,
        backoff_base: float = DEFAULT_BACKOFF_BASE,
        backoff_cap: float = 60.0,
        sleep: Callable[[float], Any] = time.sleep,
    ):
        self.client = client
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.sleep = sleep

    def _call(self, what: str, call: Callable[[], T], recover: Callable[[], T | None] | None = None) -> T:
        """``call()``, retried; before each retry ``recover()`` may return what the failed try did after all."""
        import openai

        for attempt in range(1, self.max_retries + 2):
            if attempt > 1 and recover is not None and (found := recover()) is not None:
                return found
            try:
                return call()
            except openai.APIError as exc:
                if error_kind(exc) != "retry":
                    raise FatalTeacherError(f"{what}: {_describe(exc)}") from None
                error = exc
            if attempt > self.max_retries:
                break
            self.sleep(retry_delay(error, attempt, base=self.backoff_base, cap=self.backoff_cap))
        raise FatalTeacherError(f"{what}: {type(error).__name__} after {self.max_retries + 1} attempts")

    def upload(self, file: IO[bytes]) -> str:
        """Upload a batch input file, whole from its start at each try; returns its file id."""

        def call() -> str:
            file.seek(0)
            return self.client.files.create(file=("batch.jsonl", file, "application/jsonl"), purpose="batch").id

        return self._call("uploading a batch input file", call)

    def create(self, file_id: str, tag: str, since: float) -> Any:
        """Create the batch of input file ``file_id`` tagged ``tag`` (see :meth:`find` for ``since``).

        After an error that leaves it unknown whether the batch was made (a timeout, a dropped
        connection, a 5xx), the tag is looked up before another try: a batch is made at most once.
        """
        return self._call(
            "creating a batch",
            lambda: self.client.batches.create(
                input_file_id=file_id,
                endpoint=BATCH_ENDPOINT,
                completion_window=COMPLETION_WINDOW,
                metadata={TAG_FIELD: tag},
            ),
            recover=lambda: self.find(tag, since),
        )

    def find(self, tag: str, since: float) -> Any | None:
        """The batch tagged ``tag``, or None: the account's batches are listed newest first down to those
        created before ``since`` (a Unix time, less the :data:`CLOCK_SKEW`)."""
        page = self._call("listing batches", lambda: self.client.batches.list(limit=100))
        while True:
            for batch in page.data:
                if (batch.metadata or {}).get(TAG_FIELD) == tag:
                    return batch
                if batch.created_at < since - CLOCK_SKEW:
                    return None
            if not page.data or not page.has_next_page():
                return None
            page = self._call("listing batches", page.get_next_page)

    def retrieve(self, batch_id: str) -> Any:
        """The batch ``batch_id`` as the server has it now."""
        return self._call(f"checking batch {batch_id}", lambda: self.client.batches.retrieve(batch_id))

    def cancel(self, batch_id: str) -> Any:
        """Ask the server to cancel ``batch_id``; what it finished stays in its output file."""
        return self._call(f"cancelling batch {batch_id}", lambda: self.client.batches.cancel(batch_id))

    def content(self, file_id: str) -> bytes:
        """The bytes of the file ``file_id`` (a batch's output or error file)."""
        return self._call(f"downloading file {file_id}", lambda: self.client.files.content(file_id).content)


class LedgerError(ValueError):
    """The ledger file cannot be read or holds an entry without its fields (it is left as it is)."""


@dataclass
class BatchEntry:
    """One batch in the ledger.

    ``tag``: the ledger's name for it, also in the batch's metadata; ``created``: Unix time of the
    entry; ``items``: ``[key, row index, file name]`` of each request (emptied once ``collected``);
    ``requests``: how many; ``tokens``: their estimated input tokens (what the batch takes of the
    account's queue); ``id`` and ``input_file_id``: the server's (None until known);
    ``status``: :data:`SUBMITTING` until the server confirms the batch, then the server's;
    ``collected``: its results are in the cache; ``results``: counts of what became of its requests.
    """

    tag: str
    created: float
    items: list[list[Any]]
    requests: int
    tokens: int = 0
    id: str | None = None
    input_file_id: str | None = None
    status: str = SUBMITTING
    collected: bool = False
    results: dict[str, int] = field(default_factory=dict)

    def request_keys(self) -> list[str]:
        return [item[0] for item in self.items]


def _is_count(value: object) -> bool:
    return type(value) is int and value >= 0


def _text_or_none(value: object) -> bool:
    return value is None or (type(value) is str and bool(value))


def _is_item(item: object) -> bool:
    """``[key, row index, file name]``."""
    return (
        isinstance(item, list)
        and len(item) == 3
        and all(type(text) is str and text for text in (item[0], item[2]))
        and _is_count(item[1])
    )


def _entry_problem(entry: object) -> str | None:
    """What is wrong with a ledger entry as read from the file, or None."""
    if not isinstance(entry, dict):
        return "not an object"
    missing = {"tag", "created", "items", "requests"} - set(entry)
    if missing:
        return f"lacks {', '.join(sorted(missing))}"
    unknown = set(entry) - {f.name for f in BatchEntry.__dataclass_fields__.values()}
    if unknown:
        return f"unknown field(s) {', '.join(sorted(unknown))}"
    if type(entry["tag"]) is not str or not entry["tag"]:
        return "tag must be a non-empty text"
    created = entry["created"]
    if type(created) not in (int, float) or not math.isfinite(created):
        return "created must be a Unix time"
    if not _is_count(entry["requests"]) or not _is_count(entry.get("tokens", 0)):
        return "requests and tokens must be whole numbers >= 0"
    if not _text_or_none(entry.get("id")) or not _text_or_none(entry.get("input_file_id")):
        return "id and input_file_id must be text or null"
    status = entry.get("status", SUBMITTING)
    if status not in (SUBMITTING, *PENDING, *FINISHED):
        return f"unknown status {repr(status)[:40]}"
    if status != SUBMITTING and entry.get("id") is None:
        return f"a batch {status} without its id"
    if type(entry.get("collected", False)) is not bool:
        return "collected must be true or false"
    items = entry["items"]
    if not isinstance(items, list):
        return "items must be a list"
    if not entry.get("collected", False) and len(items) != entry["requests"]:
        return f"{len(items)} items for {entry['requests']} requests"
    if not all(_is_item(item) for item in items):
        return "an item must be [key, row index, file name]"
    results = entry.get("results", {})
    if not isinstance(results, dict) or not all(type(k) is str and _is_count(v) for k, v in results.items()):
        return "results must map outcomes to counts"
    return None


class BatchLedger:
    """``batches.json``: every batch a run submitted (:class:`BatchEntry`), replaced whole by :meth:`save`.

    A missing file is an empty ledger (the file is made by the first :meth:`save`).

    Raises:
        LedgerError: the file is not a ledger, or an entry lacks its fields (the message names the
            file and the entry, counted from 0).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.entries: list[BatchEntry] = []
        if not self.path.exists():
            return
        try:
            doc = json.loads(self.path.read_bytes())
        except (ValueError, UnicodeDecodeError):
            raise LedgerError(f"{self.path}: not a JSON file") from None
        except OSError as error:
            raise LedgerError(f"{self.path}: cannot be read ({error.strerror or error})") from None
        batches = doc.get("batches") if isinstance(doc, dict) else None
        if not isinstance(batches, list):
            raise LedgerError(f"{self.path}: not a ledger of batches (no 'batches' list)")
        for number, entry in enumerate(batches):
            problem = _entry_problem(entry)
            if problem is not None:
                raise LedgerError(f"{self.path}: batch {number}: {problem}")
            self.entries.append(BatchEntry(**entry))

    def open_entries(self) -> list[BatchEntry]:
        """The batches whose results are not in the cache yet."""
        return [entry for entry in self.entries if not entry.collected]

    def in_flight(self) -> set[str]:
        """Keys of the requests in batches not collected yet: never to be sent again."""
        return {key for entry in self.open_entries() for key in entry.request_keys()}

    def add(self, items: list[list[Any]], tokens: int = 0) -> BatchEntry:
        """A new batch of ``items`` (``[key, row index, file name]``) of ``tokens`` estimated input tokens,
        saved as submitting before anything is sent."""
        entry = BatchEntry(tag=uuid.uuid4().hex, created=time.time(), items=items, requests=len(items), tokens=tokens)
        self.entries.append(entry)
        self.save()
        return entry

    def drop(self, entry: BatchEntry) -> None:
        """Forget a batch the server never made."""
        self.entries.remove(entry)
        self.save()

    def save(self) -> None:
        """Replace the file, whole and synced to disk, or leave it as it was."""
        data = json.dumps({"batches": [asdict(entry) for entry in self.entries]}, ensure_ascii=False).encode()
        with atomic_path(self.path) as tmp, open(tmp, "wb") as f:
            f.write(data + b"\n")
            f.flush()
            os.fsync(f.fileno())
