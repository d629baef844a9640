"""``python -m verl_hoi.predict --backend hf`` with the tiny Qwen2.5-VL on CPU, then ``verl_hoi.evaluate``
on its output; the model inputs against verl's own dataset code; token offsets; resuming."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from transformers import AutoProcessor

from verl_hoi.convert import ConvertOptions, iter_rows, row_schema, write_parquet
from verl_hoi.evaluate import main as evaluate_main
from verl_hoi.hicodet import load_annotations
from verl_hoi.predict import main as predict_main
from verl_hoi.predict import prepare, token_offsets

TINY_MIN_PIXELS = 4 * 28 * 28
TINY_MAX_PIXELS = 64 * 28 * 28
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
    assert {"response", "frame", "image_size", "model_size", "min_pixels", "max_pixels", "index", "prompt"} <= set(
        first
    )
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
    # Converted with the default budget, images are larger than the tiny processor's max_pixels.
    parquet = convert(tmp_path, sample_annotations, sample_images, "big.parquet", max_pixels=256 * 28 * 28)
    code = predict_main(
        ["--model", str(tiny_model_dir), "--data", str(parquet), "--out", str(tmp_path / "p.jsonl")]
        + ["--backend", "hf", "--limit", "1", "--max-new-tokens", "2"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "error: the processor resizes" in err


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_vllm_missing_is_one_line(tmp_path, capsys, tiny_model_dir, parquet):
    code = predict_main(["--model", str(tiny_model_dir), "--data", str(parquet), "--out", str(tmp_path / "p.jsonl")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: vllm is not installed") and err.count("\n") == 1


def test_missing_inputs(tmp_path, capsys, tiny_model_dir):
    code = predict_main(["--model", str(tiny_model_dir), "--data", "nope.parquet", "--out", str(tmp_path / "p")])
    assert code == 2 and capsys.readouterr().err == "error: --data: not found: nope.parquet\n"
