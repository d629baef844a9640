"""The tiny random checkpoints of every family load, tokenise images and generate like real checkpoints."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText, AutoProcessor

from verl_hoi.families import get_family
from verl_hoi.prompts import prefilled_think
from verl_hoi.tiny_model import THINK_TOKENS, build_tiny_model, main, tiny_families

# family: (processor class, model class, first text tokens of a user turn, generation prompt)
EXPECTED = {
    "qwen2_5_vl": (
        "Qwen2_5_VLProcessor",
        "Qwen2_5_VLForConditionalGeneration",
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n",
        "<|im_start|>assistant\n",
    ),
    "qwen3_vl": (
        "Qwen3VLProcessor",
        "Qwen3VLForConditionalGeneration",
        "<|im_start|>user\n",
        "<|im_start|>assistant\n",
    ),
    "qwen3_5": (
        "Qwen3VLProcessor",
        "Qwen3_5ForConditionalGeneration",
        "<|im_start|>user\n",
        "<|im_start|>assistant\n<think>\n",
    ),
}
# A 300x200 image through qwen-vl-utils within 4..64 image tokens: Qwen2.5-VL's 28-pixel blocks
# (11x7 blocks would be 60,368 pixels > 64 * 28**2 = 50,176: scaled down to 9x6), Qwen3's 32-pixel blocks (9x6).
FETCHED_SIZE = {"qwen2_5_vl": (252, 168), "qwen3_vl": (288, 192), "qwen3_5": (288, 192)}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``built(family)``: the folder of the family's tiny checkpoint, built once per module."""
    folders: dict[str, Path] = {}

    def build(family: str) -> Path:
        if family not in folders:
            folders[family] = build_tiny_model(tmp_path_factory.mktemp(family), family)
        return folders[family]

    return build


@pytest.fixture(params=tiny_families())
def tiny(request: pytest.FixtureRequest, built: Callable[[str], Path]) -> tuple[str, Path]:
    """``(family, folder)`` of each family's tiny checkpoint."""
    return request.param, built(request.param)


def _messages(images: list[dict], text: str) -> list[dict]:
    return [
        {"role": "user", "content": [*({"type": "image", **image} for image in images), {"type": "text", "text": text}]}
    ]


def test_every_builtin_family_has_a_tiny_checkpoint():
    assert tiny_families() == ("qwen2_5_vl", "qwen3_vl", "qwen3_5")


def test_checkpoint_loads_like_a_released_one(tiny):
    family, folder = tiny
    processor_class, model_class, _, _ = EXPECTED[family]
    processor = AutoProcessor.from_pretrained(folder)
    model = AutoModelForImageTextToText.from_pretrained(folder)
    assert type(processor).__name__ == processor_class and type(model).__name__ == model_class
    assert json.loads((folder / "config.json").read_text())["model_type"] in get_family(family).model_types
    assert {weights.dtype for weights in load_file(folder / "model.safetensors").values()} == {torch.bfloat16}
    assert sum(f.stat().st_size for f in folder.iterdir()) < 3_000_000
    text = model.config.text_config
    assert text.hidden_size // text.num_attention_heads == getattr(text, "head_dim", 64) == 64
    tokenizer = processor.tokenizer
    assert tokenizer.eos_token == "<|im_end|>" and model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert model.config.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert model.config.vision_end_token_id == tokenizer.convert_tokens_to_ids("<|vision_end|>")


def test_architecture_features(tiny):
    family, folder = tiny
    config = json.loads((folder / "config.json").read_text())
    text, vision = config["text_config"], config["vision_config"]
    rope = text["rope_parameters"]
    if family == "qwen2_5_vl":
        assert (vision["depth"], vision["fullatt_block_indexes"], vision["window_size"]) == (2, [1], 112)
        assert rope["mrope_section"] == [8, 12, 12]  # sums to 64 / 2
    elif family == "qwen3_vl":
        assert (vision["depth"], vision["deepstack_visual_indexes"], text["num_hidden_layers"]) == (4, [1, 2], 2)
        assert (rope["mrope_section"], rope["mrope_interleaved"], config["tie_word_embeddings"]) == (
            [12, 10, 10],
            True,
            True,
        )
    else:
        assert text["layer_types"] == ["linear_attention"] * 3 + ["full_attention"]
        assert (rope["mrope_section"], rope["partial_rotary_factor"]) == ([3, 3, 2], 0.25)  # sums to 64 * 0.25 / 2


def test_image_processor_geometry_is_the_familys(tiny):
    family, folder = tiny
    image_processor = AutoProcessor.from_pretrained(folder).image_processor
    block = get_family(family).block
    assert image_processor.patch_size * image_processor.merge_size == block
    assert (image_processor.size["shortest_edge"], image_processor.size["longest_edge"]) == (
        4 * block**2,
        64 * block**2,
    )


def test_chat_template(tiny):
    family, folder = tiny
    _, _, user, generation = EXPECTED[family]
    processor = AutoProcessor.from_pretrained(folder)
    prompt = processor.apply_chat_template(
        _messages([{}], "Find the pairs."), add_generation_prompt=True, tokenize=False
    )
    vision = "<|vision_start|><|image_pad|><|vision_end|>"
    assert prompt == f"{user}{vision}Find the pairs.<|im_end|>\n{generation}"
    assert prefilled_think(None, prompt) is (family == "qwen3_5")
    tokenizer = processor.tokenizer
    if family == "qwen2_5_vl":  # plain text there, as in the released tokenizer
        assert [tokenizer.tokenize(tag) for tag in THINK_TOKENS] == [["<", "think", ">"], ["</", "think", ">"]]
    else:  # one ordinary token each
        assert [tokenizer.tokenize(tag) for tag in THINK_TOKENS] == [["<think>"], ["</think>"]]
    answer = "<think>one</think><answer>[]</answer>"
    assert tokenizer.decode(tokenizer.encode(answer), skip_special_tokens=True) == answer


def test_qwen3_5_template_thinking_turns(built):
    processor = AutoProcessor.from_pretrained(built("qwen3_5"))
    user = {"role": "user", "content": "Hi"}
    no_thinking = processor.apply_chat_template(
        [user], add_generation_prompt=True, enable_thinking=False, tokenize=False
    )
    assert no_thinking == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    turn = {"role": "assistant", "content": "<think>one</think><answer>[]</answer>"}
    assert processor.apply_chat_template([user, turn], tokenize=False) == (
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\none\n</think>\n\n<answer>[]</answer><|im_end|>\n"
    )
    with pytest.raises(Exception, match="No user query found in messages"):
        processor.apply_chat_template([turn], tokenize=False)


def test_batch_of_two_images_and_greedy_generation(tiny):
    family, folder = tiny
    block = get_family(family).block
    processor = AutoProcessor.from_pretrained(folder)
    processor.tokenizer.padding_side = "left"
    # Already multiples of the block and within 4..64 image tokens: 3x2 and 5x4 blocks, 2x2 patches a block.
    images = [Image.new("RGB", (3 * block, 2 * block), (200, 30, 30)), Image.new("RGB", (5 * block, 4 * block))]
    prompts = [
        processor.apply_chat_template(_messages([{}], text), add_generation_prompt=True, tokenize=False)
        for text in ("Find the pairs.", "Who rides?")
    ]
    inputs = processor(text=prompts, images=images, return_tensors="pt", padding=True)
    assert inputs["image_grid_thw"].tolist() == [[1, 4, 6], [1, 8, 10]]
    image_pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert (inputs["input_ids"] == image_pad).sum(dim=1).tolist() == [6, 20]
    assert inputs["mm_token_type_ids"].sum(dim=1).tolist() == [6, 20]

    model = AutoModelForImageTextToText.from_pretrained(folder)
    with torch.no_grad():
        first = model(**inputs).logits[:, -1].argmax(dim=-1)
        out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
        again = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    length = inputs["input_ids"].shape[1]
    assert torch.equal(out[:, :length], inputs["input_ids"]) and torch.equal(out, again)
    assert 1 < out.shape[1] - length <= 4
    assert out[:, length].tolist() == first.tolist()


def test_verl_vision_fetch_gives_the_processors_grid(tiny):
    from verl.utils.dataset.rl_dataset import RLHFDataset

    family, folder = tiny
    geometry = get_family(family)
    image_processor = AutoProcessor.from_pretrained(folder).image_processor
    budget = {"min_pixels": image_processor.size["shortest_edge"], "max_pixels": image_processor.size["longest_edge"]}
    messages = _messages([{"image": Image.new("RGB", (300, 200)), **budget}], "Find the pairs.")
    images, videos = asyncio.run(RLHFDataset.process_vision_info(messages, geometry.patch_size, config=None))
    assert videos is None and [image.size for image in images] == [FETCHED_SIZE[family]]
    w, h = FETCHED_SIZE[family]
    grid = image_processor(images=images, return_tensors="pt")["image_grid_thw"].tolist()
    assert grid == [[1, h // geometry.patch_size, w // geometry.patch_size]] == [[1, 12, 18]]


def test_unknown_family_lists_the_tiny_ones(tmp_path):
    with pytest.raises(ValueError, match="unknown model family 'qwen9'; valid families: qwen2_5_vl, qwen3_vl, qwen3_5"):
        build_tiny_model(tmp_path, "qwen9")
    assert not any(tmp_path.iterdir())


def test_cli_mistakes_are_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "m"), "--min-pixels", "5000", "--max-pixels", "4000"]) == 2
    assert capsys.readouterr().err == (
        "error: need 0 < min_pixels <= max_pixels, got min_pixels=5000, max_pixels=4000\n"
    )
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "m"), "--family", "qwen9"])
    assert exit_info.value.code == 2 and "invalid choice: 'qwen9'" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_cli_help_names_the_families(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "--family {qwen2_5_vl,qwen3_vl,qwen3_5}" in capsys.readouterr().out
