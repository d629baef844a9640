"""SFT rows through verl's real MultiTurnSFTDataset, and through verl_hoi's HOISFTDataset (which checks every row)
as the SFT recipe's config selects it."""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf
from recipe_harness import compose_verl
from transformers import AutoProcessor

from verl_hoi.convert import ConvertOptions, iter_rows, row_schema, select_images, write_parquet
from verl_hoi.hicodet import load_annotations
from verl_hoi.sft import sft_row, sft_schema
from verl_hoi.verl_plugin.dataset import HOISFTDataset

THINKING = "1. I count one person. 2. The person stands next to a bench. 3. The bench. 4. sit on."


def _sft_parquet(folder: Path, annotations_path: Path, images: Path, max_pixels: int = 64 * 28 * 28) -> Path:
    annotations = load_annotations(annotations_path)
    options = ConvertOptions(split="train", min_pixels=4 * 28 * 28, max_pixels=max_pixels, prompt="hoi_r1_brief")
    write_parquet(
        iter_rows(annotations, select_images(annotations, "train"), images, options),
        folder / "train.parquet",
        row_schema("embed"),
    )
    rows = pq.read_table(folder / "train.parquet").to_pylist()
    write_parquet((sft_row(row, THINKING) for row in rows), folder / "sft.parquet", sft_schema(row_schema("embed")))
    return folder / "sft.parquet"


@pytest.fixture(scope="module")
def sft_parquet(tmp_path_factory, sample_annotations, sample_images) -> Path:
    """The sample's 7 images with pairs as SFT rows (converter rows, same pixel budget as the tiny processor)."""
    return _sft_parquet(tmp_path_factory.mktemp("sft"), sample_annotations, sample_images)


def test_sft_row_keeps_the_prompt_and_image_and_adds_the_target():
    row = {
        "data_source": "hico_det",
        "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "<image>Find HOIs."}],
        "images": [{"image": "/data/a.jpg", "min_pixels": 3136, "max_pixels": 50176}],
        "ability": "hoi",
        "reward_model": {"style": "rule", "ground_truth": '[{"human": [1, 2, 3, 4]}]'},
        "extra_info": {"file_name": "a.jpg", "index": 3},
    }
    assert sft_row(row, "One person.") == {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "<image>Find HOIs."},
            {"role": "assistant", "content": '<think>One person.</think><answer>[{"human": [1, 2, 3, 4]}]</answer>'},
        ],
        "images": [{"image": "/data/a.jpg", "min_pixels": 3136, "max_pixels": 50176}],
        "data_source": "hico_det",
        "extra_info": {"file_name": "a.jpg", "index": 3},
    }
    with pytest.raises(ValueError, match="ground_truth"):
        sft_row({**row, "reward_model": {"ground_truth": [1]}}, "x")


def _check_item(item: dict, target: str, tokenizer, model_size: list[int]) -> None:
    """The loss mask is 1 on exactly the assistant turn's tokens (target, <|im_end|>, newline) and 0 elsewhere."""
    ids, mask = item["input_ids"], item["loss_mask"]
    length = int(item["attention_mask"].sum()) if "attention_mask" in item else len(ids)
    start = length - int(mask.sum())
    assert mask[:start].sum() == 0 and bool(mask[start:length].all()) and mask[length:].sum() == 0
    assert ids[start:length].tolist() == tokenizer.encode(target + "<|im_end|>\n", add_special_tokens=False)
    assert tokenizer.decode(ids[:start]).endswith("<|im_end|>\n<|im_start|>assistant\n")
    grid = item["multi_modal_inputs"]["image_grid_thw"][0].tolist()
    assert [grid[2] * 14, grid[1] * 14] == model_size  # the image reached the processor at the row's model_size
    image_tokens = int((ids[:start] == tokenizer.convert_tokens_to_ids("<|image_pad|>")).sum())
    assert image_tokens == grid[1] * grid[2] // 4  # 2x2 patches merge into one token


def test_loss_mask_covers_the_assistant_turn_only(sft_parquet, tiny_model_dir):
    from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    config = OmegaConf.create({"max_length": 4096, "pad_mode": "right", "truncation": "error"})
    dataset = MultiTurnSFTDataset(str(sft_parquet), processor.tokenizer, config, processor=processor)
    rows = pq.read_table(sft_parquet).to_pylist()
    assert len(dataset) == len(rows) == 7
    for i in (0, 6):
        item = dataset[i]
        assert item["input_ids"].shape == item["loss_mask"].shape == (4096,)
        assert item["position_ids"].shape == (4, 4096)  # text + 3 M-RoPE rows for Qwen2.5-VL
        target = rows[i]["messages"][-1]["content"]
        assert target.startswith(f"<think>{THINKING}</think><answer>[") and target.endswith("]</answer>")
        _check_item(item, target, processor.tokenizer, rows[i]["extra_info"]["model_size"])


def test_recipe_dataset_loads_the_rows(sft_parquet, tiny_model_dir):
    from verl.utils.config import omega_conf_to_dataclass
    from verl.utils.import_utils import load_extern_object

    overrides = ["+recipe=hoi_sft", f"data.train_files={sft_parquet}", f"model.path={tiny_model_dir}"]
    cfg = compose_verl("sft_trainer_engine", overrides)
    model = omega_conf_to_dataclass(cfg.model)
    # What verl.trainer.sft_trainer.create_sft_dataset does with the recipe's data section.
    dataset_cls = load_extern_object(cfg.data.custom_cls.path, cfg.data.custom_cls.name)
    assert dataset_cls is HOISFTDataset
    dataset = dataset_cls(
        parquet_files=cfg.data.train_files,
        tokenizer=model.tokenizer,
        config=cfg.data,
        processor=model.processor,
        max_samples=cfg.data.train_max_samples,
    )
    assert len(dataset) == 7
    item = dataset[0]
    row = pq.read_table(sft_parquet).to_pylist()[0]
    _check_item(item, row["messages"][-1]["content"], model.tokenizer, row["extra_info"]["model_size"])
    assert "attention_mask" not in item and len(item["input_ids"]) <= cfg.data.max_length  # no_padding mode


def _hoi_sft_dataset(path: Path, processor, **options) -> HOISFTDataset:
    config = OmegaConf.create({"max_length": 4096, "pad_mode": "right", "truncation": "error", "hoi": options})
    return HOISFTDataset(str(path), processor.tokenizer, config, processor=processor)


def _rewrite(path: Path, edit) -> Path:
    rows = pq.read_table(path).to_pylist()
    edit(rows)
    out = path.with_name("edited.parquet")
    pq.write_table(__import__("pyarrow").Table.from_pylist(rows, schema=pq.read_schema(path)), out)
    return out


def _swap_image(rows):  # row 6 is image 116 (465x640), row 1 image 2 (640x461)
    rows[1]["images"][0]["bytes"] = rows[6]["images"][0]["bytes"]


def test_hoi_sft_dataset_checks_every_row(tmp_path, caplog, sft_parquet, tiny_model_dir):
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    rows = pq.read_table(sft_parquet).to_pylist()
    dataset = _hoi_sft_dataset(sft_parquet, processor)
    assert len(dataset) == 7
    _check_item(
        dataset[6], rows[6]["messages"][-1]["content"], processor.tokenizer, rows[6]["extra_info"]["model_size"]
    )
    edited = tmp_path / "sft.parquet"
    edited.write_bytes(sft_parquet.read_bytes())
    edited = _rewrite(edited, _swap_image)
    with pytest.raises(ValueError) as error:
        _hoi_sft_dataset(edited, processor)
    assert str(error.value) == (
        f"{edited}: row 1 (HICO_test2015_00000002.jpg): the image is 465x640 but extra_info.image_size is "
        "[640, 461] (data.hoi.on_bad_row=skip drops such rows)"
    )
    with caplog.at_level(logging.WARNING, logger="verl_hoi.verl_plugin.dataset"):
        dataset = _hoi_sft_dataset(edited, processor, on_bad_row="skip")
    assert "dropped 1 of 7 rows" in caplog.text
    assert len(dataset) == 6 and len(dataset.dataframe) == 6
    # the rows after the dropped one keep their own messages and image
    _check_item(
        dataset[5], rows[6]["messages"][-1]["content"], processor.tokenizer, rows[6]["extra_info"]["model_size"]
    )


def test_hoi_sft_dataset_refuses_rows_for_another_budget(tmp_path, sample_annotations, sample_images, tiny_model_dir):
    # Without the check, verl's SFT dataset would train on images the processor shrinks: boxes in another frame.
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    path = _sft_parquet(tmp_path, sample_annotations, sample_images, max_pixels=256 * 28 * 28)
    with pytest.raises(ValueError, match=r"row 0 \(HICO_test2015_00000001.jpg\): the processor \(min_pixels=3136, "):
        _hoi_sft_dataset(path, processor)


def test_hoi_sft_dataset_needs_an_image_processor(sft_parquet, tiny_model_dir):
    tokenizer = AutoProcessor.from_pretrained(tiny_model_dir).tokenizer
    with pytest.raises(ValueError, match="HOISFTDataset needs the model's multimodal processor"):
        HOISFTDataset(str(sft_parquet), tokenizer, OmegaConf.create({}), processor=None)
