"""Build a tiny, randomly initialised checkpoint of a model family (model + processor in one folder).

    python -m verl_hoi.tiny_model OUT_DIR [--family NAME] [--min-pixels N] [--max-pixels N]

It loads through the same ``from_pretrained`` code path as a real checkpoint of the family (Qwen2.5-VL,
Qwen3-VL, Qwen3.5), so the whole pipeline (conversion, prediction, verl datasets, SFT, GRPO) can be
exercised in seconds without downloading weights. Its answers are random text. What it shares with the
released checkpoints: the architecture and its special features (Qwen2.5-VL's windowed vision attention,
Qwen3-VL's deepstack, Qwen3.5's linear-attention layers), bf16 weights, text head size 64, the patch
geometry of the family, the special tokens, ``<|im_end|>`` as end of turn, and the parts of the chat
template that the pipeline meets (Qwen2.5-VL's default system prompt, Qwen3.5's ``<think>`` opened by the
generation prompt). The default pixel budget is 4 to 64 image tokens.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verl_hoi.cli import doc_parser, fail, positive_int
from verl_hoi.families import DEFAULT_FAMILY, available_families, get_family
from verl_hoi.frames import check_pixel_budget
from verl_hoi.vocab import OBJECTS, VERBS

__all__ = ["build_tiny_model", "tiny_families"]

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
"""Special tokens of every family; the first is the padding token, the third the end of a turn."""

THINK_TOKENS = ("<think>", "</think>")
"""Qwen3's reasoning tags: single, ordinary (not special, so decoding keeps them) tokens of the vocabulary."""

_IMAGE_TOKENS = (4, 64)
"""Default pixel budget of a tiny checkpoint, in image tokens (blocks of the family)."""

_RENDER_CONTENT = (
    "{%- macro render(content) %}"
    "{%- if content is string %}{{- content }}"
    "{%- else %}{%- for item in content %}"
    "{%- if item.type == 'image' or 'image' in item %}{{- '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif 'text' in item %}{{- item.text }}{%- endif %}"
    "{%- endfor %}{%- endif %}"
    "{%- endmacro %}"
)

# The families' chat templates, reduced to text and image items.
_QWEN2_5_VL_TEMPLATE = (
    _RENDER_CONTENT + "{%- for message in messages %}"
    "{%- if loop.first and message.role != 'system' %}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{%- endif %}"
    "{{- '<|im_start|>' + message.role + '\\n' }}{{- render(message.content) }}{{- '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"  # written as the released template does
)
_QWEN3_VL_TEMPLATE = (
    _RENDER_CONTENT + "{%- for message in messages %}"
    "{{- '<|im_start|>' + message.role + '\\n' }}{{- render(message.content) }}{{- '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
_QWEN3_5_TEMPLATE = (
    _RENDER_CONTENT + "{%- set ns = namespace(last_query=-1) %}"
    "{%- for message in messages %}{%- if message.role == 'user' %}{%- set ns.last_query = loop.index0 %}"
    "{%- endif %}{%- endfor %}"
    "{%- if ns.last_query < 0 %}{{- raise_exception('No user query found in messages.') }}{%- endif %}"
    "{%- for message in messages %}"
    "{%- set content = render(message.content)|trim %}"
    "{%- if message.role == 'assistant' %}"
    "{%- set reasoning = '' %}"
    "{%- if '</think>' in content %}"
    "{%- set reasoning = content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}"
    "{%- set content = content.split('</think>')[-1].lstrip('\\n') %}"
    "{%- endif %}"
    "{%- if loop.index0 > ns.last_query %}"
    "{{- '<|im_start|>assistant\\n<think>\\n' + reasoning|trim + '\\n</think>\\n\\n' + content }}"
    "{%- else %}{{- '<|im_start|>assistant\\n' + content }}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>\\n' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- else %}{{- '<think>\\n' }}{%- endif %}{%- endif %}"
)
"""Qwen3.5's: the generation prompt opens ``<think>`` unless ``enable_thinking=False``; an assistant turn after
the last user turn is rewritten as ``<think>\\n{reasoning}\\n</think>\\n\\n{answer}``; a conversation without
a user turn is refused."""

_TEXT = {"hidden_size": 128, "intermediate_size": 256, "num_attention_heads": 2, "num_key_value_heads": 1}
"""Text tower of every family: 2 heads of 64 (vLLM's attention kernels accept few head sizes)."""
_VISION = {"hidden_size": 64, "intermediate_size": 128, "num_heads": 1, "out_hidden_size": _TEXT["hidden_size"]}


@dataclass(frozen=True)
class _Blueprint:
    """A tiny checkpoint of one family, less what the family registry and the tokenizer give.

    Attributes:
        label: the family's name for people.
        config, processor, video_processor: ``transformers`` class names.
        chat_template: the reduced chat template.
        text, vision: the family's own ``text_config`` / ``vision_config`` entries.
        think_tokens: ``<think>`` and ``</think>`` are tokens of the vocabulary.
        image_mean_std: ``image_mean`` / ``image_std`` of the processors, where not the CLIP ones.
        tie_word_embeddings: the output layer shares the input embedding.
    """

    label: str
    config: str
    processor: str
    video_processor: str
    chat_template: str
    text: dict[str, Any]
    vision: dict[str, Any]
    think_tokens: bool = True
    image_mean_std: dict[str, list[float]] = field(default_factory=dict)
    tie_word_embeddings: bool = False


_TO_MINUS_ONE_ONE = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}
_BLUEPRINTS = {
    "qwen2_5_vl": _Blueprint(
        label="Qwen2.5-VL",
        config="Qwen2_5_VLConfig",
        processor="Qwen2_5_VLProcessor",
        video_processor="Qwen2VLVideoProcessor",
        chat_template=_QWEN2_5_VL_TEMPLATE,
        # mrope_section sums to half the head size
        text={"num_hidden_layers": 2, "rope_scaling": {"type": "mrope", "mrope_section": [8, 12, 12]}},
        # window attention in every block but the last, as in the released 32 blocks (full at 7, 15, 23, 31)
        vision={"depth": 2, "fullatt_block_indexes": [1]},
        think_tokens=False,
    ),
    "qwen3_vl": _Blueprint(
        label="Qwen3-VL",
        config="Qwen3VLConfig",
        processor="Qwen3VLProcessor",
        video_processor="Qwen3VLVideoProcessor",
        chat_template=_QWEN3_VL_TEMPLATE,
        text={
            "num_hidden_layers": 2,
            "head_dim": 64,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 5_000_000.0,
                "mrope_section": [12, 10, 10],  # the released [24, 20, 20] for half the head size
                "mrope_interleaved": True,
            },
        },
        # features of vision blocks 1 and 2 of 4 reach text layers 0 and 1 (released: blocks 5, 11, 17 of 24)
        vision={"depth": 4, "deepstack_visual_indexes": [1, 2]},
        image_mean_std=_TO_MINUS_ONE_ONE,
        tie_word_embeddings=True,  # as Qwen3-VL-4B
    ),
    "qwen3_5": _Blueprint(
        label="Qwen3.5",
        config="Qwen3_5Config",
        processor="Qwen3VLProcessor",
        video_processor="Qwen3VLVideoProcessor",
        chat_template=_QWEN3_5_TEMPLATE,
        text={
            "num_hidden_layers": 4,  # three gated delta net (linear attention) layers, then one full attention
            "head_dim": 64,
            "linear_num_key_heads": 2,
            "linear_num_value_heads": 4,
            "linear_key_head_dim": 64,
            "linear_value_head_dim": 64,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10_000_000.0,
                "partial_rotary_factor": 0.25,
                "mrope_section": [3, 3, 2],  # sums to half the rotary size (64 * 0.25), like the released [11, 11, 10]
                "mrope_interleaved": True,
            },
        },
        vision={"depth": 2},
        image_mean_std=_TO_MINUS_ONE_ONE,
    ),
}


def _training_text() -> list[str]:
    answer = '<think>one person</think><answer>[{"human": [1, 2, 30, 40], "object": [5, 6, 70, 80], '
    answer += '"object class": "bicycle", "verb class": ["ride", "hold"]}]</answer>'
    return [answer, " ".join(OBJECTS), " ".join(VERBS), "0123456789 ,.:;[]{}\"' \nYou are a helpful assistant."] * 4


def _tokenizer(blueprint: _Blueprint):
    """A byte-level BPE trained on HOI answers, with the family's special tokens and chat template."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=list(SPECIAL_TOKENS)
    )
    bpe.train_from_iterator(_training_text(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=SPECIAL_TOKENS[2],
        pad_token=SPECIAL_TOKENS[0],
        additional_special_tokens=list(SPECIAL_TOKENS[1:]),
        chat_template=blueprint.chat_template,
    )
    if blueprint.think_tokens:
        tokenizer.add_tokens([AddedToken(tag, normalized=False, special=False) for tag in THINK_TOKENS])
    return tokenizer


def tiny_families() -> tuple[str, ...]:
    """The registered families :func:`build_tiny_model` can build, in registry order.

    >>> tiny_families()[:3]
    ('qwen2_5_vl', 'qwen3_vl', 'qwen3_5')
    """
    return tuple(name for name in available_families() if name in _BLUEPRINTS)


def build_tiny_model(
    out_dir: str | Path,
    family: str = DEFAULT_FAMILY,
    *,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    seed: int = 0,
) -> Path:
    """Write a tiny random checkpoint of ``family`` (under 3 MB in bf16) and its processor to ``out_dir``.

    ``min_pixels`` / ``max_pixels`` set the processor's pixel budget; by default 4 to 64 image tokens of the
    family. Returns the folder, which ``AutoProcessor`` and ``AutoModelForImageTextToText``
    ``from_pretrained`` load like any checkpoint of the family.

    Raises:
        ValueError: an unknown family or one not in :func:`tiny_families`, or ``min_pixels > max_pixels``.
    """
    geometry = get_family(family)
    if family not in _BLUEPRINTS:
        raise ValueError(f"no tiny checkpoint of model family {family!r}; tiny families: {', '.join(tiny_families())}")
    blueprint = _BLUEPRINTS[family]
    block_pixels = geometry.block**2
    min_pixels = _IMAGE_TOKENS[0] * block_pixels if min_pixels is None else min_pixels
    max_pixels = _IMAGE_TOKENS[1] * block_pixels if max_pixels is None else max_pixels
    check_pixel_budget(min_pixels, max_pixels)

    import torch
    import transformers

    tokenizer = _tokenizer(blueprint)
    patches = {"patch_size": geometry.patch_size, "merge_size": geometry.merge_size, "temporal_patch_size": 2}
    processor = getattr(transformers, blueprint.processor)(
        image_processor=transformers.Qwen2VLImageProcessor(
            min_pixels=min_pixels, max_pixels=max_pixels, **patches, **blueprint.image_mean_std
        ),
        tokenizer=tokenizer,
        video_processor=getattr(transformers, blueprint.video_processor)(**patches, **blueprint.image_mean_std),
        chat_template=blueprint.chat_template,
    )

    token_id = tokenizer.convert_tokens_to_ids
    ends = {
        "bos_token_id": token_id(SPECIAL_TOKENS[0]),
        "eos_token_id": token_id(SPECIAL_TOKENS[2]),
        "pad_token_id": token_id(SPECIAL_TOKENS[0]),
    }
    config = getattr(transformers, blueprint.config)(
        text_config={"vocab_size": len(tokenizer), **_TEXT, **blueprint.text, **ends},
        vision_config={
            **_VISION,
            **blueprint.vision,
            "patch_size": geometry.patch_size,
            "spatial_merge_size": geometry.merge_size,
            "temporal_patch_size": patches["temporal_patch_size"],
        },
        image_token_id=token_id("<|image_pad|>"),
        video_token_id=token_id("<|video_pad|>"),
        vision_start_token_id=token_id("<|vision_start|>"),
        vision_end_token_id=token_id("<|vision_end|>"),
        tie_word_embeddings=blueprint.tie_word_embeddings,
        **ends,
    )
    torch.manual_seed(seed)
    model = transformers.AutoModelForImageTextToText.from_config(config)
    model.generation_config.eos_token_id = ends["eos_token_id"]
    model.generation_config.pad_token_id = ends["pad_token_id"]
    # bf16 on disk, like the released checkpoints: vLLM's "auto" dtype then picks bf16 kernels.
    out = Path(out_dir)
    model.to(torch.bfloat16).save_pretrained(out)
    processor.save_pretrained(out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 on a user mistake)."""
    parser = doc_parser("python -m verl_hoi.tiny_model", __doc__)
    parser.add_argument("out_dir", help="folder to write the checkpoint to (created if missing)")
    parser.add_argument("--family", choices=tiny_families(), default=DEFAULT_FAMILY, help="model family")
    parser.add_argument("--min-pixels", type=positive_int, help="processor min_pixels (default: 4 image tokens)")
    parser.add_argument("--max-pixels", type=positive_int, help="processor max_pixels (default: 64 image tokens)")
    args = parser.parse_args(argv)
    try:
        path = build_tiny_model(args.out_dir, args.family, min_pixels=args.min_pixels, max_pixels=args.max_pixels)
    except ValueError as error:
        return fail(error)
    print(f"tiny {_BLUEPRINTS[args.family].label} written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
