"""SFT rows: an RL parquet row plus a reasoning trace, in verl's ``MultiTurnSFTDataset`` format.

The RL row (``data_prep/hicodet_to_parquet.py``) holds the prompt as chat messages with one
``<image>`` placeholder, the image(s) and the ground-truth answer JSON. The SFT row keeps the same
prompt and image and adds one assistant turn, the training target::

    <think>{reasoning}</think><answer>{ground-truth JSON}</answer>

``verl.utils.dataset.multiturn_sft_dataset.MultiTurnSFTDataset`` reads the ``messages`` and
``images`` columns (``data.messages_key`` / ``data.image_key``), replaces ``<image>`` by the
image, and puts the loss on the assistant turn only. ``recipes/sft.sh`` reads them with its subclass
``verl_hoi.verl_plugin.dataset.HOISFTDataset``, which first checks every row as the GRPO adapter does
(``verl_hoi.rows.check_row``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from verl_hoi.answer import render_response
from verl_hoi.convert import DATA_SOURCE

__all__ = ["sft_row", "sft_schema"]


def sft_row(row: Mapping[str, Any], thinking: str) -> dict[str, Any]:
    """One ``MultiTurnSFTDataset`` row from an RL row and the reasoning for its ground truth.

    Args:
        row: RL parquet row (``verl_hoi.convert.build_row``) with ``prompt`` (chat messages,
            ``<image>`` in the user text), ``images`` (``{"bytes": ..}`` or ``{"image": path}``
            entries with ``min_pixels``/``max_pixels``, which verl's SFT dataset hands to
            ``qwen_vl_utils.fetch_image`` just as the RL dataset does, so the student sees the
            image at the size the ground-truth frame assumes), ``reward_model.ground_truth``
            (answer JSON string), and optionally ``data_source`` and ``extra_info`` (copied).
        thinking: the reasoning text (no tags).

    Returns:
        dict with ``messages`` (the RL prompt's messages, then ``{"role": "assistant",
        "content": "<think>..</think><answer>..</answer>"}``), ``images``, ``data_source``,
        ``extra_info``.

    >>> row = {"prompt": [{"role": "user", "content": "<image>Find the interactions."}],
    ...        "images": [{"bytes": b"jpeg"}], "data_source": "hico_det",
    ...        "reward_model": {"style": "rule", "ground_truth": "[]"}, "extra_info": {"index": 0}}
    >>> sft_row(row, "Nobody is in the picture.")["messages"][1]
    {'role': 'assistant', 'content': '<think>Nobody is in the picture.</think><answer>[]</answer>'}
    """
    answer = row["reward_model"]["ground_truth"]
    if not isinstance(answer, str):
        raise ValueError(f"reward_model.ground_truth must be the answer JSON string, got {type(answer).__name__}")
    messages = [{"role": str(m["role"]), "content": str(m["content"])} for m in row["prompt"]]
    messages.append({"role": "assistant", "content": render_response(answer, thinking)})
    return {
        "messages": messages,
        "images": [dict(image) for image in row["images"]],
        "data_source": row.get("data_source", DATA_SOURCE),
        "extra_info": dict(row.get("extra_info") or {}),
    }


def sft_schema(rl_schema: Any) -> Any:
    """The pyarrow schema of :func:`sft_row`'s rows, from the schema of the RL parquet they come from.

    ``messages`` has the type of the RL ``prompt``, ``images``, ``data_source`` and ``extra_info``
    keep theirs (the latter two only when the RL file has them). Write the rows with
    ``verl_hoi.convert.write_parquet(rows, path, sft_schema(rl_schema))``.
    """
    import pyarrow as pa

    fields = [pa.field("messages", rl_schema.field("prompt").type), rl_schema.field("images")]
    fields += [rl_schema.field(name) for name in ("data_source", "extra_info") if name in rl_schema.names]
    return pa.schema(fields)
