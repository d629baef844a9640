"""``python -m verl_hoi.predict --backend hf`` with the tiny Qwen2.5-VL on CPU, then ``verl_hoi.evaluate``
on its output; resuming; a processor that would resize the rows; greedy decoding whatever the checkpoint's
generation config says; Ctrl-C; a chat template that opens ``<think>``. The generation library:
test_generation.py. Bad command lines: test_predict_cli_bad_input.py."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from conftest import convert
from transformers import AutoModelForImageTextToText, AutoProcessor

from verl_hoi.cli import INTERRUPTED
from verl_hoi.evaluate import main as evaluate_main
from verl_hoi.generation import Generation, prepare
from verl_hoi.predict import main as predict_main


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
