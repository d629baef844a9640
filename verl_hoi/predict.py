"""Generate HOI answers for a converted parquet, one JSONL line per image, for ``verl_hoi.evaluate``.

    python -m verl_hoi.predict --model PATH --data test.parquet --out preds.jsonl \\
        [--backend {vllm,hf}] [--batch-size N] [--max-new-tokens N] [--logprobs] [--limit N]

Rows are those of ``data_prep/hicodet_to_parquet.py`` (``prompt`` messages, ``images`` entries with
``bytes`` or ``image`` plus ``min_pixels`` / ``max_pixels``, ``extra_info`` frame metadata). Each row
is prepared as verl's ``RLHFDataset`` and agent loop prepare it: ``<image>`` in the user text becomes
an image item carrying the row's pixel budget, ``qwen_vl_utils`` resizes the image to the row's
``model_size`` in the row's patch size, and the processor's chat template is applied with the generation
prompt. Any model family loads (``AutoProcessor``, ``AutoModelForImageTextToText``); the checkpoint's
processor must cut the patch and merge sizes the rows were made for.

Before the model is loaded, every row (counted from 0) is checked as verl_hoi's training datasets check
it (``verl_hoi.rows.check_row``: metadata types, nothing coerced; ``model_size`` is the
smart resize of ``image_size``; the checkpoint's processor would leave an image of ``model_size`` as it
is; one ``<image>`` for one image, which decodes and is ``image_size``), and file names must be unique.
Before each batch is generated, every prepared image must be at its ``model_size`` and, with ``hf``, the
processor's patch grid of it must be ``model_size`` too (otherwise the boxes would be in another frame).

Decoding is that of verl's validation: greedy, repetition penalty 1.0, whatever the checkpoint's
``generation_config.json`` says (only its special tokens, such as the end-of-sequence ids, are used), so
both backends and a validation dump give the same answers for the same checkpoint.

Each output line is ``{"file_name", "response", "frame", "image_size", "model_size", "min_pixels",
"max_pixels", "family", "patch_size", "merge_size", "split", "index", "prompt", "prefilled_think", "model",
"backend"}``
(``prefilled_think``: the row's, else whether the chat template opened ``<think>``); with ``--logprobs`` also
``token_logprobs`` (log-probability of each generated token) and ``token_offsets`` (character offset
in ``response`` where each token's text starts), which the ``logprob`` score policy of
``verl_hoi.evaluate`` turns into one confidence per answer item.

``--out`` is checked before any work: not a folder, in a folder that exists, neither ``--data`` nor inside
``--model``. The run is resumable: images already in ``--out`` are skipped (each of its lines must be a
JSON object with a text ``file_name``; a damaged line is reported with its number and the file is left
as it is), lines are appended and flushed after every batch, and a last line cut off by an interruption
is dropped before appending. Ctrl-C keeps the lines of finished batches and exits with code 130; run the
same command again to go on. Mistakes end with one ``error:`` line and exit code 2. ``vllm`` needs a GPU
and the ``train`` extra; ``hf`` (transformers) runs on CPU or GPU (bfloat16 on CUDA).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from verl_hoi.cli import (
    INTERRUPTED,
    UsageError,
    check_input_file,
    check_input_folder,
    check_output_file,
    doc_parser,
    fail,
    positive_int,
    refuse_overlap,
)
from verl_hoi.generation import BACKENDS, DEFAULT_BATCH_SIZE, DEFAULT_MAX_NEW_TOKENS, predict

__all__ = ["main"]

logger = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = doc_parser("python -m verl_hoi.predict", __doc__)
    parser.add_argument("--model", required=True, help="checkpoint folder (HF format) with its processor")
    parser.add_argument("--data", required=True, help="parquet from data_prep/hicodet_to_parquet.py")
    parser.add_argument("--out", required=True, help="predictions JSONL (appended to; existing images skipped)")
    parser.add_argument("--backend", choices=BACKENDS, default=BACKENDS[0], help="vllm (GPU) or hf (transformers)")
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=DEFAULT_BATCH_SIZE,
        help="rows per generate call (default %(default)s)",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=positive_int,
        default=DEFAULT_MAX_NEW_TOKENS,
        help="generation budget (default %(default)s)",
    )
    parser.add_argument("--logprobs", action="store_true", help="store token log-probabilities (logprob policy)")
    parser.add_argument("--limit", type=positive_int, help="only the first N rows (a quick look)")
    parser.add_argument("--device", help="hf backend: torch device (default cuda if available, else cpu)")
    return parser


def _check_paths(model: Path, data: Path, out: Path) -> None:
    """The inputs exist and ``out`` can be written without touching them, before anything is loaded."""
    check_input_folder(model, "--model")
    if not (model / "config.json").is_file():
        raise UsageError(f"--model {model}: no config.json (not a Hugging Face checkpoint folder)")
    try:
        json.loads((model / "config.json").read_bytes())
    except ValueError as error:
        raise UsageError(f"--model {model}: config.json is not valid JSON ({error})") from None
    check_input_file(data, "--data")
    check_output_file(out, "--out")
    refuse_overlap({"--out": out}, {"--data": data, "--model": model})
    if out.resolve().is_relative_to(model.resolve()):
        raise UsageError(f"--out {out} is inside --model {model}: refusing to write into the checkpoint")
    if out.exists() and not os.access(out, os.W_OK):
        raise UsageError(f"--out {out}: is not writable")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 on a user mistake, 130 on Ctrl-C)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        _check_paths(Path(args.model), Path(args.data), Path(args.out))
        written = predict(
            args.model,
            args.data,
            args.out,
            backend=args.backend,
            batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens,
            logprobs=args.logprobs,
            limit=args.limit,
            device=args.device,
        )
    except (UsageError, ValueError) as error:
        return fail(error)
    except KeyboardInterrupt:
        print(f"interrupted: {args.out} keeps every complete line; run the same command to resume", file=sys.stderr)
        return INTERRUPTED
    logger.info("%d new line(s) written to %s", written, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
