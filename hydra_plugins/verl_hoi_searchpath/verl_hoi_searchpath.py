"""Hydra search-path plugin: makes verl-hoi's config groups visible to every Hydra app.

Hydra imports every module under the ``hydra_plugins`` namespace package at start-up. This one
appends ``pkg://verl_hoi.configs`` to the config search path, so that after ``pip install`` the
recipes and the model families they take are normal config group options::

    python -m verl.trainer.main_ppo +recipe=hoi_grpo hoi_family=qwen3_vl
    torchrun -m verl.trainer.sft_trainer +recipe=hoi_sft hoi_family=qwen3_vl

verl's trainers are ``@hydra.main`` apps on verl's own config folder with no setting for another
package's configs, and Hydra adds a search path without ``hydra.searchpath=...`` on every command
line only through such a plugin.

Appending (not prepending) keeps verl's own configs first: a name clash resolves to verl's file.
"""

from __future__ import annotations

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

PROVIDER = "verl-hoi"
CONFIG_PACKAGE = "pkg://verl_hoi.configs"


class VerlHoiSearchPathPlugin(SearchPathPlugin):
    """Appends ``pkg://verl_hoi.configs`` (the ``recipe`` and ``hoi_family`` groups) to Hydra's config search path."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider=PROVIDER, path=CONFIG_PACKAGE)
