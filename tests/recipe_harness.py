"""Compose the recipes through verl's own configs, run the recipe scripts, and feed a row to verl's dataset code.

Imported by the recipe test modules (``from recipe_harness import ...``); pytest puts ``tests/`` on the path.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import verl
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, ListConfig, OmegaConf
from verl.trainer.ppo.utils import create_rl_dataset
from verl.utils import hf_processor, hf_tokenizer

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "verl_hoi" / "configs" / "recipe"
FAMILY_FILES = REPO / "verl_hoi" / "configs" / "hoi_family"
VERL_CONFIGS = Path(verl.__file__).parent / "trainer" / "config"
SUBPROCESS_TIMEOUT = 900


def run(cmd: Sequence[str], cwd: Path = REPO, **env: str) -> subprocess.CompletedProcess:
    """``cmd`` in ``cwd`` (the repository root) with this environment plus ``env``, output captured."""
    return subprocess.run(
        cmd, cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT
    )


def family_file(name: str) -> dict:
    """The values of ``verl_hoi/configs/hoi_family/<name>.yaml``."""
    return OmegaConf.to_container(OmegaConf.load(FAMILY_FILES / f"{name}.yaml"))


def compose_verl(config_name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """What ``--cfg job`` of the verl app on ``config_name`` prints, composed in this process.

    Hydra's search-path plugins apply here as in the app, so ``+recipe=...`` finds verl-hoi's recipes.
    """
    with initialize_config_dir(config_dir=str(VERL_CONFIGS), version_base=None):
        return compose(config_name=config_name, overrides=list(overrides))


def plain_value(config: DictConfig, key: str) -> object:
    """The value at dotted ``key`` of a composed config, sections as plain dicts and lists, interpolations resolved."""
    value = OmegaConf.select(config, key)
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value


def keys_missing_from_verl(recipe: str, config_name: str) -> tuple[int, list[str]]:
    """How many keys the recipe sets (its defaults list and ``verl_hoi`` values aside), and those verl's config
    lacks. A key under a mapping that verl leaves empty for the user (``engine_kwargs.vllm``) counts as known."""

    def leaf_keys(node: object, prefix: str = "") -> list[str]:
        if isinstance(node, dict) and node:
            return [key for name, value in node.items() for key in leaf_keys(value, f"{prefix}{name}.")]
        return [prefix[:-1]]

    def has_key(config: DictConfig, key: str) -> bool:
        *parents, leaf = key.split(".")
        node = config
        for name in parents:
            if len(node) == 0:
                return True
            node = OmegaConf.select(node, name)
            if not isinstance(node, DictConfig):
                return False
        # keys(), not `in node`: DictConfig.__contains__ is False for ??? (mandatory) values
        return len(node) == 0 or leaf in node.keys()  # noqa: SIM118

    base = compose_verl(config_name)
    recipe_keys = leaf_keys(OmegaConf.to_container(OmegaConf.load(RECIPES / f"{recipe}.yaml")))
    keys = [key for key in recipe_keys if key != "defaults" and not key.startswith("verl_hoi.")]
    return len(keys), [key for key in keys if not has_key(base, key)]


def rl_dataset(config: DictConfig, model_dir: Path):
    """The val file of a composed GRPO config through verl's dataset factory, with ``model_dir``'s processor."""
    tokenizer, processor = hf_tokenizer(str(model_dir)), hf_processor(str(model_dir))
    data_config = config.data.copy()
    # Length filter in this process: verl's one forked worker can deadlock in a test process where
    # torch has already run its thread pools.
    data_config.filter_overlong_prompts_workers = 0
    return create_rl_dataset(data_config.val_files, data_config, tokenizer, processor, is_train=False)


def first_prompt(config: DictConfig, model_dir: Path) -> tuple[dict, dict]:
    """Row 0 of the val file through verl's dataset factory, then the agent loop's image and token steps."""
    dataset = rl_dataset(config, model_dir)
    assert type(dataset).__name__ == "HOIDataset"
    processor = dataset.processor
    row = dataset[0]
    # The agent loop resizes with the processor's own patch size.
    images, _, _ = asyncio.run(
        type(dataset).process_multi_modal_info(
            row["raw_prompt"], image_patch_size=processor.image_processor.patch_size, config=dataset.config
        )
    )
    text = processor.apply_chat_template(row["raw_prompt"], add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=images, return_tensors="pt")
    return row, {"images": images, "inputs": inputs, "processor": processor}


def verl_data_config(**overrides) -> DictConfig:
    """verl's own GRPO data config with the HOI dataset adapter selected and ``overrides`` applied, as the
    trainer would hand it to the dataset (no length filter, room for any prompt)."""
    base = OmegaConf.load(VERL_CONFIGS / "data" / "legacy_data.yaml")
    custom = {
        "custom_cls": {"path": "pkg://verl_hoi.verl_plugin.dataset", "name": "HOIDataset"},
        "max_prompt_length": 8192,
        "filter_overlong_prompts": False,
        **overrides,
    }
    config = OmegaConf.merge(base, custom)
    config.pop("tool_config_path")  # interpolations into the trainer config, absent here
    config.pop("function_tool_path")
    return config
