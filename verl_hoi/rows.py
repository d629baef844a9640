"""A converted row's metadata (:class:`RowMeta`, its ``extra_info``) and the one check every reader of a row runs.

A row of :mod:`verl_hoi.convert` holds chat ``prompt`` messages with one ``<image>``, one ``images`` entry
(embedded ``bytes`` or an ``image`` path, with the pixel budget) and ``extra_info``. The ground-truth
boxes are only right if the model sees the image at exactly ``extra_info["model_size"]``, so the GRPO and
SFT dataset adapters (:mod:`verl_hoi.verl_plugin.dataset`), prediction (:mod:`verl_hoi.generation`) and
the distillation (:mod:`verl_hoi.teacher`) all check a row with :func:`check_row` (the distillation
without decoding, with :func:`check_row_entry`, and decodes when it sends the image):

- ``extra_info`` is a :class:`RowMeta` (:meth:`RowMeta.from_dict`): ``file_name`` (text), ``image_size``
  and ``model_size`` (``[width, height]``, positive integers), ``frame`` (a registered frame),
  ``min_pixels`` / ``max_pixels`` (positive integers, a budget the converter accepts), ``family`` (text),
  ``patch_size`` / ``merge_size`` (positive integers: the image geometry the row was sized for), and, when
  present, ``split`` / ``prompt`` (text), ``index`` (an integer >= 0), ``zero_shot`` (a setting of
  :mod:`verl_hoi.zero_shot`), ``prompt_vocabulary`` (one of :data:`verl_hoi.prompts.VOCABULARIES`; ``seen``
  only with a setting) and ``prefilled_think`` (true or false). Nothing is coerced: ``640.0``, ``"640"``
  or ``true`` is not a size. ``model_size`` is the smart resize of ``image_size`` with the row's budget to
  multiples of ``patch_size * merge_size``. Rows written before families existed have no ``family``,
  ``patch_size`` or ``merge_size``: they are Qwen2.5-VL rows (:data:`verl_hoi.families.DEFAULT_FAMILY`);
- the processor cuts images as the row assumes (:func:`processor_geometry`: the same patch and merge
  sizes) and its own pixel budget (:func:`processor_pixels`) leaves an image of ``model_size`` unchanged;
- the prompt has one ``<image>`` placeholder for the row's one image entry, whose ``min_pixels`` /
  ``max_pixels`` (filled in from the row when absent: verl passes the entry's keys to
  ``qwen_vl_utils.fetch_image``, which resizes the image to ``model_size``) are the row's;
- the image decodes (:mod:`verl_hoi.images`; here JPEGs at 1/8 scale, which still reads all their data) and
  its size is ``image_size``.
"""

from __future__ import annotations

import numbers
import os
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from verl_hoi.families import DEFAULT_FAMILY, get_family
from verl_hoi.frames import Size, available_frames, check_pixel_budget, model_size
from verl_hoi.images import MAX_IMAGE_PIXELS, decoded_size, read_image_file
from verl_hoi.prompts import IMAGE_PLACEHOLDER, VOCABULARIES, hidden_classes
from verl_hoi.zero_shot import ZERO_SHOT_SETTINGS

__all__ = [
    "RowMeta",
    "check_image_size",
    "check_processor_geometry",
    "check_processor_keeps",
    "check_row",
    "check_row_budget",
    "check_row_entry",
    "image_name",
    "processor_geometry",
    "processor_pixels",
    "row_image_bytes",
    "row_image_entry",
    "row_geometry",
    "row_location",
    "row_name",
]


def check_row_budget(min_pixels: int, max_pixels: int, block: int) -> None:
    """Raise ``ValueError`` unless ``0 < min_pixels <= max_pixels`` and ``max_pixels`` is in
    ``block ** 2`` (one image token, the least the processor resizes an image to) ..
    :data:`verl_hoi.images.MAX_IMAGE_PIXELS`: a budget rows are made and read with."""
    check_pixel_budget(min_pixels, max_pixels)
    if not block * block <= max_pixels <= MAX_IMAGE_PIXELS:
        raise ValueError(f"max_pixels must be in {block * block}..{MAX_IMAGE_PIXELS}, got {max_pixels}")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _positive_int(extra: Mapping[str, Any], key: str) -> int:
    value = extra[key]
    if not _is_int(value) or value <= 0:
        raise ValueError(f"extra_info.{key} must be a positive integer, got {_short(value)}")
    return int(value)


def _size(extra: Mapping[str, Any], key: str) -> Size:
    value = extra[key]
    if not isinstance(value, list | tuple) or len(value) != 2 or any(not _is_int(v) or v <= 0 for v in value):
        raise ValueError(f"extra_info.{key} must be [width, height] in positive integers, got {_short(value)}")
    return int(value[0]), int(value[1])


@dataclass(frozen=True)
class RowMeta:
    """A row's ``extra_info``: the image, the size the model sees it at and the frame of its boxes.

    Attributes:
        file_name: the image's file name in the annotations.
        image_size: ``(w, h)`` of the original image.
        model_size: ``(w, h)`` the model sees, ``verl_hoi.frames.model_size(image_size, min_pixels, max_pixels)``.
        frame: the coordinate frame (``verl_hoi.frames``) of the ground truth and of the prompt.
        min_pixels, max_pixels: the processor's pixel budget the row was made for.
        family: the model family (:mod:`verl_hoi.families`) the row was made for.
        patch_size, merge_size: the image geometry the row was sized for (``model_size`` is a multiple of
            their product); the family's unless a processor's configuration said otherwise.
        split: ``"train"`` or ``"test"``.
        index: the image's 0-based position in the annotation file.
        prompt: the name of the prompt template (``verl_hoi.prompts``).
        zero_shot: the zero-shot setting (``verl_hoi.zero_shot``) the row belongs to, if any.
        prompt_vocabulary: ``full`` or ``seen``: whether the prompt's class list names the setting's unseen
            classes (``verl_hoi.prompts.VOCABULARIES``).
        prefilled_think: the chat template opens ``<think>`` (``verl_hoi.prompts.prefilled_think``); the
            converter does not write it.
    """

    file_name: str
    image_size: Size
    model_size: Size
    frame: str
    min_pixels: int
    max_pixels: int
    family: str = DEFAULT_FAMILY
    patch_size: int = get_family(DEFAULT_FAMILY).patch_size
    merge_size: int = get_family(DEFAULT_FAMILY).merge_size
    split: str | None = None
    index: int | None = None
    prompt: str | None = None
    zero_shot: str | None = None
    prompt_vocabulary: str | None = None
    prefilled_think: bool | None = field(default=None, metadata={"written": False})

    @property
    def hidden_classes(self) -> frozenset[int]:
        """The HOI classes the row's prompt leaves out of its class list (``verl_hoi.prompts.hidden_classes``)."""
        return hidden_classes(self.prompt_vocabulary, self.zero_shot)

    @property
    def block(self) -> int:
        """Side in pixels of one image token: ``model_size`` is a multiple of it."""
        return self.patch_size * self.merge_size

    def to_dict(self) -> dict[str, Any]:
        """The ``extra_info`` the converter writes (sizes as ``[w, h]`` lists; ``prefilled_think`` only when set)."""
        extra = {f.name: getattr(self, f.name) for f in _written_fields()}
        extra["image_size"], extra["model_size"] = list(self.image_size), list(self.model_size)
        if self.prefilled_think is not None:
            extra["prefilled_think"] = self.prefilled_think
        return extra

    @classmethod
    def arrow_type(cls) -> Any:
        """The pyarrow struct of :meth:`to_dict` in the converter's parquet."""
        import pyarrow as pa

        arrow = {str: pa.string(), int: pa.int64(), Size: pa.list_(pa.int64())}
        hints = typing.get_type_hints(cls)
        return pa.struct([(f.name, arrow[_not_none(hints[f.name])]) for f in _written_fields()])

    @classmethod
    def from_dict(cls, extra: Any) -> RowMeta:
        """The checked metadata of ``extra`` (a row's ``extra_info``; other keys are ignored).

        Raises:
            ValueError: what is wrong (the caller adds the row's location).
        """
        if not isinstance(extra, Mapping):
            raise ValueError(f"extra_info must be an object, got {_short(extra)} (not a verl_hoi.convert row?)")
        missing = [f.name for f in fields(cls) if f.default is MISSING and extra.get(f.name) is None]
        if missing:
            raise ValueError(f"extra_info lacks {', '.join(missing)} (not a verl_hoi.convert row?)")
        if not isinstance(extra["file_name"], str) or not extra["file_name"].strip():
            raise ValueError(f"extra_info.file_name must be a non-empty text, got {_short(extra['file_name'])}")
        image_size, size = _size(extra, "image_size"), _size(extra, "model_size")
        min_pixels, max_pixels = _positive_int(extra, "min_pixels"), _positive_int(extra, "max_pixels")
        frames = available_frames()
        if not isinstance(extra["frame"], str) or extra["frame"] not in frames:
            raise ValueError(f"extra_info.frame {_short(extra['frame'])} is not one of {', '.join(frames)}")
        for key in ("split", "prompt"):
            if extra.get(key) is not None and not isinstance(extra[key], str):
                raise ValueError(f"extra_info.{key} must be a text, got {_short(extra[key])}")
        zero_shot, vocabulary = extra.get("zero_shot"), extra.get("prompt_vocabulary")
        if zero_shot is not None and zero_shot not in ZERO_SHOT_SETTINGS:
            raise ValueError(f"extra_info.zero_shot {_short(zero_shot)} is not one of {', '.join(ZERO_SHOT_SETTINGS)}")
        if vocabulary is not None and vocabulary not in VOCABULARIES:
            raise ValueError(
                f"extra_info.prompt_vocabulary {_short(vocabulary)} is not one of {', '.join(VOCABULARIES)}"
            )
        if vocabulary == "seen" and zero_shot is None:
            raise ValueError("extra_info.prompt_vocabulary 'seen' needs a zero_shot setting")
        index = extra.get("index")
        if index is not None and (not _is_int(index) or index < 0):
            raise ValueError(f"extra_info.index must be an integer >= 0, got {_short(index)}")
        prefilled = extra.get("prefilled_think")
        if prefilled is not None and type(prefilled) is not bool:
            raise ValueError(f"extra_info.prefilled_think must be true or false, got {_short(prefilled)}")
        family, patch_size, merge_size = row_geometry(extra)
        block = patch_size * merge_size
        check_row_budget(min_pixels, max_pixels, block)
        expected = model_size(image_size, min_pixels, max_pixels, block)
        if size != expected:
            raise ValueError(
                f"model_size {list(size)} is not the smart resize {list(expected)} of image_size {list(image_size)} "
                f"with min_pixels={min_pixels}, max_pixels={max_pixels} in {block}-pixel blocks"
            )
        return cls(
            file_name=extra["file_name"],
            image_size=image_size,
            model_size=size,
            frame=extra["frame"],
            min_pixels=min_pixels,
            max_pixels=max_pixels,
            family=family,
            patch_size=patch_size,
            merge_size=merge_size,
            split=extra.get("split"),
            index=None if index is None else int(index),
            prompt=extra.get("prompt"),
            zero_shot=zero_shot,
            prompt_vocabulary=vocabulary,
            prefilled_think=prefilled,
        )


def row_geometry(extra: Mapping[str, Any], name: str = "extra_info") -> tuple[str, int, int]:
    """``(family, patch_size, merge_size)`` of a row's ``extra`` (or a prediction line, called ``name``).

    What is absent is the family's, and a row without a family is a Qwen2.5-VL row (rows written before
    families existed).

    >>> row_geometry({}), row_geometry({"family": "qwen3_vl"}), row_geometry({"patch_size": 16})
    (('qwen2_5_vl', 14, 2), ('qwen3_vl', 16, 2), ('qwen2_5_vl', 16, 2))

    Raises:
        ValueError: a family that is not text, sizes that are not positive integers, or a size absent for
            an unknown family.
    """
    family = extra.get("family")
    if family is None:
        family = DEFAULT_FAMILY
    elif not isinstance(family, str) or not family.strip():
        raise ValueError(f"{name}.family must be a non-empty text, got {_short(family)}")
    sizes = []
    for key in ("patch_size", "merge_size"):
        value = extra.get(key)
        if value is not None:
            if not _is_int(value) or value <= 0:
                raise ValueError(f"{name}.{key} must be a positive integer, got {_short(value)}")
            sizes.append(int(value))
            continue
        try:
            sizes.append(getattr(get_family(family), key))
        except ValueError as error:
            raise ValueError(f"{name} lacks {key} and {error}") from None
    return family, sizes[0], sizes[1]


def _written_fields() -> list[Any]:
    return [f for f in fields(RowMeta) if f.metadata.get("written", True)]


def _not_none(hint: Any) -> Any:
    """``X`` of ``X | None``."""
    if isinstance(hint, types.UnionType):
        (hint,) = (arg for arg in typing.get_args(hint) if arg is not type(None))
    return hint


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


def processor_geometry(processor: Any) -> tuple[int, int] | None:
    """``(patch_size, merge_size)`` of the processor's image processor, or ``None`` when it has none."""
    image_processor = _lookup(processor, "image_processor")
    sizes = [_lookup(image_processor, name) for name in ("patch_size", "merge_size")]
    if image_processor is None or any(not _is_int(size) for size in sizes):
        return None
    return int(sizes[0]), int(sizes[1])


def check_processor_geometry(geometry: tuple[int, int], meta: RowMeta) -> None:
    """The processor's ``(patch_size, merge_size)`` are those the row was sized for.

    >>> check_processor_geometry((14, 2), RowMeta("a.jpg", (640, 427), (644, 420), "resized", 3136, 1003520))
    >>> check_processor_geometry((16, 2), RowMeta("a.jpg", (640, 427), (644, 420), "resized", 3136, 1003520))
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: the row was made for qwen2_5_vl (14-pixel patches merged 2x2) but the model's processor cuts 16-...

    Raises:
        ValueError: they differ, so the image would be cut into other tokens than the row's boxes assume.
    """
    patch, merge = geometry
    if (patch, merge) != (meta.patch_size, meta.merge_size):
        raise ValueError(
            f"the row was made for {meta.family} ({meta.patch_size}-pixel patches merged {meta.merge_size}x"
            f"{meta.merge_size}) but the model's processor cuts {patch}-pixel patches merged {merge}x{merge}; "
            "convert the data for the model's family (data_prep/hicodet_to_parquet.py --family or --processor)"
        )


def check_processor_keeps(size: Size, pixels: tuple[int, int], block: int) -> None:
    """The processor's ``(min_pixels, max_pixels)`` leave an image of ``size`` (multiples of ``block``) as it is.

    This is the Qwen-VL image processors' own ``smart_resize`` test, so the patch grid is the row's.

    >>> check_processor_keeps((252, 168), (3136, 50176), 28)
    >>> check_processor_keeps((644, 420), (3136, 50176), 28)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: the processor (min_pixels=3136, max_pixels=50176) would resize the 644x420 image ...

    Raises:
        ValueError: the processor would resize the image, so the boxes would be in another frame.
    """
    min_pixels, max_pixels = pixels
    width, height = size
    if not min_pixels <= width * height <= max_pixels or model_size(size, min_pixels, max_pixels, block) != tuple(size):
        raise ValueError(
            f"the processor (min_pixels={min_pixels}, max_pixels={max_pixels}) would resize the {width}x{height} "
            "image the row was built for; convert the data with the processor's pixel budget or give the "
            "processor the rows' budget"
        )


def row_image_entry(image: Any, min_pixels: int, max_pixels: int) -> dict[str, Any]:
    """The image entry handed to ``qwen_vl_utils.fetch_image``: ``image`` with the row's pixel budget.

    ``image`` is an entry of the row's ``images`` (``{"bytes": ..}`` or ``{"image": path}``) or a path.

    >>> row_image_entry("a.jpg", 3136, 50176)
    {'image': 'a.jpg', 'min_pixels': 3136, 'max_pixels': 50176}

    Raises:
        ValueError: not an entry, or an entry whose ``min_pixels`` / ``max_pixels`` differ from the row's.
    """
    if isinstance(image, str | os.PathLike):
        image = {"image": os.fspath(image)}
    if not isinstance(image, Mapping):
        raise ValueError(f"an image entry must be a path or an object, got {type(image).__name__}")
    entry = dict(image)
    for name, budget in (("min_pixels", min_pixels), ("max_pixels", max_pixels)):
        value = entry.get(name)
        if value is not None and (not _is_int(value) or value != budget):
            raise ValueError(
                f"image entry has {name}={_short(value)} but the row's boxes were made for {name}={budget}"
            )
        entry[name] = int(budget)
    return entry


def _check_source(entry: Mapping[str, Any]) -> None:
    data, path = entry.get("bytes"), entry.get("image")
    if data is not None and path is not None:
        raise ValueError("image entry has both bytes and an image path")
    if data is not None and not isinstance(data, bytes):
        raise ValueError(f"image entry bytes must be binary, got {type(data).__name__}")
    if data is None and (not isinstance(path, str) or not path):
        raise ValueError(f"image entry has no bytes and no image path (image={_short(path)})")


def _check_prompt(messages: Any, images: int) -> None:
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"the prompt must be a list of chat messages, got {_short(messages)}")
    placeholders = 0
    for message in messages:
        if not isinstance(message, Mapping) or not all(isinstance(message.get(k), str) for k in ("role", "content")):
            raise ValueError(f"a prompt message must have a text role and content, got {_short(message)}")
        placeholders += message["content"].count(IMAGE_PLACEHOLDER)
    if placeholders != images:
        raise ValueError(f"the prompt has {placeholders} {IMAGE_PLACEHOLDER} placeholder(s) for {images} image(s)")


def check_row_entry(meta: RowMeta, images: Any, messages: Any, *, prompt: bool = True) -> dict[str, Any]:
    """The row's one image entry with the row's pixel budget (:func:`row_image_entry`), the image not read.

    Args:
        meta: the row's checked ``extra_info``.
        images: the row's ``images`` list.
        messages: the row's prompt messages.
        prompt: check ``messages`` (not when the prompt is rebuilt from a template).

    Raises:
        ValueError: not one image entry, a prompt without one ``<image>``, or an entry that is not the row's.
    """
    if not isinstance(images, list | tuple) or len(images) != 1:
        count = len(images) if isinstance(images, list | tuple) else _short(images)
        raise ValueError(f"a row has one image entry, got {count}")
    if prompt:
        _check_prompt(messages, len(images))
    entry = row_image_entry(images[0], meta.min_pixels, meta.max_pixels)
    _check_source(entry)
    return entry


def row_image_bytes(entry: Mapping[str, Any]) -> bytes:
    """The image file's bytes of an entry of :func:`check_row_entry`: embedded, or read from its path.

    Raises:
        verl_hoi.images.BadImageError: the file cannot be read.
    """
    return entry["bytes"] if entry.get("bytes") is not None else read_image_file(entry["image"])


def image_name(entry: Mapping[str, Any]) -> str:
    """How messages name the image of an entry of :func:`check_row_entry`: its path, or "the embedded image"."""
    return "the embedded image" if entry.get("bytes") is not None else entry["image"]


def check_image_size(size: Size, meta: RowMeta) -> None:
    """Raise ``ValueError`` unless the decoded image's ``size`` is the row's ``extra_info.image_size``."""
    if tuple(size) != meta.image_size:
        raise ValueError(f"the image is {size[0]}x{size[1]} but extra_info.image_size is {list(meta.image_size)}")


def check_row(
    extra: Any,
    images: Any,
    pixels: tuple[int, int] | None,
    messages: Sequence[Any] | None = None,
    geometry: tuple[int, int] | None = None,
) -> RowMeta:
    """Check what the model will see of one converted row (see the module docstring); returns its metadata.

    Args:
        extra: the row's ``extra_info``.
        images: the row's ``images`` list (one entry).
        pixels: the processor's ``(min_pixels, max_pixels)`` (:func:`processor_pixels`), ``None`` to skip.
        messages: the row's prompt messages, ``None`` when the prompt is rebuilt from a template.
        geometry: the processor's ``(patch_size, merge_size)`` (:func:`processor_geometry`), ``None`` to skip.

    Raises:
        ValueError: what is wrong (without the row's location, which the caller adds).
    """
    meta = RowMeta.from_dict(extra)
    if geometry is not None:
        check_processor_geometry(geometry, meta)
    if pixels is not None:
        check_processor_keeps(meta.model_size, pixels, meta.block)
    entry = check_row_entry(meta, images, messages, prompt=messages is not None)
    check_image_size(decoded_size(row_image_bytes(entry), image_name(entry), draft=True), meta)
    return meta


def row_name(index: int, extra: Any) -> str:
    """``row index (file name)``: how messages name a row (counted from 0) with its ``extra_info``.

    >>> row_name(3, {"file_name": "a.jpg"}), row_name(3, None), row_name(3, {"file_name": ""})
    ('row 3 (a.jpg)', 'row 3', 'row 3')
    """
    name = extra.get("file_name") if isinstance(extra, Mapping) else None
    return f"row {index}" + (f" ({name})" if isinstance(name, str) and name else "")


def row_location(source: str, index: int, extra: Any) -> str:
    """``source: row index (file name)``, how a problem with a row of the file ``source`` is located in messages.

    >>> row_location("test.parquet", 3, {"file_name": "a.jpg"})
    'test.parquet: row 3 (a.jpg)'
    """
    return f"{source}: {row_name(index, extra)}"
