"""Hydra config groups shipped with verl-hoi (``recipe/``), found through ``pkg://verl_hoi.configs``, and
:mod:`verl_hoi.configs.sft_trainer_config`, which prints the SFT recipe's config without verl's training extras."""
