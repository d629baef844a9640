"""``python -m verl_hoi.evaluate`` on bad input, run as a user runs it: each case builds its files in a
temporary folder from the shipped sample, runs the real command line there and checks the exit code 2,
the one ``error:`` line (the file, the line and what is wrong) and that no file changed or appeared."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_harness import PARQUET, REPO, assert_bad_input, jsonl, write_files

SAMPLE = json.loads((REPO / "recipes" / "sample" / "annotations.json").read_text())
NAME1, NAME2 = "HICO_test2015_00000001.jpg", "HICO_test2015_00000002.jpg"  # 640 x 427, 640 x 461
DET = {"human": [320, 306, 359, 349], "object": [148, 345, 376, 414], "hoi": 245, "score": 0.8}
GOOD = {"file_name": NAME2, "detections": [DET]}  # line 1 of most cases: the bad line is line 2
RESPONSE = {
    "file_name": NAME1,
    "response": "<think>x</think><answer>[]</answer>",
    "frame": "original",
    "image_size": [640, 427],
    "model_size": [644, 420],
}
GOOD_RESPONSE = {  # line 1 of the cases that score responses by log-probability
    "file_name": NAME2,
    "response": "[]",
    "frame": "original",
    "image_size": [640, 461],
    "token_logprobs": [-0.1],
    "token_offsets": [0],
}
ARGS = ("--annotations", "ann.json", "--predictions", "p.jsonl")
DUMP = {"input": "user\nFind the interactions.\nassistant\n", "output": "[]", "gts": "[]", "score": 1.0, "step": 1}


def detection(**changes: object) -> dict:
    """Line 2: NAME1 with one detection, ``changes`` applied to it (a value of None removes the key)."""
    det = {key: value for key, value in (DET | changes).items() if value is not None}
    return {"file_name": NAME1, "detections": [det]}


def response(**changes: object) -> dict:
    """Line 2: NAME1 as ``verl_hoi.predict`` writes it, ``changes`` applied (a value of None removes the key)."""
    return {key: value for key, value in (RESPONSE | changes).items() if value is not None}


def annotations(change: Callable[[dict], object]) -> str:
    doc = copy.deepcopy(SAMPLE)
    change(doc)
    return json.dumps(doc)


@dataclass(frozen=True)
class Case:
    """One bad input: the files to create (None: a folder), the arguments, the expected error.

    ``expect`` is the whole error line after ``error: ``, or when a tuple the fragments it must contain
    (for messages that end in a library's own words).
    """

    files: dict[str, object]
    expect: str | tuple[str, ...]
    args: tuple[str, ...] = ARGS
    extra: tuple[str, ...] = ()


def line_case(line: dict, message: str, *extra: str, first: dict = GOOD) -> Case:
    """A predictions file whose line 1 is ``first`` and line 2 is ``line``."""
    return Case({"p.jsonl": jsonl(first, line)}, f"p.jsonl: line 2: {message}", extra=extra)


GOOD_FILES = {"p.jsonl": jsonl(GOOD)}
DUMP_FILES = {"p.jsonl": jsonl(DUMP), "d.parquet": PARQUET}
IMAGE_SIZE_ERROR = "is not the image's size [640, 427] (a prediction for another image, or for a resized copy?)"

CASES = {
    # ------------------------------------------------------------------ options and files
    "unknown score policy": Case(
        GOOD_FILES,
        "argument --score-policy: invalid choice: 'best' (choose from 'auto', 'given', 'rank', 'constant', "
        "'logprob') (see python -m verl_hoi.evaluate --help)",
        extra=("--score-policy", "best"),
    ),
    "unknown split": Case(
        GOOD_FILES,
        "argument --split: invalid choice: 'val' (choose from 'test', 'train') "
        "(see python -m verl_hoi.evaluate --help)",
        extra=("--split", "val"),
    ),
    "unknown zero-shot setting": Case(
        GOOD_FILES,
        "argument --zero-shot: invalid choice: 'rf' (choose from 'rf_uc', 'nf_uc', 'uo', 'uv') "
        "(see python -m verl_hoi.evaluate --help)",
        extra=("--zero-shot", "rf"),
    ),
    "predictions left out": Case(
        GOOD_FILES,
        "the following arguments are required: --predictions (see python -m verl_hoi.evaluate --help)",
        ARGS[:2],
    ),
    "predictions missing": Case({}, "--predictions p.jsonl: no such file"),
    "predictions a folder": Case({"p.jsonl": None}, "--predictions p.jsonl: is a folder, not a file"),
    "annotations missing": Case(
        GOOD_FILES, "--annotations none.json: no such file", ("--annotations", "none.json", *ARGS[2:])
    ),
    "data missing": Case(GOOD_FILES, "--data d.parquet: no such file", extra=("--data", "d.parquet")),
    "known-object source missing": Case(
        GOOD_FILES,
        "--known-object-source anno.mat: no such file ('boxes' or HICO's anno.mat)",
        extra=("--known-object-source", "anno.mat"),
    ),
    "json a folder": Case(GOOD_FILES | {"out": None}, "--json out: is a folder, not a file", extra=("--json", "out")),
    "json in a missing folder": Case(
        GOOD_FILES, "--json no/r.json: folder no does not exist", extra=("--json", "no/r.json")
    ),
    "json is the predictions": Case(
        GOOD_FILES,
        "--json p.jsonl is also --predictions: refusing to write over an input",
        extra=("--json", "p.jsonl"),
    ),
    "json is the predictions by another path": Case(
        GOOD_FILES | {"sub": None},
        "--json p.jsonl is also --predictions: refusing to write over an input",
        extra=("--json", "sub/../p.jsonl"),
    ),
    "json is the annotations": Case(
        GOOD_FILES,
        "--json ann.json is also --annotations: refusing to write over an input",
        extra=("--json", "ann.json"),
    ),
    "json is the dump's parquet": Case(
        DUMP_FILES,
        "--json d.parquet is also --data: refusing to write over an input",
        extra=("--data", "d.parquet", "--json", "d.parquet"),
    ),
    "known-object source not a mat file": Case(
        GOOD_FILES | {"anno.mat": "hello"},
        "anno.mat: not a HICO anno.mat with anno_test and list_test (Mat file appears to be truncated)",
        extra=("--known-object-source", "anno.mat"),
    ),
    # ------------------------------------------------------------------ the predictions file
    "empty predictions": Case({"p.jsonl": ""}, "p.jsonl: no prediction lines (the file is empty or blank)"),
    "blank lines only": Case({"p.jsonl": "\n  \n\t\n"}, "p.jsonl: no prediction lines (the file is empty or blank)"),
    "a line that is not JSON": Case(
        {"p.jsonl": jsonl(GOOD) + "{'file_name': 1}\n"}, "p.jsonl: line 2 is not valid JSON"
    ),
    "a line that is a list": Case({"p.jsonl": jsonl(GOOD, [NAME1])}, "p.jsonl: line 2 is not a JSON object"),
    "a score of NaN": Case(
        {"p.jsonl": jsonl(GOOD) + json.dumps(detection(score=float("nan"))) + "\n"},
        "p.jsonl: line 2 is not valid JSON",
    ),
    "no file name": line_case({"detections": []}, "a line needs its 'file_name'"),
    "file name a number": line_case({"file_name": 1, "detections": []}, "'file_name' must be a string; got 1"),
    "file name not annotated": line_case(
        {"file_name": "HICO_test2015_99999999.jpg", "detections": []},
        "file name 'HICO_test2015_99999999.jpg' is not in the annotations",
    ),
    "file name twice": line_case(GOOD, f"{NAME2} was already predicted on line 1"),
    "neither detections nor response": line_case({"file_name": NAME1}, "a line needs 'detections' or 'response'"),
    # ------------------------------------------------------------------ detection lines
    "detections not a list": line_case(
        {"file_name": NAME1, "detections": DET},
        f"'detections' must be a list of objects; got {DET!r:.60}",
    ),
    "detection not an object": line_case(
        {"file_name": NAME1, "detections": [DET, 7]}, "detection 1: not an object; got 7"
    ),
    "box a string": line_case(
        detection(human="320, 306, 359, 349"),
        "detection 0: 'human' must be [x1, y1, x2, y2], 4 numbers; got '320, 306, 359, 349'",
    ),
    "coordinate a string": line_case(
        detection(object=[148, "345", 376, 414]),
        "detection 0: 'object' must be [x1, y1, x2, y2], 4 numbers; got [148, '345', 376, 414]",
    ),
    "coordinate a boolean": line_case(
        detection(human=[320, 306, True, 349]),
        "detection 0: 'human' must be [x1, y1, x2, y2], 4 numbers; got [320, 306, True, 349]",
    ),
    "box of three numbers": line_case(
        detection(human=[320, 306, 359]),
        "detection 0: 'human' must be [x1, y1, x2, y2], 4 numbers; got [320, 306, 359]",
    ),
    "box with x2 < x1": line_case(
        detection(object=[376, 345, 148, 414]),
        "detection 0: 'object' [376, 345, 148, 414] has x2 < x1 or y2 < y1 (boxes are [x1, y1, x2, y2])",
    ),
    "coordinate far too large": line_case(
        detection(human=[320, 306, 1e300, 349]),
        "detection 0: 'human' [320, 306, 1e+300, 349] has a coordinate that is not a finite number within ±1e+06",
    ),
    "hoi a boolean": line_case(
        detection(hoi=True), "detection 0: 'hoi' must be an integer in [0, 600) (a 0-based HOI class); got True"
    ),
    "hoi a float": line_case(
        detection(hoi=245.0), "detection 0: 'hoi' must be an integer in [0, 600) (a 0-based HOI class); got 245.0"
    ),
    "hoi out of range": line_case(
        detection(hoi=600), "detection 0: 'hoi' must be an integer in [0, 600) (a 0-based HOI class); got 600"
    ),
    "hoi negative": line_case(
        detection(hoi=-1), "detection 0: 'hoi' must be an integer in [0, 600) (a 0-based HOI class); got -1"
    ),
    "hoi missing": line_case(detection(hoi=None), "detection 0: no 'hoi'"),
    "score a string": line_case(detection(score="0.8"), "detection 0: 'score' must be a finite number; got '0.8'"),
    "score null": line_case(
        {"file_name": NAME1, "detections": [DET | {"score": None}]},
        "detection 0: 'score' must be a finite number; got None",
    ),
    "score missing": line_case(detection(score=None), "detection 0: no 'score' (score policy 'given' ranks by it)"),
    "logprob policy on detections": Case(
        GOOD_FILES,
        "p.jsonl: line 1: score policy 'logprob' needs responses, not detections",
        extra=("--score-policy", "logprob"),
    ),
    # ------------------------------------------------------------------ response lines
    "response not text": line_case(response(response=["[]"]), "'response' must be the model's text; got ['[]']"),
    "response without a frame": line_case(
        response(frame=None), "a response line needs its 'frame' (and 'image_size', 'model_size')"
    ),
    "unknown frame": line_case(
        response(frame="pixels"), "unknown frame 'pixels'; valid frames: resized, original, norm1000"
    ),
    "image size of another image": line_case(
        response(image_size=[320, 213]), f"'image_size' [320, 213] {IMAGE_SIZE_ERROR}"
    ),
    "image size as strings": line_case(
        response(image_size=["640", "427"]),
        "'image_size' must be [width, height], two integers >= 1; got ['640', '427']",
    ),
    "model size zero": line_case(
        response(model_size=[0, 0]), "'model_size' must be [width, height], two integers >= 1; got [0, 0]"
    ),
    "model size negative": line_case(
        response(model_size=[644, -420]), "'model_size' must be [width, height], two integers >= 1; got [644, -420]"
    ),
    "resized frame without a model size": line_case(
        response(frame="resized", model_size=None),
        "frame 'resized' needs 'model_size' (or 'min_pixels' and 'max_pixels')",
    ),
    "prefilled_think a string": line_case(
        response(prefilled_think="false"), "'prefilled_think' must be true, false or null; got 'false'"
    ),
    "given policy on responses": line_case(
        response(), "score policy 'given' needs detections with scores, not responses", "--score-policy", "given"
    ),
    "logprob policy without log-probabilities": line_case(
        response(),
        "score policy 'logprob' needs token_logprobs and token_offsets (predict --logprobs)",
        "--score-policy",
        "logprob",
        first=GOOD_RESPONSE,
    ),
    "log-probability null": line_case(
        response(token_logprobs=[-0.1, None], token_offsets=[0, 5]),
        "token_logprobs must be a list of numbers; got [-0.1, None]",
        "--score-policy",
        "logprob",
        first=GOOD_RESPONSE,
    ),
    "log-probabilities and offsets of other lengths": line_case(
        response(token_logprobs=[-0.1, -0.2], token_offsets=[0, 5, 9]),
        "token_logprobs has 2 entries but token_offsets has 3",
        "--score-policy",
        "logprob",
        first=GOOD_RESPONSE,
    ),
    # ------------------------------------------------------------------ verl validation dumps
    "dump without --data": Case(
        {"p.jsonl": jsonl(DUMP)},
        "p.jsonl: the predictions are a verl validation dump: pass --data with the parquet it validated on",
    ),
    "data not a parquet": Case(
        {"p.jsonl": jsonl(DUMP), "d.parquet": "a,b\n1,2\n"},
        ("d.parquet: not a parquet with 'prompt', 'reward_model' and 'extra_info' columns (",),
        extra=("--data", "d.parquet"),
    ),
    "dump line without gts": Case(
        {"p.jsonl": jsonl(DUMP, {"input": "x", "output": "[]"}), "d.parquet": PARQUET},
        "p.jsonl: line 2: not a line of a verl validation dump (needs 'input', 'output' and 'gts')",
        extra=("--data", "d.parquet"),
    ),
    "dump output not text": Case(
        {"p.jsonl": jsonl(DUMP | {"output": 5}), "d.parquet": PARQUET},
        "p.jsonl: line 1: 'output' must be text; got 5",
        extra=("--data", "d.parquet"),
    ),
    "dump index a string": Case(
        {"p.jsonl": jsonl(DUMP | {"index": "0"}), "d.parquet": PARQUET},
        "p.jsonl: line 1: 'index' must be an integer; got '0'",
        extra=("--data", "d.parquet"),
    ),
    "dump line of another parquet": Case(
        {"p.jsonl": jsonl(DUMP, DUMP | {"gts": '[{"other": 1}]'}), "d.parquet": PARQUET},
        "p.jsonl: line 2: matches no row of d.parquet (another parquet or frame?); 1 line(s) in all",
        extra=("--data", "d.parquet"),
    ),
    # ------------------------------------------------------------------ the annotations
    "annotations not JSON": Case(GOOD_FILES | {"ann.json": "{"}, ("ann.json: cannot read annotation JSON",)),
    "annotations of another format": Case(
        GOOD_FILES | {"ann.txt": "x"},
        "ann.txt: unsupported annotation file (expected anno_bbox.mat or instances_*2015.json)",
        ("--annotations", "ann.txt", "--predictions", "p.jsonl"),
    ),
    "annotated box a string": Case(
        GOOD_FILES | {"ann.json": annotations(lambda d: d["annotation"][1]["boxes_h"].__setitem__(0, "1, 2, 3, 4"))},
        ("ann.json: image 1 ('HICO_test2015_00000002.jpg'): boxes_h[0]", "'1, 2, 3, 4'"),
    ),
    "annotated hoi a boolean": Case(
        GOOD_FILES | {"ann.json": annotations(lambda d: d["annotation"][1]["hoi"].__setitem__(0, True))},
        ("ann.json: image 1 ('HICO_test2015_00000002.jpg'): hoi[0]", "True"),
    ),
    "annotated box with x2 < x1": Case(
        GOOD_FILES
        | {"ann.json": annotations(lambda d: d["annotation"][1]["boxes_o"].__setitem__(0, [393, 65, 174, 440]))},
        ("ann.json: image 1 ('HICO_test2015_00000002.jpg'): boxes_o[0]", "x2 < x1"),
    ),
    "annotated file name twice": Case(
        GOOD_FILES | {"ann.json": annotations(lambda d: d["filenames"].__setitem__(1, NAME1))},
        ("ann.json: image 1 ('HICO_test2015_00000001.jpg')", "already listed as image 0"),
    ),
    "annotated coordinate infinite": Case(
        GOOD_FILES | {"ann.json": annotations(lambda d: d["annotation"][1]["boxes_h"][0].__setitem__(2, 1e999))},
        ("ann.json: image 1 ('HICO_test2015_00000002.jpg'): boxes_h[0]", "inf"),
    ),
    # ------------------------------------------------------------------ an earlier result survives a failed run
    "bad line with a previous --json": Case(
        {"p.jsonl": jsonl(GOOD, detection(hoi=600)), "r.json": '{"earlier": "result"}\n'},
        "p.jsonl: line 2: detection 0: 'hoi' must be an integer in [0, 600) (a 0-based HOI class); got 600",
        extra=("--json", "r.json"),
    ),
}


@pytest.fixture(scope="module")
def parquet_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A parquet of one row (NAME1, index 0, ground truth ``[]``), the columns a dump is matched with."""
    row = {
        "prompt": [{"role": "user", "content": "<image>Find the interactions."}],
        "reward_model": {"style": "rule", "ground_truth": "[]"},
        "extra_info": {
            "index": 0,
            **{key: RESPONSE[key] for key in ("file_name", "frame", "image_size", "model_size")},
        },
    }
    path = tmp_path_factory.mktemp("dump") / "d.parquet"
    pq.write_table(pa.Table.from_pylist([row]), path)
    return path.read_bytes()


def build(folder: Path, files: dict[str, object], parquet: bytes) -> None:
    (folder / "ann.json").write_text(json.dumps(SAMPLE))
    write_files(folder, files, parquet)


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_bad_input_is_one_error_line_and_changes_nothing(tmp_path: Path, parquet_bytes: bytes, case: Case) -> None:
    build(tmp_path, case.files, parquet_bytes)
    assert_bad_input("verl_hoi.evaluate", tmp_path, [*case.args, *case.extra], case.expect)
