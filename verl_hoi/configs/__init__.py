"""Hydra config groups shipped with verl-hoi, found through ``pkg://verl_hoi.configs``.

``recipe/``: the SFT and GRPO recipes (``+recipe=hoi_sft``, ``+recipe=hoi_grpo``). ``hoi_family/``: one file per
model family, selected in both stages with ``hoi_family=NAME`` after the recipe (default ``qwen2_5_vl``).
"""
