"""Hydra config groups shipped with verl-hoi (``recipe/``), found through ``pkg://verl_hoi.configs``."""
