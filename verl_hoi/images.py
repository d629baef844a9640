"""Image files: read and decoded in full, as the training loader will decode them, within one pixel limit.

The converter, the row check of training and prediction (:mod:`verl_hoi.rows`), the distillation and the
visualisation read every image through :func:`read_image_file` and :func:`decode_image` (or
:func:`decoded_size`), so a file that
cannot be read, is not an image, is truncated or corrupt beyond what PIL can read, or claims more than
:data:`MAX_IMAGE_PIXELS` pixels is a :class:`BadImageError` naming it, worded the same everywhere.
"""

from __future__ import annotations

import warnings
from io import BytesIO
from pathlib import Path
from typing import Any

from verl_hoi.frames import Size

__all__ = ["MAX_IMAGE_PIXELS", "BadImageError", "decode_image", "decoded_size", "read_image_file"]

MAX_IMAGE_PIXELS = 89_478_485
"""Largest image accepted (about 9459 x 9459): PIL's default decompression-bomb limit. The training
loader (PIL) warns above it and refuses twice as many pixels."""


class BadImageError(ValueError):
    """An image file that cannot be used: unreadable, not an image, truncated or corrupt, or too large."""


def read_image_file(path: str | Path) -> bytes:
    """The bytes of the image file at ``path``.

    Raises:
        BadImageError: the file cannot be read (the message names it).
    """
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise BadImageError(f"{path}: cannot read image: {error.strerror or error}") from None


def decode_image(data: bytes, name: str) -> Any:
    """The PIL image in ``data``, decoded in full; the caller closes it.

    Args:
        data: the image file's bytes.
        name: how messages name the image (its path, say).

    Raises:
        BadImageError: ``data`` is not an image PIL can read, has more than :data:`MAX_IMAGE_PIXELS`
            pixels, or fails to decode (truncated or corrupt).
    """
    return _decode(data, name, draft=False)[0]


def decoded_size(data: bytes, name: str, *, draft: bool = False) -> Size:
    """``(w, h)`` of the image in ``data`` once it is decoded in full (:func:`decode_image`).

    With ``draft`` a JPEG is decoded at 1/8 scale, which still reads all of its data: a check that needs
    no pixels.

    Raises:
        BadImageError: as :func:`decode_image`.
    """
    image, size = _decode(data, name, draft=draft)
    image.close()
    return size


def _decode(data: bytes, name: str, *, draft: bool) -> tuple[Any, Size]:
    from PIL import Image

    image = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # MAX_IMAGE_PIXELS is checked below
            image = Image.open(BytesIO(data))
        width, height = image.size
        if width * height > MAX_IMAGE_PIXELS:
            raise BadImageError(f"{name}: image is {width}x{height}, over the limit of {MAX_IMAGE_PIXELS} pixels")
        if draft:
            image.draft(None, (max(1, width // 8), max(1, height // 8)))
        image.load()
    except Exception as error:
        if image is not None:
            image.close()
        raise _bad_image(error, name) from None
    return image, (width, height)


def _bad_image(error: Exception, name: str) -> BadImageError:
    # PIL raises many types on malformed files (OSError, SyntaxError, ValueError, EOFError,
    # struct.error, DecompressionBombError, ...): each is a property of the file, reported as such.
    from PIL import Image, UnidentifiedImageError

    if isinstance(error, BadImageError):
        return error
    if isinstance(error, Image.DecompressionBombError):  # PIL's own check, at twice its limit
        return BadImageError(f"{name}: image is over the limit of {MAX_IMAGE_PIXELS} pixels")
    if isinstance(error, UnidentifiedImageError):
        return BadImageError(f"{name}: not an image file (or not in a format PIL reads)")
    if isinstance(error, OSError):
        return BadImageError(f"{name}: cannot read image: {error.strerror or error}")
    return BadImageError(f"{name}: cannot read image: {type(error).__name__}: {error}")
