"""Distil HOI-R1 reasoning from a teacher model and write the SFT parquet.

Example:
    export OPENAI_API_KEY=...
    python data_prep/distill_thinking.py --data data/hicodet/train.parquet --out data/hicodet_sft --dry-run
    python data_prep/distill_thinking.py --data data/hicodet/train.parquet --out data/hicodet_sft --max-cost 20

For every row of the RL parquet (``data_prep/hicodet_to_parquet.py``) the teacher sees the image,
the task prompt and the ground-truth answer and writes the reasoning; accepted traces become
``OUT/sft.parquet`` for verl's ``MultiTurnSFTDataset`` (``bash recipes/sft.sh``). Every finished
request is kept in ``OUT/cache.jsonl``: rerun the same command to resume after a crash, a kill or
a ``--max-cost`` stop, without paying twice. ``OUT/summary.json`` holds the counts and costs.
Any OpenAI-compatible server works (``--base-url http://localhost:8000/v1`` for a local vLLM).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from verl_hoi.cli import UsageError, atomic_path, fail
from verl_hoi.convert import write_parquet
from verl_hoi.distill import (
    CACHE_NAME,
    SUMMARY_NAME,
    DistillStats,
    FolderBusyError,
    TraceCache,
    cache_totals,
    distill,
    sft_rows,
)
from verl_hoi.sft import sft_schema
from verl_hoi.teacher import FatalTeacherError, TeacherClient, load_teacher_prompt, model_price

DETAILS = ("auto", "low", "high")


def _number(kind: type, minimum: float, strict: bool = False):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a {kind.__name__}: {text!r}") from None
        if value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {minimum}, got {value}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Ask a teacher model (OpenAI or any OpenAI-compatible server) for HOI-R1 reasoning on every "
        "row of an RL parquet and write OUT/sft.parquet for verl's SFT trainer. Resumable: finished requests are "
        "cached in OUT/cache.jsonl. The API key is read from the environment, never from the command line.",
        epilog="Prices are USD per million tokens; built in for gpt-4o-mini, gpt-4o, gpt-4.1, gpt-4.1-mini and "
        "gpt-4.1-nano. For other models pass --input-price and --output-price (0 for a local server).",
    )
    add = parser.add_argument
    add("--data", required=True, type=Path, metavar="PARQUET", help="RL parquet (data_prep/hicodet_to_parquet.py)")
    add("--out", required=True, type=Path, metavar="DIR", help="output folder: sft.parquet, cache.jsonl, summary")
    add("--model", default="gpt-4o-mini", help="teacher model (default: %(default)s)")
    add("--base-url", metavar="URL", help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1")
    add("--api-key-env", default="OPENAI_API_KEY", metavar="NAME", help="variable holding the key (%(default)s)")
    add("--concurrency", type=_number(int, 1), default=8, metavar="N", help="requests in flight (default: 8)")
    add("--limit", type=_number(int, 1), metavar="N", help="only the first N rows")
    add("--max-cost", type=_number(float, 0, strict=True), metavar="USD", help="stop sending once this could be hit")
    add("--dry-run", action="store_true", help="estimate tokens and cost, send nothing")
    add("--input-price", type=_number(float, 0), metavar="USD", help="USD per million input tokens")
    add("--output-price", type=_number(float, 0), metavar="USD", help="USD per million output tokens")
    add("--teacher-prompt", type=Path, metavar="FILE", help="prompt template with {task} and {answer}")
    add("--detail", choices=DETAILS, default="auto", help="image detail sent to the teacher (default: auto)")
    add("--max-tokens", type=_number(int, 1), default=1024, metavar="N", help="teacher output limit (1024)")
    add("--temperature", type=_number(float, 0), default=0.7, help="sampling temperature (default: 0.7)")
    add("--timeout", type=_number(float, 0, strict=True), default=120.0, metavar="S", help="per request (120 s)")
    add("--max-retries", type=_number(int, 0), default=6, metavar="N", help="on 429/5xx/timeouts (default: 6)")
    add("--backoff-base", type=_number(float, 0), default=1.0, metavar="S", help="first retry wait (default: 1 s)")
    add("--max-trace-chars", type=_number(int, 1), default=4000, metavar="N", help="longer traces are rejected")
    add("--retry-rejected", action="store_true", help="ask again for items whose cached trace was rejected")
    return parser


def iter_parquet(path: Path, limit: int | None) -> Iterator[dict[str, Any]]:
    """Rows of ``path`` as dicts, streamed in small batches (embedded images never all in memory)."""
    import pyarrow.parquet as pq

    remaining = limit
    for batch in pq.ParquetFile(path).iter_batches(batch_size=32):
        for row in batch.to_pylist():
            if remaining is not None:
                if remaining == 0:
                    return
                remaining -= 1
            yield row


def _check(args: argparse.Namespace) -> tuple[Any, str, str | None]:
    """Validate what argparse cannot; returns (parquet schema, template, api key)."""
    import pyarrow.parquet as pq

    if not args.data.is_file():
        raise UsageError(f"--data {args.data}: no such file")
    try:
        schema = pq.read_schema(args.data)
    except Exception as error:
        raise UsageError(f"--data {args.data}: not a parquet file ({error})") from None
    missing = {"prompt", "images", "reward_model"} - set(schema.names)
    if missing:
        raise UsageError(f"--data {args.data}: missing column(s) {', '.join(sorted(missing))}; is it an RL parquet?")
    try:
        template = load_teacher_prompt(args.teacher_prompt)
    except (OSError, ValueError) as error:
        raise UsageError(f"--teacher-prompt: {error}") from None
    price = model_price(args.model, args.input_price, args.output_price)
    if args.max_cost is not None and price is None:
        raise UsageError(f"--max-cost needs the price of {args.model}: pass --input-price and --output-price")
    key = os.environ.get(args.api_key_env) or None
    if key is None and not args.dry_run:
        if args.base_url is None:
            raise UsageError(f"set the API key in ${args.api_key_env} (or name another variable with --api-key-env)")
        key = "EMPTY"  # local OpenAI-compatible servers usually need no key, but the client wants one
    return schema, template, key


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
            price=model_price(args.model, args.input_price, args.output_price),
            max_cost=args.max_cost,
            concurrency=args.concurrency,
            detail=args.detail,
            max_trace_chars=args.max_trace_chars,
            retry_rejected=args.retry_rejected,
            dry_run=args.dry_run,
            total=total,
        )
    finally:
        if client is not None:
            await client.close()


def _usd(value: float | None) -> str:
    return "unknown (no price: pass --input-price/--output-price)" if value is None else f"${value:.4f}"


def _report_dry_run(stats: DistillStats, price) -> None:
    sent = stats.items - stats.cached_ok - stats.cached_rejected
    print(f"dry run: {stats.items} rows, {stats.cached_ok + stats.cached_rejected} already cached, {sent} requests")
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


def _write_summary(path: Path, summary: dict[str, Any]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)


def _finish(args: argparse.Namespace, schema: Any, stats: DistillStats, keys: list) -> dict[str, Any]:
    """Write OUT/sft.parquet from the cache and OUT/summary.json; return the summary."""
    cache = TraceCache(args.out / CACHE_NAME)
    try:
        rows = sft_rows(iter_parquet(args.data, args.limit), keys, cache)
        written = write_parquet(rows, args.out / "sft.parquet", sft_schema(schema))
        summary = {
            "model": args.model,
            "sft_rows": written,
            "this_run": stats.as_dict(),
            "all_runs": cache_totals(cache),
        }
    finally:
        cache.close()
    _write_summary(args.out / SUMMARY_NAME, summary)
    return summary


def _report(stats: DistillStats, summary: dict[str, Any], out: Path) -> None:
    rejected = ", ".join(f"{k} {v}" for k, v in summary["this_run"]["rejected"].items() if v) or "none"
    print(
        f"this run: {stats.ok} accepted, {sum(stats.rejected.values())} rejected ({rejected}), {stats.failed} failed, "
        f"{stats.skipped} not sent; {stats.requests} requests ({stats.retries} retries), "
        f"{stats.prompt_tokens} input + {stats.completion_tokens} output tokens, cost {_usd(stats.cost)}"
    )
    total = summary["all_runs"]
    print(
        f"all runs: {total['ok']} accepted, {sum(total['rejected'].values())} rejected, "
        f"{total['prompt_tokens']} input + {total['completion_tokens']} output tokens, cost {_usd(total['cost'])}"
    )
    print(f"wrote {out / 'sft.parquet'} ({summary['sft_rows']} rows) and {out / SUMMARY_NAME}")
    if stats.stopped_by_cost:
        print(
            f"stopped: the next request could exceed --max-cost (rows not sent: {stats.skipped}); "
            "rerun with a higher budget to do them"
        )
    if stats.failed:
        print(f"{stats.failed} requests failed after retries; rerun the same command to retry them", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        schema, template, key = _check(args)
        import pyarrow.parquet as pq

        total = pq.ParquetFile(args.data).metadata.num_rows
        total = min(total, args.limit) if args.limit else total
        stats, keys = asyncio.run(_distill(args, template, key, total))
    except UsageError as error:
        return fail(error)
    except FatalTeacherError as error:
        print(
            f"error: the teacher stopped the run: {error}; finished items are in {args.out / CACHE_NAME}",
            file=sys.stderr,
        )
        return 1
    except (FolderBusyError, OSError) as error:
        return fail(error)
    except KeyboardInterrupt:
        print(f"interrupted: finished items are in {args.out / CACHE_NAME}; rerun to resume", file=sys.stderr)
        return 130
    if args.dry_run:
        _report_dry_run(stats, model_price(args.model, args.input_price, args.output_price))
        return 0
    _report(stats, _finish(args, schema, stats, keys), args.out)
    return 1 if stats.failed else 0


if __name__ == "__main__":
    sys.exit(main())
