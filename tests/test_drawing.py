"""Predicted pairs drawn on an image (``verl_hoi.drawing``): the boxes land where the detections are, in the
pair colours, on a copy of the image."""

from __future__ import annotations

import numpy as np
from PIL import Image

from verl_hoi.drawing import PAIR_COLOURS, draw
from verl_hoi.scored_triplets import ImageDetections


def test_draw_puts_the_boxes_on_the_image():
    image = Image.new("RGB", (200, 100), (255, 255, 255))
    dets = ImageDetections(
        hoi=np.array([0]),
        human=np.array([[100.0, 40.0, 180.0, 90.0]]),
        object=np.array([[120.0, 60.0, 150.0, 80.0]]),
        score=np.array([0.9]),
    )
    out = draw(image, dets)
    assert out.size == image.size and image.getpixel((100, 90)) == (255, 255, 255)
    assert out.getpixel((180, 88)) == PAIR_COLOURS["human"]  # right edge of the human box
    assert out.getpixel((135, 80)) == PAIR_COLOURS["object"]  # bottom edge of the object box
