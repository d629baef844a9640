"""Generating HOI answers for converted rows, resumably, with vLLM or transformers.

:func:`predict` checks every row of a converted parquet (:func:`verl_hoi.rows.check_row`, with the
checkpoint's processor budget; file names unique) before the model is loaded, prepares each row as verl's
``RLHFDataset`` and agent loop prepare it (:func:`prepare`), decodes as verl's validation does (greedy,
repetition penalty 1.0, only the special tokens of the checkpoint's generation config) and appends one
JSONL line per image, flushed after every batch. Images already in the output are skipped. The command
line is ``python -m verl_hoi.predict``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

from verl_hoi.cli import UsageError, first_line
from verl_hoi.jsonl import iter_jsonl, repair_torn_tail
from verl_hoi.prompts import IMAGE_PLACEHOLDER, prefilled_think
from verl_hoi.rows import RowMeta, check_row, processor_geometry, processor_pixels, row_image_entry, row_location

__all__ = [
    "BACKENDS",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MAX_NEW_TOKENS",
    "Generation",
    "chat_messages",
    "greedy_generation_config",
    "load_image",
    "predict",
    "prepare",
    "token_offsets",
    "vllm_engine_args",
    "vllm_sampling_args",
]

logger = logging.getLogger(__name__)

BACKENDS: tuple[str, ...] = ("vllm", "hf")
"""``vllm`` (GPU, the default) or ``hf`` (transformers, CPU or GPU)."""
DEFAULT_BATCH_SIZE = 8
DEFAULT_MAX_NEW_TOKENS = 2048
_COLUMNS = ("prompt", "images", "extra_info")


@dataclass(frozen=True)
class Generation:
    """One generated answer: its text and, if asked, per-token log-probabilities and start offsets."""

    text: str
    token_logprobs: list[float] | None = None
    token_offsets: list[int] | None = None


def load_image(entry: dict[str, Any], patch_size: int) -> Any:
    """The row's image entry as the model sees it: a PIL image resized to ``model_size`` by qwen-vl-utils.

    ``entry`` holds ``bytes`` (embedded JPEG) or ``image`` (a path) and ``min_pixels`` / ``max_pixels``
    (``verl_hoi.rows.row_image_entry`` fills them in from the row); ``patch_size`` is the row's, which
    verl's ``data.image_patch_size`` is too.
    """
    from PIL import Image
    from qwen_vl_utils import fetch_image

    source = Image.open(BytesIO(entry["bytes"])) if entry.get("bytes") is not None else entry["image"]
    budget = {k: entry[k] for k in ("min_pixels", "max_pixels") if entry.get(k) is not None}
    return fetch_image({"image": source, **budget}, image_patch_size=patch_size)


def chat_messages(row: dict[str, Any], images: Sequence[Any]) -> list[dict[str, Any]]:
    """Chat messages with ``<image>`` replaced by image items, as ``RLHFDataset._build_messages`` does."""
    messages, used = [], 0
    for message in row["prompt"]:
        content = []
        for segment in re.split(f"({re.escape(IMAGE_PLACEHOLDER)})", message["content"]):
            if segment == IMAGE_PLACEHOLDER:
                content.append({"type": "image", "image": images[used]})
                used += 1
            elif segment:
                content.append({"type": "text", "text": segment})
        messages.append({"role": message["role"], "content": content})
    if used != len(images):
        raise ValueError(
            f"{row['extra_info']['file_name']}: {used} {IMAGE_PLACEHOLDER} placeholders for {len(images)} images"
        )
    return messages


def prepare(row: dict[str, Any], processor: Any) -> tuple[str, Any]:
    """``(prompt text, resized image)`` of a parquet row: what the model is given for it."""
    meta = RowMeta.from_dict(row["extra_info"])
    image = load_image(row_image_entry(row["images"][0], meta.min_pixels, meta.max_pixels), meta.patch_size)
    text = processor.apply_chat_template(chat_messages(row, [image]), add_generation_prompt=True, tokenize=False)
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


def greedy_generation_config(checkpoint: Any, max_new_tokens: int, logprobs: bool) -> Any:
    """The transformers ``GenerationConfig`` of verl's validation decoding: greedy, repetition penalty 1.0.

    Of the checkpoint's generation config (``checkpoint``) only the special tokens are kept; every
    other setting (sampling, temperature, top-k, repetition penalty, ...) is transformers' default.
    """
    from transformers import GenerationConfig

    special = {key: getattr(checkpoint, key, None) for key in ("bos_token_id", "eos_token_id", "pad_token_id")}
    return GenerationConfig(
        do_sample=False,
        num_beams=1,
        repetition_penalty=1.0,
        max_new_tokens=max_new_tokens,
        return_dict_in_generate=True,
        output_scores=logprobs,
        **special,
    )


def vllm_engine_args(model: str) -> dict[str, Any]:
    """``vllm.LLM`` arguments: one image and no video per prompt, and vLLM's neutral sampling defaults instead of the
    checkpoint's ``generation_config.json`` (``generation_config="vllm"`` still reads its special tokens)."""
    return {"model": model, "limit_mm_per_prompt": {"image": 1, "video": 0}, "generation_config": "vllm"}


def vllm_sampling_args(max_new_tokens: int, logprobs: bool) -> dict[str, Any]:
    """``vllm.SamplingParams`` of verl's validation decoding: greedy (as ``val_kwargs``), repetition penalty 1.0."""
    return {
        "temperature": 0.0,
        "top_p": 1.0,
        "top_k": -1,
        "repetition_penalty": 1.0,
        "max_tokens": max_new_tokens,
        "logprobs": 0 if logprobs else None,
    }


def _load_processor(model: str) -> tuple[Any, tuple[int, int], tuple[int, int]]:
    """The checkpoint's processor, its ``(min_pixels, max_pixels)`` and its ``(patch_size, merge_size)``."""
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(model)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UsageError(f"--model {model}: cannot load its processor ({first_line(error)})") from None
    pixels, geometry = processor_pixels(processor), processor_geometry(processor)
    if pixels is None or geometry is None:
        raise UsageError(
            f"--model {model}: no image processor with a pixel budget and patch and merge sizes "
            "(preprocessor_config.json)"
        )
    return processor, pixels, geometry


def _check_prepared(images: Sequence[Any], sizes: Sequence[tuple[int, int]]) -> None:
    """Each prepared image is at its row's ``model_size``, which the processor keeps (checked with the rows)."""
    for image, size in zip(images, sizes, strict=True):
        if tuple(image.size) != tuple(size):
            raise ValueError(f"an image was resized to {image.size[0]}x{image.size[1]}, not to model_size {list(size)}")


class _HFGenerator:
    """transformers ``generate`` on CPU or CUDA, left-padded batches."""

    def __init__(self, model: str, processor: Any, device: str | None, max_new_tokens: int, logprobs: bool) -> None:
        import torch
        from safetensors import SafetensorError
        from transformers import AutoModelForImageTextToText

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            kind = torch.device(self.device).type
        except RuntimeError as error:
            raise UsageError(f"--device {self.device}: {first_line(error)}") from None
        if kind == "cuda" and not torch.cuda.is_available():
            raise UsageError(f"--device {self.device}: CUDA is not available here")
        dtype = torch.bfloat16 if kind == "cuda" else torch.float32
        self.processor = processor
        self.processor.tokenizer.padding_side = "left"
        try:
            self.model = AutoModelForImageTextToText.from_pretrained(model, dtype=dtype).to(self.device).eval()
        except (OSError, ValueError, KeyError, SafetensorError) as error:
            raise UsageError(f"--model {model}: cannot load the model ({first_line(error)})") from None
        self.generation_config = greedy_generation_config(self.model.generation_config, max_new_tokens, logprobs)
        # generate() fills what a config leaves unset from the model's own: make that this one too.
        self.model.generation_config = self.generation_config
        self.patch_size = processor.image_processor.patch_size

    def __call__(self, prompts: list[str], images: list[Any], sizes: list[tuple[int, int]]) -> list[Generation]:
        import torch

        inputs = self.processor(text=prompts, images=images, return_tensors="pt", padding=True)
        _check_grid(inputs["image_grid_thw"].tolist(), sizes, self.patch_size)
        inputs = inputs.to(self.device)
        with torch.inference_mode():
            out = self.model.generate(**inputs, generation_config=self.generation_config)
        new = out.sequences[:, inputs["input_ids"].shape[1] :]
        logprobs = self.generation_config.output_scores
        scores = (
            self.model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True) if logprobs else None
        )
        tokenizer = self.processor.tokenizer
        stop = {tokenizer.pad_token_id, *_as_list(self.generation_config.eos_token_id)}
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


def _check_grid(grids: list[list[int]], sizes: list[tuple[int, int]], patch: int) -> None:
    """The processor left each image at ``model_size`` (grid ``t, h, w`` in patches)."""
    for (_, gh, gw), (w, h) in zip(grids, sizes, strict=True):
        if (gw * patch, gh * patch) != (w, h):
            raise ValueError(
                f"the processor resized a {w}x{h} image to {gw * patch}x{gh * patch}: its min/max pixels differ "
                "from the parquet's (convert with the model's pixel budget, or change the processor's config)"
            )


class _VLLMGenerator:
    """vLLM offline generation (GPU); images are passed already resized."""

    def __init__(self, model: str, processor: Any, max_new_tokens: int, logprobs: bool) -> None:
        try:
            from vllm import LLM, SamplingParams
        except ImportError:
            raise UsageError(
                "vllm is not installed: pip install -e '.[train]' on a GPU machine, or use --backend hf"
            ) from None
        self.processor = processor
        self.llm = LLM(**vllm_engine_args(model))
        self.params = SamplingParams(**vllm_sampling_args(max_new_tokens, logprobs))
        self.logprobs = logprobs

    def __call__(self, prompts: list[str], images: list[Any], sizes: list[tuple[int, int]]) -> list[Generation]:
        requests = [
            {"prompt": prompt, "multi_modal_data": {"image": image}}
            for prompt, image in zip(prompts, images, strict=True)
        ]
        tokenizer = self.processor.tokenizer
        results = []
        for output in self.llm.generate(requests, self.params, use_tqdm=False):
            completion = output.outputs[0]
            if not self.logprobs:
                results.append(Generation(completion.text))
                continue
            ids = list(completion.token_ids)
            values = [entry[token].logprob for token, entry in zip(ids, completion.logprobs, strict=True)]
            text = tokenizer.decode(ids, skip_special_tokens=True)
            results.append(Generation(text, values, token_offsets(tokenizer, ids, text)))
        return results


def _read_rows(data: str | Path, limit: int | None) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(data)
    except (pa.ArrowException, OSError) as error:
        raise ValueError(f"{data}: not a parquet file that can be read ({first_line(error)})") from None
    missing = [name for name in _COLUMNS if name not in table.column_names]
    if missing:
        raise ValueError(f"{data}: no {', '.join(missing)} column (not written by data_prep/hicodet_to_parquet.py?)")
    if table.num_rows == 0:
        raise ValueError(f"{data}: no rows")
    if limit is not None:
        table = table.slice(0, limit)
    return table.select(list(_COLUMNS)).to_pylist()


def _check_rows(
    rows: list[dict[str, Any]], data: str | Path, pixels: tuple[int, int], geometry: tuple[int, int]
) -> list[RowMeta]:
    """The metadata of every row, each passing ``check_row`` and naming an image no other row names."""
    metas: list[RowMeta] = []
    seen: dict[str, int] = {}
    for index, row in enumerate(rows):
        extra = row["extra_info"]
        try:
            meta = check_row(extra, row["images"], pixels, row["prompt"], geometry)
        except ValueError as error:
            raise ValueError(f"{row_location(str(data), index, extra)}: {error}") from None
        if meta.file_name in seen:
            raise ValueError(
                f"{row_location(str(data), index, extra)}: file_name is also that of row {seen[meta.file_name]}"
            )
        seen[meta.file_name] = index
        metas.append(meta)
    return metas


def _done_file_names(out: Path) -> set[str]:
    """File names already in ``out`` (a last line cut off by an interruption is skipped, not removed here)."""
    if not out.exists():
        return set()
    names = set()
    for number, line in iter_jsonl(out):
        name = line.get("file_name")
        if not isinstance(name, str):
            raise ValueError(f'{out}: line {number}: no text "file_name" (not a verl_hoi.predict output?)')
        names.add(name)
    return names


def predict(
    model: str,
    data: str | Path,
    out: str | Path,
    *,
    backend: str = BACKENDS[0],
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    logprobs: bool = False,
    limit: int | None = None,
    device: str | None = None,
) -> int:
    """Generate answers for the rows of ``data`` not yet in ``out``; returns the number of new lines.

    ``out`` is created or appended to when the first batch is done; its lines are never rewritten.

    Raises:
        UsageError: vLLM missing, a checkpoint that cannot be loaded, a bad ``device``.
        ValueError: ``data`` or ``out`` is not what it should be (the message names the file and the row
            or line); the processor would resize an image away from its ``model_size``.
    """
    from tqdm import tqdm

    out = Path(out)
    rows = _read_rows(data, limit)
    done = _done_file_names(out)
    processor, pixels, geometry = _load_processor(model)
    metas = _check_rows(rows, data, pixels, geometry)
    todo = [(row, meta) for row, meta in zip(rows, metas, strict=True) if meta.file_name not in done]
    logger.info("%d rows, %d already predicted, %d to go", len(rows), len(rows) - len(todo), len(todo))
    if not todo:
        return 0
    generator = (
        _HFGenerator(model, processor, device, max_new_tokens, logprobs)
        if backend == "hf"
        else _VLLMGenerator(model, processor, max_new_tokens, logprobs)
    )
    written, f = 0, None
    try:
        with tqdm(total=len(todo), desc="predict", unit="image") as bar:
            for start in range(0, len(todo), batch_size):
                batch = todo[start : start + batch_size]
                prompts, images = (list(x) for x in zip(*(prepare(row, processor) for row, _ in batch), strict=True))
                sizes = [meta.model_size for _, meta in batch]
                _check_prepared(images, sizes)
                generations = generator(prompts, images, sizes)
                text = "".join(
                    json.dumps(_line(meta, prompt, generation, model, backend), ensure_ascii=False) + "\n"
                    for (_, meta), prompt, generation in zip(batch, prompts, generations, strict=True)
                )
                try:
                    if f is None:
                        repair_torn_tail(out)
                        f = open(out, "a", encoding="utf-8")  # noqa: SIM115 (kept open across batches)
                    f.write(text)
                    f.flush()
                except OSError as error:
                    raise ValueError(f"{out}: cannot write ({first_line(error)})") from None
                written += len(batch)
                bar.update(len(batch))
    finally:
        if f is not None:
            f.close()
    return written


def _line(meta: RowMeta, prompt: str, generation: Generation, model: str, backend: str) -> dict[str, Any]:
    """The output line of one row: its metadata, whether the prompt opened the think block, the answer."""
    line = meta.to_dict() | {"prefilled_think": prefilled_think(meta.prefilled_think, prompt)}
    line |= {"response": generation.text, "model": str(model), "backend": backend}
    if generation.token_logprobs is not None:
        line |= {"token_logprobs": generation.token_logprobs, "token_offsets": generation.token_offsets}
    return line
