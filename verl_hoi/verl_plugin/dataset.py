"""verl dataset adapters for the HICO-DET rows of ``verl_hoi.convert``.

GRPO (``RLHFDataset``)::

    data.custom_cls.path=pkg://verl_hoi.verl_plugin.dataset data.custom_cls.name=HOIDataset

SFT (``MultiTurnSFTDataset``, the rows of ``verl_hoi.sft.sft_row``)::

    data.custom_cls.path=pkg://verl_hoi.verl_plugin.dataset data.custom_cls.name=HOISFTDataset

Options live under ``data.hoi`` (not in verl's schemas: add them with ``+data.hoi.on_bad_row=skip`` on the
command line or set them in a recipe yaml):

- ``data.hoi.prompt`` (GRPO only): a registered prompt template (``verl_hoi.prompts``) that replaces every
  row's prompt at load time, rendered for the row's frame and extent (and, in a zero-shot setting, the
  row's prompt vocabulary); ``null`` (default) keeps the parquet's prompts.
- ``data.hoi.on_bad_row``: ``error`` (default) stops at the first row that fails
  :func:`verl_hoi.rows.check_row`, naming the file, the row and its image's file name, and what is wrong;
  ``skip`` drops every such row and reports their number once, with the first problem (files whose every
  row is bad still stop the run). Rows are counted from 0 across the files, in the order verl reads them
  (after ``data.train_max_samples`` picks its rows).

Every row is checked by :func:`verl_hoi.rows.check_row` when the files are read, before verl's length
filter (which would drop a row that fails to build without saying why), with the processor's patch and
merge sizes and its own pixel budget (``data.mm_processor_kwargs.size`` first, then the image processor's
config). Checking reads every image once. verl resizes images to multiples of ``data.image_patch_size``
× 2 (14 in verl's data config), so that setting must be the processor's and the rows' patch size: 14 for
Qwen2.5-VL, 16 for Qwen3-VL and Qwen3.5 (``extra_info.patch_size``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset
from verl.utils.dataset.rl_dataset import RLHFDataset

from verl_hoi.frames import frame_extent
from verl_hoi.prompts import build_messages, get_prompt
from verl_hoi.rows import (
    RowMeta,
    check_row,
    processor_geometry,
    processor_pixels,
    row_image_entry,
    row_location,
)

__all__ = ["ON_BAD_ROW", "HOIDataset", "HOISFTDataset"]

logger = logging.getLogger(__name__)

ON_BAD_ROW: tuple[str, ...] = ("error", "skip")
"""Values of ``data.hoi.on_bad_row``; the first is the default."""
_CHUNK_ROWS = 256


def _on_bad_row(config: Any) -> str:
    value = (config.get("hoi") or {}).get("on_bad_row", ON_BAD_ROW[0])
    if value not in ON_BAD_ROW:
        raise ValueError(f"data.hoi.on_bad_row must be one of {', '.join(ON_BAD_ROW)}, got {value!r:.60}")
    return value


def _geometry(processor: Any, image_patch_size: int) -> tuple[int, int] | None:
    """The processor's ``(patch_size, merge_size)``, which verl resizes with when ``data.image_patch_size`` is its
    patch size and qwen-vl-utils' merge size is its merge size."""
    from qwen_vl_utils.vision_process import SPATIAL_MERGE_SIZE

    geometry = processor_geometry(processor)
    if geometry is None:
        return None
    patch, merge = geometry
    if image_patch_size != patch:
        raise ValueError(
            f"data.image_patch_size={image_patch_size} but the model's processor cuts {patch}-pixel patches: "
            f"set data.image_patch_size={patch} (the hoi_family recipe setting does)"
        )
    if merge != SPATIAL_MERGE_SIZE:
        raise ValueError(
            f"the model's processor merges {merge}x{merge} patches; verl resizes images for {SPATIAL_MERGE_SIZE}x"
            f"{SPATIAL_MERGE_SIZE} (qwen-vl-utils)"
        )
    return geometry


def _good_rows(
    rows: Iterable[dict[str, Any]],
    *,
    source: str,
    image_key: str,
    prompt_key: str | None,
    pixels: tuple[int, int] | None,
    geometry: tuple[int, int] | None,
    on_bad_row: str,
) -> list[int]:
    """Indices of the rows that pass ``check_row``; the first bad one raises unless ``on_bad_row`` is skip."""
    good, bad, first = [], 0, ""
    for index, row in enumerate(rows):
        extra = row.get("extra_info")
        messages = row.get(prompt_key) if prompt_key is not None else None
        try:
            check_row(extra, row.get(image_key), pixels, messages, geometry)
        except ValueError as error:
            problem = f"{row_location(source, index, extra)}: {error}"
            if on_bad_row == "error":
                raise ValueError(f"{problem} (data.hoi.on_bad_row=skip drops such rows)") from None
            bad, first = bad + 1, first or problem
        else:
            good.append(index)
    if bad and not good:
        raise ValueError(f"every row is bad ({bad}); the first: {first}")
    if bad:
        logger.warning(
            "data.hoi.on_bad_row=skip: dropped %d of %d rows of %s; the first: %s", bad, bad + len(good), source, first
        )
    return good


def _source(files: Iterable[Any]) -> str:
    return ", ".join(str(f) for f in files)


def _iter_rows(table: Any) -> Iterator[dict[str, Any]]:
    """Rows of a pyarrow table (or an arrow-formatted ``datasets.Dataset``) as dicts, a few at a time."""
    for start in range(0, len(table), _CHUNK_ROWS):
        yield from table[start : start + _CHUNK_ROWS].to_pylist()


def _with_budget(images: list[Any], extra: Any) -> list[dict[str, Any]]:
    """The row's image entries with its pixel budget, which verl hands to ``qwen_vl_utils.fetch_image``."""
    return [row_image_entry(image, extra["min_pixels"], extra["max_pixels"]) for image in images]


class HOIDataset(RLHFDataset):
    """verl's ``RLHFDataset`` with HICO-DET checks and an optional prompt template (see the module docstring).

    Constructor arguments are ``RLHFDataset``'s; the extra options come from ``config.hoi``.

    Raises:
        ValueError: unknown ``data.hoi.prompt`` or ``data.hoi.on_bad_row``; with ``on_bad_row=error``, a row
            that fails ``check_row``.
    """

    def __init__(self, data_files, tokenizer, config, processor=None, max_samples: int = -1):
        options = config.get("hoi") or {}
        self.hoi_prompt: str | None = options.get("prompt")
        if self.hoi_prompt is not None:
            get_prompt(self.hoi_prompt)  # fail before reading any file
        self.on_bad_row = _on_bad_row(config)
        self.processor_pixels = processor_pixels(processor, config.get("mm_processor_kwargs") or {})
        super().__init__(data_files, tokenizer, config, processor=processor, max_samples=max_samples)

    def maybe_filter_out_long_prompts(self, dataframe=None):
        # Runs right after the files are read (also on resume), before verl's length filter, which would drop
        # a row whose messages fail to build with only a printed traceback.
        geometry = _geometry(self.processor, self.image_patch_size)
        if "extra_info" not in dataframe.column_names:
            raise ValueError(f"{_source(self.data_files)}: no extra_info column (not written by verl_hoi.convert?)")
        columns = [c for c in ("extra_info", self.image_key, self.prompt_key) if c in dataframe.column_names]
        good = _good_rows(
            _iter_rows(dataframe.select_columns(columns).with_format("arrow")),
            source=_source(self.data_files),
            image_key=self.image_key,
            prompt_key=self.prompt_key if self.hoi_prompt is None else None,
            pixels=self.processor_pixels,
            geometry=geometry,
            on_bad_row=self.on_bad_row,
        )
        if len(good) < len(dataframe):
            dataframe = dataframe.select(good)
        return super().maybe_filter_out_long_prompts(dataframe)

    def _build_messages(self, example: dict, key: str):
        extra = example["extra_info"]
        if self.hoi_prompt is not None:
            meta = RowMeta.from_dict(extra)
            extent = frame_extent(meta.frame, meta.image_size, meta.model_size)
            example[key] = build_messages(self.hoi_prompt, meta.frame, extent, meta.hidden_classes)
            extra["prompt"] = self.hoi_prompt
        example[self.image_key] = _with_budget(example[self.image_key], extra)
        return super()._build_messages(example, key)


class HOISFTDataset(MultiTurnSFTDataset):
    """verl's ``MultiTurnSFTDataset`` for ``verl_hoi.sft`` rows, every row checked as ``HOIDataset`` checks it.

    Constructor arguments are ``MultiTurnSFTDataset``'s; ``data.hoi.on_bad_row`` as for ``HOIDataset``.

    Raises:
        ValueError: no multimodal processor; unknown ``data.hoi.on_bad_row``; with ``on_bad_row=error``, a row
            that fails ``check_row``.
    """

    def __init__(self, parquet_files, tokenizer, config, processor=None, max_samples: int = -1):
        self.on_bad_row = _on_bad_row(config)
        self.processor_pixels = processor_pixels(processor)
        if self.processor_pixels is None:
            raise ValueError("HOISFTDataset needs the model's multimodal processor with an image processor")
        super().__init__(parquet_files, tokenizer, config, processor=processor, max_samples=max_samples)

    def _read_files_and_process(self):
        import pyarrow as pa

        super()._read_files_and_process()
        geometry = _geometry(self.processor, self.image_patch_size)
        source = _source(self.parquet_files)
        if "extra_info" not in self.dataframe.columns:
            raise ValueError(f"{source}: no extra_info column (not written by verl_hoi.sft?)")
        columns = [c for c in ("extra_info", self.image_key, self.messages_key) if c in self.dataframe.columns]
        good = _good_rows(
            _iter_rows(pa.Table.from_pandas(self.dataframe[columns], preserve_index=False)),
            source=source,
            image_key=self.image_key,
            prompt_key=self.messages_key,
            pixels=self.processor_pixels,
            geometry=geometry,
            on_bad_row=self.on_bad_row,
        )
        if len(good) < len(self.messages):
            self.dataframe = self.dataframe.iloc[good]
            self.messages = [self.messages[i] for i in good]
            if self.tools is not None:
                self.tools = [self.tools[i] for i in good]
            if self.enable_thinking is not None:
                self.enable_thinking = [self.enable_thinking[i] for i in good]

    def _build_messages(self, example: dict):
        example[self.image_key] = _with_budget(example[self.image_key], example["extra_info"])
        return super()._build_messages(example)
