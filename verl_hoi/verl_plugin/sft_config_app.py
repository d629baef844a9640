"""verl's SFT trainer app without the trainer: prints the config ``python -m verl.trainer.sft_trainer`` composes.

::

    python -m verl_hoi.verl_plugin.sft_config_app +recipe=hoi_sft data.train_files=sft.parquet --cfg job

The same Hydra app as ``verl.trainer.sft_trainer.main`` (verl's ``sft_trainer_engine`` config, verl-hoi's recipes
through the search-path plugin, verl's plugins loaded first), for machines without verl's training extras:
importing verl's trainer needs them (uvicorn, fastapi) even to print its config. It answers ``--cfg``,
``--info`` and ``--help``, and trains nothing.
"""

from __future__ import annotations

import hydra
import verl  # noqa: F401  (verl's plugins, the recipe guard among them, run before Hydra composes, as in verl's app)
from omegaconf import DictConfig

CONFIG_PATH = "pkg://verl.trainer.config"
"""verl's ``verl/trainer/config`` folder, the ``config_path="config"`` of ``verl.trainer.sft_trainer.main``."""
CONFIG_NAME = "sft_trainer_engine"


@hydra.main(config_path=CONFIG_PATH, config_name=CONFIG_NAME, version_base=None)
def main(config: DictConfig) -> None:
    raise SystemExit("error: this app only prints the config (--cfg job); verl.trainer.sft_trainer trains")


if __name__ == "__main__":
    main()
