"""Distillation through the Batch API against the fake OpenAI server of test_distill (files and batches
endpoints on 127.0.0.1), driven by the real openai client: the command line as a user runs it, killed and
resumed, and the library's pieces (result lines, the ledger, creating a batch at most once)."""

from __future__ import annotations

import io
import json
import re
import signal
import time
from collections import Counter
from pathlib import Path

import httpx
import openai
import pyarrow.parquet as pq
import pytest
from cli_harness import snapshot
from test_distill import SECRET, FakeTeacher, _args, _cache_lines, _cli

from verl_hoi.distill_batch import BatchLimits, distill_batch
from verl_hoi.teacher import (
    FatalTeacherError,
    TeacherClient,
    TeacherReply,
    item_key,
    load_teacher_prompt,
    prepare_item,
)
from verl_hoi.teacher_batch import (
    TAG_FIELD,
    BatchAPI,
    BatchLedger,
    BatchResult,
    LedgerError,
    read_results,
    request_line,
)

pytest_plugins = ["test_distill"]  # its fixtures: rl_parquet, rows, names, server
ENV = {"OPENAI_API_KEY": SECRET}


def _batch_args(rl_parquet: Path, out: Path, server: FakeTeacher, *extra: str) -> list[str]:
    return [*_args(rl_parquet, out, server, "m"), "--batch", "--poll-interval", "0.01", *extra]


def _run(*args: str, expect: int = 0) -> tuple[str, str]:
    done = _cli(*args, env=ENV)
    stdout, stderr = done.communicate(timeout=120)
    assert done.returncode == expect and "Traceback" not in stderr, stderr
    return stdout, stderr


def _keys(rows: list[dict], model: str = "m") -> list[str]:
    return [item_key(row, load_teacher_prompt(), model) for row in rows]


def _sft(out: Path) -> list[dict]:
    return pq.read_table(out / "sft.parquet").to_pylist()


def _submitted(server: FakeTeacher) -> Counter:
    """How many times each request (custom id) was submitted, over every batch the server made."""
    return Counter(key for batch in server.created for key in batch)


def _ledger(out: Path) -> list[dict]:
    return json.loads((out / "batches.json").read_text())["batches"]


def _no_secret(out: Path, *texts: str) -> None:
    for text in [*texts, *(p.read_text(errors="replace") for p in out.iterdir() if p.is_file())]:
        assert SECRET not in text


# ---------------------------------------------------------------- the command line


def test_batch_and_a_mixed_cache_give_the_online_sft_parquet(server, rl_parquet, rows, tmp_path):
    online = tmp_path / "online"
    _run(*_args(rl_parquet, online, server, "m"))
    assert sum(server.counts.values()) == 7

    out = tmp_path / "batch"
    stdout, stderr = _run(*_batch_args(rl_parquet, out, server, "--batch-requests", "3"))
    keys = _keys(rows)
    assert server.created == [keys[:3], keys[3:6], keys[6:]]  # custom_id = the online cache key, 3 per batch
    assert _sft(out) == _sft(online)
    assert [line["batch"] for line in _cache_lines(out)] == ["batch_1"] * 3 + ["batch_2"] * 3 + ["batch_3"]
    assert [(b["id"], b["status"], b["collected"], b["results"]) for b in _ledger(out)] == [
        ("batch_1", "completed", True, {"ok": 3}),
        ("batch_2", "completed", True, {"ok": 3}),
        ("batch_3", "completed", True, {"ok": 1}),
    ]
    assert "this run: 7 accepted, 0 rejected (none), 0 failed, 0 not sent; 3 batches submitted, 0 resumed" in stdout
    _no_secret(out, stdout, stderr)
    assert server.auth == {f"Bearer {SECRET}"}

    # Three rows asked online, then the whole file through the Batch API: only the other four are submitted.
    mixed = tmp_path / "mixed"
    _run(*_args(rl_parquet, mixed, server, "m"), "--limit", "3")
    _run(*_batch_args(rl_parquet, mixed, server))
    assert server.created[3:] == [keys[3:]]
    assert _sft(mixed) == _sft(online)
    assert [line.get("batch") for line in _cache_lines(mixed)] == [None] * 3 + ["batch_4"] * 4
    assert sum(server.counts.values()) == 7 + 7 + 3 + 4  # each request ran once


def test_error_lines_are_filtered_resubmitted_or_failed(server, rl_parquet, rows, names, tmp_path):
    server.plan.update(
        {
            names[1]: ["refusal"],  # rejected by the online filters
            names[2]: ["leak"],
            names[3]: ["500", "good"],  # a server error: resubmitted, then accepted
            names[4]: ["400"],  # refused for good: failed, not resubmitted
            names[5]: ["429"],  # rate limited every time: resubmitted once (--resubmit 1), then failed
        }
    )
    out = tmp_path / "out"
    stdout, stderr = _run(*_batch_args(rl_parquet, out, server, "--resubmit", "1"), expect=1)
    keys = _keys(rows)
    assert server.created == [keys, [keys[3], keys[5]]]
    assert server.counts == Counter({n: 2 if n in (names[3], names[5]) else 1 for n in names})
    status = {line["file_name"]: (line["status"], line["reason"]) for line in _cache_lines(out)}
    assert status == {
        names[0]: ("ok", None),
        names[1]: ("rejected", "refusal"),
        names[2]: ("rejected", "leak"),
        names[3]: ("ok", None),
        names[6]: ("ok", None),
    }
    assert [b["results"] for b in _ledger(out)] == [
        {"failed": 1, "ok": 2, "rejected": 2, "resubmitted": 2},
        {"failed": 1, "ok": 1},
    ]
    assert "this run: 3 accepted, 2 rejected (refusal 1, leak 1), 2 failed, 0 not sent" in stdout
    assert "2 batches submitted, 0 resumed; 9 requests (2 resubmitted)" in stdout
    assert "2 requests failed after retries; rerun the same command to retry them" in stderr
    assert [row["extra_info"]["file_name"] for row in _sft(out)] == [names[0], names[3], names[6]]


@pytest.mark.parametrize("fate", ["expire", "fail"])
def test_an_expired_or_failed_batch_is_resubmitted(fate, server, rl_parquet, rows, names, tmp_path):
    server.fates = [fate]
    out = tmp_path / "out"
    stdout, _ = _run(*_batch_args(rl_parquet, out, server))
    keys = _keys(rows)
    # An expired batch ran its first line (kept); a failed one ran none.
    again = keys[1:] if fate == "expire" else keys
    assert server.created == [keys, again]
    assert server.counts == Counter({n: 1 for n in names})
    first = ("expired", {"ok": 1, "resubmitted": 6}) if fate == "expire" else ("failed", {"resubmitted": 7})
    assert [(b["status"], b["results"]) for b in _ledger(out)] == [first, ("completed", {"ok": len(again)})]
    assert "this run: 7 accepted, 0 rejected (none), 0 failed, 0 not sent; 2 batches submitted" in stdout
    assert len(_sft(out)) == 7


def _started_then_stopped(server: FakeTeacher, args: list[str], out: Path, cached: int, signum: int) -> str:
    """Start the command, wait until ``cached`` results are cached, send ``signum``; returns its stderr."""
    run = _cli(*args, env=ENV)
    deadline = time.monotonic() + 60
    while run.poll() is None and time.monotonic() < deadline:
        if (out / "cache.jsonl").exists() and len(_cache_lines(out)) == cached:
            break
        time.sleep(0.05)
    run.send_signal(signum)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == (130 if signum == signal.SIGINT else -signal.SIGKILL), stderr
    return stderr


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT], ids=["kill", "ctrl-c"])
def test_stopped_while_polling_resumes_without_submitting_again(signum, server, rl_parquet, rows, names, tmp_path):
    server.fates = ["complete", "hold"]  # the second batch stays in progress until released
    out = tmp_path / "out"
    args = _batch_args(rl_parquet, out, server, "--batch-requests", "4")
    stderr = _started_then_stopped(server, args, out, 4, signum)
    if signum == signal.SIGINT:
        assert stderr.splitlines()[-1] == (
            f"interrupted: finished items are in {out / 'cache.jsonl'}, the batches submitted in "
            f"{out / 'batches.json'}; rerun to resume"
        )
        assert sorted(p.name for p in out.iterdir()) == ["batches.json", "cache.jsonl"]  # no lock, no temp
    keys = _keys(rows)
    assert [(b["id"], b["status"], b["collected"], b["requests"]) for b in _ledger(out)] == [
        ("batch_1", "completed", True, 4),
        ("batch_2", "in_progress", False, 3),
    ]
    assert _ledger(out)[1]["items"] == [[keys[i], i, names[i]] for i in range(4, 7)]
    assert not (out / "sft.parquet").exists()

    server.release.set()
    stdout, stderr = _run(*args)
    assert server.created == [keys[:4], keys[4:]]  # nothing submitted again
    assert set(_submitted(server).values()) == {1} and server.counts == Counter({n: 1 for n in names})
    assert [line["file_name"] for line in _cache_lines(out)] == names
    assert [row["extra_info"]["file_name"] for row in _sft(out)] == names
    assert "this run: 3 accepted, 0 rejected (none), 0 failed, 0 not sent; 0 batches submitted, 1 resumed" in stdout
    _no_secret(out, stdout, stderr)


def test_status_cancel_and_online_mode_while_batches_are_pending(server, rl_parquet, rows, names, tmp_path):
    server.fates = ["complete", "hold"]
    out = tmp_path / "out"
    args = _batch_args(rl_parquet, out, server, "--batch-requests", "4")
    _started_then_stopped(server, args, out, 4, signal.SIGKILL)
    (out / ".lock").unlink()  # what a kill leaves; the next run would take it over

    before = snapshot(tmp_path)
    stdout, _ = _run(*args, "--status")
    assert stdout.splitlines() == [
        "batch_1  completed  4 requests, collected: 4 ok",
        "batch_2  in_progress  3 requests, 0 done, 0 failed",
        "batches: 1 pending, 1 done, 0 failed, 0 expired, 0 cancelled",
    ]
    assert snapshot(tmp_path) == before

    # Online mode would pay again for the pending requests: it refuses.
    run = _cli(*_args(rl_parquet, out, server, "m"), env=ENV)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 2 and stderr.splitlines() == [
        f"error: 3 requests in {out / 'batches.json'} are in batches not collected yet: collect them with --batch "
        "(or cancel them with --batch --cancel) before asking online"
    ]
    assert snapshot(tmp_path) == before

    stdout, _ = _run(*args, "--cancel")
    assert server.batches["batch_2"]["status"] == "cancelled"
    assert "this run: 0 accepted, 0 rejected (none), 0 failed, 0 not sent; 0 batches submitted, 1 resumed" in stdout
    assert "3 cancelled" in stdout and len(_sft(out)) == 4
    assert _ledger(out)[1]["results"] == {"cancelled": 3}

    _run(*_args(rl_parquet, out, server, "m"))  # now online mode asks for the three left
    assert server.counts == Counter({n: 1 for n in names}) and len(server.created) == 2
    assert [row["extra_info"]["file_name"] for row in _sft(out)] == names


def test_max_queued_tokens_holds_a_batch_back_until_the_queue_has_room(server, rl_parquet, rows, tmp_path):
    template = load_teacher_prompt()
    tokens = [prepare_item(i, row, template, "m").est_input_tokens for i, row in enumerate(rows)]
    assert max(tokens) < 2 * min(tokens)  # a queue of max(tokens) holds one request at a time
    out = tmp_path / "out"
    _run(*_batch_args(rl_parquet, out, server, "--max-queued-tokens", str(max(tokens))))
    assert server.created == [[key] for key in _keys(rows)]
    assert server.pending_at_create == [0] * 7  # each batch waited for the one before
    assert [b["tokens"] for b in _ledger(out)] == tokens and len(_sft(out)) == 7


def _worst_cases(rows: list[dict], max_tokens: int) -> list[float]:
    """Worst case of each row's request with gpt-4o-mini at the Batch API's prices (0.075 and 0.30 USD/M)."""
    template = load_teacher_prompt()
    items = [prepare_item(i, row, template, "gpt-4o-mini") for i, row in enumerate(rows)]
    return [(item.est_input_tokens * 0.075 + max_tokens * 0.30) / 1e6 for item in items]


def test_max_cost_at_batch_prices_stops_submitting(server, rl_parquet, rows, tmp_path):
    worst = _worst_cases(rows, 1000)
    budget = sum(worst[:3]) + worst[3] / 2  # three requests fit, the fourth does not
    out = tmp_path / "out"
    args = [*_args(rl_parquet, out, server, "gpt-4o-mini"), "--batch", "--poll-interval", "0.01"]
    stdout, _ = _run(*args, "--batch-requests", "2", "--max-tokens", "1000", "--max-cost", f"{budget:.6f}")
    assert server.created == [_keys(rows[:2], "gpt-4o-mini"), _keys(rows[2:3], "gpt-4o-mini")]
    assert "stopped: the next request could exceed --max-cost (rows not sent: 4)" in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["all_runs"]["cost"] == pytest.approx(3 * (1000 * 0.075 + 100 * 0.30) / 1e6)  # 0.000315


def test_batch_dry_run_counts_batches_and_cost_and_writes_nothing(server, rl_parquet, rows, tmp_path):
    out = tmp_path / "out"
    args = ["--data", str(rl_parquet), "--out", str(out), "--batch", "--dry-run", "--batch-requests", "3"]
    stdout, _ = _run(*args, "--max-tokens", "1000")
    template = load_teacher_prompt()
    tokens = sum(prepare_item(i, row, template, "gpt-4o-mini").est_input_tokens for i, row in enumerate(rows))
    low, high = (tokens * 0.075 + 7 * 400 * 0.30) / 1e6, (tokens * 0.075 + 7 * 1000 * 0.30) / 1e6
    assert stdout.splitlines() == [
        "dry run: 7 rows, 0 already cached, 0 in batches already submitted, 7 requests in 3 batches "
        "(at the Batch API's prices)",
        f"estimated tokens: {tokens} input, about 2800 output (at most 7000)",
        f"estimated cost: ${low:.4f} (at most ${high:.4f})",
    ]
    assert list(tmp_path.iterdir()) == [] and server.created == [] and sum(server.counts.values()) == 0


# ---------------------------------------------------------------- the library


def _api(server: FakeTeacher) -> BatchAPI:
    client = openai.OpenAI(api_key=SECRET, base_url=server.url, timeout=5, max_retries=0)
    return BatchAPI(client, max_retries=2, backoff_base=0.0)


def test_batches_split_under_the_file_size_limit(server, rows, tmp_path):
    teacher = TeacherClient(None, "m")
    template = load_teacher_prompt()
    size = {
        item.key: len(request_line(item, teacher))
        for item in (prepare_item(i, r, template, "m") for i, r in enumerate(rows))
    }
    limit = sum(size[key] for key in _keys(rows[:2]))  # the first two lines fill a batch exactly
    dry, _ = distill_batch(
        lambda: rows,
        tmp_path,
        teacher=teacher,
        api=None,
        limits=BatchLimits(max_bytes=limit),
        dry_run=True,
        progress=False,
    )
    assert list(tmp_path.iterdir()) == []
    stats, _ = distill_batch(
        lambda: rows,
        tmp_path,
        teacher=teacher,
        api=_api(server),
        limits=BatchLimits(max_bytes=limit),
        sleep=lambda _: None,
        progress=False,
    )
    batches = server.created
    assert batches[0] == _keys(rows[:2]) and [key for batch in batches for key in batch] == _keys(rows)
    for batch, following in zip(batches, batches[1:], strict=False):
        assert sum(size[key] for key in batch) + size[following[0]] > limit  # each batch as full as it can be
    assert all(sum(size[key] for key in batch) <= limit for batch in batches)
    assert dry.batches == stats.batches == len(batches) and stats.ok == 7


def test_a_batch_is_created_once_when_its_answer_is_lost(server, rows, tmp_path):
    server.broken_creates = 1  # the server makes the batch and the answer is lost: the tag finds it
    stats, _ = distill_batch(
        lambda: rows, tmp_path, teacher=TeacherClient(None, "m"), api=_api(server), sleep=lambda _: None, progress=False
    )
    assert len(server.created) == 1 and (stats.ok, stats.batches, stats.requests) == (7, 1, 7)
    assert [b["id"] for b in _ledger(tmp_path)] == ["batch_1"]


def test_a_run_stopped_while_creating_finds_its_batch_or_submits_again(server, rows, tmp_path):
    keys = _keys(rows)
    ledger = BatchLedger(tmp_path / "batches.json")
    made = ledger.add([[keys[i], i, rows[i]["extra_info"]["file_name"]] for i in range(4)])
    ledger.add([[keys[i], i, rows[i]["extra_info"]["file_name"]] for i in range(4, 7)])  # never created
    # The first batch was made, and the run stopped before its id was written down.
    teacher = TeacherClient(None, "m")
    lines = b"".join(request_line(prepare_item(i, rows[i], load_teacher_prompt(), "m"), teacher) for i in range(4))
    client = _api(server).client
    upload = client.files.create(file=("batch.jsonl", io.BytesIO(lines)), purpose="batch")
    client.batches.create(
        input_file_id=upload.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={TAG_FIELD: made.tag},
    )
    stats, _ = distill_batch(
        lambda: rows, tmp_path, teacher=teacher, api=_api(server), sleep=lambda _: None, progress=False
    )
    assert server.created == [keys[:4], keys[4:]]
    assert (stats.ok, stats.batches, stats.batches_resumed) == (7, 1, 1)
    assert [(b["id"], b["results"]) for b in _ledger(tmp_path)] == [("batch_1", {"ok": 4}), ("batch_2", {"ok": 3})]


class _Batches:
    """``client.batches`` whose ``retrieve`` raises the errors given, one per call, then returns ``"done"``."""

    def __init__(self, *errors: Exception):
        self.errors = list(errors)
        self.batches = self

    def retrieve(self, batch_id: str) -> str:
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def _status_error(kind: type, status: int) -> openai.APIStatusError:
    response = httpx.Response(status, request=httpx.Request("GET", "http://127.0.0.1/v1/batches/b"))
    return kind("x", response=response, body=None)


def test_batch_api_calls_are_retried_as_online_requests():
    delays: list[float] = []
    timeout = openai.APITimeoutError(httpx.Request("GET", "http://127.0.0.1/v1/batches/b"))
    api = BatchAPI(_Batches(timeout, _status_error(openai.RateLimitError, 429)), backoff_base=0.0, sleep=delays.append)
    assert api.retrieve("b") == "done" and delays == [0.0, 0.0]
    api = BatchAPI(_Batches(*[timeout] * 3), max_retries=2, backoff_base=0.0, sleep=delays.append)
    with pytest.raises(FatalTeacherError, match=re.escape("checking batch b: APITimeoutError after 3 attempts")):
        api.retrieve("b")
    api = BatchAPI(_Batches(_status_error(openai.AuthenticationError, 401)), sleep=delays.append)
    with pytest.raises(FatalTeacherError, match=re.escape("checking batch b: AuthenticationError (HTTP 401)")):
        api.retrieve("b")
    api = BatchAPI(_Batches(_status_error(openai.BadRequestError, 400)), sleep=delays.append)
    with pytest.raises(FatalTeacherError, match=re.escape("checking batch b: BadRequestError (HTTP 400)")):
        api.retrieve("b")
    assert len(delays) == 4  # two retries of the second call, none for a refused key or a bad request


_REPLY = {"choices": [{"message": {"content": "Two."}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 9}}


def test_read_results():
    lines = [
        {"custom_id": "a", "response": {"status_code": 200, "body": _REPLY}},
        {"custom_id": "b", "response": {"status_code": 400, "body": {"error": {}}}},
        {"custom_id": "c", "response": {"status_code": 503, "body": {}}},
        {"custom_id": "d", "response": None, "error": {"code": "batch_expired", "message": "not run"}},
        {"custom_id": "e", "response": {"status_code": 200, "body": {"choices": "none"}}},
        {"response": {"status_code": 200, "body": _REPLY}},  # no custom_id: skipped
        "not a result",
    ]
    data = b"\n".join(json.dumps(line).encode() for line in lines) + b"\n{torn"
    assert list(read_results(data)) == [
        BatchResult("a", reply=TeacherReply("Two.", "stop", 9, 0, 1)),
        BatchResult("b", error="HTTP 400"),
        BatchResult("c", error="HTTP 503", retry=True),
        BatchResult("d", error="batch_expired", retry=True),
        BatchResult("e", error="the reply is not a chat completion"),
    ]


_ENTRY = {"tag": "t", "created": 1.5, "items": [["k", 0, "a.jpg"]], "requests": 1}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "not a JSON file"),
        ("[]", "not a ledger of batches (no 'batches' list)"),
        (json.dumps({"batches": [{**_ENTRY, "tag": ""}]}), "batch 0: tag must be a non-empty text"),
        (json.dumps({"batches": [{"tag": "t"}]}), "batch 0: lacks created, items, requests"),
        (json.dumps({"batches": [_ENTRY, {**_ENTRY, "status": "done"}]}), "batch 1: unknown status 'done'"),
        (json.dumps({"batches": [{**_ENTRY, "status": "in_progress"}]}), "batch 0: a batch in_progress without its id"),
        (json.dumps({"batches": [{**_ENTRY, "requests": 2}]}), "batch 0: 1 items for 2 requests"),
        (
            json.dumps({"batches": [{**_ENTRY, "items": [["k", "0", "a.jpg"]]}]}),
            "batch 0: an item must be [key, row index, file name]",
        ),
        (json.dumps({"batches": [{**_ENTRY, "cost": 1}]}), "batch 0: unknown field(s) cost"),
    ],
    ids=["torn", "list", "empty-tag", "missing", "status", "no-id", "count", "index-text", "unknown-field"],
)
def test_a_damaged_ledger_is_reported_and_left_as_it_is(tmp_path, content, message):
    path = tmp_path / "batches.json"
    path.write_text(content)
    with pytest.raises(LedgerError, match=re.escape(f"{path}: {message}")):
        BatchLedger(path)
    assert path.read_text() == content


def test_the_ledger_round_trips(tmp_path):
    ledger = BatchLedger(tmp_path / "batches.json")
    entry = ledger.add([["k", 0, "a.jpg"]])
    entry.id, entry.status = "batch_9", "in_progress"
    ledger.save()
    again = BatchLedger(tmp_path / "batches.json")
    assert again.entries == ledger.entries and again.in_flight() == {"k"}
    assert [p.name for p in tmp_path.iterdir()] == ["batches.json"]  # no temporary file left
