"""``python -m verl_hoi.visualize`` and its drawing: boxes land where the detections are, ground truth is optional,
missing images are skipped, mistakes are one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from verl_hoi.drawing import PAIR_COLOURS, draw
from verl_hoi.scored_triplets import ImageDetections
from verl_hoi.visualize import main

NAME = "HICO_test2015_00000001.jpg"  # 640 x 427 in the sample


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


def test_cli_with_ground_truth(tmp_path, sample_annotations, sample_images):
    preds = tmp_path / "p.jsonl"
    det = {"human": [320, 306, 359, 349], "object": [148, 345, 376, 414], "hoi": 245, "score": 0.8}
    preds.write_text(
        json.dumps({"file_name": NAME, "detections": [det]})
        + "\n"
        + json.dumps({"file_name": "HICO_test2015_09999999.jpg", "detections": []})
        + "\n"
    )
    out = tmp_path / "vis"
    args = ["--predictions", str(preds), "--images", str(sample_images), "--out", str(out)]
    assert main([*args, "--annotations", str(sample_annotations)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [NAME]  # the unknown image is skipped
    with Image.open(out / NAME) as drawn, Image.open(Path(sample_images) / NAME) as original:
        assert drawn.size == original.size
        assert np.abs(np.asarray(drawn, float) - np.asarray(original, float)).mean() > 0.5


def test_cli_with_responses(tmp_path, sample_images):
    preds = tmp_path / "p.jsonl"
    answer = (
        '[{"human": [10, 10, 50, 90], "object": [30, 40, 90, 80], "object class": "bench", "verb class": "sit on"}]'
    )
    line = {"file_name": NAME, "response": answer, "frame": "norm1000", "image_size": [640, 427]}
    preds.write_text(json.dumps(line) + "\n")
    assert main(["--predictions", str(preds), "--images", str(sample_images), "--out", str(tmp_path / "v")]) == 0
    assert (tmp_path / "v" / NAME).is_file()


def test_an_interrupted_run_leaves_only_complete_drawings(tmp_path, monkeypatch, sample_images):
    # Ctrl-C while the second drawing is being written: the first stays, the second's earlier drawing
    # is untouched, and no temporary file is left behind.
    other = "HICO_test2015_00000002.jpg"
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps({"file_name": n, "detections": []}) + "\n" for n in (NAME, other)))
    out = tmp_path / "vis"
    out.mkdir()
    (out / other).write_bytes(b"an earlier drawing")
    save = Image.Image.save

    def save_then_interrupt(self, fp, *args, **kwargs):
        if other in str(fp):
            Path(fp).write_bytes(b"half a JPEG")
            raise KeyboardInterrupt
        return save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        main(["--predictions", str(preds), "--images", str(sample_images), "--out", str(out)])
    assert sorted(p.name for p in out.iterdir()) == [NAME, other]
    assert (out / other).read_bytes() == b"an earlier drawing"
    with Image.open(out / NAME) as drawn:
        assert drawn.size == (640, 427)
