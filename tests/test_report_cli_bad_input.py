"""``python -m verl_hoi.report`` on bad input, run as a user runs it: each case builds its files in a temporary
folder (the shipped sample's annotations, two of its images, a predictions file, validation dumps), runs the
real command line there and checks the exit code 2, the one ``error:`` line, and that no file changed or
appeared (no report, not even a partial one)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_harness import PARQUET, REPO, assert_bad_input, jsonl, png_header, run_command, truncated, write_files

SAMPLE = REPO / "recipes" / "sample"
NAME1, NAME2 = "HICO_test2015_00000001.jpg", "HICO_test2015_00000002.jpg"  # 640 x 427, 640 x 461
DET = {"human": [320, 306, 359, 349], "object": [148, 345, 376, 414], "hoi": 245, "score": 0.8}
GOOD = {"file_name": NAME2, "detections": [DET]}
ARGS = ("--annotations", "ann.json", "--predictions", "p.jsonl", "--out", "r.html")
DUMP = {"input": "user\nFind the interactions.\nassistant\n", "output": "[]", "gts": "[]", "score": 1.0, "step": 1}
HELP = "(see python -m verl_hoi.report --help)"


@dataclass(frozen=True)
class Case:
    """Files to create besides ``ann.json`` and ``images/`` (None: a folder), extra arguments, the error.

    ``expect`` is the whole error line after ``error: ``, or when a tuple the fragments it must contain.
    """

    files: dict[str, object]
    expect: str | tuple[str, ...]
    extra: tuple[str, ...] = ()
    args: tuple[str, ...] = ARGS


PREDS = {"p.jsonl": jsonl(GOOD)}
DUMPS = PREDS | {"d.parquet": PARQUET, "1.jsonl": jsonl(DUMP)}
WITH_DUMPS = ("--data", "d.parquet", "--dumps", "1.jsonl")

CASES = {
    # ------------------------------------------------------------------ options
    "out left out": Case(PREDS, f"the following arguments are required: --out {HELP}", args=ARGS[:4]),
    "gallery zero": Case(
        PREDS, f"argument --gallery: must be >= 1, got 0 {HELP}", ("--images", "images", "--gallery", "0")
    ),
    "gallery without images": Case(
        PREDS, "--gallery needs --images (the folder of the original images)", ("--gallery", "3")
    ),
    "unknown zero-shot setting": Case(
        PREDS,
        f"argument --zero-shot: invalid choice: 'rf' (choose from 'rf_uc', 'nf_uc', 'uo', 'uv') {HELP}",
        ("--zero-shot", "rf"),
    ),
    "dumps without data": Case(
        DUMPS,
        "--dumps are verl validation dumps: pass --data with the parquet they validated on",
        ("--dumps", "1.jsonl"),
    ),
    # ------------------------------------------------------------------ inputs and the output
    "predictions missing": Case({}, "--predictions p.jsonl: no such file"),
    "annotations a folder": Case(
        PREDS | {"a": None}, "--annotations a: is a folder, not a file", args=("--annotations", "a", *ARGS[2:])
    ),
    "images missing": Case(PREDS, "--images none: no such folder", ("--images", "none")),
    "images a file": Case(PREDS, "--images p.jsonl: is a file, not a folder", ("--images", "p.jsonl")),
    "a dump missing": Case(DUMPS, "--dumps 2.jsonl: no such file", (*WITH_DUMPS, "2.jsonl")),
    "known-object source missing": Case(
        PREDS,
        "--known-object-source anno.mat: no such file ('boxes' or HICO's anno.mat)",
        ("--known-object-source", "anno.mat"),
    ),
    "out a folder": Case(PREDS | {"r.html": None}, "--out r.html: is a folder, not a file"),
    "out in a missing folder": Case(PREDS, "--out no/r.html: folder no does not exist", args=(*ARGS[:5], "no/r.html")),
    "out is the predictions": Case(
        PREDS, "--out p.jsonl is also --predictions: refusing to write over an input", args=(*ARGS[:5], "p.jsonl")
    ),
    "out is the annotations by another path": Case(
        PREDS | {"sub": None},
        "--out ann.json is also --annotations: refusing to write over an input",
        args=(*ARGS[:5], "sub/../ann.json"),
    ),
    "out is a dump": Case(
        DUMPS, "--out 1.jsonl is also --dumps: refusing to write over an input", WITH_DUMPS, (*ARGS[:5], "1.jsonl")
    ),
    "out is the parquet": Case(
        DUMPS, "--out d.parquet is also --data: refusing to write over an input", WITH_DUMPS, (*ARGS[:5], "d.parquet")
    ),
    # ------------------------------------------------------------------ the predictions, as evaluate checks them
    "a bad prediction line": Case(
        {"p.jsonl": jsonl(GOOD, {"file_name": NAME1, "detections": [DET | {"hoi": 600}]})},
        "p.jsonl: line 2: detection 0: 'hoi' must be an integer in [0, 600) (a 0-based HOI class); got 600",
    ),
    "an earlier report survives a failed run": Case(
        {"p.jsonl": jsonl(GOOD, {"file_name": NAME1, "detections": [DET | {"score": "high"}]}), "r.html": "earlier"},
        "p.jsonl: line 2: detection 0: 'score' must be a finite number; got 'high'",
    ),
    # ------------------------------------------------------------------ gallery images
    "a truncated gallery image": Case(
        PREDS | {f"images/{NAME1}": truncated(SAMPLE / "images" / NAME1)},
        (f"images/{NAME1}: cannot read image: image file is truncated",),
        ("--images", "images"),
    ),
    "a gallery image of another size": Case(
        PREDS | {f"images/{NAME2}": (SAMPLE / "images" / NAME1).read_bytes()},
        f"images/{NAME2}: image is 640x427 but the annotations say 640x461",
        ("--images", "images"),
    ),
    "a gallery image that claims a huge size": Case(
        PREDS | {f"images/{NAME1}": png_header(10_000, 10_000)},
        f"images/{NAME1}: image is 10000x10000, over the limit of 89478485 pixels",
        ("--images", "images"),
    ),
    # ------------------------------------------------------------------ validation dumps
    "a dump line without gts": Case(
        DUMPS | {"1.jsonl": jsonl(DUMP, {"input": "x", "output": "[]"})},
        "1.jsonl: line 2: not a line of a verl validation dump (needs 'input', 'output' and 'gts')",
        WITH_DUMPS,
    ),
    "two dumps of one step": Case(
        DUMPS | {"2.jsonl": jsonl(DUMP)}, "2.jsonl: step 1 again: 1.jsonl is that step's dump", (*WITH_DUMPS, "2.jsonl")
    ),
    "a dump of two steps": Case(
        DUMPS | {"1.jsonl": jsonl(DUMP, DUMP | {"step": 2})},
        "1.jsonl: 'step' must be one integer in every line of a dump; got 1, 2",
        WITH_DUMPS,
    ),
    "a step that is text": Case(
        DUMPS | {"1.jsonl": jsonl(DUMP | {"step": "1"})},
        "1.jsonl: 'step' must be one integer in every line of a dump; got '1'",
        WITH_DUMPS,
    ),
    "a step that is a list": Case(
        DUMPS | {"1.jsonl": jsonl(DUMP | {"step": [1]})},
        "1.jsonl: 'step' must be one integer in every line of a dump; got [1]",
        WITH_DUMPS,
    ),
    "no step, and a name that is none": Case(
        DUMPS | {"last.jsonl": jsonl({key: value for key, value in DUMP.items() if key != "step"})},
        "last.jsonl: its lines have no 'step' and its name is not <step>.jsonl",
        ("--data", "d.parquet", "--dumps", "last.jsonl"),
    ),
}


@pytest.fixture(scope="module")
def parquet_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A parquet of one row (NAME1, index 0, ground truth ``[]``), what a dump line is matched with."""
    row = {
        "prompt": [{"role": "user", "content": "<image>Find the interactions."}],
        "reward_model": {"style": "rule", "ground_truth": "[]"},
        "extra_info": {"index": 0, "file_name": NAME1, "frame": "original", "image_size": [640, 427]},
    }
    path = tmp_path_factory.mktemp("dump") / "d.parquet"
    pq.write_table(pa.Table.from_pylist([row]), path)
    return path.read_bytes()


def build(folder: Path, files: dict[str, object], parquet: bytes) -> None:
    (folder / "ann.json").write_bytes((SAMPLE / "annotations.json").read_bytes())
    (folder / "images").mkdir()
    for name in (NAME1, NAME2):
        (folder / "images" / name).write_bytes((SAMPLE / "images" / name).read_bytes())
    write_files(folder, files, parquet)


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_bad_input_is_one_error_line_and_writes_nothing(tmp_path: Path, parquet_bytes: bytes, case: Case) -> None:
    build(tmp_path, case.files, parquet_bytes)
    assert_bad_input("verl_hoi.report", tmp_path, [*case.args, *case.extra], case.expect)


def test_images_not_in_the_folder_are_left_out_of_the_gallery(tmp_path: Path, parquet_bytes: bytes) -> None:
    # Five of the seven sample images with errors are not in images/: the two that are make the gallery.
    build(tmp_path, PREDS, parquet_bytes)
    result = run_command(["-m", "verl_hoi.report", *ARGS, "--images", "images"], cwd=tmp_path)
    assert result.code == 0, result.err
    assert "WARNING: 5 image(s) with errors not found in images: left out of the gallery" in result.err
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert html.count("<figcaption>") == 2
