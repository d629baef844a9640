"""Image files decoded and checked (``verl_hoi.images``): an unreadable, non-image, truncated, pixel-less or
oversized file is a ``BadImageError`` naming it, read as the converter reads it in either image mode."""

import pytest
from cli_harness import SAMPLE_JPEG, png_header, truncated

from verl_hoi.convert import read_image
from verl_hoi.images import BadImageError


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a jpeg", "not an image file (or not in a format PIL reads)"),
        (b"", "not an image file (or not in a format PIL reads)"),
        (truncated(SAMPLE_JPEG), "cannot read image: image file is truncated (9 bytes not processed)"),
        (png_header(640, 427), "cannot read image: cannot load this image"),  # a header without pixels
        # 10000 x 9000 = 9e7 pixels: over the limit, PIL itself only warns
        (png_header(10000, 9000), "image is 10000x9000, over the limit of 89478485 pixels"),
        # 2e8 pixels: PIL refuses it before its size is known
        (png_header(20000, 10000), "image is over the limit of 89478485 pixels"),
        (None, "cannot read image: No such file or directory"),  # vanished after the missing-image check
    ],
)
@pytest.mark.parametrize("image_mode", ["embed", "path"])
def test_bad_images(tmp_path, content, message, image_mode):
    path = tmp_path / "HICO_test2015_00000004.jpg"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(BadImageError) as info:
        read_image(path, image_mode)
    assert str(info.value) == f"{path}: {message}"
