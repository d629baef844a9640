"""Distillation against a real OpenAI-compatible HTTP server on 127.0.0.1, driven by the real openai client."""

from __future__ import annotations

import copy
import email.parser
import email.policy
import fcntl
import hashlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import openai
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_harness import snapshot
from hypothesis import given
from hypothesis import strategies as st

from verl_hoi.convert import ConvertOptions, iter_rows, row_schema, select_images, write_parquet
from verl_hoi.distill import CacheError, RowError, TraceCache, distill, record_problem, schema_problem
from verl_hoi.hicodet import load_annotations
from verl_hoi.teacher import FatalTeacherError, Price, TeacherClient, item_key, load_teacher_prompt, prepare_item

REPO = Path(__file__).resolve().parents[1]
CLI = REPO / "data_prep" / "distill_thinking.py"
SECRET = "sk-test-Secret-7d1f0c"
GOOD = "1. I count one person. 2. The person is holding something. 3. It is an object next to them. 4. So: hold."
REPLIES = {
    "refusal": "I'm sorry, but I can't help with identifying people in images.",
    "leak": "Since the ground truth lists a single pair, there is one person riding.",
    "empty": "   ",
}


# ---------------------------------------------------------------- fixtures


def _replace(schema: pa.Schema, name: str, kind: pa.DataType) -> pa.Schema:
    return schema.set(schema.get_field_index(name), pa.field(name, kind))


@pytest.fixture(scope="module")
def rl_parquet(tmp_path_factory, sample_annotations, sample_images) -> Path:
    """The sample's 7 images with pairs as RL rows (the converter's train split, small pixel budget)."""
    path = tmp_path_factory.mktemp("rl") / "train.parquet"
    annotations = load_annotations(sample_annotations)
    options = ConvertOptions(split="train", min_pixels=4 * 28 * 28, max_pixels=64 * 28 * 28, prompt="hoi_r1_brief")
    write_parquet(
        iter_rows(annotations, select_images(annotations, "train"), sample_images, options), path, row_schema("embed")
    )
    return path


@pytest.fixture(scope="module")
def rows(rl_parquet) -> list[dict]:
    return pq.read_table(rl_parquet).to_pylist()


@pytest.fixture(scope="module")
def names(rows) -> list[str]:
    return [row["extra_info"]["file_name"] for row in rows]


class FakeTeacher:
    """An OpenAI-compatible server on 127.0.0.1: chat completions, and the Batch API's files (upload,
    content) and batches (create, retrieve, list, cancel).

    ``plan[file_name]`` lists the actions of an item's successive requests, online or as a batch line
    (the last one repeats; default ``good``); the item is recognised by its image. ``counts`` holds the
    requests run per item. ``fates`` lists what becomes of the batches in the order they are created
    (default ``complete``): ``expire`` runs the first line only, ``fail`` fails the batch at validation,
    ``hold`` keeps it in progress until ``release`` is set. A batch is validating when created, in
    progress at its first check and finished at its second. ``created`` logs the custom ids of each
    batch created, ``pending_at_create`` how many batches were pending then; the next
    ``broken_creates`` creations make their batch and answer 502."""

    def __init__(self, rows: list[dict]):
        template = load_teacher_prompt()
        self.items = {}
        for i, row in enumerate(rows):
            url = prepare_item(i, row, template, "m").messages[0]["content"][0]["image_url"]["url"]
            self.items[hashlib.sha256(url.encode()).hexdigest()] = row["extra_info"]["file_name"]
        self.plan: dict[str, list[str]] = {}
        self.counts: Counter = Counter()
        self.auth: set[str] = set()
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.fates: list[str] = []
        self.created: list[list[str]] = []
        self.pending_at_create: list[int] = []
        self.broken_creates = 0
        teacher = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                teacher.auth.add(self.headers.get("Authorization", ""))
                data = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path == "/v1/files":
                    return self._send(200, teacher.upload(_multipart_file(self.headers["Content-Type"], data)))
                if self.path == "/v1/batches":
                    batch = teacher.create(json.loads(data))
                    if teacher.broken_creates:  # the batch is made, but the answer is lost
                        teacher.broken_creates -= 1
                        return self._send(502, {"error": {"message": "bad gateway", "type": "x"}})
                    return self._send(200, batch)
                if self.path.startswith("/v1/batches/") and self.path.endswith("/cancel"):
                    return self._send(200, teacher.cancel(self.path.split("/")[3]))
                self._send(*teacher.chat(json.loads(data)))

            def do_GET(self):
                teacher.auth.add(self.headers.get("Authorization", ""))
                parts = self.path.split("?")[0].split("/")
                if parts[2] == "files":
                    return self._send(200, teacher.files[parts[3]])
                if len(parts) == 3:
                    return self._send(200, teacher.list_batches())
                self._send(200, teacher.retrieve(parts[3]))

            def _send(self, status, payload, headers=None):
                raw = isinstance(payload, bytes)
                data = payload if raw else json.dumps(payload).encode()
                kind = "application/octet-stream" if raw else "application/json"
                try:
                    self.send_response(status)
                    for key, value in {"Content-Type": kind, **(headers or {})}.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def chat(self, body: dict) -> tuple[int, dict, dict]:
        """The reply to a chat completion: ``(status, payload, headers)``."""
        url = body["messages"][0]["content"][0]["image_url"]["url"]
        item = self.items.get(hashlib.sha256(url.encode()).hexdigest(), "?")
        with self.lock:
            actions = self.plan.get(item, ["good"])
            action = actions[min(self.counts[item], len(actions) - 1)]
            self.counts[item] += 1
        if action in ("429", "500", "401", "400"):
            headers = {"Retry-After": "7"} if action == "429" else {}
            return int(action), {"error": {"message": "no", "type": "x"}}, headers
        if action == "slow":
            time.sleep(1.5)
        if action == "hold":
            self.release.wait(60)
        text = REPLIES.get(action, GOOD)
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        if action == "length":
            choice["finish_reason"] = "length"
        usage = {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100}
        reply = {"id": "c", "object": "chat.completion", "created": 0, "model": body["model"]}
        return 200, {**reply, "choices": [choice], "usage": usage}, {}

    def upload(self, data: bytes) -> dict:
        with self.lock:
            file_id = f"file-{len(self.files)}"
            self.files[file_id] = data
        return {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": 0,
            "filename": "batch.jsonl",
            "purpose": "batch",
            "status": "processed",
        }

    def create(self, body: dict) -> dict:
        lines = [json.loads(line) for line in self.files[body["input_file_id"]].splitlines()]
        with self.lock:
            fate = self.fates[len(self.created)] if len(self.created) < len(self.fates) else "complete"
            self.created.append([line["custom_id"] for line in lines])
            self.pending_at_create.append(
                sum(b["status"] in ("validating", "in_progress", "cancelling") for b in self.batches.values())
            )
            batch_id = f"batch_{len(self.created)}"
            self.batches[batch_id] = {
                "id": batch_id,
                "object": "batch",
                "endpoint": body["endpoint"],
                "input_file_id": body["input_file_id"],
                "completion_window": body["completion_window"],
                "status": "validating",
                "created_at": int(time.time()),
                "metadata": body.get("metadata"),
                "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
                "fate": fate,
                "lines": lines,
            }
        return self._public(batch_id)

    def _public(self, batch_id: str) -> dict:
        return {k: v for k, v in self.batches[batch_id].items() if k not in ("fate", "lines")}

    def list_batches(self) -> dict:
        data = [self._public(batch_id) for batch_id in reversed(self.batches)]
        return {"object": "list", "data": data, "has_more": False}

    def cancel(self, batch_id: str) -> dict:
        self.batches[batch_id]["status"] = "cancelling"
        return self._public(batch_id)

    def retrieve(self, batch_id: str) -> dict:
        batch = self.batches[batch_id]
        if batch["status"] == "validating":
            batch["status"] = "failed" if batch["fate"] == "fail" else "in_progress"
            if batch["status"] == "failed":
                batch["errors"] = {"object": "list", "data": [{"code": "token_limit_exceeded", "message": "queue"}]}
        elif batch["status"] == "cancelling":
            self._finish(batch, "cancelled", 0)
        elif batch["status"] == "in_progress" and (batch["fate"] != "hold" or self.release.is_set()):
            expire = batch["fate"] == "expire"
            self._finish(batch, "expired" if expire else "completed", 1 if expire else len(batch["lines"]))
        return self._public(batch_id)

    def _finish(self, batch: dict, status: str, run: int) -> None:
        """Run the first ``run`` lines of a batch; the others end with the code of ``status``."""
        output, errors = [], []
        for number, line in enumerate(batch["lines"]):
            result = {"id": f"batch_req_{number}", "custom_id": line["custom_id"], "response": None, "error": None}
            if number < run:
                code, body, _ = self.chat(line["body"])
                result["response"] = {"status_code": code, "request_id": "r", "body": body}
                (output if code == 200 else errors).append(result)
            else:
                result["error"] = {"code": f"batch_{status}", "message": "not run"}
                errors.append(result)
        for name, lines in (("output_file_id", output), ("error_file_id", errors)):
            if lines:
                batch[name] = self.upload(b"".join(json.dumps(line).encode() + b"\n" for line in lines))["id"]
        batch["status"] = status
        batch["request_counts"]["completed"] = len(output)
        batch["request_counts"]["failed"] = len(errors)

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def _multipart_file(content_type: str, data: bytes) -> bytes:
    """The ``file`` field of a multipart/form-data body."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + data
    )
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "file":
            return part.get_payload(decode=True)
    raise ValueError("no file in the upload")


@pytest.fixture
def server(rows):
    teacher = FakeTeacher(rows)
    yield teacher
    teacher.close()


def _teacher(server, delays: list, **kwargs) -> TeacherClient:
    async def record(delay: float) -> None:
        delays.append(delay)

    client = openai.AsyncOpenAI(api_key=SECRET, base_url=server.url, timeout=0.5, max_retries=0)
    return TeacherClient(client, "m", backoff_base=0.01, sleep=record, **kwargs)


def _cache_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "cache.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------- library against the server


async def test_mixed_replies_retries_filters_and_resume(server, rows, names, tmp_path):
    plan = {
        names[1]: ["refusal"],  # rejected: refusal
        names[2]: ["leak"],  # rejected: says it was given the answer
        names[3]: ["429", "good"],  # rate limited once, Retry-After: 7
        names[4]: ["500", "good"],  # server error once
        names[5]: ["slow", "good"],  # client timeout (0.5 s) once
        names[6]: ["empty"],  # rejected: empty
    }
    server.plan.update(plan)
    delays: list[float] = []
    price = Price(0.15, 0.60)
    stats, keys = await distill(
        rows, tmp_path, model="m", teacher=_teacher(server, delays), price=price, concurrency=4, progress=False
    )
    assert (stats.items, stats.ok, stats.failed, stats.skipped) == (7, 4, 0, 0)
    assert dict(stats.rejected) == {"refusal": 1, "leak": 1, "empty": 1}
    assert (stats.requests, stats.retries) == (10, 3)
    assert (stats.prompt_tokens, stats.completion_tokens) == (7000, 700)
    assert stats.cost == pytest.approx(7000 * 0.15e-6 + 700 * 0.60e-6)  # 0.00147 USD
    # Retry-After: 7 is honoured exactly (backoff alone would be <= 0.01 s); the others back off briefly.
    assert sorted(delays)[-1] == 7.0 and len(delays) == 3 and max(sorted(delays)[:2]) <= 0.01
    assert server.counts == Counter({n: 2 if n in names[3:6] else 1 for n in names})
    lines = _cache_lines(tmp_path)
    assert sorted(line["key"] for line in lines) == sorted(keys) and len(set(keys)) == 7
    status = {line["file_name"]: (line["status"], line["reason"]) for line in lines}
    assert status[names[0]] == ("ok", None) and status[names[1]] == ("rejected", "refusal")
    assert status[names[6]] == ("rejected", "empty")
    assert {line["thinking"] for line in lines if line["status"] == "ok"} == {GOOD}
    assert SECRET not in (tmp_path / "cache.jsonl").read_text() and server.auth == {f"Bearer {SECRET}"}

    # A second run sends nothing: everything finished is cached, rejected ones included.
    stats, again = await distill(rows, tmp_path, model="m", teacher=_teacher(server, []), progress=False)
    assert (stats.cached_ok, stats.cached_rejected, stats.requests) == (4, 3, 0) and again == keys
    assert sum(server.counts.values()) == 10

    # --retry-rejected asks again for the three rejected items only; the refusal now succeeds.
    server.plan[names[1]] = ["good"]
    stats, _ = await distill(
        rows, tmp_path, model="m", teacher=_teacher(server, []), retry_rejected=True, progress=False
    )
    assert (stats.cached_ok, stats.ok, stats.requests) == (4, 1, 3)
    assert dict(stats.rejected) == {"leak": 1, "empty": 1}
    assert TraceCache(tmp_path / "cache.jsonl").get(keys[1])["status"] == "ok"


async def test_max_cost_stops_before_the_budget_can_be_exceeded(server, rows, tmp_path):
    # Worst case per request: 1000 max tokens at 1 USD/M output = 0.001 (input free); each reply
    # costs 100 tokens = 0.0001. Budget 0.00115: request 1 reserves 0.001, request 2 needs
    # 0.0001 + 0.001 = 0.0011 <= 0.00115, request 3 would need 0.0002 + 0.001 > 0.00115.
    teacher = _teacher(server, [], max_tokens=1000)
    stats, _ = await distill(
        rows,
        tmp_path,
        model="m",
        teacher=teacher,
        price=Price(0.0, 1.0),
        max_cost=0.00115,
        concurrency=1,
        progress=False,
    )
    assert (stats.ok, stats.skipped, stats.stopped_by_cost, stats.requests) == (2, 5, True, 2)
    assert stats.cost == pytest.approx(0.0002)
    assert len(_cache_lines(tmp_path)) == 2 and sum(server.counts.values()) == 2


async def test_rejected_credentials_stop_the_run(server, rows, names, tmp_path):
    server.plan.update({name: ["401"] for name in names})
    with pytest.raises(FatalTeacherError, match="401"):
        await distill(rows, tmp_path, model="m", teacher=_teacher(server, []), concurrency=2, progress=False)
    assert list(tmp_path.iterdir()) == [] and sum(server.counts.values()) <= 2  # no cache, no lock left


async def test_a_failing_server_stops_the_run(server, rows, names, tmp_path):
    server.plan.update({name: ["500"] for name in names})
    with pytest.raises(FatalTeacherError, match="10 requests in a row failed"):
        rows_x2 = rows + [{**row, "prompt": [{"role": "user", "content": "<image>other"}]} for row in rows]
        teacher = _teacher(server, [], max_retries=0)
        await distill(rows_x2, tmp_path, model="m", teacher=teacher, concurrency=1, progress=False)
    assert sum(server.counts.values()) == 10 and list(tmp_path.iterdir()) == []


async def test_a_bad_row_stops_the_run_once_the_requests_before_it_are_recorded(server, rows, names, tmp_path):
    bad = copy.deepcopy(rows)
    bad[2]["images"][0]["bytes"] = b"not an image"
    with pytest.raises(
        RowError,
        match=re.escape(f"row 2 ({names[2]}): the embedded image: not an image file (or not in a format PIL reads)"),
    ):
        await distill(bad, tmp_path, model="m", teacher=_teacher(server, []), concurrency=1, progress=False)
    assert [line["file_name"] for line in _cache_lines(tmp_path)] == names[:2]
    assert [p.name for p in tmp_path.iterdir()] == ["cache.jsonl"]  # the lock is gone


async def test_dry_run_sends_nothing(server, rows, tmp_path):
    teacher = TeacherClient(None, "gpt-4o-mini", max_tokens=500)
    stats, _ = await distill(rows, tmp_path, model="gpt-4o-mini", teacher=teacher, dry_run=True, progress=False)
    template = load_teacher_prompt()
    expected = sum(prepare_item(i, r, template, "gpt-4o-mini").est_input_tokens for i, r in enumerate(rows))
    assert (stats.est_input_tokens, stats.est_max_output_tokens, stats.est_output_tokens) == (expected, 3500, 2800)
    assert sum(server.counts.values()) == 0 and list(tmp_path.iterdir()) == []  # a dry run writes nothing


# ---------------------------------------------------------------- the command line, killed and resumed


# A shell starts background jobs with SIGINT ignored, and every child inherits that: run the command line
# with Python's own Ctrl-C handler, as it has in a terminal, so that the tests hold however pytest was started.
_AS_IN_A_TERMINAL = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


def _cli(*args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    full_env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"} | (env or {})
    return subprocess.Popen(
        [sys.executable, "-c", _AS_IN_A_TERMINAL, str(CLI), *args],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def test_cli_killed_midway_resumes_without_repeats(server, rl_parquet, names, tmp_path):
    out = tmp_path / "out"
    server.plan[names[3]] = ["hold"]  # the 4th request hangs until the run is killed
    args = ["--data", str(rl_parquet), "--out", str(out), "--model", "m", "--base-url", server.url]
    args += ["--concurrency", "1", "--input-price", "0.15", "--output-price", "0.6"]
    run = _cli(*args, env={"OPENAI_API_KEY": SECRET})
    deadline = time.monotonic() + 60
    while server.counts[names[3]] == 0 and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)
    run.communicate()
    assert [line["file_name"] for line in _cache_lines(out)] == names[:3]
    assert not (out / "sft.parquet").exists()

    server.plan[names[3]] = ["good"]
    server.release.set()
    done = _cli(*args, env={"OPENAI_API_KEY": SECRET})
    stdout, stderr = done.communicate(timeout=120)
    assert done.returncode == 0, stderr
    # Finished items were not asked again; only the one in flight at the kill was.
    assert server.counts == Counter({n: 2 if n == names[3] else 1 for n in names})
    lines = _cache_lines(out)
    assert len(lines) == 7 and len({line["key"] for line in lines}) == 7
    table = pq.read_table(out / "sft.parquet").to_pylist()
    assert [row["extra_info"]["file_name"] for row in table] == names
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sft_rows"] == 7 and summary["all_runs"]["prompt_tokens"] == 7000
    assert summary["this_run"]["requests"] == 4 and summary["all_runs"]["cost"] == pytest.approx(7 * 0.00021)
    assert "this run: 4 accepted" in stdout and "cost $0.0008" in stdout  # 4 * 0.00021 = 0.00084
    for text in [stdout, stderr] + [p.read_text(errors="replace") for p in out.iterdir() if p.is_file()]:
        assert SECRET not in text
    assert server.auth == {f"Bearer {SECRET}"}


def _args(rl_parquet: Path, out: Path, server: FakeTeacher, model: str) -> list[str]:
    return [
        "--data",
        str(rl_parquet),
        "--out",
        str(out),
        "--model",
        model,
        "--base-url",
        server.url,
        "--max-retries",
        "0",
    ]


def _complete_run(server: FakeTeacher, rl_parquet: Path, out: Path) -> None:
    done = _cli(*_args(rl_parquet, out, server, "m"), env={"OPENAI_API_KEY": SECRET})
    _, stderr = done.communicate(timeout=120)
    assert done.returncode == 0, stderr


def test_cli_dry_run_writes_nothing(server, rl_parquet, rows, tmp_path):
    out = tmp_path / "out"
    dry = _cli("--data", str(rl_parquet), "--out", str(out), "--dry-run", "--limit", "3")
    stdout, stderr = dry.communicate(timeout=60)
    assert dry.returncode == 0, stderr
    assert "dry run: 3 rows, 0 already cached, 3 requests" in stdout and "estimated cost: $" in stdout
    assert sum(server.counts.values()) == 0 and list(tmp_path.iterdir()) == []  # no folder, no lock, no cache

    # An existing folder with a torn cache: read as it is (one complete record), left byte-identical.
    out.mkdir()
    record = {"key": item_key(rows[0], load_teacher_prompt(), "gpt-4o-mini"), "status": "ok", "thinking": "t"}
    (out / "cache.jsonl").write_bytes(json.dumps(record).encode() + b'\n{"key": "x", "st')
    before = snapshot(tmp_path)
    dry = _cli("--data", str(rl_parquet), "--out", str(out), "--dry-run")
    stdout, stderr = dry.communicate(timeout=60)
    assert dry.returncode == 0, stderr
    assert "dry run: 7 rows, 1 already cached, 6 requests" in stdout and "line 2 is incomplete" in stderr
    assert snapshot(tmp_path) == before


def test_cli_a_refused_key_leaves_the_earlier_outputs(server, rl_parquet, names, tmp_path):
    out = tmp_path / "out"
    _complete_run(server, rl_parquet, out)
    before = snapshot(tmp_path)
    server.plan.update({name: ["401"] for name in names})
    run = _cli(*_args(rl_parquet, out, server, "m2"), env={"OPENAI_API_KEY": SECRET})  # new model: new requests
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 1 and "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    cache = out / "cache.jsonl"
    assert errors == [
        f"error: the teacher stopped the run: AuthenticationError (HTTP 401); finished items are in {cache}"
    ]
    assert snapshot(tmp_path) == before  # sft.parquet, summary.json and the cache as they were; no lock, no temp


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_cli_interrupted_keeps_the_earlier_outputs_and_leaves_no_litter(server, rl_parquet, names, tmp_path, signum):
    out = tmp_path / "out"
    _complete_run(server, rl_parquet, out)
    outputs = {name: (out / name).read_bytes() for name in ("sft.parquet", "summary.json")}
    server.plan[names[3]] = ["hold"]  # the 4th request of the next run hangs until it is interrupted
    env = {"OPENAI_API_KEY": SECRET, "PYTHONFAULTHANDLER": "1"}  # SIGABRT then prints every thread's stack
    run = _cli(*_args(rl_parquet, out, server, "m2"), "--concurrency", "1", env=env)
    deadline = time.monotonic() + 60
    while server.counts[names[3]] < 2 and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    run.send_signal(signum)
    try:
        _, stderr = run.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        run.send_signal(signal.SIGABRT)
        pytest.fail(f"still running 60 s after the signal; its stacks:\n{run.communicate()[1]}")
    assert run.returncode == 130 and "Traceback" not in stderr and "interrupted: finished items are in" in stderr
    assert {name: (out / name).read_bytes() for name in outputs} == outputs
    assert sorted(p.name for p in out.iterdir()) == ["cache.jsonl", "sft.parquet", "summary.json"]
    models = [line["model"] for line in _cache_lines(out)]
    assert models == ["m"] * 7 + ["m2"] * 3  # every complete record kept, the one in flight not written


def test_cli_with_no_accepted_trace_keeps_the_earlier_sft_parquet(server, rl_parquet, names, tmp_path):
    out = tmp_path / "out"
    _complete_run(server, rl_parquet, out)
    outputs = {name: (out / name).read_bytes() for name in ("sft.parquet", "summary.json")}
    server.plan.update({name: ["refusal"] for name in names})
    run = _cli(*_args(rl_parquet, out, server, "m2"), env={"OPENAI_API_KEY": SECRET})
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 1 and "Traceback" not in stderr, stderr
    assert "this run: 0 accepted, 7 rejected (refusal 7)" in stdout and "were not written" in stdout
    assert {name: (out / name).read_bytes() for name in outputs} == outputs
    assert len(_cache_lines(out)) == 14


def test_cli_refuses_a_folder_another_run_holds(rl_parquet, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        run = _cli("--data", str(rl_parquet), "--out", str(out), "--base-url", "http://127.0.0.1:9/v1")
        _, stderr = run.communicate(timeout=60)
    assert run.returncode == 2 and stderr.splitlines()[-1] == f"error: another distillation run is using {out}"
    assert [p.name for p in out.iterdir()] == [".lock"]  # the holder's lock file is not removed


# ---------------------------------------------------------------- the cache


def test_torn_last_line_is_dropped_and_appends_continue(tmp_path):
    path = tmp_path / "cache.jsonl"
    good = [json.dumps({"key": k, "status": "ok", "thinking": "t"}) + "\n" for k in ("a", "b")]
    path.write_text("".join(good) + '{"key": "c", "stat')  # killed in the middle of a write
    cache = TraceCache(path)
    assert (len(cache), cache.dropped_tail) == (2, len('{"key": "c", "stat'))
    cache.append({"key": "c", "status": "ok", "thinking": "t"})
    cache.close()
    assert [json.loads(line)["key"] for line in path.read_text().splitlines()] == ["a", "b", "c"]


_LINES = [json.dumps({"key": k, "status": "ok", "thinking": "é " * i}) + "\n" for i, k in enumerate("abcd")]
_DATA = "".join(_LINES).encode()


@given(st.integers(min_value=0, max_value=len(_DATA)))
def test_cache_survives_a_cut_at_any_byte(cut):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "cache.jsonl"
        path.write_bytes(_DATA[:cut])
        cache = TraceCache(path)
        ends = itertools.accumulate(len(line.encode()) for line in _LINES)
        # A record is complete once its closing brace is on disk, with or without its newline.
        complete = [key for key, end in zip("abcd", ends, strict=True) if end - 1 <= cut]
        assert [r["key"] for r in cache.records()] == complete
        cache.append({"key": "z", "status": "ok", "thinking": ""})
        cache.close()
        assert [json.loads(line)["key"] for line in path.read_text().splitlines()] == [*complete, "z"]


def test_a_complete_last_record_without_its_newline_is_kept(tmp_path):
    path = tmp_path / "cache.jsonl"
    path.write_text('{"key": "a", "status": "ok", "thinking": "t"}')  # killed between the record and its newline
    cache = TraceCache(path)
    assert [r["key"] for r in cache.records()] == ["a"] and cache.dropped_tail == 0
    cache.append({"key": "b", "status": "ok", "thinking": "t"})
    cache.close()
    assert [json.loads(line)["key"] for line in path.read_text().splitlines()] == ["a", "b"]


_OK = '{"key": "a", "status": "ok", "thinking": "t"}\n'


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(_OK + "garbage\n" + _OK, "line 2 is not valid JSON", id="damage-before-the-end"),
        pytest.param(
            _OK + '{"key": "b"\n' + '{"key": "c", "sta', "line 2 is not valid JSON", id="damage-and-torn-tail"
        ),
        pytest.param('{"status": "ok", "thinking": "t"}\n' + _OK, "line 1: no 'key' text", id="no-key"),
        pytest.param(
            _OK + '{"key": "b", "status": "ok"}', "line 2: an 'ok' record without its 'thinking'", id="no-text"
        ),
        pytest.param(_OK + '{"key": 3, "status": "ok", "thinking": "t"}\n', "line 2: no 'key' text", id="key-number"),
        pytest.param('{"key": "a", "status": "rejected"}\n', "line 1: reason must be one of", id="no-reason"),
        pytest.param(
            _OK[:-2] + ', "prompt_tokens": true}\n', "line 1: prompt_tokens must be a whole number", id="bool"
        ),
        pytest.param(_OK[:-2] + ', "cost": "0.1"}\n', "line 1: cost must be null or a number >= 0", id="cost-text"),
        pytest.param(_OK[:-2] + ', "cost": Infinity}\n', "line 1 is not valid JSON", id="cost-infinite"),
    ],
)
def test_a_damaged_cache_is_reported_and_left_as_it_is(tmp_path, content, message):
    path = tmp_path / "cache.jsonl"
    path.write_text(content)
    with pytest.raises(CacheError, match=re.escape(f"{path}: {message}")):
        TraceCache(path)
    assert path.read_text() == content


def test_a_read_only_cache_changes_nothing(tmp_path):
    path = tmp_path / "cache.jsonl"
    assert len(TraceCache(path, readonly=True)) == 0 and not path.exists()
    path.write_text(_OK + '{"key": "b", "st')
    cache = TraceCache(path, readonly=True)
    assert [r["key"] for r in cache.records()] == ["a"] and path.read_text() == _OK + '{"key": "b", "st'
    with pytest.raises(RuntimeError, match="read-only"):
        cache.append({"key": "c", "status": "ok", "thinking": "t"})


def test_record_problem_takes_no_nan_cost():
    assert record_problem({"key": "a", "status": "ok", "thinking": "t", "cost": float("nan")}).startswith("cost must")
    assert (
        record_problem({"key": "a", "status": "rejected", "reason": "leak", "cost": None, "prompt_tokens": 0}) is None
    )


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        pytest.param(row_schema("embed"), None, id="embedded-images"),
        pytest.param(row_schema("path"), None, id="image-paths"),
        pytest.param(
            pa.schema(
                [
                    ("prompt", pa.large_list(pa.struct([("role", pa.large_string()), ("content", pa.large_string())]))),
                    ("images", pa.list_(pa.struct([("bytes", pa.large_binary())]))),
                    ("reward_model", pa.struct([("ground_truth", pa.large_string())])),
                ]
            ),
            None,
            id="large-types-no-extra-info",
        ),
        pytest.param(pa.schema([("prompt", pa.string())]), "missing column(s) images, reward_model", id="columns"),
        pytest.param(
            _replace(row_schema("embed"), "prompt", pa.list_(pa.struct([("role", pa.string())]))),
            "column prompt is list<item: struct<role: string>>, not a list of {role, content} text messages",
            id="prompt-without-content",
        ),
        pytest.param(
            _replace(row_schema("embed"), "images", pa.list_(pa.struct([("bytes", pa.string())]))),
            "column images is list<item: struct<bytes: string>>",
            id="image-bytes-as-text",
        ),
        pytest.param(
            _replace(row_schema("embed"), "reward_model", pa.struct([("ground_truth", pa.int64())])),
            "column reward_model is struct<ground_truth: int64>, not a struct with the ground_truth text",
            id="ground-truth-number",
        ),
        pytest.param(
            _replace(row_schema("embed"), "extra_info", pa.string()), "column extra_info is string", id="extra-text"
        ),
        pytest.param(
            _replace(row_schema("embed"), "data_source", pa.int32()), "column data_source is int32", id="source-int"
        ),
    ],
)
def test_schema_problem(schema, problem):
    found = schema_problem(schema)
    assert found == problem if problem is None else found.startswith(problem), found
