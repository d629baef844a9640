"""Coordinate frames: where a box's numbers live, and conversions to and from the original image.

Boxes are ``[x1, y1, x2, y2]`` arrays of shape ``(..., 4)`` (usually ``(N, 4)``). Sizes are
``(w, h)`` tuples: ``image_size`` of the original image, ``model_size`` of the image the model sees
after the Qwen-VL processors' smart resize (see :func:`model_size`). Every built-in frame scales each
axis on its own, ``x_frame = x * W_frame / W_image``:

- ``resized``: absolute pixels of the resized image, as Qwen2.5-VL grounds natively;
- ``original``: pixels of the original image, as HICO-DET stores them and evaluation needs;
- ``norm1000``: 0..1000 relative to the image, as Qwen2-VL, Qwen3-VL and Qwen3.5 ground.

Which frame a model family answers in by default is in :mod:`verl_hoi.families`.

Conversions return float64 and never round: rounding for the model's text is the caller's choice.
Another project adds a frame with :func:`register_frame`.

>>> size = model_size((640, 427), 3136, 1003520, 28)
>>> size
(644, 420)
>>> to_frame([[160, 0, 320, 427]], "resized", (640, 427), size).tolist()
[[161.0, 0.0, 322.0, 420.0]]
>>> from_frame([[250, 0, 500, 1000]], "norm1000", (640, 427), size).tolist()
[[160.0, 0.0, 320.0, 427.0]]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "Size",
    "available_frames",
    "check_frame",
    "check_pixel_budget",
    "frame_extent",
    "from_frame",
    "model_size",
    "register_frame",
    "to_frame",
]

Size = tuple[int, int]
"""``(width, height)`` in pixels."""
BoxFn = Callable[[np.ndarray, Size, Size], np.ndarray]
"""``fn(boxes (..., 4) float64, image_size, model_size) -> boxes (..., 4) float64``."""
ExtentFn = Callable[[Size, Size], Size]
"""``fn(image_size, model_size) -> (w, h)`` extent of a frame."""


@dataclass(frozen=True)
class _Frame:
    to_fn: BoxFn
    from_fn: BoxFn
    extent_fn: ExtentFn | None


_REGISTRY: dict[str, _Frame] = {}


def register_frame(name: str, to_fn: BoxFn, from_fn: BoxFn, *, extent_fn: ExtentFn | None = None) -> None:
    """Register a coordinate frame under ``name``.

    Args:
        name: frame name, as written in ``extra_info["frame"]`` and configs.
        to_fn: ``(boxes, image_size, model_size) -> boxes``, original-image boxes into the frame.
        from_fn: the inverse of ``to_fn``.
        extent_fn: ``(image_size, model_size) -> (w, h)``, the frame's extent for the prompt. By
            default the whole image's box ``[0, 0, w, h]`` mapped by ``to_fn``, rounded.

    Raises:
        ValueError: ``name`` is already registered.
    """
    if name in _REGISTRY:
        raise ValueError(f"frame {name!r} is already registered")
    _REGISTRY[name] = _Frame(to_fn, from_fn, extent_fn)


def available_frames() -> tuple[str, ...]:
    """Names of the registered frames, in registration order (built-ins first).

    >>> available_frames()[:3]
    ('resized', 'original', 'norm1000')
    """
    return tuple(_REGISTRY)


def _get(frame: str) -> _Frame:
    try:
        return _REGISTRY[frame]
    except KeyError:
        raise ValueError(f"unknown frame {frame!r}; valid frames: {', '.join(_REGISTRY)}") from None


def check_frame(frame: str) -> None:
    """Raise ``ValueError`` (listing the registered frames) unless ``frame`` is registered."""
    _get(frame)


def check_pixel_budget(min_pixels: int, max_pixels: int) -> None:
    """Raise ``ValueError`` unless ``0 < min_pixels <= max_pixels``."""
    if not 0 < min_pixels <= max_pixels:
        raise ValueError(f"need 0 < min_pixels <= max_pixels, got min_pixels={min_pixels}, max_pixels={max_pixels}")


def _check_size(name: str, size: Size) -> tuple[int, int]:
    w, h = size
    if not (w > 0 and h > 0):
        raise ValueError(f"{name} must be a positive (w, h), got {size!r}")
    return w, h


def model_size(image_size: Size, min_pixels: int, max_pixels: int, block: int) -> Size:
    """``(w, h)`` of the image the model sees: qwen-vl-utils' ``smart_resize`` to multiples of ``block``.

    Both sides become multiples of ``block`` (patch size × spatial merge: 28 for Qwen2.5-VL, 32 for
    Qwen3-VL and Qwen3.5), the area is brought within ``[min_pixels, max_pixels]`` and the aspect ratio
    is kept as closely as possible (the Qwen-VL image processors do the same).

    Args:
        image_size: ``(w, h)`` of the original image.
        min_pixels, max_pixels: the processor's pixel budget.
        block: side in pixels of one image token.

    Raises:
        ValueError: non-positive sizes or block, ``min_pixels > max_pixels``, an aspect ratio over 200,
            or an image so elongated that a side would shrink to 0 within ``max_pixels``.

    >>> model_size((640, 427), 3136, 1003520, 28), model_size((640, 427), 4 * 28 * 28, 64 * 28 * 28, 28)
    ((644, 420), (252, 168))
    >>> model_size((640, 427), 65536, 1310720, 32)
    (640, 416)
    """
    # Imported here: qwen_vl_utils pulls in torch and torchvision, which the conversions never need.
    from qwen_vl_utils import smart_resize

    w, h = _check_size("image_size", image_size)
    check_pixel_budget(min_pixels, max_pixels)
    if block <= 0:
        raise ValueError(f"block must be a positive number of pixels, got {block}")
    resized_h, resized_w = smart_resize(h, w, block, min_pixels=min_pixels, max_pixels=max_pixels)
    if resized_h == 0 or resized_w == 0:
        # smart_resize floors the short side of a very elongated image to 0 when it must shrink it.
        raise ValueError(f"image of size {w}x{h} is too elongated to fit max_pixels={max_pixels}")
    return int(resized_w), int(resized_h)


def _as_boxes(boxes: ArrayLike) -> np.ndarray:
    array = np.array(boxes, dtype=np.float64)
    if array.ndim == 0 or array.shape[-1] != 4:
        raise ValueError(f"boxes must have shape (..., 4), got {array.shape}")
    return array


def to_frame(boxes: ArrayLike, frame: str, image_size: Size, model_size: Size) -> np.ndarray:
    """Map original-image boxes ``(..., 4)`` into ``frame``; returns a new float64 array of the same shape.

    Raises:
        ValueError: unknown frame (the message lists the valid ones) or boxes not of shape ``(..., 4)``.
    """
    return _get(frame).to_fn(_as_boxes(boxes), image_size, model_size)


def from_frame(boxes: ArrayLike, frame: str, image_size: Size, model_size: Size) -> np.ndarray:
    """Map boxes ``(..., 4)`` given in ``frame`` back to the original image; float64, same shape.

    Raises:
        ValueError: unknown frame (the message lists the valid ones) or boxes not of shape ``(..., 4)``.
    """
    return _get(frame).from_fn(_as_boxes(boxes), image_size, model_size)


def frame_extent(frame: str, image_size: Size, model_size: Size) -> Size:
    """``(w, h)`` that the whole image spans in ``frame``, as the prompt states it.

    Raises:
        ValueError: unknown frame (the message lists the valid ones).

    >>> [frame_extent(f, (640, 427), (644, 420)) for f in ("resized", "original", "norm1000")]
    [(644, 420), (640, 427), (1000, 1000)]
    """
    entry = _get(frame)
    if entry.extent_fn is not None:
        w, h = entry.extent_fn(image_size, model_size)
        return int(w), int(h)
    image_w, image_h = image_size
    _, _, w, h = entry.to_fn(np.array([0.0, 0.0, image_w, image_h]), image_size, model_size)
    return round(w), round(h)


def _scaling_frame(extent_fn: ExtentFn) -> tuple[BoxFn, BoxFn]:
    """``to_fn`` and ``from_fn`` of a frame that scales each axis to ``extent_fn``'s size."""

    def extents(image_size: Size, model_size: Size) -> tuple[np.ndarray, np.ndarray]:
        image_w, image_h = _check_size("image_size", image_size)
        frame_w, frame_h = _check_size("frame extent", extent_fn(image_size, model_size))
        return np.array([image_w, image_h] * 2, dtype=np.float64), np.array([frame_w, frame_h] * 2, dtype=np.float64)

    # Multiply before dividing: integral values that map exactly stay exact (500 * 640 / 1000 == 320).
    def to_fn(boxes: np.ndarray, image_size: Size, model_size: Size) -> np.ndarray:
        image, frame = extents(image_size, model_size)
        return boxes * frame / image

    def from_fn(boxes: np.ndarray, image_size: Size, model_size: Size) -> np.ndarray:
        image, frame = extents(image_size, model_size)
        return boxes * image / frame

    return to_fn, from_fn


def _register_scaling(name: str, extent_fn: ExtentFn) -> None:
    register_frame(name, *_scaling_frame(extent_fn), extent_fn=extent_fn)


_register_scaling("resized", lambda image_size, model_size: model_size)
_register_scaling("original", lambda image_size, model_size: image_size)
_register_scaling("norm1000", lambda image_size, model_size: (1000, 1000))
