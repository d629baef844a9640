"""Answers generated for parquet rows (``verl_hoi.generation``) with the tiny Qwen2.5-VL on CPU: the model
inputs against verl's own dataset code, token offsets, greedy decoding settings for transformers and vLLM, and
the check of the processor's resize. The ``predict`` command line: test_predict_on_cpu.py."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from PIL import Image
from transformers import AutoProcessor, GenerationConfig

from verl_hoi.generation import (
    greedy_generation_config,
    prepare,
    token_offsets,
    vllm_engine_args,
    vllm_sampling_args,
)


def test_model_inputs_are_those_of_verls_dataset(tiny_model_dir, parquet):
    # The same prompt text and image tensor as verl's RLHFDataset + agent-loop preparation.
    from verl.utils.dataset.rl_dataset import RLHFDataset

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    row = pq.read_table(parquet).to_pylist()[0]
    text, image = prepare(row, processor)
    verl_row = {"prompt": [dict(m) for m in row["prompt"]], "images": [dict(row["images"][0])]}
    keys = type("Keys", (), {"image_key": "images", "video_key": "videos", "audio_key": "audios"})()
    keys.processor = processor
    messages = RLHFDataset._build_messages(keys, verl_row, key="prompt")
    images, _, _ = RLHFDataset._process_multi_modal_info(messages, image_patch_size=14, config=None)
    verl_text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == verl_text
    assert image.size == images[0].size == tuple(row["extra_info"]["model_size"])
    mine = processor(text=[text], images=[image], return_tensors="pt")
    theirs = processor(text=[verl_text], images=images, return_tensors="pt")
    assert mine["input_ids"].tolist() == theirs["input_ids"].tolist()
    assert (mine["pixel_values"] == theirs["pixel_values"]).all()


@pytest.mark.parametrize(
    "text",
    [
        '<think>ok</think><answer>[{"human": [1, 2, 3, 4]}]</answer>',  # ASCII: one piece per token
        "caf\u00e9 \u4eba",  # multi-byte characters that byte-level tokens may split
    ],
)
def test_token_offsets_point_at_each_tokens_text(tiny_model_dir, text):
    tokenizer = AutoProcessor.from_pretrained(tiny_model_dir).tokenizer
    ids = tokenizer.encode(text, add_special_tokens=False)
    decoded = tokenizer.decode(ids, skip_special_tokens=True)
    offsets = token_offsets(tokenizer, ids, decoded)
    assert len(offsets) == len(ids) and offsets[0] == 0
    assert offsets == sorted(offsets) and offsets[-1] <= len(decoded)
    pieces = [decoded[a:b] for a, b in zip(offsets, [*offsets[1:], len(decoded)], strict=True)]
    assert "".join(pieces) == decoded


def test_greedy_generation_config_keeps_only_the_special_tokens():
    checkpoint = GenerationConfig(
        do_sample=True, temperature=0.7, top_k=20, repetition_penalty=1.05, no_repeat_ngram_size=3,
        bos_token_id=1, eos_token_id=[2, 3], pad_token_id=0,
    )  # fmt: skip
    config = greedy_generation_config(checkpoint, 16, logprobs=True)
    assert (config.do_sample, config.num_beams, config.repetition_penalty, config.max_new_tokens) == (False, 1, 1.0, 16)
    assert (config.bos_token_id, config.eos_token_id, config.pad_token_id) == (1, [2, 3], 0)
    assert config.return_dict_in_generate and config.output_scores
    assert (config.temperature, config.top_k, config.no_repeat_ngram_size) == (None, None, None)  # not the 0.7, 20, 3


def test_vllm_settings_are_verls_validation_decoding():
    # generation_config="vllm": vLLM's neutral sampling defaults, not generation_config.json's (special tokens
    # are still read from it); every request is greedy with repetition penalty 1.0, as verl's val_kwargs.
    assert vllm_engine_args("ckpt") == {
        "model": "ckpt",
        "limit_mm_per_prompt": {"image": 1, "video": 0},
        "generation_config": "vllm",
    }
    assert vllm_sampling_args(64, logprobs=True) == {
        "temperature": 0.0,
        "top_p": 1.0,
        "top_k": -1,
        "repetition_penalty": 1.0,
        "max_tokens": 64,
        "logprobs": 0,
    }
    assert vllm_sampling_args(64, logprobs=False)["logprobs"] is None


def test_prepared_images_are_checked_against_the_processor():
    from verl_hoi.generation import _check_grid, _check_prepared

    image = Image.new("RGB", (252, 168))
    _check_prepared([image], [(252, 168)])
    with pytest.raises(ValueError, match=r"resized to 252x168, not to model_size \[168, 252\]"):
        _check_prepared([image], [(168, 252)])
    _check_grid([[1, 12, 18]], [(252, 168)], 14)
    with pytest.raises(ValueError, match="the processor resized a 252x168 image to 238x168"):
        _check_grid([[1, 12, 17]], [(252, 168)], 14)
