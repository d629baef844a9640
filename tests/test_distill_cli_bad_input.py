"""``python data_prep/distill_thinking.py`` on bad input, as a user types it: every case ends with exit
code 2 and one ``error:`` line naming the file and the row or line, and leaves the folder exactly as it was
(every file byte-identical, nothing new, not even an empty folder or a lock file).

Cases that reach the network point ``--base-url`` at a closed port on 127.0.0.1: nothing answers, so a
case that sent a request would end otherwise than the table says.
"""

from __future__ import annotations

import copy
import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_harness import CommandResult, assert_user_error, png_header, run_command, snapshot
from test_teacher import set_field

from verl_hoi.convert import ConvertOptions, iter_rows, row_schema, select_images
from verl_hoi.hicodet import load_annotations

CLI = Path(__file__).resolve().parents[1] / "data_prep" / "distill_thinking.py"
CLOSED = "http://127.0.0.1:9/v1"  # the discard port: nothing listens there
KEY_ENV = "OPENAI_API_KEY"


@pytest.fixture(scope="module")
def sample_rows(sample_annotations, sample_images) -> list[dict]:
    """The sample's 7 images with pairs as RL rows (embedded images, a small pixel budget)."""
    annotations = load_annotations(sample_annotations)
    options = ConvertOptions(split="train", min_pixels=4 * 28 * 28, max_pixels=64 * 28 * 28, prompt="hoi_r1_brief")
    return list(iter_rows(annotations, select_images(annotations, "train"), sample_images, options))


class Workspace:
    """A case's temp folder: a good RL parquet (``train.parquet``), ``out/`` as the output folder (not made),
    and the options and environment every case starts from."""

    def __init__(self, root: Path, rows: list[dict]):
        self.root = root
        self.rows = rows
        self.data = self.parquet("train.parquet", rows)
        self.out = root / "out"
        self.options = ["--base-url", CLOSED, "--max-retries", "0", "--timeout", "5"]
        self.env: dict[str, str | None] = {KEY_ENV: None}
        self.row_error: str | None = None  # what a bad row's error line starts with

    def parquet(self, name: str, rows: list[dict], schema: pa.Schema | None = None) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=schema or row_schema("embed")), path)
        return path

    def file(self, name: str, content: bytes | str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    def bad_row(self, index: int, change: Callable[[dict], object]) -> list[str]:
        """--data becomes the sample with row ``index`` changed in place by ``change``."""
        rows = copy.deepcopy(self.rows)
        change(rows[index])
        self.data = self.parquet("bad.parquet", rows)
        self.row_error = f"error: {self.data}: row {index} ({rows[index]['extra_info']['file_name']}): "
        return []

    def cache(self, *lines: str) -> list[str]:
        self.file("out/cache.jsonl", "".join(lines))
        return []

    def ledger(self, content: str) -> list[str]:
        """``out/batches.json``, the ledger of the batches submitted, holds ``content``."""
        self.file("out/batches.json", content)
        return []


def _damaged(data: bytes) -> bytes:
    """A parquet file whose first page header is overwritten: the footer still reads, the rows do not."""
    return data[:4] + b"\xff" * 64 + data[68:]


def _set(path: str, value: object) -> Callable[[dict], None]:
    return lambda row: set_field(row, path, value)


def _truncate_image(row: dict) -> None:
    row["images"][0]["bytes"] = row["images"][0]["bytes"][:2000]


def _path_mode(ws: Workspace) -> list[str]:
    """--data in path mode, every image path missing: row 0 is the first to fail."""
    rows = copy.deepcopy(ws.rows)
    for row in rows:
        row["images"] = [{**row["images"][0], "image": str(ws.root / "images" / "gone.jpg")}]
        del row["images"][0]["bytes"]
    ws.data = ws.parquet("paths.parquet", rows, row_schema("path"))
    ws.row_error = f"error: {ws.data}: row 0 ({rows[0]['extra_info']['file_name']}): "
    return []


def _images_as_strings(ws: Workspace) -> Path:
    """--data whose images column holds file names, not image entries."""
    schema = row_schema("embed")
    schema = schema.set(schema.get_field_index("images"), pa.field("images", pa.list_(pa.string())))
    return ws.parquet("s.parquet", [{**row, "images": ["a.jpg"]} for row in ws.rows], schema)


def _key(value: str, name: str = KEY_ENV) -> Callable[[Workspace], list[str]]:
    """The key variable ``name`` holds ``value``; named with --api-key-env unless it is the default."""

    def case(ws: Workspace) -> list[str]:
        ws.env[name] = value
        return [] if name == KEY_ENV else ["--api-key-env", name]

    return case


def _without_base_url(ws: Workspace) -> list[str]:
    ws.options.remove("--base-url")
    ws.options.remove(CLOSED)
    return []


GOOD_CACHE_LINE = '{"key": "a", "status": "ok", "thinking": "t"}\n'

CASES = [
    # ---- --data: the file
    pytest.param(
        lambda ws: ["--data", str(ws.root / "none.parquet")], ("none.parquet", "no such file"), id="data-missing"
    ),
    pytest.param(lambda ws: ["--data", str(ws.root)], ("is a folder, not a file",), id="data-is-a-folder"),
    pytest.param(
        lambda ws: ["--data", str(ws.file("a.parquet", "file_name,verb\n"))],
        ("a.parquet", "not a parquet file"),
        id="data-is-csv",
    ),
    pytest.param(
        lambda ws: ["--data", str(ws.file("e.parquet", b""))], ("e.parquet", "not a parquet file"), id="data-empty-file"
    ),
    pytest.param(
        lambda ws: [
            "--data",
            str(ws.parquet("x.parquet", [{"data_source": "hico_det"}], pa.schema([("data_source", pa.string())]))),
        ],
        ("x.parquet", "missing column(s) images, prompt, reward_model"),
        id="data-without-the-columns",
    ),
    pytest.param(
        lambda ws: ["--data", str(ws.parquet("none.parquet", []))], ("none.parquet", "has no rows"), id="data-no-rows"
    ),
    pytest.param(
        lambda ws: ["--data", str(_images_as_strings(ws))],
        ("s.parquet", "column images is list<element: string>, not a list of {bytes} or {image} (path) entries"),
        id="images-column-of-strings",
    ),
    pytest.param(
        lambda ws: ["--data", str(ws.file("damaged.parquet", _damaged(ws.data.read_bytes())))],
        ("damaged.parquet: row 0: cannot be read (",),
        id="data-damaged-page",
    ),
    # ---- --data: one row (counted from 0, named by its file)
    pytest.param(
        lambda ws: ws.bad_row(2, _set("prompt", None)),
        ("the prompt must be a list of chat messages, got None",),
        id="row-prompt-null",
    ),
    pytest.param(
        lambda ws: ws.bad_row(1, _set("prompt.0.role", "robot")),
        ("prompt[0].role must be one of system, user, assistant, got 'robot'",),
        id="row-unknown-role",
    ),
    pytest.param(
        lambda ws: ws.bad_row(0, _set("prompt.0.content", "Find them.")),
        ("the prompt has 0 <image> placeholder(s) for 1 image(s)",),
        id="row-no-image-placeholder",
    ),
    pytest.param(
        lambda ws: ws.bad_row(3, _set("images", [])), ("a row has one image entry, got 0",), id="row-no-images"
    ),
    pytest.param(
        lambda ws: ws.bad_row(0, _set("images.0.bytes", b"")),
        ("the embedded image: not an image file (or not in a format PIL reads)",),
        id="row-image-bytes-empty",
    ),
    pytest.param(
        lambda ws: ws.bad_row(0, _set("images.0.min_pixels", 10**6)),
        ("image entry has min_pixels=1000000 but the row's boxes were made for min_pixels=3136",),
        id="row-min-over-max-pixels",
    ),
    pytest.param(
        lambda ws: ws.bad_row(4, _set("reward_model.ground_truth", None)),
        ("ground_truth must be the answer JSON text, got nothing",),
        id="row-ground-truth-null",
    ),
    pytest.param(
        lambda ws: ws.bad_row(4, _set("reward_model.ground_truth", '[{"human": [1, 2')),
        ("ground_truth is not a valid answer",),
        id="row-ground-truth-cut",
    ),
    pytest.param(
        lambda ws: ws.bad_row(
            1,
            _set(
                "reward_model.ground_truth",
                '[{"human": [9, 0, 1, 5], "object": [0, 0, 5, 5], "object class": "cup", "verb class": ["hold"]}]',
            ),
        ),
        ("item 0: bad or missing 'human' box",),
        id="row-ground-truth-x2-below-x1",
    ),
    pytest.param(
        lambda ws: ws.bad_row(
            1,
            _set(
                "reward_model.ground_truth",
                '[{"human": ["0", 0, 1, 5], "object": [0, 0, 5, 5], "object class": "cup", "verb class": ["hold"]}]',
            ),
        ),
        ("item 0: bad or missing 'human' box",),
        id="row-ground-truth-box-of-strings",
    ),
    pytest.param(
        lambda ws: ws.bad_row(
            1,
            _set(
                "reward_model.ground_truth",
                '[{"human": [0, 0, 1, 5], "object": [0, 0, 5, 5], "object class": "unicorn", "verb class": ["ride"]}]',
            ),
        ),
        ("unknown object 'unicorn'",),
        id="row-ground-truth-unknown-object",
    ),
    pytest.param(
        lambda ws: ws.bad_row(0, _set("extra_info.frame", "resised")),
        ("extra_info.frame 'resised' is not one of resized, original, norm1000",),
        id="row-unknown-frame",
    ),
    pytest.param(
        lambda ws: ws.bad_row(0, _set("extra_info.model_size", [0, 168])),
        ("extra_info.model_size must be [width, height] in positive integers, got [0, 168]",),
        id="row-model-size-zero",
    ),
    pytest.param(
        lambda ws: ws.bad_row(0, _set("extra_info.model_size", [10**6, 10**6])),
        ("model_size [1000000, 1000000] is not the smart resize [252, 168] of image_size [640, 427]",),
        id="row-model-size-huge",
    ),
    pytest.param(
        lambda ws: ws.bad_row(0, _truncate_image),
        ("the embedded image: cannot read image: image file is truncated",),
        id="row-image-truncated",
    ),
    pytest.param(
        lambda ws: ws.bad_row(2, _set("images.0.bytes", b"GIF89a not really")),
        ("the embedded image: not an image file (or not in a format PIL reads)",),
        id="row-image-corrupt",
    ),
    pytest.param(
        lambda ws: ws.bad_row(0, _set("images.0.bytes", b"%PDF-1.4\n")),
        ("the embedded image: not an image file (or not in a format PIL reads)",),
        id="row-image-is-a-pdf",
    ),
    pytest.param(
        lambda ws: ws.bad_row(0, _set("images.0.bytes", png_header(10_000, 10_000))),
        ("the embedded image: image is 10000x10000, over the limit of 89478485 pixels",),
        id="row-image-header-claims-too-many-pixels",
    ),
    pytest.param(
        lambda ws: ws.bad_row(0, _set("images.0.bytes", png_header(100_000, 100_000))),
        ("the embedded image: image is over the limit of 89478485 pixels",),
        id="row-image-header-claims-huge",
    ),
    pytest.param(
        lambda ws: ws.bad_row(0, _set("extra_info.image_size", [600, 400])),
        ("the image is 640x427 but extra_info.image_size is [600, 400]",),
        id="row-image-size-disagrees",
    ),
    pytest.param(
        lambda ws: ["--out", str(ws.root / "new" / "nested" / "out"), *ws.bad_row(5, _set("images.0.bytes", b"x"))],
        ("the embedded image: not an image file (or not in a format PIL reads)",),
        id="row-error-removes-the-new-out-folders",
    ),
    pytest.param(
        _path_mode, ("/images/gone.jpg: cannot read image: No such file or directory",), id="row-image-path-missing"
    ),
    # ---- the cache in --out
    pytest.param(
        lambda ws: ws.cache(GOOD_CACHE_LINE, '{"key": "b", "sta\n', GOOD_CACHE_LINE),
        ("cache.jsonl", "line 2", "not valid JSON"),
        id="cache-damaged-before-the-end",
    ),
    pytest.param(
        lambda ws: ws.cache('{"status": "ok", "thinking": "t"}\n'),
        ("cache.jsonl", "line 1", "no 'key' text"),
        id="cache-record-without-key",
    ),
    pytest.param(
        lambda ws: ws.cache(GOOD_CACHE_LINE, '{"key": "b", "status": "maybe"}\n'),
        ("cache.jsonl", "line 2", "status must be"),
        id="cache-unknown-status",
    ),
    pytest.param(
        lambda ws: ws.cache('{"key": "b", "status": "ok", "thinking": "t", "cost": -1}\n'),
        ("cache.jsonl", "line 1", "cost must be"),
        id="cache-negative-cost",
    ),
    pytest.param(
        lambda ws: ws.cache("[1, 2]\n"), ("cache.jsonl", "line 1", "not a JSON object"), id="cache-line-not-an-object"
    ),
    pytest.param(
        lambda ws: (ws.out / "cache.jsonl").mkdir(parents=True) or [],
        ("cache.jsonl", "is a folder, not a file"),
        id="cache-is-a-folder",
    ),
    # ---- --out
    pytest.param(lambda ws: ["--out", str(ws.data)], ("--out", "is also --data"), id="out-is-the-data"),
    pytest.param(
        lambda ws: ["--out", str(ws.file("notes.txt", "x"))],
        ("notes.txt", "is a file, not a folder"),
        id="out-is-a-file",
    ),
    pytest.param(
        lambda ws: ["--out", str(ws.file("notes.txt", "x") / "sft")],
        ("notes.txt is a file, not a folder",),
        id="out-under-a-file",
    ),
    pytest.param(
        lambda ws: ["--data", str(ws.parquet("out/sft.parquet", ws.rows))],
        ("sft.parquet is also --data",),
        id="data-is-the-out-sft-parquet",
    ),
    pytest.param(
        lambda ws: ["--data", str(ws.parquet("out/cache.jsonl", ws.rows))],
        ("cache.jsonl is also --data",),
        id="data-is-the-out-cache",
    ),
    pytest.param(
        lambda ws: ["--teacher-prompt", str(ws.file("out/summary.json", "{task} {answer}"))],
        ("summary.json is also --teacher-prompt",),
        id="teacher-prompt-is-the-out-summary",
    ),
    pytest.param(
        lambda ws: (ws.out / "summary.json").mkdir(parents=True) or [],
        ("summary.json", "is a folder, not a file"),
        id="out-summary-is-a-folder",
    ),
    pytest.param(
        lambda ws: (ws.out / "sft.parquet").mkdir(parents=True) or [],
        ("sft.parquet", "is a folder, not a file"),
        id="out-sft-parquet-is-a-folder",
    ),
    # ---- the key and the endpoint
    pytest.param(
        lambda ws: ["--api-key-env", "DISTILL_TEST_NO_SUCH_VARIABLE"],
        ("$DISTILL_TEST_NO_SUCH_VARIABLE is not set",),
        id="key-variable-unset",
    ),
    pytest.param(_key("", "DISTILL_TEST_KEY"), ("--api-key-env DISTILL_TEST_KEY", "is empty"), id="key-variable-empty"),
    pytest.param(lambda ws: _without_base_url(ws), ("$OPENAI_API_KEY is not set",), id="no-key-for-openai"),
    pytest.param(_key("sk-abc\n"), ("white space",), id="key-with-a-newline"),
    pytest.param(lambda ws: ["--model", " "], ("--model", "empty"), id="model-empty"),
    pytest.param(
        lambda ws: ["--model", "my-model", "--max-cost", "1"],
        ("--max-cost needs the price of my-model",),
        id="budget-without-a-price",
    ),
    # ---- the Batch API's mode and its ledger in --out
    pytest.param(lambda ws: ["--status"], ("--status needs --batch",), id="status-without-batch"),
    pytest.param(lambda ws: ["--poll-interval", "5"], ("--poll-interval needs --batch",), id="poll-without-batch"),
    pytest.param(
        lambda ws: ["--batch", "--concurrency", "2"],
        ("--concurrency: --batch sends no requests of its own",),
        id="batch-with-concurrency",
    ),
    pytest.param(
        lambda ws: ["--batch", "--status", "--dry-run"],
        ("--status, --cancel and --dry-run: one at a time",),
        id="batch-status-and-dry-run",
    ),
    pytest.param(
        lambda ws: ["--batch", "--model", "my-model", "--max-cost", "1"],
        ("--max-cost needs the price of my-model",),
        id="batch-budget-without-a-price",
    ),
    pytest.param(
        lambda ws: ["--batch", *ws.bad_row(2, _set("prompt", None))],
        ("the prompt must be a list of chat messages, got None",),
        id="batch-row-prompt-null",
    ),
    pytest.param(
        lambda ws: ["--batch", *ws.ledger('{"batches": [{"tag": "t"')],
        ("batches.json: not a JSON file",),
        id="batch-ledger-torn",
    ),
    pytest.param(
        lambda ws: ws.ledger('{"batches": [{"tag": "t", "created": 1}]}'),
        ("batches.json: batch 0: lacks items, requests",),
        id="online-with-a-damaged-ledger",
    ),
    pytest.param(
        lambda ws: ["--batch", *((ws.out / "batches.json").mkdir(parents=True) or [])],
        ("batches.json", "is a folder, not a file"),
        id="batch-ledger-is-a-folder",
    ),
    pytest.param(
        lambda ws: ["--batch", "--data", str(ws.parquet("out/batches.json", ws.rows))],
        ("batches.json is also --data",),
        id="data-is-the-out-ledger",
    ),
    # ---- the teacher prompt
    pytest.param(
        lambda ws: ["--teacher-prompt", str(ws.root / "p.txt")],
        ("--teacher-prompt", "p.txt", "No such file"),
        id="prompt-missing",
    ),
    pytest.param(
        lambda ws: ["--teacher-prompt", str(ws.root)], ("--teacher-prompt", "Is a directory"), id="prompt-is-a-folder"
    ),
    pytest.param(
        lambda ws: ["--teacher-prompt", str(ws.file("p.txt", "{task} {answer} caf\xe9".encode("latin-1")))],
        ("p.txt", "not UTF-8 text (byte 19)"),
        id="prompt-not-utf8",
    ),
    pytest.param(
        lambda ws: ["--teacher-prompt", str(ws.file("p.txt", "Task: {task}\n"))],
        ("p.txt", "lacks the placeholder(s) {answer}"),
        id="prompt-without-answer",
    ),
    pytest.param(
        lambda ws: ["--teacher-prompt", str(ws.file("p.txt", "{task}\n{answer}\nSee {image}."))],
        ("p.txt", "line 3: unknown placeholder or stray brace at '{image}.'"),
        id="prompt-unknown-placeholder",
    ),
    pytest.param(
        lambda ws: ["--teacher-prompt", str(ws.file("p.txt", '{task} {answer} {"human": 1}'))],
        ("p.txt", "line 1", "stray brace"),
        id="prompt-json-with-single-braces",
    ),
]

# Options argparse refuses: exit 2 and one line "error: argument OPTION: ... (see ... --help)".
OPTION_CASES = [
    pytest.param(["--max-cost", "inf"], "--max-cost: must be a finite number, got 'inf'", id="max-cost-inf"),
    pytest.param(["--max-cost", "nan"], "--max-cost: must be a finite number, got 'nan'", id="max-cost-nan"),
    pytest.param(["--max-cost", "1e999"], "--max-cost: must be a finite number, got '1e999'", id="max-cost-overflows"),
    pytest.param(["--max-cost", "0"], "--max-cost: must be > 0, got 0", id="max-cost-zero"),
    pytest.param(["--temperature", "nan"], "--temperature: must be a finite number, got 'nan'", id="temperature-nan"),
    pytest.param(["--timeout", "inf"], "--timeout: must be a finite number, got 'inf'", id="timeout-inf"),
    pytest.param(["--timeout", "0"], "--timeout: must be > 0, got 0", id="timeout-zero"),
    pytest.param(["--input-price", "-1"], "--input-price: must be >= 0, got -1", id="price-negative"),
    pytest.param(["--output-price", "1e300"], "--output-price: must be <= 1000000.0, got 1e300", id="price-huge"),
    pytest.param(
        ["--max-tokens", "1" + "0" * 30], f"--max-tokens: must be <= 1000000, got 1{'0' * 30}", id="tokens-huge"
    ),
    pytest.param(["--timeout", "1e9"], "--timeout: must be <= 86400.0, got 1e9", id="timeout-huge"),
    pytest.param(
        ["--backoff-base=-inf"], "--backoff-base: must be a finite number, got '-inf'", id="backoff-minus-inf"
    ),
    pytest.param(["--concurrency", "0"], "--concurrency: must be >= 1, got 0", id="concurrency-zero"),
    pytest.param(["--concurrency", "100000"], "--concurrency: must be <= 1024, got 100000", id="concurrency-huge"),
    pytest.param(["--max-retries", "1.5"], "--max-retries: not an integer: '1.5'", id="retries-not-integer"),
    pytest.param(["--limit", "ten"], "--limit: not an integer: 'ten'", id="limit-not-integer"),
    pytest.param(["--poll-interval", "0"], "--poll-interval: must be > 0, got 0", id="poll-zero"),
    pytest.param(["--poll-interval", "nan"], "--poll-interval: must be a finite number, got 'nan'", id="poll-nan"),
    pytest.param(["--poll-interval", "1e9"], "--poll-interval: must be <= 3600.0, got 1e9", id="poll-huge"),
    pytest.param(["--resubmit", "-1"], "--resubmit: must be >= 0, got -1", id="resubmit-negative"),
    pytest.param(["--resubmit", "1.5"], "--resubmit: not an integer: '1.5'", id="resubmit-not-integer"),
    pytest.param(["--batch-requests", "0"], "--batch-requests: must be >= 1, got 0", id="batch-requests-zero"),
    pytest.param(
        ["--batch-requests", "50001"], "--batch-requests: must be <= 50000, got 50001", id="batch-requests-over-limit"
    ),
    pytest.param(["--max-queued-tokens", "0"], "--max-queued-tokens: must be >= 1, got 0", id="queue-zero"),
    pytest.param(
        ["--base-url", "localhost:8000"],
        "--base-url: not an http(s) URL with a host: 'localhost:8000'",
        id="url-without-scheme",
    ),
    pytest.param(
        ["--base-url", "ftp://127.0.0.1/v1"],
        "--base-url: not an http(s) URL with a host: 'ftp://127.0.0.1/v1'",
        id="url-ftp",
    ),
    pytest.param(
        ["--base-url", "http://127.0.0.1:99999/v1"],
        "--base-url: not a URL: 'http://127.0.0.1:99999/v1' (Port out of range 0-65535)",
        id="url-bad-port",
    ),
]


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _run_case(ws: Workspace, extra: list[str], monkeypatch: pytest.MonkeyPatch) -> CommandResult:
    for name, value in ws.env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    args = ["--data", str(ws.data), "--out", str(ws.out), *ws.options, *extra]
    return run_command([CLI, *args], cwd=ws.root)


@pytest.mark.parametrize(("build", "fragments"), CASES)
def test_bad_input_ends_in_one_error_line_and_changes_nothing(build, fragments, sample_rows, tmp_path, monkeypatch):
    ws = Workspace(tmp_path, sample_rows)
    extra = build(ws)
    before, paths = snapshot(tmp_path), _tree(tmp_path)
    result = _run_case(ws, extra, monkeypatch)
    line = assert_user_error(result, *fragments)
    assert ws.row_error is None or line.startswith(ws.row_error), (line, ws.row_error)
    assert snapshot(tmp_path) == before and _tree(tmp_path) == paths


@pytest.mark.parametrize(("extra", "message"), OPTION_CASES)
def test_bad_option_is_refused_before_anything(extra, message, sample_rows, tmp_path, monkeypatch):
    ws = Workspace(tmp_path, sample_rows)
    before, paths = snapshot(tmp_path), _tree(tmp_path)
    result = _run_case(ws, extra, monkeypatch)
    line = assert_user_error(result)
    assert line == f"error: argument {message} (see python data_prep/distill_thinking.py --help)"
    assert snapshot(tmp_path) == before and _tree(tmp_path) == paths


def test_out_in_a_read_only_folder(sample_rows, tmp_path, monkeypatch, capsys):
    # In-process, with the folder's permission faked: root (as in CI containers) may write anywhere.
    ws = Workspace(tmp_path, sample_rows)
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked and real_access(path, mode))
    spec = importlib.util.spec_from_file_location("distill_thinking", CLI)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    code = cli.main(["--data", str(ws.data), "--out", str(locked / "out"), *ws.options])
    assert (code, capsys.readouterr().err) == (2, f"error: --out {locked / 'out'}: folder {locked} is not writable\n")
    assert _tree(tmp_path) == ["locked", "train.parquet"]
