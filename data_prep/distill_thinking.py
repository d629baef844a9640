"""Ask a teacher model for HOI-R1 reasoning on every row of an RL parquet and write the SFT parquet.

    python data_prep/distill_thinking.py --data data/hicodet/train.parquet --out data/hicodet_sft --max-cost 20

For every row of the RL parquet (data_prep/hicodet_to_parquet.py) the teacher sees the image, the
task prompt and the ground-truth answer and writes the reasoning; accepted traces become
OUT/sft.parquet for verl's MultiTurnSFTDataset (bash recipes/sft.sh). Every finished request is kept
in OUT/cache.jsonl: rerun the same command to resume after a crash, a kill or a --max-cost stop,
without paying twice. OUT/summary.json holds the counts and costs. Any OpenAI-compatible server
works (--base-url http://localhost:8000/v1 for a local vLLM, which needs no key). The API key is
read from the environment ($OPENAI_API_KEY or the variable --api-key-env names), never from the
command line.

Start with --dry-run: it checks the options, the output folder and every row (images decoded),
estimates tokens and cost, and sends and writes nothing.

--batch sends the same requests through the OpenAI Batch API instead: half the price, a separate
quota, results within 24 hours. The requests go into batches under the API's limits (50,000 requests
and 200 MB each, or --batch-requests N); --max-queued-tokens N (the account's batch queue limit for
the model) holds a batch back until the pending ones leave it room. Every batch is recorded in
OUT/batches.json before and as soon as it is made, and the run checks them every --poll-interval
seconds, caching each result as online mode does (same filters, same cache, same sft.parquet). Stop
it at any moment: the same command resumes waiting for the batches already submitted and never
submits a request twice. Requests whose batch failed or expired, or whose line errored, are
resubmitted up to --resubmit times per run. --batch --status prints the batches and their state;
--batch --cancel cancels the pending ones and keeps what they finished. While batches are pending,
an online run in the same folder refuses to start.

Prices are USD per million tokens; built in for gpt-4o-mini, gpt-4o, gpt-4.1, gpt-4.1-mini and
gpt-4.1-nano (with --batch, the Batch API's: half). For other models pass --input-price and
--output-price (0 for a local server), the prices of the mode in use.

Checked before anything is sent or written: every number is finite and in range; --base-url is an
http(s) URL; the key variable is set, not empty and holds no white space; the teacher prompt is
UTF-8 with {task} and {answer} (a literal brace written {{ or }}); --out is a writable folder
(created if missing) whose outputs are neither inputs nor folders; --data is a parquet with the RL
columns and at least one row; the cache holds only complete records (a torn last line from a kill
is dropped, any other damage is reported and the file left as it is). Each row is checked as it is
read, as training will check the SFT row made from it (verl_hoi.teacher.check_row): field types and
metadata, a ground truth that is a strict JSON list of valid items (names are read as
verl_hoi.answer.parse_answer reads them: any case, verbs as a list or a "hold, ride" string), an image
that decodes in full and has the size in extra_info. Nothing else is coerced: a number where text is
expected is an error. Rows are counted from 0. OUT/batches.json, when there, must be the ledger this
command wrote (any damage is reported and the file left as it is).

Exit codes: 0 done; 1 some requests failed, the teacher stopped the run (or, with --batch, a Batch
API call kept failing), or no trace was accepted (rerun to resume); 2 a mistake in the options or
the input, one line "error: ..." naming the file and the row or line; 130 interrupted (Ctrl-C or
SIGTERM). OUT/sft.parquet and OUT/summary.json are replaced, whole, only by a run that gets to its
end with at least one accepted trace; a failed or interrupted run leaves them as they were, and no
temporary or lock file.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import signal
import sys
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from verl_hoi.cli import (
    INTERRUPTED,
    UsageError,
    check_input_file,
    check_output_folder,
    doc_parser,
    fail,
    new_folders_removed_on_error,
    positive_int,
    refuse_overlap,
    write_json_atomic,
)
from verl_hoi.convert import write_parquet
from verl_hoi.distill import (
    CACHE_NAME,
    DEFAULT_CONCURRENCY,
    OUTPUT_NAMES,
    SFT_NAME,
    SUMMARY_NAME,
    CacheError,
    DistillStats,
    FolderBusyError,
    RowError,
    TraceCache,
    cache_totals,
    distill,
    schema_problem,
    sft_rows,
)
from verl_hoi.distill_batch import (
    DEFAULT_POLL_INTERVAL,
    DEFAULT_RESUBMIT,
    BatchLimits,
    BatchStats,
    batch_status,
    distill_batch,
)
from verl_hoi.sft import sft_schema
from verl_hoi.teacher import (
    DEFAULT_BACKOFF_BASE,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_TOKENS,
    DEFAULT_TEMPERATURE,
    DEFAULT_TIMEOUT,
    IMAGE_DETAILS,
    FatalTeacherError,
    Price,
    TeacherClient,
    load_teacher_prompt,
    model_price,
)
from verl_hoi.teacher_batch import BATCHES_NAME, MAX_BATCH_REQUESTS, BatchAPI, BatchLedger, LedgerError
from verl_hoi.traces import MAX_TRACE_CHARS

DEFAULT_KEY_ENV = "OPENAI_API_KEY"
MAX_CONCURRENCY = 1024
MAX_PRICE = 1e6  # USD per million tokens: far above any model's, low enough that no cost overflows
MAX_TOKENS = 1_000_000
MAX_TIMEOUT = 86_400.0
MAX_POLL_INTERVAL = 3600.0
MAX_RESUBMIT = 100
MAX_QUEUED_TOKENS = 10**12
BATCH_ONLY = ("--status", "--cancel", "--poll-interval", "--resubmit", "--batch-requests", "--max-queued-tokens")
"""Options that only --batch takes."""


def _number(kind: type, minimum: float, *, strict: bool = False, maximum: float | None = None) -> Callable:
    """argparse ``type``: a finite ``kind`` that is ``>= minimum`` (``>`` with ``strict``) and ``<= maximum``."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {'an integer' if kind is int else 'a number'}: {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {minimum}, got {text}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be <= {maximum}, got {text}")
        return value

    return parse


def _url(text: str) -> str:
    """argparse ``type``: an http(s) URL with a host."""
    try:
        parts = urllib.parse.urlsplit(text)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not a URL: {text!r} ({error})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"not an http(s) URL with a host: {text!r}")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = doc_parser("python data_prep/distill_thinking.py", __doc__)
    add = parser.add_argument
    add("--data", required=True, type=Path, metavar="PARQUET", help="RL parquet (data_prep/hicodet_to_parquet.py)")
    add("--out", required=True, type=Path, metavar="DIR", help="output folder: sft.parquet, cache.jsonl, summary")
    add("--model", default="gpt-4o-mini", help="teacher model (default: %(default)s)")
    add("--base-url", type=_url, metavar="URL", help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1")
    add("--api-key-env", metavar="NAME", help=f"variable holding the key (default: {DEFAULT_KEY_ENV})")
    add(
        "--concurrency",
        type=_number(int, 1, maximum=MAX_CONCURRENCY),
        metavar="N",
        help=f"requests in flight, online (default: {DEFAULT_CONCURRENCY})",
    )
    add("--limit", type=positive_int, metavar="N", help="only the first N rows")
    add("--max-cost", type=_number(float, 0, strict=True), metavar="USD", help="stop sending once this could be hit")
    add("--dry-run", action="store_true", help="check everything, estimate tokens and cost, send and write nothing")
    price = _number(float, 0, maximum=MAX_PRICE)
    add("--input-price", type=price, metavar="USD", help="USD per million input tokens")
    add("--output-price", type=price, metavar="USD", help="USD per million output tokens")
    add("--teacher-prompt", type=Path, metavar="FILE", help="prompt template with {task} and {answer}")
    add(
        "--detail",
        choices=IMAGE_DETAILS,
        default=IMAGE_DETAILS[0],
        help="image detail sent to the teacher (default: %(default)s)",
    )
    add(
        "--max-tokens",
        type=_number(int, 1, maximum=MAX_TOKENS),
        default=DEFAULT_MAX_TOKENS,
        metavar="N",
        help="teacher output limit (%(default)s)",
    )
    add(
        "--temperature",
        type=_number(float, 0),
        default=DEFAULT_TEMPERATURE,
        help="sampling temperature (default: %(default)s)",
    )
    add(
        "--timeout",
        type=_number(float, 0, strict=True, maximum=MAX_TIMEOUT),
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help=f"per request or Batch API call (default: {DEFAULT_TIMEOUT:g} s)",
    )
    add(
        "--max-retries",
        type=_number(int, 0),
        default=DEFAULT_MAX_RETRIES,
        metavar="N",
        help="on 429/5xx/timeouts (default: %(default)s)",
    )
    add(
        "--backoff-base",
        type=_number(float, 0),
        default=DEFAULT_BACKOFF_BASE,
        metavar="S",
        help=f"first retry wait (default: {DEFAULT_BACKOFF_BASE:g} s)",
    )
    add("--max-trace-chars", type=positive_int, default=MAX_TRACE_CHARS, metavar="N", help="longer traces are rejected")
    add("--retry-rejected", action="store_true", help="ask again for items whose cached trace was rejected")
    add("--batch", action="store_true", help="send through the OpenAI Batch API (half the price, within 24 h)")
    add("--status", action="store_true", help="with --batch: print the state of the batches submitted, change nothing")
    add("--cancel", action="store_true", help="with --batch: cancel the pending batches, keep what they finished")
    add(
        "--poll-interval",
        type=_number(float, 0, strict=True, maximum=MAX_POLL_INTERVAL),
        metavar="S",
        help=f"with --batch: seconds between checks of the pending batches (default: {DEFAULT_POLL_INTERVAL:g})",
    )
    add(
        "--resubmit",
        type=_number(int, 0, maximum=MAX_RESUBMIT),
        metavar="N",
        help=f"with --batch: times a failed or expired request is resubmitted per run (default: {DEFAULT_RESUBMIT})",
    )
    add(
        "--batch-requests",
        type=_number(int, 1, maximum=MAX_BATCH_REQUESTS),
        metavar="N",
        help=f"with --batch: requests per batch (default: the API's limit, {MAX_BATCH_REQUESTS})",
    )
    add(
        "--max-queued-tokens",
        type=_number(int, 1, maximum=MAX_QUEUED_TOKENS),
        metavar="N",
        help="with --batch: estimated input tokens of pending batches at most (the account's batch queue limit)",
    )
    return parser


def iter_parquet(path: Path, limit: int | None) -> Iterator[dict[str, Any]]:
    """Rows of ``path`` as dicts, streamed in small batches (embedded images never all in memory).

    Raises:
        UsageError: the file cannot be read (a damaged page, say).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    count = 0
    try:
        with pq.ParquetFile(path) as parquet:
            for batch in parquet.iter_batches(batch_size=32):
                for row in batch.to_pylist():
                    if count == limit:
                        return
                    count += 1
                    yield row
    except (pa.ArrowException, OSError) as error:
        raise UsageError(f"{path}: row {count}: cannot be read ({_one_line(error)})") from None


def _one_line(error: BaseException) -> str:
    """The message on one line, control characters escaped."""
    text = " ".join(line.strip() for line in str(error).splitlines())
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _check_out(out: Path, inputs: dict[str, Path | None]) -> None:
    """--out must be a folder that can be made or written, none of whose outputs is an input or a folder."""
    refuse_overlap({"--out": out}, inputs)
    for name in OUTPUT_NAMES:
        refuse_overlap({"--out": out / name}, inputs)
    check_output_folder(out, "--out", OUTPUT_NAMES)
    if out.is_dir():
        cache = out / CACHE_NAME
        if cache.exists() and not os.access(cache, os.R_OK | os.W_OK):
            raise UsageError(f"--out {cache}: cannot be read and written")


def _api_key(args: argparse.Namespace) -> str | None:
    """The key from the environment; None for a dry run without one, a placeholder for a local server."""
    name = args.api_key_env if args.api_key_env is not None else DEFAULT_KEY_ENV
    if not name:
        raise UsageError("--api-key-env: empty variable name")
    key = os.environ.get(name)
    if not key:
        state = "not set" if key is None else "empty"
        if args.api_key_env is not None:
            raise UsageError(f"--api-key-env {name}: ${name} is {state}")
        if args.dry_run:
            return None
        if args.base_url is None:
            raise UsageError(f"${name} is {state}: set the API key there (or name another variable with --api-key-env)")
        return "EMPTY"  # local OpenAI-compatible servers usually need no key, but the client wants one
    if any(c.isspace() or not c.isprintable() for c in key):
        raise UsageError(f"${name}: the API key holds white space or control characters (a pasted newline?)")
    return key


def _check_mode(args: argparse.Namespace) -> None:
    """The options of the mode chosen (online, or --batch) and only those."""
    if not args.batch:
        for option in BATCH_ONLY:
            if getattr(args, option[2:].replace("-", "_")) not in (None, False):
                raise UsageError(f"{option} needs --batch")
        return
    if args.concurrency is not None:
        raise UsageError("--concurrency: --batch sends no requests of its own (the Batch API runs them)")
    if args.status + args.cancel + args.dry_run > 1:
        raise UsageError("--status, --cancel and --dry-run: one at a time")


def _check(args: argparse.Namespace) -> tuple[Any, str, str | None, int]:
    """Validate what argparse cannot; returns (parquet schema, template, api key, rows to read)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    _check_mode(args)
    if not args.model.strip():
        raise UsageError("--model: empty model name")
    check_input_file(args.data, "--data")
    _check_out(args.out, {"--data": args.data, "--teacher-prompt": args.teacher_prompt})
    try:
        template = load_teacher_prompt(args.teacher_prompt)
    except OSError as error:
        raise UsageError(f"--teacher-prompt {args.teacher_prompt}: {error.strerror or error}") from None
    except ValueError as error:
        raise UsageError(f"--teacher-prompt {error}") from None
    try:
        with pq.ParquetFile(args.data) as parquet:
            schema, num_rows = parquet.schema_arrow, parquet.metadata.num_rows
    except (pa.ArrowException, OSError) as error:
        raise UsageError(f"--data {args.data}: not a parquet file ({_one_line(error)})") from None
    problem = schema_problem(schema)
    if problem is not None:
        raise UsageError(f"--data {args.data}: {problem}")
    if num_rows == 0:
        raise UsageError(f"--data {args.data}: has no rows")
    if args.max_cost is not None and _price(args) is None:
        raise UsageError(f"--max-cost needs the price of {args.model}: pass --input-price and --output-price")
    key = _api_key(args)
    return schema, template, key, min(num_rows, args.limit or num_rows)


def _price(args: argparse.Namespace) -> Price | None:
    return model_price(args.model, args.input_price, args.output_price, batch=args.batch)


async def _distill(args: argparse.Namespace, template: str, key: str | None, total: int) -> tuple[DistillStats, list]:
    client = None
    if not args.dry_run:
        import openai

        client = openai.AsyncOpenAI(api_key=key, base_url=args.base_url, timeout=args.timeout, max_retries=0)
    teacher = TeacherClient(
        client,
        args.model,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        max_retries=args.max_retries,
        backoff_base=args.backoff_base,
    )
    try:
        return await distill(
            iter_parquet(args.data, args.limit),
            args.out,
            model=args.model,
            teacher=teacher,
            template=template,
            price=_price(args),
            max_cost=args.max_cost,
            concurrency=args.concurrency or DEFAULT_CONCURRENCY,
            detail=args.detail,
            max_trace_chars=args.max_trace_chars,
            retry_rejected=args.retry_rejected,
            dry_run=args.dry_run,
            total=total,
        )
    finally:
        if client is not None:
            await client.close()


def _batch_api(args: argparse.Namespace, key: str | None) -> BatchAPI:
    import openai

    client = openai.OpenAI(api_key=key, base_url=args.base_url, timeout=args.timeout, max_retries=0)
    return BatchAPI(client, max_retries=args.max_retries, backoff_base=args.backoff_base)


def _notify(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


def _distill_batch(args: argparse.Namespace, template: str, key: str | None, total: int) -> tuple[BatchStats, list]:
    api = None if args.dry_run else _batch_api(args, key)
    try:
        return distill_batch(
            lambda: iter_parquet(args.data, args.limit),
            args.out,
            teacher=TeacherClient(None, args.model, max_tokens=args.max_tokens, temperature=args.temperature),
            api=api,
            template=template,
            price=_price(args),
            max_cost=args.max_cost,
            detail=args.detail,
            max_trace_chars=args.max_trace_chars,
            retry_rejected=args.retry_rejected,
            resubmit=DEFAULT_RESUBMIT if args.resubmit is None else args.resubmit,
            poll_interval=args.poll_interval or DEFAULT_POLL_INTERVAL,
            limits=BatchLimits(args.batch_requests or MAX_BATCH_REQUESTS, max_queued_tokens=args.max_queued_tokens),
            cancel=args.cancel,
            dry_run=args.dry_run,
            total=total,
            notify=_notify,
        )
    finally:
        if api is not None:
            api.client.close()


def _print_status(args: argparse.Namespace, key: str | None) -> None:
    ledger = BatchLedger(args.out / BATCHES_NAME)
    api = _batch_api(args, key)
    try:
        for line in batch_status(ledger, api):
            print(line)
    finally:
        api.client.close()


def _usd(value: float | None) -> str:
    return "unknown (no price: pass --input-price/--output-price)" if value is None else f"${value:.4f}"


def _report_dry_run(stats: DistillStats, price: Price | None) -> None:
    cached = stats.cached_ok + stats.cached_rejected
    if isinstance(stats, BatchStats):
        print(
            f"dry run: {stats.items} rows, {cached} already cached, {stats.in_batches} in batches already "
            f"submitted, {stats.requests} requests in {stats.batches} batches (at the Batch API's prices)"
        )
    else:
        print(f"dry run: {stats.items} rows, {cached} already cached, {stats.items - cached} requests")
    print(
        f"estimated tokens: {stats.est_input_tokens} input, about {stats.est_output_tokens} output "
        f"(at most {stats.est_max_output_tokens})"
    )
    if price is None:
        print(f"estimated cost: {_usd(None)}")
    else:
        low = price.cost(stats.est_input_tokens, stats.est_output_tokens)
        high = price.cost(stats.est_input_tokens, stats.est_max_output_tokens)
        print(f"estimated cost: {_usd(low)} (at most {_usd(high)})")


def _finish(args: argparse.Namespace, schema: Any, stats: DistillStats, keys: list) -> dict[str, Any] | None:
    """Write OUT/sft.parquet from the cache and OUT/summary.json; return the summary (None: no trace accepted,
    nothing written)."""
    cache = TraceCache(args.out / CACHE_NAME, readonly=True)
    if not any((record := cache.get(key)) is not None and record["status"] == "ok" for key in keys):
        return None
    written = write_parquet(
        sft_rows(iter_parquet(args.data, args.limit), keys, cache), args.out / SFT_NAME, sft_schema(schema)
    )
    summary = {"model": args.model, "sft_rows": written, "this_run": stats.as_dict(), "all_runs": cache_totals(cache)}
    write_json_atomic(args.out / SUMMARY_NAME, summary, indent=2)
    return summary


def _sent(stats: DistillStats) -> str:
    """What this run sent: requests, or batches and their requests."""
    if isinstance(stats, BatchStats):
        return (
            f"{stats.batches} batches submitted, {stats.batches_resumed} resumed; {stats.requests} requests "
            f"({stats.retries} resubmitted), {stats.cancelled} cancelled"
        )
    return f"{stats.requests} requests ({stats.retries} retries)"


def _report(stats: DistillStats, summary: dict[str, Any] | None, out: Path) -> None:
    rejected = ", ".join(f"{k} {v}" for k, v in stats.as_dict()["rejected"].items() if v) or "none"
    print(
        f"this run: {stats.ok} accepted, {sum(stats.rejected.values())} rejected ({rejected}), {stats.failed} failed, "
        f"{stats.skipped} not sent; {_sent(stats)}, "
        f"{stats.prompt_tokens} input + {stats.completion_tokens} output tokens, cost {_usd(stats.cost)}"
    )
    if summary is None:
        print(f"no trace of these rows was accepted: {out / SFT_NAME} and {out / SUMMARY_NAME} were not written")
        return
    total = summary["all_runs"]
    print(
        f"all runs: {total['ok']} accepted, {sum(total['rejected'].values())} rejected, "
        f"{total['prompt_tokens']} input + {total['completion_tokens']} output tokens, cost {_usd(total['cost'])}"
    )
    print(f"wrote {out / SFT_NAME} ({summary['sft_rows']} rows) and {out / SUMMARY_NAME}")
    if stats.stopped_by_cost:
        print(
            f"stopped: the next request could exceed --max-cost (rows not sent: {stats.skipped}); "
            "rerun with a higher budget to do them"
        )
    if stats.failed:
        print(f"{stats.failed} requests failed after retries; rerun the same command to retry them", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    schema, template, key, total = _check(args)
    if args.status:
        _print_status(args, key)
        return 0
    with new_folders_removed_on_error(args.out):
        if args.batch:
            stats, keys = _distill_batch(args, template, key, total)
        else:
            stats, keys = asyncio.run(_distill(args, template, key, total))
        if args.dry_run:
            _report_dry_run(stats, _price(args))
            return 0
        summary = _finish(args, schema, stats, keys)
    _report(stats, summary, args.out)
    return 1 if stats.failed or summary is None else 0


def _kept(args: argparse.Namespace) -> str:
    """Where the work of a stopped run is."""
    kept = f"finished items are in {args.out / CACHE_NAME}"
    return f"{kept}, the batches submitted in {args.out / BATCHES_NAME}" if args.batch else kept


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (see the module docstring)."""
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # a kill cleans up as Ctrl-C does
    try:
        return _run(args)
    except RowError as error:
        return fail(f"{args.data}: {_one_line(error)}")
    except (UsageError, CacheError, LedgerError, FolderBusyError) as error:
        return fail(_one_line(error))
    except FatalTeacherError as error:
        print(f"error: the teacher stopped the run: {error}; {_kept(args)}", file=sys.stderr)
        return 1
    except OSError as error:
        return fail(f"{error.filename}: {error.strerror}" if error.filename and error.strerror else _one_line(error))
    except KeyboardInterrupt:
        print(f"interrupted: {_kept(args)}; rerun to resume", file=sys.stderr)
        return INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
