"""verl dataset adapters for the HICO-DET rows of ``verl_hoi.convert``, and the row check they share with
``verl_hoi.predict``.

GRPO (``RLHFDataset``)::

    data.custom_cls.path=pkg://verl_hoi.verl_plugin.dataset data.custom_cls.name=HOIDataset

SFT (``MultiTurnSFTDataset``, the rows of ``verl_hoi.sft.sft_row``)::

    data.custom_cls.path=pkg://verl_hoi.verl_plugin.dataset data.custom_cls.name=HOISFTDataset

Options live under ``data.hoi`` (not in verl's schemas: add them with ``+data.hoi.on_bad_row=skip`` on the
command line or set them in a recipe yaml):

- ``data.hoi.prompt`` (GRPO only): a registered prompt template (``verl_hoi.prompts``) that replaces every
  row's prompt at load time, rendered for the row's frame and extent; ``null`` (default) keeps the
  parquet's prompts.
- ``data.hoi.on_bad_row``: ``error`` (default) stops at the first row that fails :func:`check_row`, naming
  the file, the row and its image's file name, and what is wrong; ``skip`` drops every such row and reports
  their number once, with the first problem (files whose every row is bad still stop the run). Rows are
  counted from 0 across the files, in the order verl reads them (after ``data.train_max_samples`` picks
  its rows).

The ground-truth boxes of a row are only right if the model sees the image at exactly the row's
``extra_info["model_size"]``. When the files are read, before verl's length filter (which would drop a
row that fails to build without saying why), every row is checked by :func:`check_row`:

- ``extra_info`` has ``file_name`` (text), ``image_size`` and ``model_size`` (``[width, height]``, positive
  integers), ``frame`` (a registered frame), ``min_pixels`` / ``max_pixels`` (positive integers), and,
  when present, ``split`` / ``prompt`` (text), ``index`` (an integer >= 0) and ``prefilled_think`` (true
  or false). Nothing is coerced: ``640.0``, ``"640"`` or ``true`` is not a size;
- ``model_size`` is the smart resize of ``image_size`` with the row's ``min_pixels`` / ``max_pixels``, and
  the processor's own pixel budget (``data.mm_processor_kwargs.size`` first, then the image processor's
  config) leaves an image of that size unchanged;
- the prompt has one ``<image>`` placeholder for the row's one image entry, whose ``min_pixels`` /
  ``max_pixels`` (filled in from the row when absent: verl passes the entry's keys to
  ``qwen_vl_utils.fetch_image``, which resizes the image to ``model_size``) are the row's;
- the image (embedded ``bytes`` or an ``image`` path) decodes, and its size is ``image_size``.

Checking reads every image once (JPEGs are decoded at 1/8 scale, which still reads all their data).
"""

from __future__ import annotations

import logging
import numbers
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from io import BytesIO
from typing import Any

from PIL import Image
from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset
from verl.utils.dataset.rl_dataset import RLHFDataset

from verl_hoi import frames
from verl_hoi.frames import IMAGE_FACTOR, frame_extent, model_size
from verl_hoi.prompts import build_messages, get_prompt

__all__ = [
    "ON_BAD_ROW",
    "HOIDataset",
    "HOISFTDataset",
    "check_processor_keeps",
    "check_row",
    "processor_pixels",
    "row_image_entry",
    "row_location",
]

logger = logging.getLogger(__name__)

ON_BAD_ROW: tuple[str, ...] = ("error", "skip")
"""Values of ``data.hoi.on_bad_row``; the first is the default."""
_REQUIRED_KEYS = ("file_name", "image_size", "model_size", "frame", "min_pixels", "max_pixels")
_CHUNK_ROWS = 256


def _lookup(container: Any, key: str) -> Any:
    if container is None:
        return None
    if isinstance(container, Mapping):
        return container.get(key)
    return getattr(container, key, None)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def processor_pixels(processor: Any, mm_processor_kwargs: Mapping[str, Any] | None = None) -> tuple[int, int] | None:
    """``(min_pixels, max_pixels)`` the processor resizes images with, or ``None`` when it has no image processor.

    ``mm_processor_kwargs["size"]`` = ``{"shortest_edge": min, "longest_edge": max}`` (verl's
    ``data.mm_processor_kwargs``, passed to every processor call) wins over the image processor's config.

    Raises:
        ValueError: ``mm_processor_kwargs`` has ``min_pixels`` / ``max_pixels``, which transformers 5
            image processors silently ignore.
    """
    overrides = mm_processor_kwargs or {}
    ignored = [name for name in ("min_pixels", "max_pixels") if name in overrides]
    if ignored:
        raise ValueError(
            f"data.mm_processor_kwargs.{ignored[0]} is ignored by the image processor; set "
            "data.mm_processor_kwargs.size={shortest_edge: MIN_PIXELS, longest_edge: MAX_PIXELS} instead"
        )
    image_processor = _lookup(processor, "image_processor")
    if image_processor is None:
        return None
    sources = (_lookup(overrides, "size"), image_processor, _lookup(image_processor, "size"))
    found = []
    for names in (("min_pixels", "shortest_edge"), ("max_pixels", "longest_edge")):
        value = next((v for source in sources for name in names if (v := _lookup(source, name)) is not None), None)
        if value is None:
            return None
        found.append(int(value))
    return found[0], found[1]


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _positive_int(extra: Mapping[str, Any], key: str) -> int:
    value = extra[key]
    if not _is_int(value) or value <= 0:
        raise ValueError(f"extra_info.{key} must be a positive integer, got {_short(value)}")
    return value


def _size(extra: Mapping[str, Any], key: str) -> tuple[int, int]:
    value = extra[key]
    if not isinstance(value, list | tuple) or len(value) != 2 or any(not _is_int(v) or v <= 0 for v in value):
        raise ValueError(f"extra_info.{key} must be [width, height] in positive integers, got {_short(value)}")
    return int(value[0]), int(value[1])


def _check_extra_info(extra: Any) -> None:
    if not isinstance(extra, Mapping):
        raise ValueError(f"extra_info must be an object, got {_short(extra)} (not a verl_hoi.convert row?)")
    missing = [key for key in _REQUIRED_KEYS if extra.get(key) is None]
    if missing:
        raise ValueError(f"extra_info lacks {', '.join(missing)} (not a verl_hoi.convert row?)")
    if not isinstance(extra["file_name"], str) or not extra["file_name"].strip():
        raise ValueError(f"extra_info.file_name must be a non-empty text, got {_short(extra['file_name'])}")
    image_size, size = _size(extra, "image_size"), _size(extra, "model_size")
    min_pixels, max_pixels = _positive_int(extra, "min_pixels"), _positive_int(extra, "max_pixels")
    if not isinstance(extra["frame"], str) or extra["frame"] not in frames.FRAMES:
        raise ValueError(f"extra_info.frame {_short(extra['frame'])} is not one of {', '.join(frames.FRAMES)}")
    for key in ("split", "prompt"):
        if extra.get(key) is not None and not isinstance(extra[key], str):
            raise ValueError(f"extra_info.{key} must be a text, got {_short(extra[key])}")
    index = extra.get("index")
    if index is not None and (not _is_int(index) or index < 0):
        raise ValueError(f"extra_info.index must be an integer >= 0, got {_short(index)}")
    prefilled = extra.get("prefilled_think")
    if prefilled is not None and type(prefilled) is not bool:
        raise ValueError(f"extra_info.prefilled_think must be true or false, got {_short(prefilled)}")
    expected = model_size(image_size, min_pixels, max_pixels)
    if size != expected:
        raise ValueError(
            f"model_size {list(size)} is not the smart resize {list(expected)} of image_size {list(image_size)} "
            f"with min_pixels={min_pixels}, max_pixels={max_pixels}"
        )


def check_processor_keeps(size: tuple[int, int], pixels: tuple[int, int]) -> None:
    """The processor's ``(min_pixels, max_pixels)`` leave an image of ``size`` (multiples of 28) as it is.

    This is the Qwen2-VL image processor's own ``smart_resize`` test, so its patch grid is ``size / 14``.

    >>> check_processor_keeps((252, 168), (3136, 50176))
    >>> check_processor_keeps((644, 420), (3136, 50176))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: the processor (min_pixels=3136, max_pixels=50176) would resize the 644x420 image ...

    Raises:
        ValueError: the processor would resize the image, so the boxes would be in another frame.
    """
    min_pixels, max_pixels = pixels
    width, height = size
    if not min_pixels <= width * height <= max_pixels or model_size(size, min_pixels, max_pixels) != tuple(size):
        raise ValueError(
            f"the processor (min_pixels={min_pixels}, max_pixels={max_pixels}) would resize the {width}x{height} "
            "image the row was built for; convert the data with the processor's pixel budget or give the "
            "processor the rows' budget"
        )


def row_image_entry(image: Any, extra: Mapping[str, Any]) -> dict[str, Any]:
    """The image entry handed to ``qwen_vl_utils.fetch_image``: ``image`` with the row's pixel budget.

    ``image`` is an entry of the row's ``images`` (``{"bytes": ..}`` or ``{"image": path}``) or a path.

    >>> row_image_entry("a.jpg", {"min_pixels": 3136, "max_pixels": 50176})
    {'image': 'a.jpg', 'min_pixels': 3136, 'max_pixels': 50176}

    Raises:
        ValueError: not an entry, or an entry whose ``min_pixels`` / ``max_pixels`` differ from the row's.
    """
    if isinstance(image, str | os.PathLike):
        image = {"image": os.fspath(image)}
    if not isinstance(image, Mapping):
        raise ValueError(f"an image entry must be a path or an object, got {type(image).__name__}")
    entry = dict(image)
    for name in ("min_pixels", "max_pixels"):
        value = entry.get(name)
        if value is not None and (not _is_int(value) or value != extra[name]):
            raise ValueError(
                f"image entry has {name}={_short(value)} but the row's boxes were made for {name}={extra[name]}"
            )
        entry[name] = int(extra[name])
    return entry


def _image_source(entry: Mapping[str, Any]) -> bytes | str:
    data, path = entry.get("bytes"), entry.get("image")
    if data is not None and path is not None:
        raise ValueError("image entry has both bytes and an image path")
    if data is not None:
        if not isinstance(data, bytes):
            raise ValueError(f"image entry bytes must be binary, got {type(data).__name__}")
        return data
    if not isinstance(path, str) or not path:
        raise ValueError(f"image entry has no bytes and no image path (image={_short(path)})")
    return path


def _decoded_size(source: bytes | str) -> tuple[int, int]:
    """Size of the image, after decoding all of it (a JPEG at 1/8 scale, which still reads every byte)."""
    what = "the embedded image" if isinstance(source, bytes) else f"image {source}"
    try:
        with Image.open(BytesIO(source) if isinstance(source, bytes) else source) as image:
            size = image.size
            image.draft(None, (max(1, size[0] // 8), max(1, size[1] // 8)))
            image.load()
    except FileNotFoundError:
        raise ValueError(f"{what}: file not found") from None
    except Image.UnidentifiedImageError:
        raise ValueError(f"{what} is not an image file PIL can read") from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as error:
        raise ValueError(f"{what} cannot be decoded ({type(error).__name__}: {error})") from None
    return size


def _check_prompt(messages: Any, images: int) -> None:
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"the prompt must be a list of chat messages, got {_short(messages)}")
    placeholders = 0
    for message in messages:
        if not isinstance(message, Mapping) or not all(isinstance(message.get(k), str) for k in ("role", "content")):
            raise ValueError(f"a prompt message must have a text role and content, got {_short(message)}")
        placeholders += message["content"].count("<image>")
    if placeholders != images:
        raise ValueError(f"the prompt has {placeholders} <image> placeholder(s) for {images} image(s)")


def check_row(
    extra: Any, images: Any, pixels: tuple[int, int] | None, messages: Sequence[Any] | None = None
) -> tuple[int, int]:
    """Check what the model will see of one converted row (see the module docstring); returns ``model_size``.

    Args:
        extra: the row's ``extra_info``.
        images: the row's ``images`` list (one entry).
        pixels: the processor's ``(min_pixels, max_pixels)`` (:func:`processor_pixels`), ``None`` to skip.
        messages: the row's prompt messages, ``None`` when the prompt is rebuilt from a template.

    Raises:
        ValueError: what is wrong (without the row's location, which the caller adds).
    """
    _check_extra_info(extra)
    size = (extra["model_size"][0], extra["model_size"][1])
    if pixels is not None:
        check_processor_keeps(size, pixels)
    if not isinstance(images, list | tuple) or len(images) != 1:
        count = len(images) if isinstance(images, list | tuple) else _short(images)
        raise ValueError(f"a row has one image entry, got {count}")
    if messages is not None:
        _check_prompt(messages, len(images))
    actual = _decoded_size(_image_source(row_image_entry(images[0], extra)))
    if actual != tuple(extra["image_size"]):
        raise ValueError(
            f"the image is {actual[0]}x{actual[1]} but extra_info.image_size is {list(extra['image_size'])}"
        )
    return size


def row_location(source: str, index: int, extra: Any) -> str:
    """``source: row index (file name)``, how a problem with a row is located in messages.

    >>> row_location("test.parquet", 3, {"file_name": "a.jpg"}), row_location("test.parquet", 3, None)
    ('test.parquet: row 3 (a.jpg)', 'test.parquet: row 3')
    """
    name = extra.get("file_name") if isinstance(extra, Mapping) else None
    return f"{source}: row {index}" + (f" ({name})" if isinstance(name, str) else "")


def _on_bad_row(config: Any) -> str:
    value = (config.get("hoi") or {}).get("on_bad_row", ON_BAD_ROW[0])
    if value not in ON_BAD_ROW:
        raise ValueError(f"data.hoi.on_bad_row must be one of {', '.join(ON_BAD_ROW)}, got {_short(value)}")
    return value


def _check_patch_size(patch_size: int) -> None:
    if patch_size * 2 != IMAGE_FACTOR:
        raise ValueError(
            f"data.image_patch_size={patch_size}: HICO-DET rows are sized for Qwen2.5-VL's "
            f"{IMAGE_FACTOR // 2}-pixel patches"
        )


def _good_rows(
    rows: Iterable[dict[str, Any]],
    *,
    source: str,
    image_key: str,
    prompt_key: str | None,
    pixels: tuple[int, int] | None,
    on_bad_row: str,
) -> list[int]:
    """Indices of the rows that pass :func:`check_row`; the first bad one raises unless ``on_bad_row`` is skip."""
    good, bad, first = [], 0, ""
    for index, row in enumerate(rows):
        extra = row.get("extra_info")
        messages = row.get(prompt_key) if prompt_key is not None else None
        try:
            check_row(extra, row.get(image_key), pixels, messages)
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


class HOIDataset(RLHFDataset):
    """verl's ``RLHFDataset`` with HICO-DET checks and an optional prompt template (see the module docstring).

    Constructor arguments are ``RLHFDataset``'s; the extra options come from ``config.hoi``.

    Raises:
        ValueError: unknown ``data.hoi.prompt`` or ``data.hoi.on_bad_row``; with ``on_bad_row=error``, a row
            that fails :func:`check_row`.
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
        _check_patch_size(self.image_patch_size)
        if "extra_info" not in dataframe.column_names:
            raise ValueError(f"{_source(self.data_files)}: no extra_info column (not written by verl_hoi.convert?)")
        columns = [c for c in ("extra_info", self.image_key, self.prompt_key) if c in dataframe.column_names]
        good = _good_rows(
            _iter_rows(dataframe.select_columns(columns).with_format("arrow")),
            source=_source(self.data_files),
            image_key=self.image_key,
            prompt_key=self.prompt_key if self.hoi_prompt is None else None,
            pixels=self.processor_pixels,
            on_bad_row=self.on_bad_row,
        )
        if len(good) < len(dataframe):
            dataframe = dataframe.select(good)
        return super().maybe_filter_out_long_prompts(dataframe)

    def _build_messages(self, example: dict, key: str):
        extra = example["extra_info"]
        if self.hoi_prompt is not None:
            image_size, size = tuple(extra["image_size"]), tuple(extra["model_size"])
            example[key] = build_messages(
                self.hoi_prompt, extra["frame"], frame_extent(extra["frame"], image_size, size)
            )
            extra["prompt"] = self.hoi_prompt
        example[self.image_key] = [row_image_entry(image, extra) for image in example[self.image_key]]
        return super()._build_messages(example, key)


class HOISFTDataset(MultiTurnSFTDataset):
    """verl's ``MultiTurnSFTDataset`` for ``verl_hoi.sft`` rows, every row checked as ``HOIDataset`` checks it.

    Constructor arguments are ``MultiTurnSFTDataset``'s; ``data.hoi.on_bad_row`` as for ``HOIDataset``.

    Raises:
        ValueError: no multimodal processor; unknown ``data.hoi.on_bad_row``; with ``on_bad_row=error``, a row
            that fails :func:`check_row`.
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
        _check_patch_size(self.image_patch_size)
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
        example[self.image_key] = [row_image_entry(image, example["extra_info"]) for image in example[self.image_key]]
        return super()._build_messages(example)
