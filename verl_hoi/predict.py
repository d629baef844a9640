"""Generate HOI answers for a converted parquet, one JSONL line per image, for ``verl_hoi.evaluate``.

    python -m verl_hoi.predict --model PATH --data test.parquet --out preds.jsonl \\
        [--backend {vllm,hf}] [--batch-size N] [--max-new-tokens N] [--logprobs] [--limit N]

Rows are those of ``data_prep/hicodet_to_parquet.py`` (``prompt`` messages, ``images`` entries with
``bytes`` or ``image`` plus ``min_pixels`` / ``max_pixels``, ``extra_info`` frame metadata). Each row
is prepared as verl's ``RLHFDataset`` and agent loop prepare it: ``<image>`` in the user text becomes
an image item carrying the entry's pixel budget, ``qwen_vl_utils`` resizes the image to the row's
``model_size``, and the processor's chat template is applied with the generation prompt. A check
stops the run when the processor would resize that image again (the boxes would then be in another
frame). Decoding is greedy.

Each output line is ``{"file_name", "response", "frame", "image_size", "model_size", "min_pixels",
"max_pixels", "split", "index", "prompt", "model", "backend"}`` (plus ``prefilled_think`` when the
row's ``extra_info`` has it); with ``--logprobs`` also
``token_logprobs`` (log-probability of each generated token) and ``token_offsets`` (character offset
in ``response`` where each token's text starts), which the ``logprob`` score policy of
``verl_hoi.evaluate`` turns into one confidence per answer item.

The run is resumable: images already in ``--out`` are skipped, lines are appended and flushed after
every batch, and a last line cut off by an interruption is dropped before appending. ``vllm`` needs a
GPU and the ``train`` extra; ``hf`` (transformers) runs on CPU or GPU (bfloat16 on CUDA).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

from verl_hoi.cli import UsageError, doc_parser, fail, positive_int
from verl_hoi.jsonl import iter_jsonl, repair_torn_tail

__all__ = ["BACKENDS", "Generation", "build_messages", "load_image", "main", "predict", "prepare", "token_offsets"]

logger = logging.getLogger(__name__)

BACKENDS: tuple[str, ...] = ("vllm", "hf")
_META_KEYS = ("file_name", "frame", "image_size", "model_size", "min_pixels", "max_pixels", "split", "index", "prompt")


@dataclass(frozen=True)
class Generation:
    """One generated answer: its text and, if asked, per-token log-probabilities and start offsets."""

    text: str
    token_logprobs: list[float] | None = None
    token_offsets: list[int] | None = None


def load_image(entry: dict[str, Any]) -> Any:
    """The row's image entry as the model sees it: a PIL image resized to ``model_size`` by qwen-vl-utils.

    ``entry`` holds ``bytes`` (embedded JPEG) or ``image`` (a path) and ``min_pixels`` / ``max_pixels``.
    """
    from PIL import Image
    from qwen_vl_utils import fetch_image

    source = Image.open(BytesIO(entry["bytes"])) if entry.get("bytes") is not None else entry["image"]
    budget = {k: entry[k] for k in ("min_pixels", "max_pixels") if entry.get(k) is not None}
    return fetch_image({"image": source, **budget})


def build_messages(row: dict[str, Any], images: Sequence[Any]) -> list[dict[str, Any]]:
    """Chat messages with ``<image>`` replaced by image items, as ``RLHFDataset._build_messages`` does."""
    messages, used = [], 0
    for message in row["prompt"]:
        content = []
        for segment in re.split("(<image>)", message["content"]):
            if segment == "<image>":
                content.append({"type": "image", "image": images[used]})
                used += 1
            elif segment:
                content.append({"type": "text", "text": segment})
        messages.append({"role": message["role"], "content": content})
    if used != len(images):
        raise ValueError(f"{row['extra_info']['file_name']}: {used} <image> placeholders for {len(images)} images")
    return messages


def prepare(row: dict[str, Any], processor: Any) -> tuple[str, Any]:
    """``(prompt text, resized image)`` of a parquet row: what the model is given for it."""
    image = load_image(row["images"][0])
    text = processor.apply_chat_template(build_messages(row, [image]), add_generation_prompt=True, tokenize=False)
    return text, image


def token_offsets(tokenizer: Any, token_ids: Sequence[int], text: str) -> list[int]:
    """Character offset in ``text`` (the decoded answer) where each token's text starts.

    Tokens are decoded one by one; when their concatenation is not ``text`` (a character split
    across tokens), growing prefixes are decoded instead (slower, exact).
    """
    pieces = [tokenizer.decode([t], skip_special_tokens=True) for t in token_ids]
    if "".join(pieces) != text:
        pieces, previous = [], ""
        for k in range(len(token_ids)):
            prefix = tokenizer.decode(list(token_ids[: k + 1]), skip_special_tokens=True)
            pieces.append(prefix[len(previous) :])
            previous = prefix
    offsets, position = [], 0
    for piece in pieces:
        offsets.append(min(position, len(text)))
        position += len(piece)
    return offsets


class _HFGenerator:
    """transformers ``generate`` on CPU or CUDA, left-padded batches."""

    def __init__(self, model: str, device: str | None) -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        self.processor = AutoProcessor.from_pretrained(model)
        self.processor.tokenizer.padding_side = "left"
        self.model = AutoModelForImageTextToText.from_pretrained(model, dtype=dtype).to(self.device).eval()

    def __call__(
        self, prompts: list[str], images: list[Any], sizes: list[tuple[int, int]], max_new_tokens: int, logprobs: bool
    ) -> list[Generation]:
        import torch

        inputs = self.processor(text=prompts, images=images, return_tensors="pt", padding=True)
        _check_grid(inputs["image_grid_thw"].tolist(), sizes)
        inputs = inputs.to(self.device)
        with torch.inference_mode():
            out = self.model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                return_dict_in_generate=True,
                output_scores=logprobs,
            )
        new = out.sequences[:, inputs["input_ids"].shape[1] :]
        scores = (
            self.model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True) if logprobs else None
        )
        tokenizer = self.processor.tokenizer
        stop = {tokenizer.pad_token_id, *_as_list(self.model.generation_config.eos_token_id)}
        results = []
        for k, ids in enumerate(new.tolist()):
            length = next((i for i, t in enumerate(ids) if t in stop), len(ids))
            text = tokenizer.decode(ids[:length], skip_special_tokens=True)
            if scores is None:
                results.append(Generation(text))
            else:
                values = scores[k, :length].float().tolist()
                results.append(Generation(text, values, token_offsets(tokenizer, ids[:length], text)))
        return results


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, list | tuple) else [value]


def _check_grid(grids: list[list[int]], sizes: list[tuple[int, int]], patch: int = 14) -> None:
    """The processor must leave each image at ``model_size`` (grid ``t, h, w`` in patches)."""
    for (_, gh, gw), (w, h) in zip(grids, sizes, strict=True):
        if (gw * patch, gh * patch) != (w, h):
            raise UsageError(
                f"the processor resizes a {w}x{h} image to {gw * patch}x{gh * patch}: its min/max pixels differ "
                "from the parquet's (convert with the model's pixel budget, or change the processor's config)"
            )


class _VLLMGenerator:
    """vLLM offline generation (GPU); images are passed already resized."""

    def __init__(self, model: str, max_new_tokens: int, logprobs: bool) -> None:
        try:
            from vllm import LLM, SamplingParams
        except ImportError:
            raise UsageError(
                "vllm is not installed: pip install -e '.[train]' on a GPU machine, or use --backend hf"
            ) from None
        from transformers import AutoProcessor

        self.processor = AutoProcessor.from_pretrained(model)
        self.llm = LLM(model=model, limit_mm_per_prompt={"image": 1})
        self.params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, logprobs=0 if logprobs else None)
        self.checked = False

    def __call__(
        self, prompts: list[str], images: list[Any], sizes: list[tuple[int, int]], max_new_tokens: int, logprobs: bool
    ) -> list[Generation]:
        if not self.checked:  # the same processor config applies to every image: check one
            grid = self.processor.image_processor(images=images[:1], return_tensors="pt")["image_grid_thw"]
            _check_grid(grid.tolist(), sizes[:1])
            self.checked = True
        requests = [
            {"prompt": prompt, "multi_modal_data": {"image": image}}
            for prompt, image in zip(prompts, images, strict=True)
        ]
        tokenizer = self.processor.tokenizer
        results = []
        for output in self.llm.generate(requests, self.params, use_tqdm=False):
            completion = output.outputs[0]
            if not logprobs:
                results.append(Generation(completion.text))
                continue
            ids = list(completion.token_ids)
            values = [entry[token].logprob for token, entry in zip(ids, completion.logprobs, strict=True)]
            text = tokenizer.decode(ids, skip_special_tokens=True)
            results.append(Generation(text, values, token_offsets(tokenizer, ids, text)))
        return results


def _done_file_names(out: Path) -> set[str]:
    """File names already in ``out``, after repairing a last line cut off by an interruption."""
    if not out.exists():
        return set()
    repair_torn_tail(out)
    return {line["file_name"] for _, line in iter_jsonl(out, allow_torn_tail=False) if "file_name" in line}


def predict(
    model: str,
    data: str | Path,
    out: str | Path,
    *,
    backend: str = "vllm",
    batch_size: int = 8,
    max_new_tokens: int = 2048,
    logprobs: bool = False,
    limit: int | None = None,
    device: str | None = None,
) -> int:
    """Generate answers for the rows of ``data`` not yet in ``out``; returns the number of new lines.

    Raises:
        UsageError: vLLM missing, or the processor would resize the images away from ``model_size``.
        ValueError: rows that are not the converter's.
    """
    import pyarrow.parquet as pq
    from tqdm import tqdm

    out = Path(out)
    rows = pq.read_table(data).to_pylist()
    if limit is not None:
        rows = rows[:limit]
    done = _done_file_names(out)
    todo = [row for row in rows if row["extra_info"]["file_name"] not in done]
    logger.info("%d rows, %d already predicted, %d to go", len(rows), len(rows) - len(todo), len(todo))
    if not todo:
        return 0
    generator = _HFGenerator(model, device) if backend == "hf" else _VLLMGenerator(model, max_new_tokens, logprobs)
    written = 0
    with open(out, "a", encoding="utf-8") as f, tqdm(total=len(todo), desc="predict", unit="image") as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            prompts, images = (list(x) for x in zip(*(prepare(row, generator.processor) for row in batch), strict=True))
            sizes = [tuple(row["extra_info"]["model_size"]) for row in batch]
            for row, generation in zip(batch, generator(prompts, images, sizes, max_new_tokens, logprobs), strict=True):
                line = {key: row["extra_info"].get(key) for key in _META_KEYS}
                if row["extra_info"].get("prefilled_think") is not None:
                    line["prefilled_think"] = bool(row["extra_info"]["prefilled_think"])
                line |= {"response": generation.text, "model": str(model), "backend": backend}
                if generation.token_logprobs is not None:
                    line |= {"token_logprobs": generation.token_logprobs, "token_offsets": generation.token_offsets}
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
            f.flush()
            written += len(batch)
            bar.update(len(batch))
    return written


def _parser() -> argparse.ArgumentParser:
    parser = doc_parser("python -m verl_hoi.predict", __doc__)
    parser.add_argument("--model", required=True, help="checkpoint folder (HF format) with its processor")
    parser.add_argument("--data", required=True, help="parquet from data_prep/hicodet_to_parquet.py")
    parser.add_argument("--out", required=True, help="predictions JSONL (appended to; existing images skipped)")
    parser.add_argument("--backend", choices=BACKENDS, default="vllm", help="vllm (GPU) or hf (transformers)")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="rows per generate call (default 8)")
    parser.add_argument("--max-new-tokens", type=positive_int, default=2048, help="generation budget (default 2048)")
    parser.add_argument("--logprobs", action="store_true", help="store token log-probabilities (logprob policy)")
    parser.add_argument("--limit", type=positive_int, help="only the first N rows (a quick look)")
    parser.add_argument("--device", help="hf backend: torch device (default cuda if available, else cpu)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 on a user mistake)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    for name in ("model", "data"):
        if not Path(getattr(args, name)).exists():
            return fail(f"--{name}: not found: {getattr(args, name)}")
    if not Path(args.out).parent.is_dir():
        return fail(f"--out: folder does not exist: {Path(args.out).parent}")
    try:
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
    logger.info("%d new line(s) written to %s", written, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
