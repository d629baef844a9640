"""Every model family through every stage on CPU, each with its own tiny random checkpoint: the shipped sample
converted for the checkpoint's processor, verl's real dataset code cutting each image into the rows' grid, the
``hoi`` reward manager scoring the ground truth 1.0, ``predict --backend hf`` and the evaluator scoring the
ground truth written in the family's frame 100.00. A model and rows of different families: one clear error."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import verl
from conftest import REPO, convert
from omegaconf import OmegaConf
from recipe_harness import verl_data_config
from transformers import AutoProcessor
from verl.trainer.ppo.reward import load_reward_manager
from verl.utils.dataset.rl_dataset import RLHFDataset, get_dataset_class
from verl.utils.tokenizer import build_multimodal_processor_inputs

from verl_hoi.answer import render_response
from verl_hoi.evaluate import main as evaluate_main
from verl_hoi.families import available_families, get_family
from verl_hoi.predict import main as predict_main
from verl_hoi.verl_plugin.dataset import HOIDataset

FAMILIES = ["qwen2_5_vl", "qwen3_vl", "qwen3_5"]


def _converter():
    spec = importlib.util.spec_from_file_location("hicodet_to_parquet", REPO / "data_prep" / "hicodet_to_parquet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module", params=FAMILIES)
def family(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, family) -> Path:
    from verl_hoi.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp(f"tiny_{family}"), family)


@pytest.fixture(scope="module")
def rows_path(tmp_path_factory, checkpoint, sample_annotations, sample_images) -> Path:
    """The whole sample converted with the checkpoint's processor (its patch, merge and budget; the family's frame)."""
    out = tmp_path_factory.mktemp("rows")
    args = ["--annotations", sample_annotations, "--images", sample_images, "--split", "test", "--out", out]
    assert _converter().main([str(a) for a in [*args, "--processor", checkpoint]]) == 0
    return out / "test.parquet"


@pytest.fixture(scope="module")
def family_processor(checkpoint):
    return AutoProcessor.from_pretrained(checkpoint)


def _dataset(path, processor, **overrides):
    config = verl_data_config(**{"image_patch_size": processor.image_processor.patch_size, **overrides})
    assert get_dataset_class(config) is HOIDataset
    return HOIDataset(data_files=[str(path)], tokenizer=processor.tokenizer, config=config, processor=processor)


def test_families_registered():
    assert available_families()[:3] == tuple(FAMILIES)


def test_rows_record_the_family(family, rows_path):
    extra = pq.read_table(rows_path).column("extra_info").to_pylist()
    found = get_family(family)
    assert {(e["family"], e["frame"], e["patch_size"], e["merge_size"]) for e in extra} == {
        (family, found.frame, found.patch_size, found.merge_size)
    }
    # the tiny checkpoint's budget: 4..64 image tokens
    assert {(e["min_pixels"], e["max_pixels"]) for e in extra} == {(4 * found.block**2, 64 * found.block**2)}


def test_verl_dataset_cuts_each_image_into_the_rows_grid(family, rows_path, family_processor):
    """verl resizes with data.image_patch_size (14 in verl's config: the recipes set it), then the processor
    tokenises."""
    found = get_family(family)
    dataset = _dataset(rows_path, family_processor, image_patch_size=found.patch_size)
    assert dataset.image_patch_size == found.patch_size
    image_token = family_processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    rows = pq.read_table(rows_path).to_pylist()
    assert len(dataset) == len(rows) == 8
    for index, row in enumerate(rows):
        messages = dataset[index]["raw_prompt"]
        images, _, _ = RLHFDataset._process_multi_modal_info(messages, image_patch_size=found.patch_size, config=None)
        text = family_processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        inputs = build_multimodal_processor_inputs(family_processor, text=[text], images=images)
        ((t, grid_h, grid_w),) = inputs["image_grid_thw"].tolist()
        width, height = row["extra_info"]["model_size"]
        assert (t, grid_w * found.patch_size, grid_h * found.patch_size) == (1, width, height)
        assert int((inputs["input_ids"] == image_token).sum()) == width * height // found.block**2


def test_patch_size_setting_that_disagrees_is_one_error(family, rows_path, family_processor):
    patch = get_family(family).patch_size
    other = 16 if patch == 14 else 14
    with pytest.raises(ValueError) as error:
        _dataset(rows_path, family_processor, image_patch_size=other)
    assert str(error.value) == (
        f"data.image_patch_size={other} but the model's processor cuts {patch}-pixel patches: "
        f"set data.image_patch_size={patch} (the hoi_family recipe setting does)"
    )


def test_rows_of_another_family_are_refused(tmp_path, family, family_processor, sample_annotations, sample_images):
    other = "qwen3_vl" if get_family(family).patch_size == 14 else "qwen2_5_vl"
    args = ["--annotations", sample_annotations, "--images", sample_images, "--split", "test", "--out", tmp_path]
    assert _converter().main([str(a) for a in [*args, "--family", other, "--limit", "1"]]) == 0
    with pytest.raises(ValueError) as error:
        _dataset(tmp_path / "test.parquet", family_processor)
    found, wrong = get_family(family), get_family(other)
    assert str(error.value).startswith(
        f"{tmp_path / 'test.parquet'}: row 0 (HICO_test2015_00000001.jpg): the row was made for {other} "
        f"({wrong.patch_size}-pixel patches merged 2x2) but the model's processor cuts {found.patch_size}-pixel "
        "patches merged 2x2; convert the data for the model's family"
    )


def _trajectory(processor, prompt: str, response: str, row: dict) -> verl.DataProto:
    """One rollout as verl's agent loop hands it to the reward manager: left-padded prompt, right-padded response."""
    tokenizer = processor.tokenizer
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    pad = tokenizer.pad_token_id
    return verl.DataProto.from_dict(
        tensors={
            "prompts": torch.tensor([prompt_ids]),
            "responses": torch.tensor([[*response_ids, pad, pad]]),
            "attention_mask": torch.tensor([[1] * (len(prompt_ids) + len(response_ids)) + [0, 0]]),
        },
        non_tensors={
            "data_source": np.array([row["data_source"]], dtype=object),
            "reward_model": np.array([row["reward_model"]], dtype=object),
            "extra_info": np.array([row["extra_info"]], dtype=object),
        },
    )


def test_reward_manager_scores_the_ground_truth_one(family, rows_path, family_processor):
    dataset = _dataset(rows_path, family_processor)
    row = pq.read_table(rows_path).to_pylist()[0]
    prompt = family_processor.apply_chat_template(dataset[0]["raw_prompt"], add_generation_prompt=True, tokenize=False)
    truth = row["reward_model"]["ground_truth"]
    response = render_response(truth, "one person rides")
    if prompt.rstrip().endswith("<think>"):  # Qwen3.5's template opens the think block, and SFT teaches its layout
        response = f"one person rides\n</think>\n\n<answer>{truth}</answer>"
    config = OmegaConf.create(
        {
            "reward": {
                "reward_manager": {"source": "register", "name": "hoi", "module": {"path": None, "name": None}},
                "custom_reward_function": {"path": None, "name": "compute_score"},
            }
        }
    )
    manager = load_reward_manager(config, family_processor.tokenizer)
    result = asyncio.run(manager.run_single(_trajectory(family_processor, prompt, response, row)))
    assert result["reward_score"] == 1.0


def test_predict_runs_and_ground_truth_in_the_familys_frame_scores_100(
    tmp_path, capsys, family, checkpoint, rows_path, sample_annotations
):
    out = tmp_path / "preds.jsonl"
    args = ["--model", str(checkpoint), "--data", str(rows_path), "--out", str(out), "--backend", "hf"]
    assert predict_main([*args, "--max-new-tokens", "4", "--batch-size", "4", "--limit", "2"]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(line["family"], line["frame"]) for line in lines] == [(family, get_family(family).frame)] * 2
    # Qwen3.5's chat template opens <think>: its answers start inside the block
    assert {line["prefilled_think"] for line in lines} == {family == "qwen3_5"}
    # the rows' ground truth as the model's answers, with the rows' metadata, as predict writes them
    truth = [
        row["extra_info"] | {"response": render_response(row["reward_model"]["ground_truth"], "people")}
        for row in pq.read_table(rows_path).to_pylist()
    ]
    answers = tmp_path / "truth.jsonl"
    answers.write_text("".join(json.dumps(line) + "\n" for line in truth))
    capsys.readouterr()
    result = tmp_path / "result.json"
    args = ["--annotations", str(sample_annotations), "--predictions", str(answers), "--json", str(result)]
    assert evaluate_main(args) == 0
    assert round(json.loads(result.read_text())["default"]["full"], 2) == 100.0


def test_parquet_written_before_families_loads_as_qwen2_5_vl(
    tmp_path, tiny_model_dir, processor, sample_annotations, sample_images
):
    """A file whose extra_info has no family, patch_size or merge_size holds Qwen2.5-VL rows: they train and predict
    with a Qwen2.5-VL checkpoint, and a Qwen3-VL one refuses them."""
    import pyarrow as pa

    from verl_hoi.tiny_model import build_tiny_model

    rows = pq.read_table(convert(tmp_path, sample_annotations, sample_images, "new.parquet")).to_pylist()
    for row in rows:
        for key in ("family", "patch_size", "merge_size", "zero_shot", "prompt_vocabulary"):
            del row["extra_info"][key]
    old = tmp_path / "old.parquet"
    pq.write_table(pa.Table.from_pylist(rows), old)
    assert "family" not in pq.read_schema(old).field("extra_info").type.names
    dataset = _dataset(old, processor)
    assert len(dataset) == 3 and dataset[0]["extra_info"]["model_size"] == rows[0]["extra_info"]["model_size"]
    out = tmp_path / "preds.jsonl"
    args = ["--model", str(tiny_model_dir), "--data", str(old), "--out", str(out), "--backend", "hf", "--limit", "1"]
    assert predict_main([*args, "--max-new-tokens", "2"]) == 0
    assert json.loads(out.read_text())["family"] == "qwen2_5_vl"
    qwen3 = AutoProcessor.from_pretrained(build_tiny_model(tmp_path / "qwen3", "qwen3_vl"))
    with pytest.raises(ValueError, match=r"row 0 \(HICO_test2015_00000001.jpg\): the row was made for qwen2_5_vl"):
        _dataset(old, qwen3)


def test_sft_dataset_trains_on_the_answer_with_the_rows_grid(tmp_path, family, rows_path, family_processor):
    """verl_hoi's SFT rows through HOISFTDataset with the family's processor: the loss covers the assistant turn
    (the answer after the reasoning; Qwen3.5's template opens the think block in the prompt), and the image reaches
    the processor at the row's model_size."""
    from verl_hoi.convert import write_parquet
    from verl_hoi.sft import sft_row, sft_schema
    from verl_hoi.verl_plugin.dataset import HOISFTDataset

    found = get_family(family)
    table = pq.read_table(rows_path)
    rows = table.to_pylist()
    sft = tmp_path / "sft.parquet"
    write_parquet((sft_row(row, "one person sits") for row in rows), sft, sft_schema(table.schema))
    config = OmegaConf.create({"max_length": 4096, "pad_mode": "right", "truncation": "error"})
    dataset = HOISFTDataset(str(sft), family_processor.tokenizer, config, processor=family_processor)
    assert len(dataset) == 8
    tokenizer = family_processor.tokenizer
    item = dataset[0]
    ids, mask = item["input_ids"], item["loss_mask"]
    length = int(item["attention_mask"].sum())
    start = length - int(mask.sum())
    assert mask[:start].sum() == 0 and bool(mask[start:length].all()) and mask[length:].sum() == 0
    trained = tokenizer.decode(ids[start:length])
    # Qwen3.5's template writes the reasoning as "<think>\n...\n</think>\n\n" before the answer
    assert trained.endswith(f"<answer>{rows[0]['reward_model']['ground_truth']}</answer><|im_end|>\n")
    assert "one person sits" in trained and trained.count("</think>") == 1
    prompt = tokenizer.decode(ids[:start])
    assert prompt.rstrip().endswith("<think>") == (family == "qwen3_5")
    ((_, grid_h, grid_w),) = item["multi_modal_inputs"]["image_grid_thw"].tolist()
    width, height = rows[0]["extra_info"]["model_size"]
    assert (grid_w * found.patch_size, grid_h * found.patch_size) == (width, height)
    image_token = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((ids[:start] == image_token).sum()) == width * height // found.block**2
