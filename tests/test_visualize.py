"""``python -m verl_hoi.visualize``: detection lines with ground truth, response lines, unknown images skipped,
an interrupted run leaving only complete drawings. The drawing itself: test_drawing.py; bad command lines:
test_visualize_cli_bad_input.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from verl_hoi.visualize import main

NAME = "HICO_test2015_00000001.jpg"  # 640 x 427 in the sample


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
