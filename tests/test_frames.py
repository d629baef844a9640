import importlib.util
import io
from dataclasses import dataclass

import numpy as np
import pytest
from conftest import REPO, TINY_MAX_PIXELS, TINY_MIN_PIXELS
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from transformers import Qwen2VLImageProcessor
from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as transformers_smart_resize

from verl_hoi import frames, prompts, teacher
from verl_hoi.convert import ConvertOptions, build_row
from verl_hoi.families import get_family
from verl_hoi.frames import (
    frame_extent,
    from_frame,
    model_size,
    to_frame,
)
from verl_hoi.hicodet import GroundTruthPair, ImageAnnotation
from verl_hoi.prompts import PromptTemplate
from verl_hoi.rows import RowMeta, check_row

DEFAULT = (3136, 1003520, 28)  # Qwen2.5-VL: 4..1280 tokens of 28 x 28
QWEN3 = (65536, 1310720, 32)  # Qwen3-VL and Qwen3.5: 64..1280 tokens of 32 x 32
TINY = (TINY_MIN_PIXELS, TINY_MAX_PIXELS, 28)


def test_registry_order():
    assert frames.available_frames() == ("resized", "original", "norm1000")


@pytest.mark.parametrize(("family", "budget"), [("qwen2_5_vl", DEFAULT), ("qwen3_vl", QWEN3), ("qwen3_5", QWEN3)])
def test_family_budgets(family, budget):
    found = get_family(family)
    assert (found.min_pixels, found.max_pixels, found.block) == budget


@pytest.mark.parametrize(
    ("image_size", "pixels", "expected"),
    [
        ((640, 427), DEFAULT, (644, 420)),  # sides rounded to multiples of 28: 22.9 -> 23, 15.25 -> 15
        ((640, 480), DEFAULT, (644, 476)),  # 480 / 28 = 17.1 -> 17
        ((465, 640), DEFAULT, (476, 644)),  # portrait: 16.6 -> 17, (w, h) order kept
        ((640, 427), TINY, (252, 168)),  # over 64 patches: beta = sqrt(640*427/50176) = 2.334, floored
        ((640, 480), TINY, (252, 168)),  # beta = 2.474: 258.6 -> 252, 194.0 -> 168
        ((20, 30), DEFAULT, (56, 84)),  # under 4 patches: beta = sqrt(3136/600) = 2.286, ceiled
        ((1000, 1000), (28 * 28, 28 * 28, 28), (28, 28)),  # a single patch
        ((640, 427), QWEN3, (640, 416)),  # multiples of 32: 20 -> 20, 13.3 -> 13
        ((465, 640), QWEN3, (480, 640)),  # 465 / 32 = 14.53 -> 15, 20
        (
            (200, 150),
            QWEN3,
            (320, 224),
        ),  # under 64 blocks: beta = sqrt(65536/30000) = 1.478, ceiled: 9.2 -> 10, 6.9 -> 7
        ((1920, 1080), QWEN3, (1504, 832)),  # over 1280 blocks: beta = 1.2578, floored: 47.7 -> 47, 26.8 -> 26
    ],
)
def test_model_size_hand_computed(image_size, pixels, expected):
    assert model_size(image_size, *pixels) == expected


@pytest.mark.parametrize(
    ("image_size", "pixels"),
    [
        ((640, 427), DEFAULT),  # sample image, the Qwen2.5-VL defaults
        ((465, 640), DEFAULT),  # portrait sample image
        ((1920, 1080), DEFAULT),  # large: scaled down to 1280 visual tokens
        ((20, 30), DEFAULT),  # small: scaled up to min_pixels
        ((640, 427), TINY),  # the tiny test model's budget
        ((465, 640), TINY),  # portrait, tiny budget
        ((100, 60), TINY),  # already within the tiny budget
        ((3000, 100), TINY),  # elongated (ratio 30), scaled down
        ((640, 427), QWEN3),  # Qwen3-VL / Qwen3.5 sample image
        ((200, 150), QWEN3),  # small: scaled up to 64 blocks
        ((1920, 1080), QWEN3),  # large: scaled down to 1280 blocks
    ],
)
def test_model_size_matches_transformers_processor(image_size, pixels):
    min_pixels, max_pixels, block = pixels
    processor = Qwen2VLImageProcessor(min_pixels=min_pixels, max_pixels=max_pixels, patch_size=block // 2)
    image = Image.new("RGB", image_size)
    _, grid_h, grid_w = processor(images=[image], return_tensors="np")["image_grid_thw"][0]
    patch = block // 2
    assert model_size(image_size, *pixels) == (grid_w * patch, grid_h * patch)


@pytest.mark.parametrize(
    ("image_size", "pixels"),
    [
        ((640, 427), TINY),  # sample image, tiny budget
        ((10, 1990), DEFAULT),  # a side under 14 px: qwen-vl-utils keeps 28 where transformers would round to 0
        ((640, 427), QWEN3),  # the Qwen3 families' budget, 16-pixel patches
    ],
)
def test_model_size_is_what_the_model_sees_after_qwen_vl_utils(image_size, pixels):
    """verl resizes with qwen-vl-utils first; the processor then leaves the image as it is."""
    from qwen_vl_utils import fetch_image

    min_pixels, max_pixels, block = pixels
    size = model_size(image_size, *pixels)
    budget = {"min_pixels": min_pixels, "max_pixels": max_pixels}
    assert fetch_image({"image": Image.new("RGB", image_size), **budget}, image_patch_size=block // 2).size == size
    processor = Qwen2VLImageProcessor(**budget, patch_size=block // 2)
    _, grid_h, grid_w = processor(images=[Image.new("RGB", size)], return_tensors="np")["image_grid_thw"][0]
    assert (grid_w * block // 2, grid_h * block // 2) == size


@given(
    w=st.integers(15, 4000),
    h=st.integers(15, 4000),
    pixels=st.sampled_from([DEFAULT, TINY, (28 * 28, 28 * 28 * 16384, 28), QWEN3, (32 * 32, 32 * 32 * 16384, 32)]),
)
def test_model_size_agrees_with_transformers_smart_resize(w, h, pixels):
    if max(w, h) / min(w, h) > 200:
        with pytest.raises(ValueError, match="aspect ratio"):
            model_size((w, h), *pixels)
        return
    min_pixels, max_pixels, block = pixels
    expected_h, expected_w = transformers_smart_resize(h, w, block, min_pixels, max_pixels)
    try:
        size = model_size((w, h), *pixels)
    except ValueError:
        # only where transformers clamps a side that qwen-vl-utils floors to 0
        assert block in (expected_w, expected_h)
        return
    assert size == (expected_w, expected_h)
    assert size[0] % block == 0 and size[1] % block == 0


@pytest.mark.parametrize(
    ("image_size", "pixels", "message"),
    [
        ((0, 10), DEFAULT, "image_size"),  # zero width
        ((10, -1), DEFAULT, "image_size"),  # negative height
        ((640, 427), (100, 50, 28), "min_pixels"),  # budget inverted
        ((640, 427), (0, 50, 28), "min_pixels"),  # zero budget
        ((640, 427), (3136, 50176, 0), "block"),  # no block
        ((201, 1), DEFAULT, "aspect ratio"),  # smart_resize's limit of 200
        ((4949, 77), TINY, "too elongated"),  # short side would be floored to 0
    ],
)
def test_model_size_rejects_bad_input(image_size, pixels, message):
    with pytest.raises(ValueError, match=message):
        model_size(image_size, *pixels)


IMAGE = (640, 427)
MODEL = (644, 420)


@pytest.mark.parametrize(
    ("frame", "box", "expected"),
    [
        ("original", [10, 20, 30, 40], [10, 20, 30, 40]),  # identity
        ("resized", [160, 0, 320, 427], [161, 0, 322, 420]),  # x * 644 / 640, y * 420 / 427
        ("resized", [64, 61, 640, 427], [64.4, 60, 644, 420]),  # 61 * 420 / 427 = 60 exactly
        ("norm1000", [64, 61, 640, 427], [100, 142.85714285714286, 1000, 1000]),  # x * 1000 / 640, y * 1000 / 427
    ],
)
def test_to_frame_hand_computed(frame, box, expected):
    out = to_frame([box], frame, IMAGE, MODEL)
    assert out.dtype == np.float64 and out.shape == (1, 4)
    np.testing.assert_allclose(out[0], expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(from_frame(out, frame, IMAGE, MODEL)[0], box, rtol=0, atol=1e-9)


def test_shapes_are_kept():
    assert to_frame(np.zeros((0, 4)), "resized", IMAGE, MODEL).shape == (0, 4)  # no boxes
    assert to_frame([1, 2, 3, 4], "resized", IMAGE, MODEL).shape == (4,)  # one box
    assert to_frame(np.ones((2, 3, 4)), "norm1000", IMAGE, MODEL).shape == (2, 3, 4)  # batch of lists


def test_inputs_are_not_modified():
    boxes = np.array([[160.0, 0.0, 320.0, 427.0]])
    to_frame(boxes, "resized", IMAGE, MODEL)
    from_frame(boxes, "resized", IMAGE, MODEL)
    assert boxes.tolist() == [[160.0, 0.0, 320.0, 427.0]]


@pytest.mark.parametrize("bad", [[1, 2, 3], 5, [[1, 2, 3, 4, 5]]])
def test_bad_box_shape(bad):
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        to_frame(bad, "resized", IMAGE, MODEL)


@pytest.mark.parametrize("call", [to_frame, from_frame])
def test_unknown_frame_lists_valid_ones(call):
    with pytest.raises(ValueError, match="unknown frame 'pixels'; valid frames: resized, original, norm1000"):
        call([[0, 0, 1, 1]], "pixels", IMAGE, MODEL)
    with pytest.raises(ValueError, match="valid frames"):
        frame_extent("pixels", IMAGE, MODEL)


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ("resized", (644, 420)),  # the model's image
        ("original", (640, 427)),  # the original image
        ("norm1000", (1000, 1000)),  # fixed
    ],
)
def test_frame_extent(frame, expected):
    assert frame_extent(frame, IMAGE, MODEL) == expected


@pytest.fixture
def scratch_registry(monkeypatch):
    """Lets a test register frames without leaking them into other tests."""
    monkeypatch.setattr(frames, "_REGISTRY", dict(frames._REGISTRY))


def test_register_frame(scratch_registry):
    def to_fn(boxes, image_size, model_size):  # normalised to 0..1
        return boxes / np.array(image_size * 2)

    def from_fn(boxes, image_size, model_size):
        return boxes * np.array(image_size * 2)

    frames.register_frame("unit", to_fn, from_fn)
    assert frames.available_frames() == ("resized", "original", "norm1000", "unit")
    assert to_frame([[0, 0, 320, 427]], "unit", IMAGE, MODEL).tolist() == [[0, 0, 0.5, 1]]
    assert from_frame([[0, 0, 0.5, 1]], "unit", IMAGE, MODEL).tolist() == [[0, 0, 320, 427]]
    assert frame_extent("unit", IMAGE, MODEL) == (1, 1)  # derived from to_fn

    frames.register_frame("centi", to_fn, from_fn, extent_fn=lambda image_size, model_size: (100, 100))
    assert frame_extent("centi", IMAGE, MODEL) == (100, 100)  # given explicitly

    with pytest.raises(ValueError, match="'unit' is already registered"):
        frames.register_frame("unit", to_fn, from_fn)


def test_scratch_registry_is_restored():
    assert "unit" not in frames.available_frames()


@dataclass(frozen=True)
class _DoubledWording(PromptTemplate):
    def coordinates(self, frame, extent):
        return f"Boxes are in pixels times two, up to {extent[0]}x{extent[1]}."


def test_a_frame_registered_after_import_is_accepted_everywhere(scratch_registry, monkeypatch):
    # Every module that reads the registry is imported before the frame exists: each must ask at use time.
    monkeypatch.setattr(prompts, "_REGISTRY", dict(prompts._REGISTRY))
    frames.register_frame("doubled", lambda boxes, i, m: boxes * 2, lambda boxes, i, m: boxes / 2)
    prompts.register_prompt(_DoubledWording("doubled_prompt"))

    options = ConvertOptions(frame="doubled", prompt="doubled_prompt", min_pixels=3136, max_pixels=50176)
    args = ["--annotations", "a.json", "--images", "img", "--split", "test", "--out", "out", "--frame", "doubled"]
    assert _converter_cli().build_parser().parse_args(args).frame == "doubled"

    annotation = ImageAnnotation("a.jpg", 640, 427, (GroundTruthPair((10, 20, 30, 40), (50, 60, 70, 80), 0),))
    buffer = io.BytesIO()
    Image.new("RGB", (640, 427)).save(buffer, "JPEG")
    row = build_row(annotation, 0, buffer.getvalue(), options)
    assert row["extra_info"]["frame"] == "doubled"
    assert '"human": [20, 40, 60, 80]' in row["reward_model"]["ground_truth"]
    assert RowMeta.from_dict(row["extra_info"]).frame == "doubled"  # the training and prediction check
    assert check_row(row["extra_info"], row["images"], (3136, 50176), row["prompt"]).frame == "doubled"
    teacher.check_row(row)  # the distillation's check


def _converter_cli():
    spec = importlib.util.spec_from_file_location("hicodet_to_parquet", REPO / "data_prep" / "hicodet_to_parquet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


boxes_st = st.lists(
    st.tuples(*[st.floats(-1e4, 1e4, allow_nan=False) for _ in range(4)]),
    min_size=0,
    max_size=8,
)
sizes_st = st.tuples(st.integers(1, 5000), st.integers(1, 5000))


@given(boxes=boxes_st, image_size=sizes_st, size=sizes_st, frame=st.sampled_from(["resized", "original", "norm1000"]))
def test_round_trip(boxes, image_size, size, frame):
    array = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    there = to_frame(array, frame, image_size, size)
    back = from_frame(there, frame, image_size, size)
    np.testing.assert_allclose(back, array, rtol=1e-12, atol=1e-9)


@given(w=st.integers(28, 3000), h=st.integers(28, 3000), pixels=st.sampled_from([DEFAULT, TINY]))
def test_image_corners_map_to_frame_extent(w, h, pixels):
    if max(w, h) / min(w, h) > 200:
        return
    try:
        size = model_size((w, h), *pixels)
    except ValueError:
        return
    for frame in ("resized", "original", "norm1000"):
        corners = to_frame([0, 0, w, h], frame, (w, h), size)
        np.testing.assert_allclose(corners, [0, 0, *frame_extent(frame, (w, h), size)], rtol=1e-12)


def test_sample_images_through_verl_image_path_and_tiny_processor(sample_images, tiny_model_dir):
    """verl loads images with qwen-vl-utils' fetch_image; the tiny checkpoint's processor then tokenises them."""
    from qwen_vl_utils import fetch_image
    from transformers import AutoProcessor

    image_processor = AutoProcessor.from_pretrained(tiny_model_dir).image_processor
    paths = sorted(sample_images.glob("*.jpg"))
    assert len(paths) == 8
    for path in paths:
        with Image.open(path) as image:
            image_size = image.size
        size = model_size(image_size, *TINY)
        resized = fetch_image({"image": str(path), "min_pixels": TINY_MIN_PIXELS, "max_pixels": TINY_MAX_PIXELS})
        assert resized.size == size
        _, grid_h, grid_w = image_processor(images=[resized], return_tensors="np")["image_grid_thw"][0]
        assert (grid_w * 14, grid_h * 14) == size
