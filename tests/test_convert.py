"""HICO-DET records to verl RLHFDataset rows (``verl_hoi.convert``): ground truth grouping and frames, the row
layout, parquet writing, missing, mis-sized and skipped images, and ``data_prep/hicodet_to_parquet.py``. The
bad-image messages: test_images.py."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from itertools import islice

import pyarrow.parquet as pq
import pytest
from cli_harness import REPO, SAMPLE_JPEG, truncated
from conftest import as_train_split
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from verl_hoi import prompts
from verl_hoi.answer import HOIPair
from verl_hoi.convert import (
    ConvertOptions,
    build_row,
    ground_truth_pairs,
    iter_rows,
    missing_images,
    read_image,
    row_schema,
    select_images,
    write_parquet,
)
from verl_hoi.families import get_family
from verl_hoi.hicodet import GroundTruthPair, ImageAnnotation, load_annotations
from verl_hoi.prompts import build_messages
from verl_hoi.vocab import hoi_id

CLI = REPO / "data_prep" / "hicodet_to_parquet.py"


def _load_cli():
    spec = importlib.util.spec_from_file_location("hicodet_to_parquet", CLI)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cli = _load_cli()

# ---------------------------------------------------------------------------------------------
# ground truth

H, OBJ = (10.0, 20.0, 110.0, 220.0), (50.0, 60.0, 150.0, 260.0)
H2 = (200.0, 20.0, 300.0, 220.0)
RIDE_MOTORCYCLE, SIT_ON_MOTORCYCLE, RIDE_BOAT = 153, 154, 38
RIDE, SIT_ON, MOTORCYCLE, BOAT = 76, 87, 3, 8


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        # two HOI classes on the same boxes: one item with both verbs, sorted by verb id
        (
            [(H, OBJ, SIT_ON_MOTORCYCLE), (H, OBJ, RIDE_MOTORCYCLE)],
            [HOIPair((10, 20, 110, 220), (50, 60, 150, 260), MOTORCYCLE, (RIDE, SIT_ON))],
        ),
        # an exact duplicate pair: one item, one verb
        (
            [(H, OBJ, RIDE_MOTORCYCLE), (H, OBJ, RIDE_MOTORCYCLE)],
            [HOIPair((10, 20, 110, 220), (50, 60, 150, 260), MOTORCYCLE, (RIDE,))],
        ),
        # same boxes, different objects: separate items
        (
            [(H, OBJ, RIDE_MOTORCYCLE), (H, OBJ, RIDE_BOAT)],
            [
                HOIPair((10, 20, 110, 220), (50, 60, 150, 260), MOTORCYCLE, (RIDE,)),
                HOIPair((10, 20, 110, 220), (50, 60, 150, 260), BOAT, (RIDE,)),
            ],
        ),
        # order of first appearance, a later pair joining the first item
        (
            [(H2, OBJ, RIDE_MOTORCYCLE), (H, OBJ, RIDE_MOTORCYCLE), (H2, OBJ, SIT_ON_MOTORCYCLE)],
            [
                HOIPair((200, 20, 300, 220), (50, 60, 150, 260), MOTORCYCLE, (RIDE, SIT_ON)),
                HOIPair((10, 20, 110, 220), (50, 60, 150, 260), MOTORCYCLE, (RIDE,)),
            ],
        ),
        # no pairs
        ([], []),
    ],
)
def test_ground_truth_grouping(pairs, expected):
    annotation = ImageAnnotation("x.jpg", 400, 300, tuple(GroundTruthPair(h, o, c) for h, o, c in pairs))
    assert ground_truth_pairs(annotation, "original", (392, 308)) == expected


@pytest.mark.parametrize(
    ("frame", "min_pixels", "max_pixels", "expected"),
    [
        # image 3 (640x425) as annotated
        ("original", 3136, 1003520, [[302, 182, 322, 236], [234, 85, 444, 298]]),
        # resized to 644x420: x * 644/640, y * 420/425; 302 * 1.00625 = 303.89 -> 304, 298 * 0.98824 = 294.49 -> 294
        ("resized", 3136, 1003520, [[304, 180, 324, 233], [235, 84, 447, 294]]),
        # resized to 252x168 (tiny budget): 302 * 252/640 = 118.9 -> 119, 236 * 168/425 = 93.3 -> 93
        ("resized", 3136, 50176, [[119, 72, 127, 93], [92, 34, 175, 118]]),
        # 0..1000: 302/640*1000 = 471.9 -> 472, 85/425*1000 = 200
        ("norm1000", 3136, 1003520, [[472, 428, 503, 555], [366, 200, 694, 701]]),
    ],
)
def test_sample_image_ground_truth(sample_annotations, frame, min_pixels, max_pixels, expected):
    annotation = load_annotations(sample_annotations)[2]
    options = ConvertOptions(frame=frame, min_pixels=min_pixels, max_pixels=max_pixels)
    row = build_row(annotation, 2, "/images/HICO_test2015_00000003.jpg", options)
    human, obj = expected
    assert json.loads(row["reward_model"]["ground_truth"]) == [
        {"human": human, "object": obj, "object class": "boat", "verb class": ["ride"]}
    ]


def test_thin_box_stays_valid_after_rounding():
    # 640x480 shrunk to 252x196 (x 0.39375, y 0.40833): the 2-pixel-wide human box [100, 50, 102, 60]
    # becomes [39.4, 20.4, 40.2, 24.5] and rounds to [39, 20, 40, 24]; [101, 50, 102, 51] rounds to
    # [40, 20, 40, 21] and is widened to [40, 20, 41, 21]
    annotation = ImageAnnotation(
        "x.jpg", 640, 480, (GroundTruthPair((101, 50, 102, 51), (100, 50, 102, 60), hoi_id(87, 13)),)
    )
    (pair,) = ground_truth_pairs(annotation, "resized", (252, 196))
    assert (pair.human, pair.object) == ((40, 20, 41, 21), (39, 20, 40, 24))


def test_sample_image_with_three_horse_pairs(sample_annotations):
    annotation = load_annotations(sample_annotations)[1]
    row = build_row(annotation, 1, b"", ConvertOptions(frame="original"))
    item = '{"human": [%s], "object": [%s], "object class": "horse", "verb class": ["%s"]}'
    items = [
        item % ("226, 18, 340, 210", "174, 65, 393, 440", "hold"),
        item % ("230, 19, 356, 212", "186, 62, 392, 438", "ride"),
        item % ("234, 13, 342, 202", "179, 61, 433, 374", "walk"),
    ]
    assert row["reward_model"]["ground_truth"] == "[" + ", ".join(items) + "]"


def test_row_layout(sample_annotations):
    annotation = load_annotations(sample_annotations)[7]  # the image without pairs
    options = ConvertOptions(image_mode="path", min_pixels=3136, max_pixels=50176)
    row = build_row(annotation, 7, "/images/HICO_test2015_00000154.jpg", options)
    assert row == {
        "data_source": "hico_det",
        # 640x480 over 50176 pixels: beta = sqrt(640 * 480 / 50176) = 2.474, sides floored to 28: 252x168
        "prompt": build_messages("hoi_r1", "resized", (252, 168)),
        "images": [{"image": "/images/HICO_test2015_00000154.jpg", "min_pixels": 3136, "max_pixels": 50176}],
        "ability": "hoi",
        "reward_model": {"style": "rule", "ground_truth": "[]"},
        "extra_info": {
            "file_name": "HICO_test2015_00000154.jpg",
            "image_size": [640, 480],
            "model_size": [252, 168],
            "frame": "resized",
            "min_pixels": 3136,
            "max_pixels": 50176,
            "family": "qwen2_5_vl",
            "patch_size": 14,
            "merge_size": 2,
            "split": "test",
            "index": 7,
            "prompt": "hoi_r1",
            "zero_shot": None,
            "prompt_vocabulary": None,
        },
    }


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"split": "val"}, "valid splits: train, test"),  # unknown split
        ({"frame": "xyxy"}, "valid frames: resized, original, norm1000"),  # unknown frame
        ({"image_mode": "url"}, "valid modes: embed, path"),  # unknown image mode
        ({"min_pixels": 10, "max_pixels": 5}, "min_pixels <= max_pixels"),  # inverted budget
        ({"min_pixels": 1, "max_pixels": 783}, r"max_pixels must be in 784\.\.89478485, got 783"),  # under a patch
        ({"max_pixels": 89478486}, r"max_pixels must be in 784\.\.89478485, got 89478486"),  # over PIL's limit
        ({"prompt": "nope"}, "hoi_r1"),  # unknown prompt: the message lists the registered ones
    ],
)
def test_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        ConvertOptions(**options)


def test_select_images(sample_annotations):
    records = load_annotations(sample_annotations)
    assert select_images(records, "test") == list(range(8))
    assert select_images(records, "train") == [0, 1, 2, 3, 4, 5, 6]  # image 154 has no pair


# ---------------------------------------------------------------------------------------------
# parquet writing


def _rows(sample_annotations, sample_images, image_mode="embed"):
    records = load_annotations(sample_annotations)
    return iter_rows(records, range(8), sample_images, ConvertOptions(image_mode=image_mode))


def test_embedded_bytes_are_the_file(tmp_path, sample_annotations, sample_images):
    path = tmp_path / "test.parquet"
    assert write_parquet(_rows(sample_annotations, sample_images), path, row_schema("embed"), rows_per_group=3) == 8
    table = pq.read_table(path)
    assert pq.ParquetFile(path).num_row_groups == 3  # 3 + 3 + 2 rows
    images = table.column("images").to_pylist()
    assert images[5][0]["bytes"] == (sample_images / "HICO_test2015_00000019.jpg").read_bytes()
    assert [e["index"] for e in table.column("extra_info").to_pylist()] == list(range(8))


def test_output_is_deterministic(tmp_path, sample_annotations, sample_images):
    first, second = tmp_path / "a.parquet", tmp_path / "b.parquet"
    write_parquet(_rows(sample_annotations, sample_images), first, row_schema("embed"))
    write_parquet(_rows(sample_annotations, sample_images), second, row_schema("embed"))
    assert first.read_bytes() == second.read_bytes()


@pytest.mark.parametrize("error", [ValueError("bad image"), KeyboardInterrupt()])
def test_failed_write_leaves_previous_file_and_no_temp(tmp_path, sample_annotations, sample_images, error):
    path = tmp_path / "test.parquet"
    path.write_bytes(b"previous")

    def rows():
        yield from list(_rows(sample_annotations, sample_images))[:5]
        raise error

    with pytest.raises(type(error)):
        write_parquet(rows(), path, row_schema("embed"), rows_per_group=2)
    assert path.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test.parquet"]


def test_no_rows_leave_previous_file(tmp_path):
    path = tmp_path / "test.parquet"
    path.write_bytes(b"previous")
    with pytest.raises(ValueError) as info:
        write_parquet(iter([]), path, row_schema("embed"))
    assert str(info.value) == f"{path}: no rows to write"
    assert [(p.name, p.read_bytes()) for p in tmp_path.iterdir()] == [("test.parquet", b"previous")]


def test_missing_images(tmp_path, sample_annotations, sample_images):
    records = load_annotations(sample_annotations)
    shutil.copy(sample_images / records[1].file_name, tmp_path)
    assert missing_images(records[:3], tmp_path) == [records[0].file_name, records[2].file_name]


def test_image_of_wrong_size(tmp_path, sample_annotations):
    records = load_annotations(sample_annotations)
    Image.new("RGB", (427, 640)).save(tmp_path / records[0].file_name)  # transposed
    with pytest.raises(ValueError) as info:
        next(iter_rows(records, [0], tmp_path, ConvertOptions()))
    path = tmp_path / records[0].file_name
    assert str(info.value) == f"{path}: image is 427x640 but the annotation (image 0) says 640x427"


@pytest.mark.parametrize("image_mode", ["embed", "path"])
def test_read_image_decodes_and_returns_what_it_decoded(image_mode):
    image, size = read_image(SAMPLE_JPEG, image_mode)
    assert size == (640, 427)
    assert image == (SAMPLE_JPEG.read_bytes() if image_mode == "embed" else str(SAMPLE_JPEG))


def test_bad_images_are_skipped_when_asked(tmp_path, sample_annotations, sample_images):
    records = load_annotations(sample_annotations)
    shutil.copytree(sample_images, tmp_path, dirs_exist_ok=True)
    (tmp_path / records[1].file_name).write_bytes(b"")
    (tmp_path / records[3].file_name).write_bytes(truncated(sample_images / records[3].file_name))
    skipped: list[str] = []
    rows = list(iter_rows(records, range(5), tmp_path, ConvertOptions(image_mode="path"), skipped))
    assert [row["extra_info"]["index"] for row in rows] == [0, 2, 4]
    assert skipped == [
        f"{tmp_path / records[1].file_name}: not an image file (or not in a format PIL reads)",
        f"{tmp_path / records[3].file_name}: cannot read image: image file is truncated (9 bytes not processed)",
    ]
    # an image of the wrong size is never skipped: the annotation or the folder is wrong
    Image.new("RGB", (10, 10)).save(tmp_path / records[0].file_name)
    with pytest.raises(ValueError) as info:
        next(iter_rows(records, [0], tmp_path, ConvertOptions(), skipped))
    path = tmp_path / records[0].file_name
    assert str(info.value) == f"{path}: image is 10x10 but the annotation (image 0) says 640x427"


def test_image_too_elongated_for_the_processor(tmp_path):
    # 201:1 is over qwen-vl-utils' aspect-ratio limit of 200
    Image.new("RGB", (2010, 10)).save(tmp_path / "long.png")
    with pytest.raises(ValueError) as info:
        next(iter_rows([ImageAnnotation("long.png", 2010, 10, ())], [0], tmp_path, ConvertOptions()))
    assert str(info.value) == f"{tmp_path / 'long.png'}: absolute aspect ratio must be smaller than 200, got 201.0"


# ---------------------------------------------------------------------------------------------
# command line


def _main(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def train_sample(tmp_path, sample_annotations, sample_images):
    """The sample renamed into a train split: annotations json and image folder."""
    return as_train_split(sample_annotations, sample_images, tmp_path)


def test_cli_train_skips_images_without_pairs(tmp_path, capsys, train_sample):
    annotations, images = train_sample
    code, out, err = _main(capsys, "--annotations", annotations, "--images", images, "--split", "train",
                           "--out", tmp_path / "out", "--image-mode", "path")  # fmt: skip
    assert code == 0
    assert "skipping 1 training images without a visible pair" in err
    table = pq.read_table(tmp_path / "out" / "train.parquet")
    assert [e["index"] for e in table.column("extra_info").to_pylist()] == [0, 1, 2, 3, 4, 5, 6]
    assert {e["split"] for e in table.column("extra_info").to_pylist()} == {"train"}
    # path mode stores absolute paths
    assert table.column("images").to_pylist()[0][0]["image"] == str((images / "HICO_train2015_00000001.jpg").resolve())


def test_cli_test_keeps_every_image_and_options(tmp_path, capsys, sample_annotations, sample_images):
    code, out, _ = _main(capsys, "--annotations", sample_annotations, "--images", sample_images, "--split", "test",
                         "--out", tmp_path, "--frame", "norm1000", "--no-thinking", "--limit", "3",
                         "--min-pixels", 3136, "--max-pixels", 50176)  # fmt: skip
    assert code == 0 and out.strip() == f"wrote 3 rows to {tmp_path / 'test.parquet'}"
    extra = pq.read_table(tmp_path / "test.parquet").column("extra_info").to_pylist()
    # 640x427, 640x461 and 640x425 all become 252x168 under 50176 pixels
    assert [(e["frame"], e["prompt"], e["max_pixels"], e["model_size"]) for e in extra] == [
        ("norm1000", "hoi_r1_plain", 50176, [252, 168]),
    ] * 3


@pytest.mark.parametrize(
    ("family", "frame", "patch", "sizes"),
    [
        # 640x427, 640x461, 640x425: sides rounded to multiples of 28 (Qwen2.5-VL: 427 / 28 = 15.25 -> 15,
        # 461 / 28 = 16.46 -> 16) or 32 (Qwen3-VL, Qwen3.5: 13.3 -> 13, 14.4 -> 14, 13.3 -> 13)
        ("qwen2_5_vl", "resized", 14, [[644, 420], [644, 448], [644, 420]]),
        ("qwen3_vl", "norm1000", 16, [[640, 416], [640, 448], [640, 416]]),
        ("qwen3_5", "norm1000", 16, [[640, 416], [640, 448], [640, 416]]),
    ],
)
def test_cli_family_sets_geometry_frame_and_budget(tmp_path, capsys, sample_annotations, sample_images, family, frame,
                                                   patch, sizes):  # fmt: skip
    code, _, err = _main(capsys, "--annotations", sample_annotations, "--images", sample_images, "--split", "test",
                         "--out", tmp_path, "--family", family, "--limit", "3")  # fmt: skip
    assert code == 0, err
    table = pq.read_table(tmp_path / "test.parquet")
    extra = table.column("extra_info").to_pylist()
    budget = (get_family(family).min_pixels, get_family(family).max_pixels)
    assert [(e["family"], e["frame"], e["patch_size"], e["merge_size"]) for e in extra] == [
        (family, frame, patch, 2)
    ] * 3
    assert [e["model_size"] for e in extra] == sizes
    assert {(e["min_pixels"], e["max_pixels"]) for e in extra} == {budget}
    assert {(i[0]["min_pixels"], i[0]["max_pixels"]) for i in table.column("images").to_pylist()} == {budget}


def test_cli_processor_folder_gives_geometry_budget_and_family(
    tmp_path, capsys, monkeypatch, sample_annotations, sample_images
):
    """A released checkpoint scored as its authors do: the processor's own budget, boxes in original pixels, their
    prompt from a file."""
    monkeypatch.setattr(prompts, "_REGISTRY", dict(prompts._REGISTRY))  # the file's prompt stays in this test
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "Qwen2VLImageProcessor", "patch_size": 16, "merge_size": 2, "temporal_patch_size": 2,
        "size": {"shortest_edge": 65536, "longest_edge": 16777216},
    }))  # fmt: skip
    (ckpt / "config.json").write_text('{"model_type": "qwen3_5"}')
    prompt = tmp_path / "their_prompt.txt"
    prompt.write_text('Detect every HOI in this {width}x{height} image as [{"human": [x1, y1, x2, y2]}].\n')
    code, _, err = _main(capsys, "--annotations", sample_annotations, "--images", sample_images, "--split", "test",
                         "--out", tmp_path / "out", "--processor", ckpt, "--frame", "original", "--prompt-file", prompt,
                         "--limit", "2")  # fmt: skip
    assert code == 0, err
    table = pq.read_table(tmp_path / "out" / "test.parquet").to_pylist()
    extra = table[0]["extra_info"]
    assert (extra["family"], extra["patch_size"], extra["min_pixels"], extra["max_pixels"]) == (
        "qwen3_5", 16, 65536, 16777216,
    )  # fmt: skip
    assert (extra["frame"], extra["model_size"], extra["prompt"]) == ("original", [640, 416], "file:their_prompt.txt")
    assert table[1]["prompt"][0]["content"] == (
        '<image>Detect every HOI in this 640x461 image as [{"human": [x1, y1, x2, y2]}].'
    )
    # the ground truth is in original pixels (HICO-DET's 1-based boxes as they are)
    assert json.loads(table[0]["reward_model"]["ground_truth"])[0]["human"] == [320, 306, 359, 349]


def test_cli_missing_images(tmp_path, capsys, sample_annotations, sample_images):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("HICO_test2015_00000001.jpg", "HICO_test2015_00000002.jpg", "HICO_test2015_00000116.jpg"):
        shutil.copy(sample_images / name, images)
    args = ["--annotations", sample_annotations, "--images", images, "--split", "test", "--out", tmp_path / "out"]
    code, _, err = _main(capsys, *args)
    assert code == 2
    assert err == (
        f"error: 5 of 8 images missing from {images} (first: HICO_test2015_00000003.jpg); "
        "use --skip-missing-images to leave them out\n"
    )
    assert not (tmp_path / "out").exists()
    # --limit 2 only needs the first two images
    assert _main(capsys, *args, "--limit", 2)[0] == 0
    code, _, err = _main(capsys, *args, "--skip-missing-images")
    assert code == 0 and "skipping 5 images missing" in err
    extra = pq.read_table(tmp_path / "out" / "test.parquet").column("extra_info").to_pylist()
    assert [e["index"] for e in extra] == [0, 1, 6]


def test_cli_wrong_image_size_writes_nothing(tmp_path, capsys, sample_annotations, sample_images):
    images = tmp_path / "images"
    shutil.copytree(sample_images, images)
    Image.new("RGB", (10, 10)).save(images / "HICO_test2015_00000008.jpg")
    code, _, err = _main(capsys, "--annotations", sample_annotations, "--images", images, "--split", "test",
                         "--out", tmp_path / "out")  # fmt: skip
    path = images / "HICO_test2015_00000008.jpg"
    assert code == 2 and f"error: {path}: image is 10x10 but the annotation (image 4) says 640x480\n" in err
    assert not (tmp_path / "out").exists()  # the folder the run made is removed again


@pytest.mark.parametrize("existing", [False, True])
def test_cli_ctrl_c_leaves_previous_output_and_no_litter(tmp_path, capsys, monkeypatch, sample_annotations,
                                                         sample_images, existing):  # fmt: skip
    out = tmp_path / "new" / "out"
    if existing:
        out.mkdir(parents=True)
        (out / "test.parquet").write_bytes(b"previous")
    rows = iter_rows  # the real rows, then Ctrl-C in the middle of the run

    def interrupted(*args, **kwargs):
        yield from islice(rows(*args, **kwargs), 5)
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "iter_rows", interrupted)
    code, _, err = _main(capsys, "--annotations", sample_annotations, "--images", sample_images, "--split", "test",
                         "--out", out, "--image-mode", "path")  # fmt: skip
    assert code == 130 and err.endswith("interrupted: nothing written\n")
    if existing:
        assert [(p.name, p.read_bytes()) for p in out.iterdir()] == [("test.parquet", b"previous")]
    else:
        assert list(tmp_path.iterdir()) == []  # both folders the run made are gone


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--prompt", "hoi_r1", "--no-thinking"], "error: --no-thinking conflicts with --prompt hoi_r1"),
        (["--prompt", "nope"], "error: unknown prompt"),
        (["--min-pixels", "60000", "--max-pixels", "50176"], "error: need 0 < min_pixels <= max_pixels"),
    ],
)
def test_cli_bad_option_values(tmp_path, capsys, sample_annotations, sample_images, extra, message):
    args = ["--annotations", sample_annotations, "--images", sample_images, "--split", "test", "--out", tmp_path]
    code, _, err = _main(capsys, *args, *extra)
    assert code == 2 and err.startswith(message) and err.count("\n") == 1


@pytest.mark.parametrize("exists", [True, False])
def test_cli_output_folder_not_writable(tmp_path, capsys, monkeypatch, sample_annotations, sample_images, exists):
    # tests may run as root, for whom every folder is writable: the permission check is what is tested
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    out = tmp_path / "out"
    if exists:
        out.mkdir()
    args = ["--annotations", sample_annotations, "--images", sample_images, "--split", "test", "--out", out]
    code, _, err = _main(capsys, *args)
    folder = out if exists else tmp_path
    assert (code, err) == (
        2,
        f"error: --out {out}: folder {folder} is not writable\n",
    )
    assert list(tmp_path.iterdir()) == ([out] if exists else [])


def test_cli_subprocess_help_and_bad_path(tmp_path):
    run = [sys.executable, str(CLI)]
    done = subprocess.run([*run, "--help"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "--skip-missing-images" in done.stdout and "--skip-bad-images" in done.stdout
    done = subprocess.run(
        [
            *run,
            "--annotations",
            str(tmp_path / "nope.mat"),
            "--images",
            str(tmp_path),
            "--split",
            "test",
            "--out",
            str(tmp_path / "out"),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr == f"error: --annotations {tmp_path / 'nope.mat'}: no such file\n"


_coord = st.integers(1, 640).map(float)
_pairs = st.lists(
    st.tuples(
        st.tuples(_coord, _coord, _coord, _coord), st.tuples(_coord, _coord, _coord, _coord), st.integers(0, 599)
    ),
    max_size=12,
)


@given(pairs=_pairs, frame=st.sampled_from(["resized", "original", "norm1000"]))
def test_grouping_keeps_every_hoi_once(pairs, frame):
    annotation = ImageAnnotation("x.jpg", 640, 640, tuple(GroundTruthPair(h, o, c) for h, o, c in pairs))
    items = ground_truth_pairs(annotation, frame, (644, 644))
    # one item per distinct (human, object, object class); the grouped HOI classes are exactly the input's
    assert len({(i.human, i.object, i.object_id) for i in items}) == len(items)
    grouped = {(i.human, i.object, hoi_id(v, i.object_id)) for i in items for v in i.verb_ids}
    if frame == "original":  # boxes as given, but never narrower than one unit

        def valid(box):
            x1, y1, x2, y2 = map(int, box)
            return (x1, y1, max(x2, x1 + 1), max(y2, y1 + 1))

        assert grouped == {(valid(h), valid(o), c) for h, o, c in pairs}
    assert {c for _, _, c in grouped} == {c for _, _, c in pairs}
    assert all(list(i.verb_ids) == sorted(set(i.verb_ids)) for i in items)
