"""verl dataset adapter for the HICO-DET parquet rows of ``verl_hoi.convert``.

Select it with::

    data.custom_cls.path=pkg://verl_hoi.verl_plugin.dataset data.custom_cls.name=HOIDataset

Options live under ``data.hoi`` (not in verl's schema: add them with ``+data.hoi.prompt=...`` on the
command line or set them in a recipe yaml):

- ``data.hoi.prompt``: a registered prompt template (``verl_hoi.prompts``) that replaces every row's
  prompt at load time, rendered for the row's frame and extent; ``null`` (default) keeps the
  parquet's prompts.

The ground-truth boxes of a row are only right if the model sees the image at exactly the row's
``extra_info["model_size"]``. The adapter therefore

- checks, for every row when the files are read, that ``model_size`` is the smart resize of
  ``image_size`` with the row's ``min_pixels`` / ``max_pixels``, and that the processor's own pixel
  budget (``data.mm_processor_kwargs.size`` first, then the image processor's config) leaves an image of
  that size unchanged;
- puts the row's ``min_pixels`` / ``max_pixels`` into every image entry (verl passes the entry's keys
  to ``qwen_vl_utils.fetch_image``, which resizes the image to ``model_size`` before the processor
  sees it), and rejects an entry that carries other values (all rows are checked when the files are
  read);
- checks that each image's actual size (file header) is the row's ``image_size``.

Every disagreement raises ``ValueError`` naming the row's file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from PIL import Image
from verl.utils.dataset.rl_dataset import RLHFDataset

from verl_hoi.frames import IMAGE_FACTOR, frame_extent, model_size
from verl_hoi.prompts import build_messages, get_prompt

__all__ = ["HOIDataset", "processor_pixels"]

_META_KEYS = ("file_name", "image_size", "model_size", "frame", "min_pixels", "max_pixels")


def _lookup(container: Any, key: str) -> Any:
    if container is None:
        return None
    if isinstance(container, Mapping):
        return container.get(key)
    return getattr(container, key, None)


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


class HOIDataset(RLHFDataset):
    """verl's ``RLHFDataset`` with HICO-DET checks and an optional prompt template (see the module docstring).

    Constructor arguments are ``RLHFDataset``'s; the extra options come from ``config.hoi``.

    Raises:
        ValueError: unknown ``data.hoi.prompt``; a row whose metadata, image entry or image size disagrees
            with the pixel budget that will be used.
    """

    def __init__(self, data_files, tokenizer, config, processor=None, max_samples: int = -1):
        options = config.get("hoi") or {}
        self.hoi_prompt: str | None = options.get("prompt")
        if self.hoi_prompt is not None:
            get_prompt(self.hoi_prompt)  # fail before reading any file
        self.processor_pixels = processor_pixels(processor, config.get("mm_processor_kwargs") or {})
        super().__init__(data_files, tokenizer, config, processor=processor, max_samples=max_samples)

    def maybe_filter_out_long_prompts(self, dataframe=None):
        # Runs right after the files are read (also on resume): check every row's metadata here, since
        # verl's length filter would silently drop rows whose messages fail to build.
        if self.image_patch_size * 2 != IMAGE_FACTOR:
            raise ValueError(
                f"data.image_patch_size={self.image_patch_size}: HICO-DET rows are sized for Qwen2.5-VL's "
                f"{IMAGE_FACTOR // 2}-pixel patches"
            )
        table = dataframe.data
        if "extra_info" not in table.column_names:
            raise ValueError(f"{self.data_files}: no extra_info column (not written by verl_hoi.convert?)")
        extra_infos = table.column("extra_info").to_pylist()
        self._check_metadata(extra_infos)
        if self.image_key in table.column_names:
            self._check_image_budgets(table.column(self.image_key), extra_infos)
        return super().maybe_filter_out_long_prompts(dataframe)

    @staticmethod
    def _check_image_budgets(images: Any, extra_infos: list[dict]) -> None:
        """Every image entry's min/max pixels against its row's, chunk by chunk, never touching image bytes."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if not (pa.types.is_list(images.type) and pa.types.is_struct(images.type.value_type)):
            return  # plain paths: the budget is filled in per row
        names = [n for n in ("min_pixels", "max_pixels") if images.type.value_type.get_field_index(n) >= 0]
        first_row = 0
        for chunk in images.chunks:
            entries, rows = pc.list_flatten(chunk), pc.list_parent_indices(chunk).to_pylist()
            for name in names:
                for row, value in zip(rows, pc.struct_field(entries, name).to_pylist(), strict=True):
                    HOIDataset._check_entry_budget(name, value, extra_infos[first_row + row])
            first_row += len(chunk)

    @staticmethod
    def _check_entry_budget(name: str, value: Any, extra: dict) -> None:
        if value is not None and value != extra[name]:
            raise ValueError(
                f"row {extra['file_name']}: image entry has {name}={value} but the row's boxes were made "
                f"for {name}={extra[name]}"
            )

    def _check_metadata(self, extra_infos: list[dict | None]) -> None:
        checked: set[tuple] = set()
        for extra in extra_infos:
            missing = [k for k in _META_KEYS if not extra or extra.get(k) is None]
            if missing:
                name = (extra or {}).get("file_name", "?")
                raise ValueError(f"row {name}: extra_info lacks {', '.join(missing)} (not a verl_hoi.convert row?)")
            key = (tuple(extra["image_size"]), tuple(extra["model_size"]), extra["min_pixels"], extra["max_pixels"])
            if key not in checked:
                self._check_sizes(extra)
                checked.add(key)

    def _check_sizes(self, extra: dict) -> None:
        name, size = extra["file_name"], tuple(extra["model_size"])
        expected = model_size(tuple(extra["image_size"]), extra["min_pixels"], extra["max_pixels"])
        if size != expected:
            raise ValueError(
                f"row {name}: model_size {list(size)} is not the smart resize {list(expected)} of image_size "
                f"{extra['image_size']} with min_pixels={extra['min_pixels']}, max_pixels={extra['max_pixels']}"
            )
        if self.processor_pixels is not None:
            min_pixels, max_pixels = self.processor_pixels
            width, height = size
            within = min_pixels <= width * height <= max_pixels
            if not within or model_size(size, min_pixels, max_pixels) != size:
                raise ValueError(
                    f"row {name}: the processor (min_pixels={min_pixels}, max_pixels={max_pixels}) would resize the "
                    f"{width}x{height} image the row was built for; convert with the processor's pixel budget or "
                    "set data.mm_processor_kwargs to match the rows"
                )

    def _build_messages(self, example: dict, key: str):
        extra = example.get("extra_info") or {}
        self._check_metadata([extra])
        if self.hoi_prompt is not None:
            image_size, size = tuple(extra["image_size"]), tuple(extra["model_size"])
            example[key] = build_messages(
                self.hoi_prompt, extra["frame"], frame_extent(extra["frame"], image_size, size)
            )
            extra["prompt"] = self.hoi_prompt
        images = example.get(self.image_key) or []
        example[self.image_key] = [self._image_entry(image, extra) for image in images]
        messages = super()._build_messages(example, key)
        for message in messages:
            content = message["content"]
            for item in content if isinstance(content, list) else ():
                if item.get("type") == "image":
                    self._check_image_size(item["image"], extra)
        return messages

    @staticmethod
    def _image_entry(image: Any, extra: dict) -> Any:
        if isinstance(image, str | os.PathLike):
            image = {"image": os.fspath(image)}
        if not isinstance(image, dict):
            raise ValueError(f"row {extra['file_name']}: image must be a path or a dict, got {type(image).__name__}")
        entry = dict(image)
        for name in ("min_pixels", "max_pixels"):
            HOIDataset._check_entry_budget(name, entry.get(name), extra)
            entry[name] = extra[name]
        return entry

    @staticmethod
    def _check_image_size(image: Any, extra: dict) -> None:
        if isinstance(image, Image.Image):
            size = image.size
        else:
            with Image.open(image) as opened:  # header only
                size = opened.size
        if tuple(size) != tuple(extra["image_size"]):
            raise ValueError(
                f"row {extra['file_name']}: the image is {size[0]}x{size[1]} but extra_info image_size is "
                f"{extra['image_size']}"
            )
