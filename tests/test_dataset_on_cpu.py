"""HOIDataset through verl's real RLHFDataset code and the tiny Qwen2.5-VL processor: rows reach the processor
at their model size, the prompt is rebuilt from the config, bad rows stop the run or are skipped on request, and
verl's length filter sees the image tokens. The row check itself: test_rows.py."""

import json
import logging
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from conftest import TINY_MAX_PIXELS, TINY_MIN_PIXELS
from recipe_harness import verl_data_config
from transformers import AutoTokenizer
from verl.utils.dataset.rl_dataset import RLHFDataset, get_dataset_class
from verl.utils.tokenizer import build_multimodal_processor_inputs

from verl_hoi.convert import ConvertOptions, iter_rows, row_schema, write_parquet
from verl_hoi.frames import frame_extent
from verl_hoi.hicodet import load_annotations
from verl_hoi.prompts import build_messages
from verl_hoi.verl_plugin.dataset import HOIDataset


def _convert(tmp_path: Path, annotations: Path, images: Path, **options) -> Path:
    options = ConvertOptions(**{"min_pixels": TINY_MIN_PIXELS, "max_pixels": TINY_MAX_PIXELS, **options})
    records = load_annotations(annotations)
    path = tmp_path / f"{options.image_mode}_{options.frame}_{options.max_pixels}.parquet"
    write_parquet(iter_rows(records, range(len(records)), images, options), path, row_schema(options.image_mode))
    return path


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _dataset(path, tokenizer, processor, **overrides):
    config = verl_data_config(**overrides)
    cls = get_dataset_class(config)
    assert cls is HOIDataset
    return cls(data_files=[str(path)], tokenizer=tokenizer, config=config, processor=processor)


def _processor_inputs(processor, messages, mm_processor_kwargs=None):
    """What verl does with a row's raw_prompt before generation (and in its length filter)."""
    images, _, _ = RLHFDataset._process_multi_modal_info(messages, image_patch_size=14, config=None)
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = build_multimodal_processor_inputs(
        processor, text=[text], images=images, mm_processor_kwargs=mm_processor_kwargs
    )
    return text, inputs


@pytest.mark.parametrize("image_mode", ["embed", "path"])
@pytest.mark.parametrize("frame", ["resized", "norm1000"])
def test_rows_reach_the_processor_at_model_size(
    tmp_path, sample_annotations, sample_images, tokenizer, processor, frame, image_mode
):
    path = _convert(tmp_path, sample_annotations, sample_images, frame=frame, image_mode=image_mode)
    rows = pq.read_table(path).to_pylist()
    dataset = _dataset(path, tokenizer, processor)
    assert len(dataset) == 8
    for index, row in enumerate(rows):
        item = dataset[index]
        # fields survive the dataset
        assert item["data_source"] == "hico_det"
        assert item["reward_model"] == row["reward_model"]
        assert item["extra_info"] == row["extra_info"]
        assert item["index"] == index
        text, inputs = _processor_inputs(processor, item["raw_prompt"])
        assert text.count("<|image_pad|>") == 1 and "<image>" not in text
        ((t, grid_h, grid_w),) = inputs["image_grid_thw"].tolist()
        width, height = row["extra_info"]["model_size"]
        assert (t, grid_w * 14, grid_h * 14) == (1, width, height)
        # the image expands into one token per 28x28 block
        image_token = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
        assert int((inputs["input_ids"] == image_token).sum()) == width * height // (28 * 28)


def test_sample_model_sizes(tmp_path, sample_annotations, sample_images, tokenizer, processor):
    path = _convert(tmp_path, sample_annotations, sample_images)
    sizes = [r["model_size"] for r in pq.read_table(path).column("extra_info").to_pylist()]
    # 640x427 -> 252x168 (by hand: smart_resize with max 64 blocks of 28: sqrt(640*427/50176) = 2.33 ...)
    assert sizes[0] == [252, 168]
    # the portrait image 465x640: 168x252
    assert sizes[6] == [168, 252]


def test_prompt_rebuilt_fromverl_data_config(tmp_path, sample_annotations, sample_images, tokenizer, processor):
    path = _convert(tmp_path, sample_annotations, sample_images, frame="norm1000")
    dataset = _dataset(path, tokenizer, processor, hoi={"prompt": "hoi_r1_plain"})
    item = dataset[0]
    expected = build_messages("hoi_r1_plain", "norm1000", frame_extent("norm1000", (640, 427), (252, 168)))
    text = "".join(part["text"] for part in item["raw_prompt"][0]["content"] if part["type"] == "text")
    assert text == expected[0]["content"].replace("<image>", "")
    assert item["extra_info"]["prompt"] == "hoi_r1_plain"
    # the parquet's own prompt (hoi_r1, with thinking) differs
    assert "<think>" not in text and "<think>" in pq.read_table(path).column("prompt").to_pylist()[0][0]["content"]


def test_unknown_prompt_fails_before_reading(tmp_path, tokenizer, processor):
    with pytest.raises(ValueError, match="hoi_r1_plain"):
        _dataset(tmp_path / "none.parquet", tokenizer, processor, hoi={"prompt": "nope"})


def test_rows_for_another_pixel_budget_fail_loudly(tmp_path, sample_annotations, sample_images, tokenizer, processor):
    # default Qwen2.5-VL budget (up to 1280 blocks): the tiny processor (64 blocks) would shrink the images
    path = _convert(tmp_path, sample_annotations, sample_images, max_pixels=1280 * 28 * 28)
    with pytest.raises(
        ValueError, match=r"row 0 \(HICO_test2015_00000001.jpg\): the processor \(min_pixels=3136, max_pixels=50176\)"
    ):
        _dataset(path, tokenizer, processor)
    # ... unless the processor is told the rows' budget
    budget = {"size": {"shortest_edge": TINY_MIN_PIXELS, "longest_edge": 1280 * 28 * 28}}
    dataset = _dataset(path, tokenizer, processor, mm_processor_kwargs=budget)
    _, inputs = _processor_inputs(processor, dataset[0]["raw_prompt"], budget)
    assert inputs["image_grid_thw"].tolist() == [[1, 30, 46]]  # 644x420 pixels


def _rewrite(path: Path, edit) -> Path:
    rows = pq.read_table(path).to_pylist()
    edit(rows)
    out = path.with_name("edited.parquet")
    table = __import__("pyarrow").Table.from_pylist(rows, schema=pq.read_schema(path))
    pq.write_table(table, out, row_group_size=3)  # several chunks once loaded
    return out


def test_tampered_model_size_fails(tmp_path, sample_annotations, sample_images, tokenizer, processor):
    path = _convert(tmp_path, sample_annotations, sample_images)

    def edit(rows):
        rows[3]["extra_info"]["model_size"] = [224, 168]

    edited = _rewrite(path, edit)
    with pytest.raises(ValueError) as error:
        _dataset(edited, tokenizer, processor)
    assert str(error.value) == (
        f"{edited}: row 3 (HICO_test2015_00000004.jpg): model_size [224, 168] is not the smart resize [252, 168] of "
        "image_size [640, 427] with min_pixels=3136, max_pixels=50176 in 28-pixel blocks "
        "(data.hoi.on_bad_row=skip drops such rows)"
    )


def test_image_entry_with_other_budget_fails(tmp_path, sample_annotations, sample_images, tokenizer, processor):
    path = _convert(tmp_path, sample_annotations, sample_images)

    def edit(rows):
        rows[5]["images"][0]["max_pixels"] = 1280 * 28 * 28

    # found when the files are read, before verl's length filter could drop the row quietly
    with pytest.raises(
        ValueError, match=r"row 5 \(HICO_test2015_00000019.jpg\): image entry has max_pixels=1003520 but the row's"
    ):
        _dataset(_rewrite(path, edit), tokenizer, processor)


# verl's length filter on (the recipe's setting), in this process: it catches and prints any error of a row
# and drops the row, which is why the rows are checked before it runs.
FILTER = {"filter_overlong_prompts": True, "filter_overlong_prompts_workers": None}


def _swap_first_image(rows):  # image 116 (row 6) is 465x640, image 1 (row 0) 640x427
    rows[0]["images"][0]["bytes"] = rows[6]["images"][0]["bytes"]


def _truncate_third_image(rows):
    rows[2]["images"][0]["bytes"] = rows[2]["images"][0]["bytes"][:-200]


def _drop_placeholder(rows):
    rows[4]["prompt"][0]["content"] = rows[4]["prompt"][0]["content"].replace("<image>", "")


BAD_ROWS = [
    # (edit, bad row, message)
    (_swap_first_image, 0, "row 0 (HICO_test2015_00000001.jpg): the image is 465x640 but extra_info.image_size is"),
    (
        _truncate_third_image,
        2,
        "row 2 (HICO_test2015_00000003.jpg): the embedded image: cannot read image: image file is truncated",
    ),
    (_drop_placeholder, 4, "row 4 (HICO_test2015_00000008.jpg): the prompt has 0 <image> placeholder(s) for 1 image"),
]


@pytest.mark.parametrize(("edit", "bad", "message"), BAD_ROWS, ids=["other size", "truncated", "no placeholder"])
@pytest.mark.parametrize("config", [{}, FILTER], ids=["no filter", "length filter"])
def test_bad_row_stops_the_run(
    tmp_path, sample_annotations, sample_images, tokenizer, processor, edit, bad, message, config
):
    edited = _rewrite(_convert(tmp_path, sample_annotations, sample_images), edit)
    with pytest.raises(ValueError) as error:
        _dataset(edited, tokenizer, processor, **config)
    assert str(error.value).startswith(f"{edited}: {message}")
    assert str(error.value).endswith("(data.hoi.on_bad_row=skip drops such rows)")


@pytest.mark.parametrize(("edit", "bad", "message"), BAD_ROWS, ids=["other size", "truncated", "no placeholder"])
def test_bad_row_skipped_on_request(
    tmp_path, caplog, sample_annotations, sample_images, tokenizer, processor, edit, bad, message
):
    path = _convert(tmp_path, sample_annotations, sample_images)
    names = [extra["file_name"] for extra in pq.read_table(path).column("extra_info").to_pylist()]
    edited = _rewrite(path, edit)
    with caplog.at_level(logging.WARNING, logger="verl_hoi.verl_plugin.dataset"):
        dataset = _dataset(edited, tokenizer, processor, hoi={"on_bad_row": "skip"}, **FILTER)
    assert [dataset[i]["extra_info"]["file_name"] for i in range(len(dataset))] == names[:bad] + names[bad + 1 :]
    (record,) = caplog.records  # reported once
    assert record.getMessage().startswith(f"data.hoi.on_bad_row=skip: dropped 1 of 8 rows of {edited}; the first: ")
    assert message in record.getMessage()


def test_image_path_of_other_size_fails(tmp_path, sample_annotations, sample_images, tokenizer, processor):
    path = _convert(tmp_path, sample_annotations, sample_images, image_mode="path")

    def edit(rows):  # image 116 is 465x640
        rows[0]["images"][0]["image"] = rows[6]["images"][0]["image"]

    with pytest.raises(ValueError, match=r"row 0 \(HICO_test2015_00000001.jpg\): the image is 465x640 but extra_info"):
        _dataset(_rewrite(path, edit), tokenizer, processor, **FILTER)


def test_every_row_bad_stops_even_when_skipping(tmp_path, sample_annotations, sample_images, tokenizer, processor):
    path = _convert(tmp_path, sample_annotations, sample_images, max_pixels=1280 * 28 * 28)
    with pytest.raises(
        ValueError, match=r"every row is bad \(8\); the first: .*: row 0 \(HICO_test2015_00000001.jpg\)"
    ):
        _dataset(path, tokenizer, processor, hoi={"on_bad_row": "skip"})


def test_only_the_selected_rows_are_checked(tmp_path, sample_annotations, sample_images, tokenizer, processor):
    edited = _rewrite(_convert(tmp_path, sample_annotations, sample_images), _drop_placeholder)  # row 4
    config = verl_data_config(shuffle=False)  # data.train_max_samples then takes the first rows
    dataset = HOIDataset(
        data_files=[str(edited)], tokenizer=tokenizer, config=config, processor=processor, max_samples=4
    )
    assert len(dataset) == 4


def test_unknown_on_bad_row_fails_before_reading(tmp_path, tokenizer, processor):
    with pytest.raises(ValueError, match="data.hoi.on_bad_row must be one of error, skip, got 'drop'"):
        _dataset(tmp_path / "none.parquet", tokenizer, processor, hoi={"on_bad_row": "drop"})


def test_ground_truth_is_answer_json(tmp_path, sample_annotations, sample_images, tokenizer, processor):
    path = _convert(tmp_path, sample_annotations, sample_images, frame="original")
    item = _dataset(path, tokenizer, processor)[2]
    assert json.loads(item["reward_model"]["ground_truth"]) == [
        {"human": [302, 182, 322, 236], "object": [234, 85, 444, 298], "object class": "boat", "verb class": ["ride"]}
    ]
    assert isinstance(item["dummy_tensor"], torch.Tensor)


@pytest.mark.parametrize(
    ("max_prompt_length", "expected"),
    [
        (8192, 8),  # the hoi_r1 prompt and its 54 image tokens (252x168 / 28²) fit
        (1000, 0),  # they do not: verl's filter drops every row
    ],
)
def test_verl_length_filter_sees_image_tokens(
    tmp_path, sample_annotations, sample_images, tokenizer, processor, max_prompt_length, expected
):
    path = _convert(tmp_path, sample_annotations, sample_images)
    # workers None: filter in this process (a forked worker can deadlock once torch has started its threads)
    config = {"filter_overlong_prompts": True, "filter_overlong_prompts_workers": None}
    dataset = _dataset(path, tokenizer, processor, max_prompt_length=max_prompt_length, **config)
    assert len(dataset) == expected


@pytest.mark.parametrize(("vocabulary", "named"), [("full", True), ("seen", False)])
def test_rebuilt_prompt_keeps_the_rows_zero_shot_vocabulary(
    tmp_path, sample_annotations, sample_images, tokenizer, processor, vocabulary, named
):
    path = _convert(tmp_path, sample_annotations, sample_images, zero_shot="uo", prompt_vocabulary=vocabulary)
    item = _dataset(path, tokenizer, processor, hoi={"prompt": "hoi_r1_plain"})[0]
    text = "".join(part["text"] for part in item["raw_prompt"][0]["content"] if part["type"] == "text")
    # zebra is one of UO's unseen objects; giraffe is seen
    assert ("zebra" in text, "giraffe: " in text) == (named, True)
    assert (item["extra_info"]["zero_shot"], item["extra_info"]["prompt_vocabulary"]) == ("uo", vocabulary)
