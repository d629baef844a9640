"""``python -m verl_hoi.visualize`` on bad input, run as a user runs it: each case builds its files in a
temporary folder (two of the shipped sample images, a predictions file), runs the real command line
there and checks the exit code 2, the one ``error:`` line, and that no file changed and no drawing or
output folder appeared."""

from __future__ import annotations

import io
import json
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_harness import REPO, assert_user_error, run_command, snapshot
from PIL import Image

SAMPLE_IMAGES = REPO / "recipes" / "sample" / "images"
NAME1, NAME2 = "HICO_test2015_00000001.jpg", "HICO_test2015_00000002.jpg"  # 640 x 427, 640 x 461
DET = {"human": [320, 306, 359, 349], "object": [148, 345, 376, 414], "hoi": 245, "score": 0.8}
GOOD = {"file_name": NAME1, "detections": [DET]}
ARGS = ("--predictions", "p.jsonl", "--images", "images", "--out", "vis")


def jsonl(*lines: object) -> str:
    return "".join(json.dumps(line) + "\n" for line in lines)


def png_claiming(width: int, height: int) -> bytes:
    """A 4 x 4 PNG whose header says ``width`` x ``height`` (checksum fixed, so only the size is wrong)."""
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)  # IHDR's width and height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@dataclass(frozen=True)
class Case:
    """Files to create (``bytes`` or text; None: a folder) besides ``images/``, the arguments, the error.

    ``expect`` is the whole error line after ``error: ``, or when a tuple the fragments it must contain.
    """

    files: dict[str, object]
    expect: str | tuple[str, ...]
    args: tuple[str, ...] = ARGS


PREDS = {"p.jsonl": jsonl(GOOD)}
ONE_BAD_IMAGE = {"p.jsonl": jsonl({"file_name": "bad.jpg", "detections": []})}

CASES = {
    "top zero": Case(
        PREDS, "argument --top: must be >= 1, got 0 (see python -m verl_hoi.visualize --help)", (*ARGS, "--top", "0")
    ),
    "top not a number": Case(
        PREDS,
        "argument --top: not an integer: 'ten' (see python -m verl_hoi.visualize --help)",
        (*ARGS, "--top", "ten"),
    ),
    "limit negative": Case(
        PREDS,
        "argument --limit: must be >= 1, got -1 (see python -m verl_hoi.visualize --help)",
        (*ARGS, "--limit", "-1"),
    ),
    "out is the images folder": Case(
        PREDS, "--out images is also --images: refusing to write over an input", (*ARGS[:4], "--out", "images")
    ),
    "out is the images folder by another path": Case(
        PREDS,
        "--out images is also --images: refusing to write over an input",
        (*ARGS[:4], "--out", "images/../images"),
    ),
    "out is a file": Case(PREDS | {"vis": "a file"}, "--out vis: is a file, not a folder"),
    "out is the predictions file": Case(
        PREDS, "--out p.jsonl is also --predictions: refusing to write over an input", (*ARGS[:4], "--out", "p.jsonl")
    ),
    "predictions missing": Case({}, "--predictions p.jsonl: no such file"),
    "predictions a folder": Case({"p.jsonl": None}, "--predictions p.jsonl: is a folder, not a file"),
    "images missing": Case(
        PREDS, "--images imgs: no such folder", ("--predictions", "p.jsonl", "--images", "imgs", "--out", "vis")
    ),
    "images a file": Case(
        PREDS,
        "--images p.jsonl: is a file, not a folder",
        ("--predictions", "p.jsonl", "--images", "p.jsonl", "--out", "vis"),
    ),
    "annotations missing": Case(PREDS, "--annotations ann.json: no such file", (*ARGS, "--annotations", "ann.json")),
    "empty predictions": Case({"p.jsonl": ""}, "p.jsonl: no prediction lines (the file is empty or blank)"),
    "a line that is not JSON": Case({"p.jsonl": jsonl(GOOD) + "{oops\n"}, "p.jsonl: line 2 is not valid JSON"),
    "hoi a boolean": Case(
        {"p.jsonl": jsonl(GOOD, {"file_name": NAME2, "detections": [DET | {"hoi": True}]})},
        "p.jsonl: line 2: detection 0: 'hoi' must be an integer in [0, 600) (a 0-based HOI class); got True",
    ),
    "box a string": Case(
        {"p.jsonl": jsonl({"file_name": NAME2, "detections": [DET | {"human": "1 2 3 4"}]})},
        "p.jsonl: line 1: detection 0: 'human' must be [x1, y1, x2, y2], 4 numbers; got '1 2 3 4'",
    ),
    "score a string": Case(
        {"p.jsonl": jsonl({"file_name": NAME2, "detections": [DET | {"score": "high"}]})},
        "p.jsonl: line 1: detection 0: 'score' must be a finite number; got 'high'",
    ),
    "file name a path": Case(
        {"p.jsonl": jsonl({"file_name": "../images/" + NAME1, "detections": []})},
        "p.jsonl: line 1: 'file_name' must be an image's file name; got '../images/HICO_test2015_00000001.jpg'",
    ),
    "file name missing": Case(
        {"p.jsonl": jsonl({"detections": []})}, "p.jsonl: line 1: 'file_name' must be an image's file name; got None"
    ),
    "file name twice": Case({"p.jsonl": jsonl(GOOD, GOOD)}, f"p.jsonl: line 2: {NAME1} was already drawn from line 1"),
    "image size of another image": Case(
        {"p.jsonl": jsonl({"file_name": NAME1, "response": "[]", "frame": "original", "image_size": [640, 461]})},
        "p.jsonl: line 1: 'image_size' [640, 461] is not the image's size [640, 427] "
        "(a prediction for another image, or for a resized copy?)",
    ),
    "annotated size of another image": Case(
        PREDS
        | {
            "ann.json": json.dumps(
                {"filenames": [NAME1], "size": [[320, 213]], "annotation": [{"boxes_h": [], "boxes_o": [], "hoi": []}]}
            )
        },
        f"images/{NAME1}: image is 640x427 but ann.json says 320x213",
        (*ARGS, "--annotations", "ann.json"),
    ),
    "truncated image": Case(
        ONE_BAD_IMAGE | {"images/bad.jpg": (SAMPLE_IMAGES / NAME1).read_bytes()[:2000]},
        ("images/bad.jpg: cannot read image: image file is truncated",),
    ),
    "not an image": Case(
        ONE_BAD_IMAGE | {"images/bad.jpg": b"<html>not found</html>"},
        "images/bad.jpg: not an image file (or not in a format PIL reads)",
    ),
    "header claims a huge image": Case(
        ONE_BAD_IMAGE | {"images/bad.jpg": png_claiming(10_000, 10_000)},
        "images/bad.jpg: image is 10000x10000, over the limit of 89478485 pixels",
    ),
    # a good image first: nothing is drawn before every line and image is checked
    "bad image after a good one": Case(
        {"p.jsonl": jsonl(GOOD, {"file_name": "bad.jpg", "detections": []}), "images/bad.jpg": b""},
        "images/bad.jpg: not an image file (or not in a format PIL reads)",
    ),
}


def build(folder: Path, files: dict[str, object]) -> None:
    (folder / "images").mkdir()
    for name in (NAME1, NAME2):
        (folder / "images" / name).write_bytes((SAMPLE_IMAGES / name).read_bytes())
    for name, content in files.items():
        path = folder / name
        if content is None:
            path.mkdir()
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(str(content))


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_bad_input_is_one_error_line_and_draws_nothing(tmp_path: Path, case: Case) -> None:
    build(tmp_path, case.files)
    before = snapshot(tmp_path)
    result = run_command(["-m", "verl_hoi.visualize", *case.args], cwd=tmp_path)
    if isinstance(case.expect, str):
        assert assert_user_error(result) == f"error: {case.expect}"
    else:
        assert_user_error(result, *case.expect)
    assert snapshot(tmp_path) == before
    assert (tmp_path / "vis").exists() == ("vis" in case.files)  # no output folder was created


def test_missing_images_are_counted_and_the_rest_drawn(tmp_path: Path) -> None:
    build(tmp_path, {"p.jsonl": jsonl(GOOD, {"file_name": "HICO_test2015_09999999.jpg", "detections": []})})
    result = run_command(["-m", "verl_hoi.visualize", *ARGS], cwd=tmp_path)
    assert result.code == 0, result.err
    assert "WARNING: 1 image(s) not found in images" in result.err
    assert sorted(p.name for p in (tmp_path / "vis").iterdir()) == [NAME1]
