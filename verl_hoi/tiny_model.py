"""Build a tiny, randomly initialised Qwen2.5-VL checkpoint (model + processor in one folder).

It loads through the same ``from_pretrained`` code path as a real checkpoint, so the whole
pipeline (conversion, prediction, verl datasets, SFT, GRPO) can be exercised in seconds
without downloading weights. Its answers are random text.

    python -m verl_hoi.tiny_model OUT_DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path

from verl_hoi.vocab import OBJECTS, VERBS

__all__ = ["build_tiny_qwen2_5_vl"]

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Qwen2.5-VL's chat template, reduced to what the pipeline uses (text and image items).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' or 'image' in item %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _training_text() -> list[str]:
    answer = '<think>one person</think><answer>[{"human": [1, 2, 30, 40], "object": [5, 6, 70, 80], '
    answer += '"object class": "bicycle", "verb class": ["ride", "hold"]}]</answer>'
    return [answer, " ".join(OBJECTS), " ".join(VERBS), "0123456789 ,.:;[]{}\"' \n"] * 4


def build_tiny_qwen2_5_vl(
    out_dir: str | Path, *, min_pixels: int = 4 * 28 * 28, max_pixels: int = 64 * 28 * 28, seed: int = 0
) -> Path:
    """Write a tiny Qwen2.5-VL (about 0.7M parameters in bf16, under 2 MB) and its processor to ``out_dir``.

    Returns the folder, which ``AutoProcessor`` and ``Qwen2_5_VLForConditionalGeneration``
    ``from_pretrained`` load like any checkpoint.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        PreTrainedTokenizerFast,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    out = Path(out_dir)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=SPECIAL_TOKENS
    )
    bpe.train_from_iterator(_training_text(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
        chat_template=CHAT_TEMPLATE,
    )
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=min_pixels, max_pixels=max_pixels),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=CHAT_TEMPLATE,
    )

    token_id = tokenizer.convert_tokens_to_ids
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            # head size 64, like real checkpoints: vLLM's attention kernels accept few head sizes
            "hidden_size": 128,
            "intermediate_size": 256,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "rope_scaling": {"type": "mrope", "mrope_section": [8, 12, 12]},  # sums to half the head size
            "bos_token_id": token_id("<|endoftext|>"),
            "eos_token_id": token_id("<|im_end|>"),
            "pad_token_id": token_id("<|endoftext|>"),
        },
        vision_config={
            "depth": 2,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_heads": 1,
            "out_hidden_size": 128,
            "fullatt_block_indexes": [1],
            "window_size": 56,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=token_id("<|image_pad|>"),
        video_token_id=token_id("<|video_pad|>"),
        vision_start_token_id=token_id("<|vision_start|>"),
        bos_token_id=token_id("<|endoftext|>"),
        eos_token_id=token_id("<|im_end|>"),
        pad_token_id=token_id("<|endoftext|>"),
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = token_id("<|im_end|>")
    model.generation_config.pad_token_id = token_id("<|endoftext|>")
    # bf16 on disk, like released Qwen2.5-VL checkpoints: vLLM's "auto" dtype then picks bf16 kernels.
    model.to(torch.bfloat16).save_pretrained(out)
    processor.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m verl_hoi.tiny_model",
        description="Write a tiny random Qwen2.5-VL checkpoint (model + processor) for smoke tests.",
    )
    parser.add_argument("out_dir", help="folder to write the checkpoint to (created if missing)")
    parser.add_argument("--min-pixels", type=int, default=4 * 28 * 28, help="processor min_pixels")
    parser.add_argument("--max-pixels", type=int, default=64 * 28 * 28, help="processor max_pixels")
    args = parser.parse_args(argv)
    path = build_tiny_qwen2_5_vl(args.out_dir, min_pixels=args.min_pixels, max_pixels=args.max_pixels)
    print(f"tiny Qwen2.5-VL written to {path}")


if __name__ == "__main__":
    main()
