"""``python -m verl_hoi.predict --backend hf`` with the tiny Qwen2.5-VL on CPU, then ``verl_hoi.evaluate``
on its output; the model inputs against verl's own dataset code; token offsets; resuming; greedy decoding
whatever the checkpoint's generation config says; Ctrl-C. Bad command lines: test_predict_cli_bad_input.py."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from conftest import TINY_MAX_PIXELS, TINY_MIN_PIXELS
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor, GenerationConfig

from verl_hoi.cli import INTERRUPTED
from verl_hoi.convert import ConvertOptions, iter_rows, row_schema, write_parquet
from verl_hoi.evaluate import main as evaluate_main
from verl_hoi.generation import (
    Generation,
    greedy_generation_config,
    prepare,
    token_offsets,
    vllm_engine_args,
    vllm_sampling_args,
)
from verl_hoi.hicodet import load_annotations
from verl_hoi.predict import main as predict_main

ROWS = [0, 1, 2]  # few rows, few tokens: the tiny model is random, only the plumbing is tested


def convert(tmp_path: Path, annotations: Path, images: Path, name: str, **options) -> Path:
    options = ConvertOptions(**{"min_pixels": TINY_MIN_PIXELS, "max_pixels": TINY_MAX_PIXELS, **options})
    path = tmp_path / name
    write_parquet(iter_rows(load_annotations(annotations), ROWS, images, options), path, row_schema("embed"))
    return path


@pytest.fixture(scope="module")
def parquet(tmp_path_factory, sample_annotations, sample_images) -> Path:
    return convert(tmp_path_factory.mktemp("data"), sample_annotations, sample_images, "test.parquet")


def test_predict_then_evaluate(tmp_path, capsys, tiny_model_dir, parquet, sample_annotations):
    out = tmp_path / "preds.jsonl"
    args = ["--model", str(tiny_model_dir), "--data", str(parquet), "--out", str(out), "--backend", "hf"]
    args += ["--batch-size", "2", "--max-new-tokens", "6", "--logprobs"]
    assert predict_main([*args, "--limit", "2"]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["file_name"] for line in lines] == ["HICO_test2015_00000001.jpg", "HICO_test2015_00000002.jpg"]
    first = lines[0]
    keys = {"response", "frame", "image_size", "model_size", "min_pixels", "max_pixels", "index", "prompt"}
    assert keys <= set(first)
    assert first["prefilled_think"] is False  # the tiny model's chat template does not open <think>
    assert first["frame"] == "resized" and first["image_size"] == [640, 427] and first["backend"] == "hf"
    assert len(first["token_logprobs"]) == len(first["token_offsets"]) <= 6
    assert all(v <= 0 for v in first["token_logprobs"])
    # Resume after an interrupted write: the cut-off line goes, the two done images are skipped.
    out.write_text(out.read_text() + '{"file_name": "HICO_test2015_000')
    assert predict_main(args) == 0
    names = [json.loads(line)["file_name"] for line in out.read_text().splitlines()]
    assert names == [row["file_name"] for row in pq.read_table(parquet, columns=["extra_info"]).column(0).to_pylist()]
    capsys.readouterr()
    result_path = tmp_path / "result.json"
    for policy in ("rank", "logprob"):
        code = evaluate_main(
            ["--annotations", str(sample_annotations), "--predictions", str(out), "--score-policy", policy]
            + ["--json", str(result_path)]
        )
        assert code == 0
        result = json.loads(result_path.read_text())
        assert set(result["default"]) == {"full", "rare", "non_rare"}
        assert 0.0 <= result["default"]["full"] <= 100.0
        assert result["settings"]["num_images_predicted"] == 3 and result["settings"]["score_policy"] == policy
    assert "Known-Object  mAP" in capsys.readouterr().out


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


def test_processor_that_would_resize_again_is_refused(
    tmp_path, capsys, tiny_model_dir, sample_annotations, sample_images
):
    # Converted with a larger budget, images are larger than the tiny processor's max_pixels: 640x427 has
    # 273,280 pixels > 256*784, so smart_resize shrinks by sqrt(273280 / 200704) = 1.167 to 19x13 blocks of 28.
    parquet = convert(tmp_path, sample_annotations, sample_images, "big.parquet", max_pixels=256 * 28 * 28)
    code = predict_main(
        ["--model", str(tiny_model_dir), "--data", str(parquet), "--out", str(tmp_path / "p.jsonl")]
        + ["--backend", "hf", "--limit", "1", "--max-new-tokens", "2"]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err == (
        f"error: {parquet}: row 0 (HICO_test2015_00000001.jpg): the processor (min_pixels=3136, max_pixels=50176) "
        "would resize the 532x364 image the row was built for; convert the data with the processor's pixel budget "
        "or give the processor the rows' budget\n"
    )
    assert not (tmp_path / "p.jsonl").exists()


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_vllm_missing_is_one_line(tmp_path, capsys, tiny_model_dir, parquet):
    code = predict_main(["--model", str(tiny_model_dir), "--data", str(parquet), "--out", str(tmp_path / "p.jsonl")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: vllm is not installed") and err.count("\n") == 1


def _greedy_reference(model_dir: Path, rows: list[dict], max_new_tokens: int, **options) -> list[str]:
    """Answers of ``model.generate`` called directly, one row at a time, with ``options``."""
    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32).eval()
    stop = {processor.tokenizer.pad_token_id, processor.tokenizer.eos_token_id}
    answers = []
    for row in rows:
        text, image = prepare(row, processor)
        inputs = processor(text=[text], images=[image], return_tensors="pt")
        torch.manual_seed(0)
        ids = model.generate(**inputs, max_new_tokens=max_new_tokens, **options)[0, inputs["input_ids"].shape[1] :]
        ids = ids.tolist()
        length = next((i for i, t in enumerate(ids) if t in stop), len(ids))
        answers.append(processor.tokenizer.decode(ids[:length], skip_special_tokens=True))
    return answers


def test_decoding_ignores_the_checkpoints_sampling_settings(tmp_path, capsys, tiny_model_dir, parquet):
    # A checkpoint that asks for sampling and a repetition penalty, as many released ones do.
    sampling_dir = tmp_path / "sampling_checkpoint"
    shutil.copytree(tiny_model_dir, sampling_dir)
    config = json.loads((sampling_dir / "generation_config.json").read_text())
    config |= {"do_sample": True, "temperature": 0.7, "top_k": 20, "top_p": 0.8, "repetition_penalty": 1.05}
    (sampling_dir / "generation_config.json").write_text(json.dumps(config))
    rows = pq.read_table(parquet).to_pylist()
    greedy = _greedy_reference(tiny_model_dir, rows, 24, do_sample=False, repetition_penalty=1.0)
    # The checkpoint's own settings give other answers: the comparison below can fail.
    assert _greedy_reference(sampling_dir, rows, 24, do_sample=False) != greedy  # its repetition penalty
    assert _greedy_reference(sampling_dir, rows, 24) != greedy  # its sampling
    out = tmp_path / "preds.jsonl"
    args = ["--model", str(sampling_dir), "--data", str(parquet), "--out", str(out), "--backend", "hf"]
    assert predict_main([*args, "--batch-size", "1", "--max-new-tokens", "24"]) == 0
    assert [json.loads(line)["response"] for line in out.read_text().splitlines()] == greedy
    capsys.readouterr()


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
        "limit_mm_per_prompt": {"image": 1},
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


class _InterruptedGenerator:
    """Stands in for the transformers generator: answers ``answers`` batches, then Ctrl-C."""

    answers = 1

    def __init__(self, *args) -> None:
        self.calls = 0

    def __call__(self, prompts, images, sizes):
        self.calls += 1
        if self.calls > self.answers:
            raise KeyboardInterrupt
        return [Generation(f"answer {self.calls}") for _ in prompts]


@pytest.mark.parametrize("answers", [0, 1])
def test_ctrl_c_keeps_the_finished_lines(tmp_path, capsys, monkeypatch, tiny_model_dir, parquet, answers):
    monkeypatch.setattr(_InterruptedGenerator, "answers", answers)
    monkeypatch.setattr("verl_hoi.generation._HFGenerator", _InterruptedGenerator)
    out = tmp_path / "preds.jsonl"
    args = ["--model", str(tiny_model_dir), "--data", str(parquet), "--out", str(out), "--backend", "hf"]
    assert predict_main([*args, "--batch-size", "2"]) == INTERRUPTED
    assert "interrupted:" in capsys.readouterr().err
    if answers == 0:
        assert list(tmp_path.iterdir()) == []  # nothing was finished: no file at all
    else:
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        assert [(line["file_name"], line["response"]) for line in lines] == [
            ("HICO_test2015_00000001.jpg", "answer 1"),
            ("HICO_test2015_00000002.jpg", "answer 1"),
        ]
    # The same command goes on where it stopped.
    monkeypatch.setattr(_InterruptedGenerator, "answers", 9)
    assert predict_main([*args, "--batch-size", "2"]) == 0
    names = [json.loads(line)["file_name"] for line in out.read_text().splitlines()]
    assert names == [f"HICO_test2015_0000000{i}.jpg" for i in (1, 2, 3)]


def test_prepared_images_are_checked_against_the_processor():
    from verl_hoi.generation import _check_grid, _check_prepared

    image = Image.new("RGB", (252, 168))
    _check_prepared([image], [(252, 168)])
    with pytest.raises(ValueError, match=r"resized to 252x168, not to model_size \[168, 252\]"):
        _check_prepared([image], [(168, 252)])
    _check_grid([[1, 12, 18]], [(252, 168)], 14)
    with pytest.raises(ValueError, match="the processor resized a 252x168 image to 238x168"):
        _check_grid([[1, 12, 17]], [(252, 168)], 14)


def test_a_chat_template_that_opens_think_is_recorded(tmp_path, monkeypatch, tiny_model_dir, parquet):
    # The line says what the reward manager decides for the same prompt: the response starts inside the block.
    thinking_dir = tmp_path / "thinking_checkpoint"
    shutil.copytree(tiny_model_dir, thinking_dir)
    template = thinking_dir / "chat_template.jinja"
    template.write_text(template.read_text().replace("assistant\n{% endif %}", "assistant\n<think>\n{% endif %}"))
    monkeypatch.setattr(_InterruptedGenerator, "answers", 9)
    monkeypatch.setattr("verl_hoi.generation._HFGenerator", _InterruptedGenerator)
    out = tmp_path / "preds.jsonl"
    args = ["--model", str(thinking_dir), "--data", str(parquet), "--out", str(out), "--backend", "hf"]
    assert predict_main(args) == 0
    assert [json.loads(line)["prefilled_think"] for line in out.read_text().splitlines()] == [True, True, True]
