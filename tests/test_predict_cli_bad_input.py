"""``python -m verl_hoi.predict`` on bad input, as a user types it (``--backend hf``, the tiny Qwen2.5-VL on
CPU): every case ends with exit code 2 and one ``error:`` line naming the file and the row or line, and leaves
the folder exactly as it was (every file byte-identical, nothing new: no empty or partial ``--out``).

Each case starts from a folder with a copy of the tiny checkpoint (``model/``), the sample's first three
images converted for it (``test.parquet``) and no ``preds.jsonl``, then breaks one thing.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_harness import CommandResult, assert_user_error, run_command, snapshot
from conftest import TINY_MAX_PIXELS, TINY_MIN_PIXELS

from verl_hoi.convert import ConvertOptions, iter_rows, row_schema
from verl_hoi.hicodet import load_annotations

NAMES = [f"HICO_test2015_0000000{i}.jpg" for i in (1, 2, 3)]


@pytest.fixture(scope="module")
def sample_rows(sample_annotations, sample_images) -> list[dict]:
    """Rows 0-2 of the sample (640x427, 640x461, 640x425), embedded, at the tiny processor's pixel budget."""
    options = ConvertOptions(min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS)
    return list(iter_rows(load_annotations(sample_annotations), [0, 1, 2], sample_images, options))


class Workspace:
    """A case's folder and the command line it runs; a case changes what it needs before the run."""

    def __init__(self, root: Path, rows: list[dict], model_dir: Path, images: Path):
        self.root = root
        self.images = images
        self.model = root / "model"
        shutil.copytree(model_dir, self.model)
        self.rows = copy.deepcopy(rows)
        self.schema: pa.Schema | None = row_schema("embed")  # None: inferred from the rows
        self.parquet = root / "test.parquet"  # written from rows and schema unless a case writes it
        self.data = self.parquet  # --data
        self.out = root / "preds.jsonl"
        self.extra: list[str] = []

    def file(self, name: str, content: bytes | str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    def set_all(self, key: str, value: object) -> None:
        """``extra_info[key] = value`` in every row (a column of one type; row 0 is the first bad one)."""
        for row in self.rows:
            row["extra_info"][key] = value
        self.schema = None

    def write_data(self) -> None:
        if not self.parquet.exists():
            pq.write_table(pa.Table.from_pylist(self.rows, schema=self.schema), self.parquet)

    def args(self) -> list[str]:
        return ["-m", "verl_hoi.predict", "--model", str(self.model), "--data", str(self.data)] + [
            "--out",
            str(self.out),
            "--backend",
            "hf",
            "--max-new-tokens",
            "4",
            *self.extra,
        ]

    def names(self) -> dict[str, str]:
        return {"data": str(self.data), "out": str(self.out), "model": str(self.model), "root": str(self.root)}


def _predictions(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


GOOD_LINE = json.dumps({"file_name": NAMES[0], "response": "[]"})


def _edit_model_json(ws: Workspace, name: str, edit: Callable[[dict], None]) -> None:
    path = ws.model / name
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))


def _truncate_weights(ws: Workspace) -> None:
    path = ws.model / "model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])


# (id, what the case changes, fragments of the one error line; {data}, {out}, {model}, {root} are the paths)
CASES: list[tuple[str, Callable[[Workspace], object], tuple[str, ...]]] = [
    # --- paths, refused before anything is read ---
    ("model missing", lambda ws: setattr(ws, "model", ws.root / "nope"), ("--model {root}/nope: no such folder",)),
    (
        "model without config",
        lambda ws: (ws.model / "config.json").unlink(),
        ("--model {model}: no config.json (not a Hugging Face checkpoint folder)",),
    ),
    ("model is a file", lambda ws: setattr(ws, "model", ws.data), ("--model {data}: is a file, not a folder",)),
    (
        "data missing",
        lambda ws: setattr(ws, "data", ws.root / "nope.parquet"),
        ("--data {root}/nope.parquet: no such file",),
    ),
    (
        "data is a folder",
        lambda ws: (ws.file("parts/part-0.parquet", b""), setattr(ws, "data", ws.root / "parts")),
        ("--data {root}/parts: is a folder, not a file",),
    ),
    ("out is a folder", lambda ws: setattr(ws, "out", ws.root), ("--out {root}: is a folder, not a file",)),
    (
        "out in a missing folder",
        lambda ws: setattr(ws, "out", ws.root / "no" / "preds.jsonl"),
        ("--out {root}/no/preds.jsonl: folder {root}/no does not exist",),
    ),
    ("out is data", lambda ws: setattr(ws, "out", ws.data), ("--out {data} is also --data: refusing to write over",)),
    (
        "out is data through ..",
        lambda ws: (ws.file("sub/keep", ""), setattr(ws, "out", ws.root / "sub" / ".." / "test.parquet")),
        ("--out {data} is also --data",),
    ),
    (
        "out is a link to data",
        lambda ws: (os.symlink(ws.data, ws.root / "link.jsonl"), setattr(ws, "out", ws.root / "link.jsonl")),
        ("--out {root}/link.jsonl is also --data",),
    ),
    ("out is the model", lambda ws: setattr(ws, "out", ws.model), ("--out {model}: is a folder, not a file",)),
    (
        "out inside the model",
        lambda ws: setattr(ws, "out", ws.model / "preds.jsonl"),
        ("--out {model}/preds.jsonl is inside --model {model}: refusing to write into the checkpoint",),
    ),
    # --- the --data file itself ---
    (
        "data not parquet",
        lambda ws: ws.file("test.parquet", "file_name,response\n"),
        ("{data}: not a parquet file that can be read (",),
    ),
    ("data empty file", lambda ws: ws.file("test.parquet", b""), ("{data}: not a parquet file that can be read",)),
    (
        "data cut in half",
        lambda ws: (ws.write_data(), ws.file("test.parquet", ws.data.read_bytes()[: ws.data.stat().st_size // 2])),
        ("{data}: not a parquet file that can be read",),
    ),
    (
        "data without extra_info",
        lambda ws: pq.write_table(pa.Table.from_pylist(ws.rows).drop_columns(["extra_info"]), ws.data),
        ("{data}: no extra_info column (not written by data_prep/hicodet_to_parquet.py?)",),
    ),
    (
        "data without rows",
        lambda ws: pq.write_table(row_schema("embed").empty_table(), ws.data),
        ("{data}: no rows",),
    ),
    # --- an existing --out that is not a predictions file ---
    (
        "out damaged before its last line",
        lambda ws: ws.file("preds.jsonl", _predictions([GOOD_LINE, '{"file_name": "x', GOOD_LINE])),
        ("{out}: line 2 is not valid JSON",),
    ),
    (
        "out line not an object",
        lambda ws: ws.file("preds.jsonl", _predictions(["[1, 2]", GOOD_LINE])),
        ("{out}: line 1 is not a JSON object",),
    ),
    (
        "out line without file_name",
        lambda ws: ws.file("preds.jsonl", _predictions([GOOD_LINE, '{"response": "[]"}'])),
        ('{out}: line 2: no text "file_name" (not a verl_hoi.predict output?)',),
    ),
    (
        "out is an image",
        lambda ws: ws.file("preds.jsonl", (ws.images / NAMES[0]).read_bytes()),
        ("{out}: line 1 is not valid JSON",),
    ),
    # --- rows: metadata (nothing coerced) ---
    (
        "frame unknown",
        lambda ws: ws.rows[2]["extra_info"].update(frame="pixels"),
        ("{data}: row 2 (HICO_test2015_00000003.jpg): extra_info.frame 'pixels' is not one of resized",),
    ),
    (
        "model_size a string",
        lambda ws: ws.set_all("model_size", "252x168"),
        ("{data}: row 0 (HICO_test2015_00000001.jpg): extra_info.model_size must be [width, height]", "'252x168'"),
    ),
    (
        "image_size booleans",
        lambda ws: ws.set_all("image_size", [True, True]),
        ("{data}: row 0 (HICO_test2015_00000001.jpg): extra_info.image_size must be", "got [True, True]"),
    ),
    (
        "image_size floats",
        lambda ws: ws.set_all("image_size", [640.0, 427.0]),
        ("{data}: row 0 (HICO_test2015_00000001.jpg): extra_info.image_size must be", "got [640.0, 427.0]"),
    ),
    (
        "prefilled_think a number",
        lambda ws: ws.set_all("prefilled_think", 1),
        ("{data}: row 0 (HICO_test2015_00000001.jpg): extra_info.prefilled_think must be true or false, got 1",),
    ),
    (
        "prefilled_think a string",
        lambda ws: ws.set_all("prefilled_think", "false"),
        ("{data}: row 0 (HICO_test2015_00000001.jpg): extra_info.prefilled_think must be true or false, got 'false'",),
    ),
    (
        "file_name twice",
        lambda ws: ws.rows[2]["extra_info"].update(file_name=NAMES[0]),
        ("{data}: row 2 (HICO_test2015_00000001.jpg): file_name is also that of row 0",),
    ),
    (
        "model_size not the resize",
        lambda ws: ws.rows[1]["extra_info"].update(model_size=[224, 168]),
        ("{data}: row 1 (HICO_test2015_00000002.jpg): model_size [224, 168] is not the smart resize [252, 168]",),
    ),
    (
        "extra_info missing in a row",
        lambda ws: ws.rows[1].update(extra_info=None),
        ("{data}: row 1: extra_info must be an object, got None",),
    ),
    # --- rows: images and prompt ---
    (
        "image entry of another budget",
        lambda ws: ws.rows[1]["images"][0].update(max_pixels=1280 * 28 * 28),
        ("{data}: row 1 (HICO_test2015_00000002.jpg): image entry has max_pixels=1003520 but the row's",),
    ),
    (
        "image truncated",
        lambda ws: ws.rows[1]["images"][0].update(bytes=ws.rows[1]["images"][0]["bytes"][:-300]),
        ("{data}: row 1 (HICO_test2015_00000002.jpg): the embedded image: cannot read image: image file is truncated",),
    ),
    (
        "image not an image",
        lambda ws: ws.rows[2]["images"][0].update(bytes=b"<html>not found</html>"),
        (
            "{data}: row 2 (HICO_test2015_00000003.jpg): the embedded image: not an image file (or not in a format "
            "PIL reads)",
        ),
    ),
    (
        "image of another size",
        lambda ws: ws.rows[0]["images"][0].update(bytes=ws.rows[1]["images"][0]["bytes"]),
        ("{data}: row 0 (HICO_test2015_00000001.jpg): the image is 640x461 but extra_info.image_size is [640, 427]",),
    ),
    (
        "image path missing",
        lambda ws: (
            [row.update(images=[{"image": str(ws.images / NAMES[i])}]) for i, row in enumerate(ws.rows)],
            ws.rows[1].update(images=[{"image": str(ws.root / "gone.jpg")}]),
            setattr(ws, "schema", None),
        ),
        ("{data}: row 1 (HICO_test2015_00000002.jpg): {root}/gone.jpg: cannot read image: No such file or directory",),
    ),
    (
        "two images in a row",
        lambda ws: ws.rows[1].update(images=ws.rows[1]["images"] * 2),
        ("{data}: row 1 (HICO_test2015_00000002.jpg): a row has one image entry, got 2",),
    ),
    (
        "prompt without <image>",
        lambda ws: ws.rows[2]["prompt"][0].update(content="Find the interactions."),
        ("{data}: row 2 (HICO_test2015_00000003.jpg): the prompt has 0 <image> placeholder(s) for 1 image(s)",),
    ),
    # --- the checkpoint ---
    (
        "processor budget below the rows",
        lambda ws: _edit_model_json(
            ws, "processor_config.json", lambda c: c["image_processor"]["size"].update(longest_edge=30000)
        ),
        (
            "{data}: row 0 (HICO_test2015_00000001.jpg): the processor (min_pixels=3136, max_pixels=30000) would "
            "resize the 252x168 image the row was built for",
        ),
    ),
    (
        "model without processor",
        lambda ws: (ws.model / "processor_config.json").unlink(),
        ("--model {model}: cannot load its processor (Can't load image processor for",),
    ),
    (
        "model config not JSON",
        lambda ws: ws.file("model/config.json", "{model_type: qwen2_5_vl"),
        ("--model {model}: config.json is not valid JSON (Expecting property name enclosed in double quotes",),
    ),
    (
        "model weights missing",
        lambda ws: (ws.model / "model.safetensors").unlink(),
        ("--model {model}: cannot load the model (Error no file named model.safetensors",),
    ),
    ("model weights cut off", _truncate_weights, ("--model {model}: cannot load the model (",)),
    # --- options checked when the model is loaded ---
    (
        "device unknown",
        lambda ws: ws.extra.extend(["--device", "tpu9"]),
        ("--device tpu9: Invalid device string: 'tpu9'",),
    ),
    (
        "device cuda without a GPU",
        lambda ws: ws.extra.extend(["--device", "cuda:0"]),
        ("--device cuda:0: CUDA is not available here",),
    ),
]


def _run(ws: Workspace) -> tuple[CommandResult, dict[str, bytes], dict[str, bytes]]:
    ws.write_data()
    before = snapshot(ws.root)
    result = run_command(ws.args(), cwd=ws.root)
    return result, before, snapshot(ws.root)


@pytest.mark.parametrize(("setup", "fragments"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(
    tmp_path, sample_rows, tiny_model_dir, sample_images, setup, fragments
):
    if "cuda" in " ".join(fragments) and __import__("torch").cuda.is_available():
        pytest.skip("a GPU is here")
    ws = Workspace(tmp_path, sample_rows, tiny_model_dir, sample_images)
    setup(ws)
    result, before, after = _run(ws)
    assert_user_error(result, *(fragment.format(**ws.names()) for fragment in fragments))
    assert after == before


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_vllm_missing_is_one_line_after_the_checks(tmp_path, sample_rows, tiny_model_dir, sample_images):
    ws = Workspace(tmp_path, sample_rows, tiny_model_dir, sample_images)
    ws.extra = ["--backend", "vllm"]
    result, before, after = _run(ws)
    assert_user_error(result, "vllm is not installed: pip install -e '.[train]' on a GPU machine, or use --backend hf")
    assert after == before


def test_torn_tail_is_kept_when_the_run_fails(tmp_path, sample_rows, tiny_model_dir, sample_images):
    # The cut-off line is only removed right before appending: a run that stops first leaves it.
    ws = Workspace(tmp_path, sample_rows, tiny_model_dir, sample_images)
    ws.file("preds.jsonl", GOOD_LINE + '\n{"file_name": "HICO_test2015_0000')
    ws.rows[2]["extra_info"]["frame"] = "pixels"
    result, before, after = _run(ws)
    assert_user_error(result, f"{ws.data}: row 2 (HICO_test2015_00000003.jpg): extra_info.frame 'pixels'")
    assert after == before


def test_good_run_after_a_torn_tail(tmp_path, sample_rows, tiny_model_dir, sample_images):
    # The control case: the same folder without the mistake predicts the two missing images.
    ws = Workspace(tmp_path, sample_rows, tiny_model_dir, sample_images)
    ws.file("preds.jsonl", GOOD_LINE + '\n{"file_name": "HICO_test2015_0000')
    result, before, after = _run(ws)
    assert result.code == 0, result.err
    assert "Traceback" not in result.err and "removed an incomplete last line" in result.err
    assert [json.loads(line)["file_name"] for line in ws.out.read_text().splitlines()] == NAMES
    assert ws.out.read_text().startswith(GOOD_LINE + "\n")
    assert {k: v for k, v in after.items() if k != "preds.jsonl"} == {
        k: v for k, v in before.items() if k != "preds.jsonl"
    }


# Options argparse refuses, in the same one-line form.
OPTION_CASES = [
    (["--batch-size", "0"], "argument --batch-size: must be >= 1, got 0"),
    (["--max-new-tokens", "-1"], "argument --max-new-tokens: must be >= 1, got -1"),
    (["--limit", "ten"], "argument --limit: not an integer: 'ten'"),
    (["--backend", "tpu"], "argument --backend: invalid choice: 'tpu' (choose from 'vllm', 'hf')"),
]


@pytest.mark.parametrize(("extra", "message"), OPTION_CASES, ids=[c[0][0] for c in OPTION_CASES])
def test_bad_option_is_one_line(tmp_path, sample_rows, tiny_model_dir, sample_images, extra, message):
    ws = Workspace(tmp_path, sample_rows, tiny_model_dir, sample_images)
    ws.extra = extra
    result, before, after = _run(ws)
    assert_user_error(result, f"error: {message} (see python -m verl_hoi.predict --help)")
    assert after == before
