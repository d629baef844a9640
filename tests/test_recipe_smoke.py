"""``SMOKE_CPU=1 [FAMILY=...] bash recipes/smoke.sh``: tiny model, sample conversion, SFT rows, both recipes' configs,
for the default family and Qwen3.5 (the other families' stages: test_families_on_cpu.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf
from recipe_harness import first_prompt, run
from verl.trainer.ppo.utils import need_critic, need_reference_policy
from verl.utils.config import validate_config

from verl_hoi.families import DEFAULT_FAMILY, get_family

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:Disabled critic")]


@pytest.fixture(scope="module", params=[None, "qwen3_5"])
def family(request) -> str | None:
    """``FAMILY`` of the smoke run: unset (Qwen2.5-VL) or Qwen3.5."""
    return request.param


@pytest.fixture(scope="module")
def smoke_dir(tmp_path_factory: pytest.TempPathFactory, family: str | None) -> Path:
    """``SMOKE_CPU=1 bash recipes/smoke.sh`` with this interpreter's environment."""
    out = tmp_path_factory.mktemp("smoke")
    env = {"SMOKE_CPU": "1", "VENV": sys.prefix, "OUT": str(out)} | ({"FAMILY": family} if family else {})
    result = run(["bash", "recipes/smoke.sh"], **env)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_smoke_cpu_steps(smoke_dir: Path, family: str | None) -> None:
    family = family or DEFAULT_FAMILY
    assert (smoke_dir / "tiny_model" / "config.json").is_file()
    rl = pq.read_table(smoke_dir / "data" / "test.parquet").to_pylist()
    sft = pq.read_table(smoke_dir / "data" / "sft.parquet").to_pylist()
    assert len(rl) == len(sft) == 8  # every sample image, the one without pairs included
    assert {(row["extra_info"]["family"], row["extra_info"]["patch_size"]) for row in rl} == {
        (family, get_family(family).patch_size)
    }
    for rl_row, sft_row in zip(rl, sft, strict=True):
        answer = rl_row["reward_model"]["ground_truth"]
        target = sft_row["messages"][-1]
        assert target["role"] == "assistant"
        assert target["content"].endswith(f"</think><answer>{answer}</answer>")

    sft_config = OmegaConf.load(smoke_dir / "sft_config.yaml")
    assert (sft_config.verl_hoi.recipe, sft_config.verl_hoi.family.name) == ("hoi_sft", family)
    assert sft_config.data.train_files == str(smoke_dir / "data" / "sft.parquet")
    assert sft_config.model.path == str(smoke_dir / "tiny_model")
    assert sft_config.trainer.default_local_dir == str(smoke_dir / "sft")
    assert (sft_config.trainer.total_epochs, sft_config.data.train_batch_size) == (2, 4)

    grpo = OmegaConf.load(smoke_dir / "grpo_config.yaml")
    assert (grpo.verl_hoi.recipe, grpo.verl_hoi.family.name) == ("hoi_grpo", family)
    assert grpo.data.image_patch_size == get_family(family).patch_size
    assert grpo.actor_rollout_ref.model.path == str(smoke_dir / "tiny_model")
    assert grpo.trainer.total_training_steps == 2
    assert grpo.trainer.n_gpus_per_node == 1
    validate_config(grpo, use_reference_policy=need_reference_policy(grpo), use_critic=need_critic(grpo))


def test_smoke_rows_load_with_the_smoke_model(smoke_dir: Path) -> None:
    config = OmegaConf.load(smoke_dir / "grpo_config.yaml")
    row, seen = first_prompt(config, smoke_dir / "tiny_model")
    assert list(seen["images"][0].size) == row["extra_info"]["model_size"]
    assert len(seen["inputs"]["input_ids"][0]) <= config.data.max_prompt_length
