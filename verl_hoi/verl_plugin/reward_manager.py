"""The ``hoi`` reward manager for verl's reward loop (``reward.reward_manager.name=hoi``).

Registered on import; ``verl_hoi.verl_plugin`` is a ``verl.plugins`` entry point, so after
``pip install`` every ``import verl`` (driver and Ray workers) registers it. It scores with
:func:`verl_hoi.reward.compute_score`, options from ``reward.reward_kwargs`` (validated when the
manager is built, so a typo fails at start-up, not in a worker mid-run), unless a custom function
is configured (``reward.custom_reward_function.path``): then that function is called as verl's
``naive`` manager would, with its own ``custom_reward_function.reward_kwargs``.

The manager tells the reward whether the response starts inside the think block through
``extra_info["prefilled_think"]``: the row's value when it says, else whether the prompt ends with
``<think>`` (a chat template that opens the think block itself), as :func:`verl_hoi.prompts.prefilled_think`
decides.

A row the HOI reward cannot score (an ``extra_info`` that is not a mapping, a ``prefilled_think`` that
is not a boolean, a ground truth that is not an answer list) stops the run with a ``ValueError`` that
names the row (``extra_info``'s ``index`` and ``file_name``), never a silent score of 0.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from omegaconf import DictConfig, OmegaConf
from verl import DataProto
from verl.experimental.reward_loop.reward_manager import register
from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase

from verl_hoi.prompts import prefilled_think
from verl_hoi.reward import compute_score as hoi_compute_score
from verl_hoi.reward import reward_config

__all__ = ["HOIRewardManager"]

_PROMPT_TAIL_TOKENS = 8  # enough to hold "<think>" plus trailing white space in any tokenizer


@register("hoi")
class HOIRewardManager(RewardManagerBase):
    """Scores one trajectory at a time with the HOI reward (see :mod:`verl_hoi.reward`).

    Args:
        config: the trainer config; reads ``reward.reward_kwargs`` and ``reward.custom_reward_function.path``.
        tokenizer: the policy's tokenizer, used to decode responses.
        compute_score: what verl resolved: the custom function when one is configured, else verl's default
            (ignored: the HOI reward replaces it).
        reward_router_address, reward_model_tokenizer: passed on to a custom function, as verl's ``naive`` does.

    Raises:
        ValueError: ``reward.reward_kwargs`` has an unknown option or a bad value.
    """

    def __init__(
        self,
        config: DictConfig,
        tokenizer: Any,
        compute_score: Callable[..., Any] | None,
        reward_router_address: str | None = None,
        reward_model_tokenizer: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(config, tokenizer, compute_score)
        reward = config.get("reward") or {}
        custom = (reward.get("custom_reward_function") or {}).get("path")
        self.extra_score_kwargs: dict[str, Any] = {}
        if custom:
            self.compute_score = compute_score
            if reward_router_address is not None:
                self.extra_score_kwargs = {
                    "reward_router_address": reward_router_address,
                    "reward_model_tokenizer": reward_model_tokenizer,
                }
        else:
            options = reward.get("reward_kwargs") or {}
            if isinstance(options, DictConfig):
                options = OmegaConf.to_container(options, resolve=True)
            if not isinstance(options, Mapping):
                raise ValueError(f"reward.reward_kwargs must map option names to values; got {options!r}")
            reward_config(**options)  # fail now on a bad option
            self.compute_score = partial(hoi_compute_score, **options)
        self._custom = bool(custom)
        self.is_async_reward_score = inspect.iscoroutinefunction(self.compute_score)

    async def run_single(self, data: DataProto) -> dict[str, Any]:
        """Score the last sequence of ``data``: ``{"reward_score": float, "reward_extra_info": dict}``.

        ``reward_extra_info`` is the whole result dict of the reward (``score`` included), the same keys
        for every sample, so verl logs each as a metric.
        """
        item = data[-1:][0]  # for multi-sequence outputs only the last one is scored
        prompt_ids, response_ids = item.batch["prompts"], item.batch["responses"]
        attention_mask = item.batch["attention_mask"]
        response_length, prompt_length = response_ids.shape[-1], prompt_ids.shape[-1]
        response_ids = response_ids[: int(attention_mask[-response_length:].sum())]  # right-padded
        prompt_tail = prompt_ids[-min(int(attention_mask[:prompt_length].sum()), _PROMPT_TAIL_TOKENS) :]  # left-padded

        row_info = item.non_tensor_batch.get("extra_info")
        if row_info is not None and not isinstance(row_info, Mapping):
            raise ValueError(f"a row's extra_info must be a mapping; got {type(row_info).__name__}: {row_info!r:.80}")
        extra_info = dict(row_info or {})
        extra_info.update((item.non_tensor_batch.get("tool_extra_fields") or {}).items())
        extra_info["num_turns"] = item.non_tensor_batch.get("__num_turns__")
        extra_info["rollout_reward_scores"] = item.non_tensor_batch.get("reward_scores", {})
        kwargs = {
            "data_source": item.non_tensor_batch["data_source"],
            "ground_truth": item.non_tensor_batch["reward_model"]["ground_truth"],
            "extra_info": extra_info,
            **self.extra_score_kwargs,
        }

        def decode() -> str:
            if len(prompt_tail):
                tail = self.tokenizer.decode(prompt_tail, skip_special_tokens=False)
                extra_info["prefilled_think"] = prefilled_think(extra_info.get("prefilled_think"), tail)
            return self.tokenizer.decode(response_ids, skip_special_tokens=True)

        loop = asyncio.get_running_loop()
        try:
            if self.is_async_reward_score:
                result = await self.compute_score(solution_str=await loop.run_in_executor(None, decode), **kwargs)
            else:  # decode and score in one trip to the thread pool
                result = await loop.run_in_executor(None, lambda: self.compute_score(solution_str=decode(), **kwargs))
        except ValueError as error:
            if self._custom:  # a custom function's own errors pass as they are
                raise
            raise ValueError(f"{_row_name(extra_info)}: {error}") from error
        if isinstance(result, dict):
            return {"reward_score": result["score"], "reward_extra_info": dict(result)}
        return {"reward_score": result, "reward_extra_info": {"acc": result}}


def _row_name(extra_info: Mapping[str, Any]) -> str:
    """``row index 3 (HICO_test2015_00000004.jpg)``, from what ``extra_info`` says of the row."""
    name = "row" if extra_info.get("index") is None else f"row index {extra_info['index']}"
    return name if extra_info.get("file_name") is None else f"{name} ({extra_info['file_name']})"
