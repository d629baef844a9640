"""The converter's command line on bad input: one ``error:`` line naming the file, exit code 2, and
every file that was there before (an earlier output included) byte-identical afterwards.

Each case starts from the shipped sample copied into a temporary folder: ``annotations.json``,
``images/`` and an earlier ``out/test.parquet``, then breaks one thing.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from cli_harness import CommandResult, assert_user_error, png_header, run_command, snapshot, truncated
from PIL import Image
from test_hicodet import write_anno_bbox_mat

CLI = "data_prep/hicodet_to_parquet.py"
PREVIOUS = b"an earlier, good test.parquet"
IMAGE_0 = "image 0 ('HICO_test2015_00000001.jpg')"


@dataclass
class Workspace:
    """The sample in a temporary folder; each method breaks one thing and returns the arguments to run."""

    root: Path

    @property
    def annotations(self) -> Path:
        return self.root / "annotations.json"

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def out(self) -> Path:
        return self.root / "out"

    def argv(self, *extra: Any, **options: Any) -> list[str]:
        """The command line with ``options`` (``out=...``: ``--out``) replacing the defaults, then ``extra``."""
        values = {"annotations": self.annotations, "images": self.images, "split": "test", "out": self.out}
        values.update(options)
        argv = [CLI]
        for name, value in values.items():
            argv += [f"--{name}", str(value)]
        return argv + [str(e) for e in extra]

    def edit(self, path: tuple, value: Any, *extra: Any) -> list[str]:
        """Set ``doc[path[0]][path[1]]... = value`` in the annotations."""
        doc = json.loads(self.annotations.read_text())
        *parents, last = path
        node = doc
        for key in parents:
            node = node[key]
        node[last] = value
        self.annotations.write_text(json.dumps(doc))
        return self.argv(*extra)

    def write(self, name: str, content: bytes | str, *extra: Any, **options: Any) -> list[str]:
        """Write ``content`` to ``name`` (relative to the workspace)."""
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return self.argv(*extra, **options)

    def remove(self, name: str) -> list[str]:
        """Delete file ``name`` (relative to the workspace)."""
        (self.root / name).unlink()
        return self.argv()

    def folder(self, name: str, **options: Any) -> list[str]:
        """Make ``name`` (relative to the workspace) a folder, in place of the file there if any."""
        (self.root / name).unlink(missing_ok=True)
        (self.root / name).mkdir()
        return self.argv(**options)

    def image(self, name: str, content: bytes | tuple[int, int], *extra: Any) -> list[str]:
        """Replace image ``name`` by ``content`` (bytes, or a blank JPEG of size ``(w, h)``)."""
        if isinstance(content, tuple):
            Image.new("RGB", content).save(self.images / name)
        else:
            (self.images / name).write_bytes(content)
        return self.argv(*extra)

    def cut(self, name: str, *extra: Any) -> list[str]:
        """Cut image ``name`` to its first half."""
        return self.image(name, truncated(self.images / name), *extra)

    def text(self) -> str:
        return self.annotations.read_text()

    def paths(self) -> dict[str, str]:
        return {"root": str(self.root), "annotations": str(self.annotations), "images": str(self.images),
                "out": str(self.out)}  # fmt: skip


@pytest.fixture
def ws(tmp_path: Path, sample_annotations: Path, sample_images: Path) -> Workspace:
    shutil.copy(sample_annotations, tmp_path / "annotations.json")
    shutil.copytree(sample_images, tmp_path / "images")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "test.parquet").write_bytes(PREVIOUS)
    return Workspace(tmp_path)


def _mat(ws: Workspace) -> list[str]:
    """An anno_bbox.mat whose first image's human box has x2 < x1."""
    instances = json.loads(ws.text())
    instances["annotation"][0]["boxes_h"][0] = [320, 306, 300, 349]
    mat = ws.root / "anno_bbox.mat"
    write_anno_bbox_mat(mat, instances, "test")
    return ws.argv(annotations=mat)


def _all_images(ws: Workspace, content: bytes, *extra: Any) -> list[str]:
    for image in ws.images.iterdir():
        image.write_bytes(content)
    return ws.argv(*extra)


QWEN3_PROCESSOR = json.dumps(
    {"image_processor_type": "Qwen2VLImageProcessor", "patch_size": 16, "merge_size": 2, "temporal_patch_size": 2,
     "size": {"shortest_edge": 65536, "longest_edge": 16777216}}
)  # fmt: skip
"""The preprocessor_config.json of a Qwen3-VL or Qwen3.5 checkpoint (their processors' defaults)."""


def _processor(ws: Workspace, preprocessor: str, config: str | None = None, *extra: Any) -> list[str]:
    """A checkpoint folder ``ckpt`` with ``preprocessor_config.json`` (and ``config.json``), as ``--processor``."""
    ws.write("ckpt/preprocessor_config.json", preprocessor)
    if config is not None:
        ws.write("ckpt/config.json", config)
    return ws.argv("--processor", ws.root / "ckpt", *extra)


def _prompt_file(ws: Workspace, content: bytes | str, *extra: Any) -> list[str]:
    """``prompt.txt`` holding ``content``, as ``--prompt-file``."""
    return ws.write("prompt.txt", content, "--prompt-file", ws.root / "prompt.txt", *extra)


Case = tuple[str, Callable[[Workspace], list[str]], str]
"""(id, break the workspace and return the command line, the exact message after ``error: ``; ``{root}``,
``{annotations}``, ``{images}`` and ``{out}`` stand for the workspace's paths)."""

CASES: list[Case] = [
    # the annotation file
    ("annotations-missing", lambda w: w.argv(annotations=w.root / "nope.json"),
     "--annotations {root}/nope.json: no such file"),
    ("annotations-a-folder", lambda w: w.folder("folder", annotations=w.root / "folder"),
     "--annotations {root}/folder: is a folder, not a file"),
    ("annotations-empty", lambda w: w.write("annotations.json", ""), "{annotations}: annotation file is empty"),
    ("annotations-not-json", lambda w: w.write("annotations.json", "filenames: [a.jpg]"),
     "{annotations}: cannot read annotation JSON: Expecting value: line 1 column 1 (char 0)"),
    ("annotations-cut-off", lambda w: w.write("annotations.json", w.text()[:1000]),
     "{annotations}: cannot read annotation JSON: Expecting ',' delimiter: line 1 column 1000 (char 999)"),
    ("annotations-a-list", lambda w: w.write("annotations.json", "[]"),
     "{annotations}: expected a JSON object with keys 'filenames', 'size', 'annotation'"),
    ("annotations-other-layout", lambda w: w.write("annotations.json", '{"images": [], "annotations": []}'),
     "{annotations}: missing key(s) 'filenames', 'size', 'annotation' (not the instances_*2015.json layout)"),
    ("annotations-no-images", lambda w: w.write("annotations.json", '{"filenames": [], "size": [], "annotation": []}'),
     "{annotations}: lists no images"),
    ("annotations-unknown-suffix", lambda w: w.write("a.csv", "x", annotations=w.root / "a.csv"),
     "{root}/a.csv: unsupported annotation file (expected anno_bbox.mat or instances_*2015.json)"),
    ("mat-not-a-mat", lambda w: w.write("anno_bbox.mat", w.text(), annotations=w.root / "anno_bbox.mat"),
     "{root}/anno_bbox.mat: cannot read MATLAB file: ValueError: Unknown mat file type, version 46, 106"),
    ("mat-inverted-box", _mat,
     "{root}/anno_bbox.mat: bbox_test: " + IMAGE_0 + ": hoi(1): bboxhuman(1) [320, 306, 300, 349] has x2 < x1"),
    # values in the annotations
    ("box-a-string", lambda w: w.edit(("annotation", 0, "boxes_h", 0), "320, 306, 359, 349"),
     "{annotations}: " + IMAGE_0 + ": boxes_h[0] must be a list [x1, y1, x2, y2], got '320, 306, 359, 349'"),
    ("box-of-3", lambda w: w.edit(("annotation", 0, "boxes_o", 1), [148, 345, 376]),
     "{annotations}: " + IMAGE_0 + ": boxes_o[1] must be a list [x1, y1, x2, y2], got [148, 345, 376]"),
    ("box-numeric-string", lambda w: w.edit(("annotation", 0, "boxes_h", 0, 0), "320"),
     "{annotations}: " + IMAGE_0 + ": boxes_h[0] x1 is not a number: '320'"),
    ("box-x2-below-x1", lambda w: w.edit(("annotation", 0, "boxes_h", 0, 2), 300),
     "{annotations}: " + IMAGE_0 + ": boxes_h[0] [320.0, 306.0, 300, 349.0] has x2 < x1"),
    ("box-y2-below-y1", lambda w: w.edit(("annotation", 0, "boxes_o", 0, 3), 344),
     "{annotations}: " + IMAGE_0 + ": boxes_o[0] [148.0, 345.0, 376.0, 344] has y2 < y1"),
    ("box-nan", lambda w: w.edit(("annotation", 0, "boxes_h", 0, 1), float("nan")),
     "{annotations}: " + IMAGE_0 + ": boxes_h[0] y1 nan is not a finite number within ±1e+06"),
    ("box-1e400", lambda w: w.write("annotations.json", w.text().replace("[320.0,", "[1e400,", 1)),
     "{annotations}: " + IMAGE_0 + ": boxes_h[0] x1 inf is not a finite number within ±1e+06"),
    ("hoi-a-boolean", lambda w: w.edit(("annotation", 0, "hoi", 0), True),
     "{annotations}: " + IMAGE_0 + ": hoi[0] must be an integer, got True"),
    ("hoi-a-float", lambda w: w.edit(("annotation", 0, "hoi", 1), 245.5),
     "{annotations}: " + IMAGE_0 + ": hoi[1] must be an integer, got 245.5"),
    ("hoi-out-of-range", lambda w: w.edit(("annotation", 0, "hoi", 0), 600),
     "{annotations}: " + IMAGE_0 + ": hoi[0] 600 is out of range 0..599"),
    ("object-disagrees", lambda w: w.edit(("annotation", 0, "object", 0), 14),
     "{annotations}: " + IMAGE_0 + ": object[0] 14 ('bird') disagrees with hoi[0] 245, whose object is 13 ('bench')"),
    ("size-a-string", lambda w: w.edit(("size", 0, 0), "640"),
     "{annotations}: " + IMAGE_0 + ": width must be an integer, got '640'"),
    ("size-zero", lambda w: w.edit(("size", 0, 1), 0),
     "{annotations}: " + IMAGE_0 + ": height 0 is out of range 1..1000000"),
    ("size-one-number", lambda w: w.edit(("size", 0), [640]),
     "{annotations}: " + IMAGE_0 + ": size must be [width, height], got [640]"),
    ("name-listed-twice", lambda w: w.edit(("filenames", 4), "HICO_test2015_00000001.jpg"),
     "{annotations}: image 4 ('HICO_test2015_00000001.jpg'): file name already listed as image 0"),
    ("name-with-folder", lambda w: w.edit(("filenames", 0), "../images/HICO_test2015_00000001.jpg"),
     "{annotations}: image 0: file name '../images/HICO_test2015_00000001.jpg' is not a plain file name"),
    ("train-image-in-test", lambda w: w.edit(("filenames", 2), "HICO_train2015_00000003.jpg"),
     "{annotations}: image 2 ('HICO_train2015_00000003.jpg'): belongs to the train split, not 'test'"),
    ("test-file-as-train", lambda w: w.argv(split="train"),
     "{annotations}: " + IMAGE_0 + ": belongs to the test split, not 'train'"),
    # the images
    ("images-folder-missing", lambda w: w.argv(images=w.root / "nope"), "--images {root}/nope: no such folder"),
    ("images-a-file", lambda w: w.argv(images=w.annotations), "--images {annotations}: is a file, not a folder"),
    ("image-missing", lambda w: w.remove("images/HICO_test2015_00000003.jpg"),
     "1 of 8 images missing from {images} (first: HICO_test2015_00000003.jpg); use --skip-missing-images to "
     "leave them out"),
    ("image-a-folder", lambda w: w.folder("images/HICO_test2015_00000003.jpg"),
     "1 of 8 images missing from {images} (first: HICO_test2015_00000003.jpg); use --skip-missing-images to "
     "leave them out"),
    ("image-not-an-image", lambda w: w.image("HICO_test2015_00000008.jpg", b"<html>404 Not Found</html>"),
     "{images}/HICO_test2015_00000008.jpg: not an image file (or not in a format PIL reads)"),
    ("image-empty", lambda w: w.image("HICO_test2015_00000116.jpg", b""),
     "{images}/HICO_test2015_00000116.jpg: not an image file (or not in a format PIL reads)"),
    ("image-truncated", lambda w: w.cut("HICO_test2015_00000004.jpg"),
     "{images}/HICO_test2015_00000004.jpg: cannot read image: image file is truncated (9 bytes not processed)"),
    ("image-truncated-path-mode", lambda w: w.cut("HICO_test2015_00000004.jpg", "--image-mode", "path"),
     "{images}/HICO_test2015_00000004.jpg: cannot read image: image file is truncated (9 bytes not processed)"),
    ("image-bomb-header", lambda w: w.image("HICO_test2015_00000002.jpg", png_header(10000, 9000)),
     "{images}/HICO_test2015_00000002.jpg: image is 10000x9000, over the limit of 89478485 pixels"),
    ("image-huge-bomb-header", lambda w: w.image("HICO_test2015_00000002.jpg", png_header(65535, 65535)),
     "{images}/HICO_test2015_00000002.jpg: image is over the limit of 89478485 pixels"),
    ("image-wrong-size", lambda w: w.image("HICO_test2015_00000008.jpg", (10, 10)),
     "{images}/HICO_test2015_00000008.jpg: image is 10x10 but the annotation (image 4) says 640x480"),
    ("image-transposed", lambda w: w.image("HICO_test2015_00000001.jpg", (427, 640)),
     "{images}/HICO_test2015_00000001.jpg: image is 427x640 but the annotation (image 0) says 640x427"),
    ("image-wrong-size-not-skipped", lambda w: w.image("HICO_test2015_00000008.jpg", (10, 10), "--skip-bad-images"),
     "{images}/HICO_test2015_00000008.jpg: image is 10x10 but the annotation (image 4) says 640x480"),
    ("every-image-bad-and-skipped", lambda w: _all_images(w, b"", "--skip-bad-images"),
     "{out}/test.parquet: no rows to write"),
    # the output
    ("out-is-images", lambda w: w.argv(out=w.images),
     "--out {images} is also --images: refusing to write over an input"),
    ("out-is-images-via-dots", lambda w: w.argv(out=w.out / ".." / "images"),
     "--out {images} is also --images: refusing to write over an input"),
    ("out-is-annotations", lambda w: w.argv(out=w.annotations),
     "--out {annotations} is also --annotations: refusing to write over an input"),
    ("out-file-is-annotations",  # a .json file named like the output
     lambda w: w.write("data/test.parquet", w.text(), annotations=w.root / "data/test.parquet", out=w.root / "data"),
     "--out {root}/data/test.parquet is also --annotations: refusing to write over an input"),
    ("out-a-file", lambda w: w.write("notes.txt", "x", out=w.root / "notes.txt"),
     "--out {root}/notes.txt: is a file, not a folder"),
    ("out-below-a-file", lambda w: w.write("notes.txt", "x", out=w.root / "notes.txt" / "data"),
     "--out {root}/notes.txt/data: {root}/notes.txt is a file, not a folder"),
    ("out-file-a-folder", lambda w: w.folder("out/test.parquet"),
     "--out {out}/test.parquet: is a folder, not a file"),
    # option values and combinations
    ("pixels-inverted", lambda w: w.argv("--min-pixels", 60000, "--max-pixels", 50176),
     "need 0 < min_pixels <= max_pixels, got min_pixels=60000, max_pixels=50176"),
    ("max-pixels-under-a-patch", lambda w: w.argv("--min-pixels", 1, "--max-pixels", 100),
     "max_pixels must be in 784..89478485, got 100"),
    ("max-pixels-overflowing", lambda w: w.argv("--max-pixels", 10**20),
     "max_pixels must be in 784..89478485, got 100000000000000000000"),
    ("prompt-unknown", lambda w: w.argv("--prompt", "nope"),
     "unknown prompt 'nope'; available prompts: hoi_r1, hoi_r1_plain, hoi_r1_brief, hoi_r1_plain_brief"),
    ("no-thinking-with-thinking-prompt", lambda w: w.argv("--prompt", "hoi_r1_brief", "--no-thinking"),
     "--no-thinking conflicts with --prompt hoi_r1_brief, a template with thinking"),
    ("max-pixels-under-a-qwen3-block", lambda w: w.argv("--family", "qwen3_vl", "--min-pixels", 1, "--max-pixels", 900),
     "max_pixels must be in 1024..89478485, got 900"),
    ("seen-vocabulary-without-zero-shot", lambda w: w.argv("--prompt-vocabulary", "seen"),
     "prompt vocabulary 'seen' needs a zero-shot setting"),
    # --processor: a model or processor folder
    ("processor-missing", lambda w: w.argv("--processor", w.root / "ckpt"), "--processor {root}/ckpt: no such folder"),
    ("processor-without-config", lambda w: w.write("ckpt/config.json", '{"model_type": "qwen3_vl"}',
                                                   processor=w.root / "ckpt"),
     "--processor {root}/ckpt: no preprocessor_config.json or processor_config.json (not a model or processor "
     "folder)"),
    ("processor-config-not-json", lambda w: _processor(w, "{"),
     "--processor {root}/ckpt: cannot load its image processor (It looks like the config file at "
     "'{root}/ckpt/preprocessor_config.json' is not a valid JSON file.)"),
    ("processor-unknown-model-type", lambda w: _processor(w, QWEN3_PROCESSOR, '{"model_type": "llava"}'),
     "--processor {root}/ckpt: model_type 'llava' is of no known family; give --family"),
    ("processor-without-model-type", lambda w: _processor(w, QWEN3_PROCESSOR),
     "--processor {root}/ckpt: model_type None is of no known family; give --family"),
    ("processor-config-a-list", lambda w: _processor(w, QWEN3_PROCESSOR, "[]"),
     "--processor {root}/ckpt: config.json is not a JSON object"),
    ("processor-of-another-family", lambda w: _processor(w, QWEN3_PROCESSOR, '{"model_type": "qwen3_vl"}',
                                                         "--family", "qwen2_5_vl"),
     "--family qwen2_5_vl disagrees with --processor {root}/ckpt, a qwen3_vl (qwen3_vl)"),
    # --prompt-file: a user's prompt text
    ("prompt-file-missing", lambda w: w.argv("--prompt-file", w.root / "prompt.txt"),
     "--prompt-file {root}/prompt.txt: no such file"),
    ("prompt-file-empty", lambda w: _prompt_file(w, " \n"),
     "{root}/prompt.txt: the prompt file is empty"),
    ("prompt-file-not-utf8", lambda w: _prompt_file(w, b"\xff\xfe boxes"),
     "{root}/prompt.txt: not UTF-8 text"),
    ("prompt-file-with-image", lambda w: _prompt_file(w, "<image>Find them."),
     "{root}/prompt.txt: remove <image>: the image always comes before the text"),
    ("prompt-file-and-prompt", lambda w: _prompt_file(w, "Find them.", "--prompt", "hoi_r1"),
     "--prompt-file replaces --prompt and --no-thinking: give only one of them"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "message"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input(ws: Workspace, make: Callable[[Workspace], list[str]], message: str) -> None:
    argv = make(ws)
    before = snapshot(ws.root)
    result = run_command(argv)
    line = assert_user_error(result)
    assert line == "error: " + message.format(**ws.paths())
    assert snapshot(ws.root) == before


# argparse refuses these before the command runs: its own format, usage then one error line.
ARGPARSE_CASES = [
    ("limit-zero", ["--limit", "0"], "argument --limit: must be >= 1, got 0"),
    ("limit-negative", ["--limit=-3"], "argument --limit: must be >= 1, got -3"),
    ("limit-not-a-number", ["--limit", "ten"], "argument --limit: not an integer: 'ten'"),
    ("max-pixels-a-float", ["--max-pixels", "1e6"], "argument --max-pixels: not an integer: '1e6'"),
    ("split-unknown", ["--split", "val"], "argument --split: invalid choice: 'val'"),
    ("frame-unknown", ["--frame", "xyxy"], "argument --frame: invalid choice: 'xyxy'"),
    ("image-mode-unknown", ["--image-mode", "url"], "argument --image-mode: invalid choice: 'url'"),
    ("family-unknown", ["--family", "qwen9"], "argument --family: invalid choice: 'qwen9'"),
    ("zero-shot-unknown", ["--zero-shot", "rare"], "argument --zero-shot: invalid choice: 'rare'"),
]


def _assert_argparse_error(result: CommandResult, message: str) -> None:
    assert "Traceback" not in result.err, result.err
    assert result.code == 2, (result.code, result.err)
    lines = [line for line in result.err.splitlines() if "error: " in line]
    assert len(lines) == 1 and message in lines[0], result.err


@pytest.mark.parametrize(("extra", "message"), [c[1:] for c in ARGPARSE_CASES], ids=[c[0] for c in ARGPARSE_CASES])
def test_bad_option(ws: Workspace, extra: list[str], message: str) -> None:
    before = snapshot(ws.root)
    _assert_argparse_error(run_command(ws.argv(*extra)), message)
    assert snapshot(ws.root) == before


def test_missing_required_option(ws: Workspace) -> None:
    before = snapshot(ws.root)
    result = run_command([CLI, "--annotations", ws.annotations, "--images", ws.images, "--split", "test"])
    _assert_argparse_error(result, "the following arguments are required: --out")
    assert snapshot(ws.root) == before


def test_failed_run_removes_the_folders_it_made(ws: Workspace) -> None:
    ws.image("HICO_test2015_00000008.jpg", (10, 10))
    before = snapshot(ws.root)
    result = run_command(ws.argv(out=ws.root / "new" / "data"))
    assert_user_error(result, "image is 10x10 but the annotation (image 4) says 640x480")
    assert snapshot(ws.root) == before and not (ws.root / "new").exists()


def test_skip_bad_images_counts_them_and_converts_the_rest(ws: Workspace) -> None:
    ws.image("HICO_test2015_00000002.jpg", b"")
    ws.cut("HICO_test2015_00000019.jpg")
    before = snapshot(ws.root)
    result = run_command(ws.argv("--skip-bad-images", "--image-mode", "path"))
    assert result.code == 0, result.err
    assert (
        f"skipped 2 images that cannot be decoded (first: {ws.images}/HICO_test2015_00000002.jpg: not an image file "
        "(or not in a format PIL reads))\n" in result.err
    )
    assert result.out == f"wrote 6 rows to {ws.out}/test.parquet\n"
    extra = pq.read_table(ws.out / "test.parquet").column("extra_info").to_pylist()
    assert [e["index"] for e in extra] == [0, 2, 3, 4, 6, 7]
    # the output is the only file that changed
    after = snapshot(ws.root)
    assert after.keys() == before.keys()
    assert [name for name in after if after[name] != before[name]] == ["out/test.parquet"]


def test_limit_counts_converted_images_past_skipped_ones(ws: Workspace) -> None:
    ws.image("HICO_test2015_00000001.jpg", b"")
    result = run_command(ws.argv("--skip-bad-images", "--image-mode", "path", "--limit", "2"))
    assert result.code == 0, result.err
    extra = pq.read_table(ws.out / "test.parquet").column("extra_info").to_pylist()
    assert [e["index"] for e in extra] == [1, 2]


def test_mat_annotations_pass_the_same_checks(ws: Workspace) -> None:
    # the valid sample as anno_bbox.mat converts to the same rows as the JSON
    mat = ws.root / "anno_bbox.mat"
    write_anno_bbox_mat(mat, json.loads(ws.text()), "test")
    assert run_command(ws.argv("--image-mode", "path", out=ws.root / "a")).code == 0
    assert run_command(ws.argv("--image-mode", "path", annotations=mat, out=ws.root / "b")).code == 0
    assert pq.read_table(ws.root / "a" / "test.parquet").equals(pq.read_table(ws.root / "b" / "test.parquet"))
