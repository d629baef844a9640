"""The row metadata and the one row check of training, prediction and distillation (``verl_hoi.rows``):
the processor's pixel budget, ``check_row``'s refusals and what it accepts."""

import io

import pytest
from cli_harness import png_header
from conftest import TINY_MAX_PIXELS, TINY_MIN_PIXELS

from verl_hoi.rows import RowMeta, check_row, processor_geometry, processor_pixels


def test_processor_pixels_of_tiny_model(processor):
    assert processor_pixels(processor) == (TINY_MIN_PIXELS, TINY_MAX_PIXELS)
    # data.mm_processor_kwargs.size wins over the processor's config, key by key
    assert processor_pixels(processor, {"size": {"longest_edge": 99}}) == (TINY_MIN_PIXELS, 99)
    assert processor_pixels(processor, {"size": {"shortest_edge": 10}}) == (10, TINY_MAX_PIXELS)
    assert processor_pixels(None) is None
    # transformers 5 ignores max_pixels as a call argument: refuse it rather than trust it
    with pytest.raises(ValueError, match="data.mm_processor_kwargs.max_pixels is ignored"):
        processor_pixels(processor, {"max_pixels": 99})


def _jpeg(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    __import__("PIL.Image").Image.new("RGB", size).save(buffer, "JPEG")
    return buffer.getvalue()


GOOD_EXTRA = {
    "file_name": "a.jpg",
    "image_size": [640, 427],
    "model_size": [252, 168],
    "frame": "resized",
    "min_pixels": 3136,
    "max_pixels": 50176,
    "split": "test",
    "index": 0,
    "prompt": "hoi_r1",
}
CHECK_CASES = [
    # (extra_info changes, image entry changes, message)
    (
        {"image_size": ["640", 427]},
        {},
        "extra_info.image_size must be [width, height] in positive integers, got ['640', 427]",
    ),
    (
        {"image_size": [True, 427]},
        {},
        "extra_info.image_size must be [width, height] in positive integers, got [True, 427]",
    ),
    (
        {"image_size": [640.0, 427]},
        {},
        "extra_info.image_size must be [width, height] in positive integers, got [640.0, 427]",
    ),
    (
        {"image_size": [640, 427, 3]},
        {},
        "extra_info.image_size must be [width, height] in positive integers, got [640, 427, 3]",
    ),
    (
        {"model_size": "252x168"},
        {},
        "extra_info.model_size must be [width, height] in positive integers, got '252x168'",
    ),
    ({"model_size": [0, 168]}, {}, "extra_info.model_size must be [width, height] in positive integers, got [0, 168]"),
    ({"min_pixels": True}, {}, "extra_info.min_pixels must be a positive integer, got True"),
    ({"max_pixels": -5}, {}, "extra_info.max_pixels must be a positive integer, got -5"),
    ({"min_pixels": 60000}, {}, "need 0 < min_pixels <= max_pixels, got min_pixels=60000, max_pixels=50176"),
    ({"frame": "pixels"}, {}, "extra_info.frame 'pixels' is not one of resized, original, norm1000"),
    ({"frame": ["resized"]}, {}, "extra_info.frame ['resized'] is not one of resized, original, norm1000"),
    ({"file_name": 7}, {}, "extra_info.file_name must be a non-empty text, got 7"),
    ({"file_name": None}, {}, "extra_info lacks file_name (not a verl_hoi.convert row?)"),
    ({"index": -1}, {}, "extra_info.index must be an integer >= 0, got -1"),
    ({"split": 3}, {}, "extra_info.split must be a text, got 3"),
    ({"prefilled_think": "yes"}, {}, "extra_info.prefilled_think must be true or false, got 'yes'"),
    ({"prefilled_think": 1}, {}, "extra_info.prefilled_think must be true or false, got 1"),
    (
        {"model_size": [644, 420]},
        {},
        "model_size [644, 420] is not the smart resize [252, 168] of image_size [640, 427]",
    ),
    ({}, {"min_pixels": 3136.0}, "image entry has min_pixels=3136.0 but the row's boxes were made for min_pixels=3136"),
    ({}, {"bytes": None}, "image entry has no bytes and no image path (image=None)"),
    ({}, {"bytes": "not bytes"}, "image entry bytes must be binary, got str"),
    ({}, {"bytes": b"GIF89a not really"}, "the embedded image: not an image file (or not in a format PIL reads)"),
    ({}, {"bytes": b""}, "the embedded image: not an image file (or not in a format PIL reads)"),
    ({}, {"bytes": None, "image": "/nonexistent/a.jpg"}, "/nonexistent/a.jpg: cannot read image: No such file or"),
    ({}, {"bytes": png_header(10_000, 10_000)}, "the embedded image: image is 10000x10000, over the limit of"),
    ({"max_pixels": 10**9}, {"max_pixels": 10**9}, "max_pixels must be in 784..89478485, got 1000000000"),
    ({}, {"bytes": _jpeg((427, 640))}, "the image is 427x640 but extra_info.image_size is [640, 427]"),
    ({"family": ""}, {}, "extra_info.family must be a non-empty text, got ''"),
    ({"zero_shot": "rf"}, {}, "extra_info.zero_shot 'rf' is not one of rf_uc, nf_uc, uo, uv"),
    (
        {"zero_shot": "uo", "prompt_vocabulary": "unseen"},
        {},
        "extra_info.prompt_vocabulary 'unseen' is not one of full, seen",
    ),
    ({"prompt_vocabulary": "seen"}, {}, "extra_info.prompt_vocabulary 'seen' needs a zero_shot setting"),
    ({"patch_size": 14.0}, {}, "extra_info.patch_size must be a positive integer, got 14.0"),
    ({"merge_size": 0}, {}, "extra_info.merge_size must be a positive integer, got 0"),
    (
        {"family": "my_vlm"},
        {},
        "extra_info lacks patch_size and unknown model family 'my_vlm'; valid families: qwen2_5_vl, qwen3_vl, qwen3_5",
    ),
    # a Qwen3-VL row (32-pixel blocks) whose model_size is Qwen2.5-VL's
    (
        {"family": "qwen3_vl"},
        {},
        "model_size [252, 168] is not the smart resize [256, 160] of image_size [640, 427] with min_pixels=3136, "
        "max_pixels=50176 in 32-pixel blocks",
    ),
    # the processor (the tiny Qwen2.5-VL's budget, 14-pixel patches) against a row made for 16-pixel patches
    (
        {"family": "qwen3_vl", "model_size": [256, 160]},
        {},
        "the row was made for qwen3_vl (16-pixel patches merged 2x2) but the model's processor cuts 14-pixel "
        "patches merged 2x2; convert the data for the model's family",
    ),
]


@pytest.mark.parametrize(("extra", "entry", "message"), CHECK_CASES, ids=[c[2][:40] for c in CHECK_CASES])
def test_check_row_refuses(extra, entry, message):
    image = {"bytes": _jpeg((640, 427)), "min_pixels": 3136, "max_pixels": 50176} | entry
    messages = [{"role": "user", "content": "<image>Find the interactions."}]
    with pytest.raises(ValueError) as error:
        check_row(GOOD_EXTRA | extra, [image], (3136, 50176), messages, (14, 2))
    assert str(error.value).startswith(message)


def test_check_row_accepts_the_converters_row():
    image = {"bytes": _jpeg((640, 427)), "min_pixels": 3136, "max_pixels": 50176}
    messages = [{"role": "user", "content": "<image>Find the interactions."}]
    meta = check_row(GOOD_EXTRA | {"prefilled_think": False}, [image], (3136, 50176), messages, (14, 2))
    assert meta == RowMeta(**(GOOD_EXTRA | {"image_size": (640, 427), "model_size": (252, 168)}), prefilled_think=False)
    # a row written before families existed is a Qwen2.5-VL row, and says so when written again
    assert (meta.family, meta.patch_size, meta.merge_size, meta.block) == ("qwen2_5_vl", 14, 2, 28)
    geometry = {"family": "qwen2_5_vl", "patch_size": 14, "merge_size": 2, "zero_shot": None, "prompt_vocabulary": None}
    assert meta.to_dict() == GOOD_EXTRA | geometry | {"prefilled_think": False}
    assert check_row(GOOD_EXTRA, [{"bytes": image["bytes"]}], None).model_size == (252, 168)  # budget from the row
    with pytest.raises(ValueError, match="a row has one image entry, got 2"):
        check_row(GOOD_EXTRA, [image, image], None)
    with pytest.raises(ValueError, match="extra_info must be an object, got '{}'"):
        check_row("{}", [image], None)


def test_check_row_of_each_family():
    """A 640x427 image at 3136..50176 pixels: 252x168 in 28-pixel blocks (9x6 tokens), 256x160 in 32 (8x5)."""
    image = {"bytes": _jpeg((640, 427)), "min_pixels": 3136, "max_pixels": 50176}
    qwen3 = GOOD_EXTRA | {"model_size": [256, 160], "family": "qwen3_vl"}
    assert check_row(qwen3, [image], (3136, 50176), None, (16, 2)).block == 32
    # a family another project registered need not be known here when the row names its geometry
    other = qwen3 | {"family": "my_vlm", "patch_size": 16, "merge_size": 2}
    assert check_row(other, [image], None, None, (16, 2)).family == "my_vlm"
    # the processor keeps the row's 256x160 image only with a budget that holds it
    with pytest.raises(ValueError, match="would resize the 256x160 image"):
        check_row(qwen3, [image], (65536, 1310720), None, (16, 2))


def test_processor_geometry_of_tiny_model(processor):
    assert processor_geometry(processor) == (14, 2)
    assert processor_geometry(None) is None
    assert processor_geometry({"image_processor": {"patch_size": 16, "merge_size": 2}}) == (16, 2)
