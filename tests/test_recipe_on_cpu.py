"""The GRPO recipe on CPU, through verl's own code wherever the trainer would use it.

- ``recipes/grpo.sh --cfg job`` composes ``+recipe=hoi_grpo`` through verl's real config (the Hydra
  search-path plugin of the installed package) and the result passes verl's ``validate_config``;
- every key of the recipe exists in verl 0.9.1's config (no silently ignored keys);
- the missing-plugin guard stops ``main_ppo`` with exit code 2;
- ``recipes/smoke.sh`` in CPU mode: tiny model, sample conversion, SFT rows, both configs;
- from the composed config: verl's dataset factory and the agent loop's image processing on a
  converted sample row with the tiny Qwen2.5-VL processor, verl's reward-manager loader on responses,
  the validation metric names, and GRPO advantages from ``core_algos``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import verl
from conftest import TINY_MAX_PIXELS, TINY_MIN_PIXELS
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, ListConfig, OmegaConf
from verl import DataProto
from verl.trainer.ppo import core_algos
from verl.trainer.ppo.metric_utils import process_validation_metrics
from verl.trainer.ppo.reward import load_reward_manager
from verl.trainer.ppo.utils import create_rl_dataset, need_critic, need_reference_policy
from verl.utils import hf_processor, hf_tokenizer
from verl.utils.config import validate_config

from verl_hoi.answer import HOIPair, render_answer, render_response
from verl_hoi.reward import RewardConfig, compute_score
from verl_hoi.verl_plugin.recipe_guard import command_line_problem, requested_recipe
from verl_hoi.vocab import object_id, verb_id

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "verl_hoi" / "configs" / "recipe" / "hoi_grpo.yaml"
SUBPROCESS_TIMEOUT = 900
# Keys the recipe adds on purpose: verl-hoi's marker, the dataset adapter's options and the reward options verl
# hands to the reward manager.
ADDED_KEYS = ("verl_hoi.", "data.hoi.", "reward.reward_kwargs.")
# verl warns that GRPO disables the critic, which is the point.
pytestmark = pytest.mark.filterwarnings("ignore:Disabled critic")


def _run(cmd: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd, cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT
    )


def _load_printed_config(stdout: str) -> DictConfig:
    return OmegaConf.create(stdout)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory, sample_annotations: Path, sample_images: Path) -> Path:
    """The sample converted at the tiny processor's pixel budget, as train.parquet and test.parquet."""
    out = tmp_path_factory.mktemp("hicodet")
    result = _run(
        [sys.executable, "data_prep/hicodet_to_parquet.py", "--annotations", str(sample_annotations)]
        + ["--images", str(sample_images), "--split", "test", "--out", str(out)]
        + ["--min-pixels", str(TINY_MIN_PIXELS), "--max-pixels", str(TINY_MAX_PIXELS)]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (out / "train.parquet").write_bytes((out / "test.parquet").read_bytes())
    return out


@pytest.fixture(scope="module")
def grpo_config(data_dir: Path) -> DictConfig:
    """What ``bash recipes/grpo.sh`` runs, printed by ``--cfg job`` instead of started."""
    result = _run(
        ["bash", "recipes/grpo.sh", "--cfg", "job"],
        MODEL_PATH="Qwen/Qwen2.5-VL-3B-Instruct",
        DATA_DIR=str(data_dir),
        PYTHON=sys.executable,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "+recipe=hoi_grpo" in result.stderr  # the script prints what it runs
    return _load_printed_config(result.stdout)


@pytest.fixture(scope="module")
def smoke_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``SMOKE_CPU=1 bash recipes/smoke.sh`` with this interpreter's environment."""
    out = tmp_path_factory.mktemp("smoke")
    result = _run(["bash", "recipes/smoke.sh"], SMOKE_CPU="1", VENV=sys.prefix, OUT=str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    return out


# (dotted key, expected value) of the composed config; one comment per row says why.
RECIPE_VALUES = [
    ("verl_hoi.recipe", "hoi_grpo"),  # the recipe file itself was composed, not a plain `recipe` key
    ("algorithm.adv_estimator", "grpo"),  # group-relative advantages, no critic
    ("algorithm.use_kl_in_reward", False),  # KL as a loss term instead
    ("data.custom_cls.path", "pkg://verl_hoi.verl_plugin.dataset"),  # the HOI dataset adapter
    ("data.custom_cls.name", "HOIDataset"),
    ("data.image_key", "images"),  # the converter's image column
    ("data.max_prompt_length", 4096),  # ~2,000 text + <= 1,280 image tokens + template
    ("data.max_response_length", 2048),  # thinking + ~25 answer items
    ("data.filter_overlong_prompts", True),
    ("data.hoi.on_bad_row", "error"),  # a bad row stops the run instead of being filtered out quietly
    ("data.train_batch_size", 128),
    ("actor_rollout_ref.rollout.prompt_length", 4096),  # verl's interpolation from data.max_prompt_length
    ("actor_rollout_ref.rollout.response_length", 2048),
    ("actor_rollout_ref.rollout.name", "vllm"),
    ("actor_rollout_ref.rollout.n", 8),  # GRPO group size
    ("actor_rollout_ref.rollout.temperature", 1.0),
    ("actor_rollout_ref.rollout.tensor_model_parallel_size", 1),  # 3B fits one GPU
    ("actor_rollout_ref.rollout.val_kwargs.do_sample", False),  # greedy validation
    ("actor_rollout_ref.actor.optim.lr", 1e-6),  # HOI-R1's released GRPO model
    ("actor_rollout_ref.actor.use_kl_loss", True),
    ("actor_rollout_ref.actor.kl_loss_coef", 0.01),
    ("actor_rollout_ref.actor.kl_loss_type", "low_var_kl"),
    ("actor_rollout_ref.actor.use_dynamic_bsz", True),
    ("actor_rollout_ref.actor.checkpoint.save_contents", ["model", "optimizer", "extra", "hf_model"]),
    ("actor_rollout_ref.model.path", "Qwen/Qwen2.5-VL-3B-Instruct"),  # grpo.sh's MODEL_PATH
    ("reward.reward_manager.source", "register"),
    ("reward.reward_manager.name", "hoi"),  # registered through the verl.plugins entry point
    ("trainer.total_epochs", 1),  # HOI-R1 converges in about one epoch
    ("trainer.test_freq", 50),
    ("trainer.save_freq", 50),
    ("trainer.val_before_train", True),
    ("trainer.validation_data_dir", "checkpoints/verl_hoi/qwen2_5_vl_3b_hoi_grpo/validation"),
    ("trainer.n_gpus_per_node", 8),  # grpo.sh's NGPUS default
    ("trainer.nnodes", 1),
]


@pytest.mark.parametrize(("key", "expected"), RECIPE_VALUES, ids=[key for key, _ in RECIPE_VALUES])
def test_composed_recipe_values(grpo_config: DictConfig, key: str, expected: object) -> None:
    value = OmegaConf.select(grpo_config, key)
    if isinstance(value, DictConfig | ListConfig):
        value = OmegaConf.to_container(value)
    assert value == expected


def test_data_files_come_from_data_dir(grpo_config: DictConfig, data_dir: Path) -> None:
    assert grpo_config.data.train_files == f"{data_dir}/train.parquet"
    assert grpo_config.data.val_files == f"{data_dir}/test.parquet"


def test_grpo_script_takes_the_latest_sft_checkpoint(tmp_path: Path, data_dir: Path) -> None:
    sft_dir = tmp_path / "sft"
    sft_dir.mkdir()
    (sft_dir / "latest_checkpointed_iteration.txt").write_text("7")
    # PYTHON=echo prints the command the script would run.
    result = _run(
        ["bash", "recipes/grpo.sh", "trainer.total_epochs=2"],
        MODEL_PATH="",
        SFT_DIR=str(sft_dir),
        DATA_DIR=str(data_dir),
        NGPUS="4",
        PYTHON="echo",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "-m",
        "verl.trainer.main_ppo",
        "+recipe=hoi_grpo",
        f"actor_rollout_ref.model.path={sft_dir}/global_step_7/huggingface",
        f"data.train_files={data_dir}/train.parquet",
        f"data.val_files={data_dir}/test.parquet",
        "trainer.n_gpus_per_node=4",
        "trainer.nnodes=1",
        "trainer.total_epochs=2",  # extra arguments come last, so they win
    ]


# (environment, the error grpo.sh stops with) for the common mistakes.
GRPO_SCRIPT_ERRORS = [
    ({"MODEL_PATH": "m", "DATA_DIR": "/nonexistent"}, "error: /nonexistent/train.parquet not found"),  # no data
    ({"SFT_DIR": "/nonexistent"}, "error: /nonexistent/latest_checkpointed_iteration.txt not found"),  # no SFT run
]


@pytest.mark.parametrize(("env", "message"), GRPO_SCRIPT_ERRORS)
def test_grpo_script_errors(env: dict[str, str], message: str) -> None:
    result = _run(["bash", "recipes/grpo.sh"], PYTHON="echo", **{"MODEL_PATH": "", **env})
    assert result.returncode == 2
    assert result.stderr.startswith(message)
    assert result.stdout == ""


def test_reward_kwargs_are_the_reward_defaults(grpo_config: DictConfig) -> None:
    kwargs = OmegaConf.to_container(grpo_config.reward.reward_kwargs)
    defaults = RewardConfig()
    assert kwargs == {name: getattr(defaults, name) for name in kwargs}
    assert RewardConfig(**kwargs) == defaults


def test_recipe_passes_verl_validate_config(grpo_config: DictConfig) -> None:
    config = grpo_config.copy()
    assert need_reference_policy(config)  # KL loss needs the SFT model as reference
    assert not need_critic(config)
    validate_config(config, use_reference_policy=True, use_critic=False)


def _leaf_keys(node: object, prefix: str = "") -> list[str]:
    if isinstance(node, dict):
        return [key for name, value in node.items() for key in _leaf_keys(value, f"{prefix}{name}.")]
    return [prefix[:-1]]


def _has_key(config: DictConfig, key: str) -> bool:
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(config, parent) if parent else config
    # keys(), not `in node`: DictConfig.__contains__ is False for ??? (mandatory) values
    return isinstance(node, DictConfig) and leaf in node.keys()  # noqa: SIM118


def test_every_recipe_key_exists_in_verl_config() -> None:
    config_dir = Path(verl.__file__).parent / "trainer" / "config"
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        base = compose(config_name="ppo_trainer")
    recipe = OmegaConf.to_container(OmegaConf.load(RECIPE))
    keys = [key for key in _leaf_keys(recipe) if not key.startswith(ADDED_KEYS)]
    assert len(keys) > 30
    missing = [key for key in keys if not _has_key(base, key)]
    assert missing == []


def test_wheel_ships_the_plugin_and_the_recipe(tmp_path: Path) -> None:
    result = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), "."]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = tmp_path.glob("verl_hoi-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (entry_points,) = [name for name in names if name.endswith(".dist-info/entry_points.txt")]
        entry_points_text = archive.read(entry_points).decode()
    assert "hydra_plugins/verl_hoi_searchpath/verl_hoi_searchpath.py" in names
    assert "hydra_plugins/__init__.py" not in names  # a namespace package shared with other Hydra plugins
    assert "verl_hoi/configs/recipe/hoi_grpo.yaml" in names
    assert "verl_hoi_recipe_guard = verl_hoi.verl_plugin.recipe_guard" in entry_points_text


def test_recipe_file_is_a_global_package() -> None:
    # Without this header Hydra would put the whole recipe under cfg.recipe and change nothing.
    assert RECIPE.read_text().startswith("# @package _global_\n")


# (argv, recipe it selects) for the guard's command-line reader.
REQUESTED = [
    (["main_ppo.py", "+recipe=hoi_grpo"], "hoi_grpo"),  # the documented form
    (["main_ppo.py", "recipe=hoi_grpo"], "hoi_grpo"),  # without +: also a group selection
    (["main_ppo.py", "++recipe='hoi_grpo'"], "hoi_grpo"),  # forced add, quoted value
    (["main_ppo.py", "+recipe@_global_=x", "a=1"], "x"),  # with a package
    (["main_ppo.py", "data.recipe=hoi_grpo"], None),  # a nested key is not the group
    (["+recipe=hoi_grpo"], None),  # argv[0] is the program, never an override
    (["main_ppo.py", "--cfg", "job"], None),  # nothing asked
]


@pytest.mark.parametrize(("argv", "expected"), REQUESTED)
def test_requested_recipe(argv: list[str], expected: str | None) -> None:
    assert requested_recipe(argv) == expected


# Command lines the guard lets through with the plugin installed (as in this environment).
ALLOWED = [
    ["main_ppo.py", "+recipe=hoi_grpo"],  # plugin discovered, group shipped
    ["main_ppo.py", "trainer.nnodes=1"],  # no recipe asked
    ["main_ppo.py", "hydra.searchpath=[pkg://verl_hoi.configs]", "+recipe=hoi_grpo"],  # explicit search path
]


@pytest.mark.parametrize("argv", ALLOWED)
def test_guard_allows(argv: list[str]) -> None:
    assert command_line_problem(argv) is None


@pytest.fixture
def shadowed_plugins(tmp_path: Path) -> dict[str, str]:
    """PYTHONPATH with a regular ``hydra_plugins`` package that hides the namespace package and so the plugin."""
    (tmp_path / "hydra_plugins").mkdir()
    (tmp_path / "hydra_plugins" / "__init__.py").write_text("")
    return {"PYTHONPATH": str(tmp_path)}


def test_guard_stops_main_ppo_when_the_plugin_is_missing(shadowed_plugins: dict[str, str]) -> None:
    result = _run(
        [sys.executable, "-m", "verl.trainer.main_ppo", "+recipe=hoi_grpo", "--cfg", "job"], **shadowed_plugins
    )
    assert result.returncode == 2
    assert "error: 'recipe=hoi_grpo' would be ignored" in result.stderr
    assert result.stdout == ""  # nothing was composed


# Ways to name the recipe folder on the command line, which Hydra honours without the plugin.
EXPLICIT_SEARCH_PATHS = [
    ["hydra.searchpath=[pkg://verl_hoi.configs]"],  # Hydra's search-path override
    ["--config-dir", str(REPO / "verl_hoi" / "configs")],  # an extra config folder
]


@pytest.mark.parametrize("search_path", EXPLICIT_SEARCH_PATHS)
def test_guard_lets_an_explicit_search_path_through(shadowed_plugins: dict[str, str], search_path: list[str]) -> None:
    result = _run(
        [sys.executable, "-m", "verl.trainer.main_ppo", *search_path, "+recipe=hoi_grpo", "--cfg", "job"],
        **shadowed_plugins,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert _load_printed_config(result.stdout).algorithm.adv_estimator == "grpo"


def test_smoke_cpu_steps(smoke_dir: Path) -> None:
    assert (smoke_dir / "tiny_model" / "config.json").is_file()
    rl = pq.read_table(smoke_dir / "data" / "test.parquet").to_pylist()
    sft = pq.read_table(smoke_dir / "data" / "sft.parquet").to_pylist()
    assert len(rl) == len(sft) == 8  # every sample image, the one without pairs included
    for rl_row, sft_row in zip(rl, sft, strict=True):
        answer = rl_row["reward_model"]["ground_truth"]
        target = sft_row["messages"][-1]
        assert target["role"] == "assistant"
        assert target["content"].endswith(f"</think><answer>{answer}</answer>")

    sft_config = OmegaConf.load(smoke_dir / "sft_config.yaml")
    assert sft_config.data.train_files == str(smoke_dir / "data" / "sft.parquet")
    assert sft_config.model.path == str(smoke_dir / "tiny_model")

    grpo = OmegaConf.load(smoke_dir / "grpo_config.yaml")
    assert grpo.verl_hoi.recipe == "hoi_grpo"
    assert grpo.actor_rollout_ref.model.path == str(smoke_dir / "tiny_model")
    assert grpo.trainer.total_training_steps == 2
    assert grpo.trainer.n_gpus_per_node == 1
    validate_config(grpo, use_reference_policy=need_reference_policy(grpo), use_critic=need_critic(grpo))


def _first_prompt(config: DictConfig, model_dir: Path) -> tuple[dict, dict]:
    """Row 0 of the val file through verl's dataset factory, then the agent loop's image and token steps."""
    tokenizer, processor = hf_tokenizer(str(model_dir)), hf_processor(str(model_dir))
    data_config = config.data.copy()
    # Length filter in this process: verl's one forked worker can deadlock in a test process where
    # torch has already run its thread pools.
    data_config.filter_overlong_prompts_workers = 0
    dataset = create_rl_dataset(data_config.val_files, data_config, tokenizer, processor, is_train=False)
    assert type(dataset).__name__ == "HOIDataset"
    row = dataset[0]
    images, _, _ = asyncio.run(
        type(dataset).process_multi_modal_info(row["raw_prompt"], image_patch_size=14, config=data_config)
    )
    text = processor.apply_chat_template(row["raw_prompt"], add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=images, return_tensors="pt")
    return row, {"images": images, "inputs": inputs, "processor": processor}


def test_dataset_row_through_verl(grpo_config: DictConfig, tiny_model_dir: Path) -> None:
    row, seen = _first_prompt(grpo_config, tiny_model_dir)
    extra = row["extra_info"]
    assert extra["file_name"] == "HICO_test2015_00000001.jpg"
    (image,) = seen["images"]
    # The processor sees the image at exactly the size the ground-truth boxes were made for ...
    assert list(image.size) == extra["model_size"]
    # ... and spends one token per 28x28 block on it, all inside max_prompt_length.
    width, height = extra["model_size"]
    input_ids = seen["inputs"]["input_ids"][0]
    image_token = seen["processor"].tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((input_ids == image_token).sum()) == (width // 28) * (height // 28)
    assert len(input_ids) <= grpo_config.data.max_prompt_length


def test_smoke_rows_load_with_the_smoke_model(smoke_dir: Path) -> None:
    config = OmegaConf.load(smoke_dir / "grpo_config.yaml")
    row, seen = _first_prompt(config, smoke_dir / "tiny_model")
    assert list(seen["images"][0].size) == row["extra_info"]["model_size"]
    assert len(seen["inputs"]["input_ids"][0]) <= config.data.max_prompt_length


def _pair(verbs: tuple[str, ...]) -> HOIPair:
    ids = tuple(sorted(verb_id(v) for v in verbs))
    return HOIPair((10, 20, 110, 220), (60, 150, 200, 260), object_id("bicycle"), ids)


TRUTH = render_answer([_pair(("ride",))])
# A group of responses to one image, best first, with the score compute_score gives each (defaults:
# 0.2 format + 0.4 label + 0.4 iou).
GROUP = [
    (render_response(TRUTH, "One person rides a bicycle."), 1.0),  # exact
    (render_response(render_answer([_pair(("hold",))]), "One person holds a bicycle."), 0.8),  # label 0.5: verb F1 0
    (render_response("[]", "Nobody interacts with anything."), 0.2),  # well formed, finds nothing
    ("I cannot tell.", 0.0),  # no tags, no answer
]


def test_group_scores() -> None:
    scores = [compute_score("hico_det", text, TRUTH)["score"] for text, _ in GROUP]
    assert scores == pytest.approx([expected for _, expected in GROUP])


def test_grpo_advantages_rank_the_better_answers_higher(grpo_config: DictConfig) -> None:
    rewards = torch.tensor([compute_score("hico_det", text, TRUTH)["score"] for text, _ in GROUP])
    lengths = [5, 3, 4, 2]  # response tokens; the reward sits on the last one
    mask = torch.tensor([[1.0] * n + [0.0] * (5 - n) for n in lengths])
    token_rewards = torch.zeros_like(mask)
    token_rewards[torch.arange(4), torch.tensor(lengths) - 1] = rewards
    estimator = core_algos.get_adv_estimator_fn(grpo_config.algorithm.adv_estimator)
    advantages, _ = estimator(
        token_level_rewards=token_rewards,
        response_mask=mask,
        index=np.array(["image0"] * 4, dtype=object),
        norm_adv_by_std_in_grpo=grpo_config.algorithm.norm_adv_by_std_in_grpo,
    )
    # mean 0.5; deviations 0.5, 0.3, -0.3, -0.5; unbiased std sqrt(0.68 / 3) = 0.476095
    expected = [0.5 / 0.476095, 0.3 / 0.476095, -0.3 / 0.476095, -0.5 / 0.476095]
    per_response = [float(advantages[i, 0]) for i in range(4)]
    assert per_response == pytest.approx(expected, abs=1e-4)
    assert torch.equal(advantages, advantages[:, :1] * mask)  # one value per response, zero on padding


def _trajectory(tokenizer, response: str, response_length: int = 160) -> DataProto:
    """One rollout as verl's reward loop hands it to ``run_single``: prompt, right-padded response, mask."""
    prompt = tokenizer("<|im_start|>user\nFind the interactions.<|im_end|>\n<|im_start|>assistant\n")["input_ids"]
    ids = tokenizer(response)["input_ids"]
    assert len(ids) <= response_length
    padding = [tokenizer.pad_token_id] * (response_length - len(ids))
    mask = [1] * (len(prompt) + len(ids)) + [0] * len(padding)
    return DataProto.from_dict(
        tensors={
            "prompts": torch.tensor([prompt]),
            "responses": torch.tensor([ids + padding]),
            "attention_mask": torch.tensor([mask]),
        },
        non_tensors={
            "data_source": np.array(["hico_det"], dtype=object),
            "reward_model": np.array([{"style": "rule", "ground_truth": TRUTH}], dtype=object),
            "extra_info": np.array([{"index": 0, "prompt": "hoi_r1"}], dtype=object),
        },
    )


def test_reward_manager_and_validation_metrics(grpo_config: DictConfig, tiny_model_dir: Path) -> None:
    tokenizer = hf_tokenizer(str(tiny_model_dir))
    manager = load_reward_manager(grpo_config, tokenizer)
    assert type(manager).__name__ == "HOIRewardManager"
    results = [asyncio.run(manager.run_single(_trajectory(tokenizer, text))) for text, _ in GROUP]
    assert [r["reward_score"] for r in results] == pytest.approx([expected for _, expected in GROUP])

    # verl's validation statistics over these four images (one response each); the trainer logs each
    # as val-aux/<data_source>/<key>/mean@1 (the reward itself as val-core/...).
    extra = {key: [r["reward_extra_info"][key] for r in results] for key in results[0]["reward_extra_info"]}
    metrics = process_validation_metrics(
        ["hico_det"] * 4, ["a", "b", "c", "d"], {"reward": [r["reward_score"] for r in results], **extra}
    )["hico_det"]
    expected = {
        "reward": 0.5,  # (1 + 0.8 + 0.2 + 0) / 4
        "format": 0.75,  # the tag-less answer fails
        "label": 0.375,  # (1 + 0.5 + 0 + 0) / 4
        "iou": 0.5,  # (1 + 1 + 0 + 0) / 4
        "precision": 0.25,  # only the exact answer has a true triplet
        "recall": 0.25,
        "f1": 0.25,
    }
    assert {key: metrics[key]["mean@1"] for key in expected} == pytest.approx(expected)
