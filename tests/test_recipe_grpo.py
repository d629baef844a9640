"""The GRPO recipe (``+recipe=hoi_grpo``, ``recipes/grpo.sh``) through verl's own code wherever the trainer uses it.

The composed config is verl's ``ppo_trainer`` with the recipe and grpo.sh's overrides, composed here as
``python -m verl.trainer.main_ppo ... --cfg job`` prints it (the slow tests check that grpo.sh prints exactly this),
for every model family (``hoi_family=NAME``). From it: verl's ``validate_config`` and rollout config, verl's
dataset factory, length filter and the agent loop's image processing on sample rows converted for a tiny model
of each family, verl's reward-manager loader on responses, the validation metric names, and GRPO advantages from
``core_algos``.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import DictConfig, OmegaConf
from recipe_harness import (
    RECIPES,
    REPO,
    compose_verl,
    first_prompt,
    keys_missing_from_verl,
    plain_value,
    rl_dataset,
    run,
)
from verl import DataProto
from verl.trainer.ppo import core_algos
from verl.trainer.ppo.metric_utils import process_validation_metrics
from verl.trainer.ppo.reward import load_reward_manager
from verl.trainer.ppo.utils import need_critic, need_reference_policy
from verl.utils import hf_tokenizer
from verl.utils.config import omega_conf_to_dataclass, validate_config
from verl.workers.config import RolloutConfig

from verl_hoi.answer import HOIPair, render_answer, render_response
from verl_hoi.families import available_families, get_family
from verl_hoi.reward import compute_score
from verl_hoi.tiny_model import build_tiny_model
from verl_hoi.vocab import object_id, verb_id

MODEL = "Qwen/Qwen2.5-VL-3B-Instruct"
# verl warns that GRPO disables the critic, which is the point.
pytestmark = pytest.mark.filterwarnings("ignore:Disabled critic")


def _grpo_overrides(data_dir: Path | str, *extra: str) -> list[str]:
    """What recipes/grpo.sh passes with MODEL_PATH=MODEL, DATA_DIR=data_dir and its default NGPUS and NNODES."""
    return [
        "+recipe=hoi_grpo",
        f"actor_rollout_ref.model.path={MODEL}",
        f"data.train_files={data_dir}/train.parquet",
        f"data.val_files={data_dir}/test.parquet",
        "trainer.n_gpus_per_node=8",
        "trainer.nnodes=1",
        *extra,
    ]


@pytest.fixture(scope="module")
def grpo_config() -> DictConfig:
    return compose_verl("ppo_trainer", _grpo_overrides("data/hicodet"))


@pytest.fixture(scope="module", params=available_families())
def family(request: pytest.FixtureRequest) -> str:
    """Each registered model family."""
    return request.param


@pytest.fixture(scope="module")
def family_config(family: str) -> DictConfig:
    """grpo.sh's config with ``hoi_family=<family>`` among its extra arguments."""
    return compose_verl("ppo_trainer", _grpo_overrides("data/hicodet", f"hoi_family={family}"))


@pytest.fixture
def data_files(tmp_path: Path) -> Path:
    """A DATA_DIR that passes grpo.sh's checks (its files are never read)."""
    for split in ("train", "test"):
        (tmp_path / f"{split}.parquet").touch()
    return tmp_path


# (dotted key, expected value) of the composed config; one comment per row says why.
RECIPE_VALUES = [
    ("verl_hoi.recipe", "hoi_grpo"),  # the recipe file itself was composed, not a plain `recipe` key
    ("verl_hoi.family.name", "qwen2_5_vl"),  # the default family
    ("data.image_patch_size", 14),  # Qwen2.5-VL's patches
    ("data.mm_processor_kwargs", {}),  # the processor leaves the rows' images as they are
    ("algorithm.adv_estimator", "grpo"),  # group-relative advantages, no critic
    ("algorithm.use_kl_in_reward", False),  # KL as a loss term instead
    ("data.custom_cls.path", "pkg://verl_hoi.verl_plugin.dataset"),  # the HOI dataset adapter
    ("data.custom_cls.name", "HOIDataset"),
    ("data.image_key", "images"),  # the converter's image column
    ("data.max_prompt_length", 4096),  # ~2,000 text + <= 1,280 image tokens + template
    ("data.max_response_length", 2048),  # thinking + ~25 answer items
    ("data.filter_overlong_prompts", True),
    ("data.train_batch_size", 128),
    ("actor_rollout_ref.rollout.prompt_length", 4096),  # verl's interpolation from data.max_prompt_length
    ("actor_rollout_ref.rollout.response_length", 2048),
    ("actor_rollout_ref.rollout.name", "vllm"),
    ("actor_rollout_ref.rollout.n", 8),  # GRPO group size
    ("actor_rollout_ref.rollout.temperature", 1.0),  # verl's default: plain sampling
    ("actor_rollout_ref.rollout.tensor_model_parallel_size", 1),  # 3B fits one GPU
    ("actor_rollout_ref.rollout.max_model_len", 6144),  # 4096 + 2048: no KV cache for the whole context
    ("actor_rollout_ref.rollout.engine_kwargs.vllm.limit_mm_per_prompt", {"image": 1, "video": 0}),
    ("actor_rollout_ref.rollout.limit_images", None),  # would replace limit_mm_per_prompt
    ("actor_rollout_ref.rollout.val_kwargs.do_sample", False),  # greedy validation
    ("actor_rollout_ref.actor.optim.lr", 1e-6),  # HOI-R1's released GRPO model
    ("actor_rollout_ref.actor.use_kl_loss", True),
    ("actor_rollout_ref.actor.kl_loss_coef", 0.01),
    ("actor_rollout_ref.actor.kl_loss_type", "low_var_kl"),
    ("actor_rollout_ref.actor.use_dynamic_bsz", True),
    ("actor_rollout_ref.actor.ppo_max_token_len_per_gpu", 16384),  # verl's default, >= 4096 + 2048
    ("actor_rollout_ref.actor.checkpoint.save_contents", ["model", "optimizer", "extra", "hf_model"]),
    ("actor_rollout_ref.model.path", MODEL),  # grpo.sh's MODEL_PATH
    ("reward.reward_manager.source", "register"),
    ("reward.reward_manager.name", "hoi"),  # registered through the verl.plugins entry point
    ("trainer.total_epochs", 1),  # HOI-R1 converges in about one epoch
    ("trainer.test_freq", 50),
    ("trainer.save_freq", 50),
    ("trainer.val_before_train", True),  # verl's default: the SFT baseline
    ("trainer.validation_data_dir", "checkpoints/verl_hoi/qwen2_5_vl_3b_hoi_grpo/validation"),
    ("trainer.n_gpus_per_node", 8),  # grpo.sh's NGPUS default
    ("trainer.nnodes", 1),
]


@pytest.mark.parametrize(("key", "expected"), RECIPE_VALUES, ids=[key for key, _ in RECIPE_VALUES])
def test_composed_recipe_values(grpo_config: DictConfig, key: str, expected: object) -> None:
    assert plain_value(grpo_config, key) == expected


# (family, its patch size, the GRPO run folder, the SFT run folder grpo.sh starts from by default)
FAMILY_RUNS = {
    "qwen2_5_vl": (14, "qwen2_5_vl_3b_hoi_grpo", "hoi_r1_sft_qwen2_5_vl_3b"),
    "qwen3_vl": (16, "qwen3_vl_4b_hoi_grpo", "hoi_r1_sft_qwen3_vl_4b"),
    "qwen3_5": (16, "qwen3_5_4b_hoi_grpo", "hoi_r1_sft_qwen3_5_4b"),
}


def test_every_family_has_a_run() -> None:
    assert list(FAMILY_RUNS) == list(available_families())


def test_family_values(family: str, family_config: DictConfig) -> None:
    patch, run_dir, _ = FAMILY_RUNS[family]
    assert patch == get_family(family).patch_size  # the yaml's value is the registry's
    assert plain_value(family_config, "verl_hoi.family.name") == family
    assert plain_value(family_config, "data.image_patch_size") == patch
    assert plain_value(family_config, "trainer.experiment_name") == run_dir
    assert plain_value(family_config, "trainer.validation_data_dir") == f"checkpoints/verl_hoi/{run_dir}/validation"
    assert plain_value(family_config, "actor_rollout_ref.model.path") == MODEL  # grpo.sh's, never a base model


def test_family_switch_needs_no_plus_and_no_order() -> None:
    # The switch is a default of the recipe: a plain override, before or after +recipe=hoi_grpo.
    before = compose_verl("ppo_trainer", ["hoi_family=qwen3_5", *_grpo_overrides("data/hicodet")])
    assert plain_value(before, "verl_hoi.family.name") == "qwen3_5"


# (extra override, the error Hydra stops with) for the switch's common mistakes.
SWITCH_ERRORS = [
    ("hoi_family=qwen3", MissingConfigException, "Could not find 'hoi_family/qwen3'"),  # not a family
    ("+hoi_family=qwen3_vl", ConfigCompositionException, "Multiple values for hoi_family"),  # the recipe has one
]


@pytest.mark.parametrize(("override", "error", "message"), SWITCH_ERRORS)
def test_family_switch_errors(override: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        compose_verl("ppo_trainer", _grpo_overrides("data/hicodet", override))


def test_vllm_takes_one_image_and_no_video(family_config: DictConfig) -> None:
    # What verl's rollout replica builds from the resolved config; engine_kwargs.vllm reaches `vllm serve`.
    config = family_config.copy()
    OmegaConf.resolve(config)
    rollout = omega_conf_to_dataclass(config.actor_rollout_ref.rollout)
    assert isinstance(rollout, RolloutConfig)
    assert rollout.engine_kwargs["vllm"] == {"limit_mm_per_prompt": {"image": 1, "video": 0}}
    assert rollout.limit_images is None
    # vLLM never needs more than the longest prompt and response.
    assert rollout.max_model_len == rollout.prompt_length + rollout.response_length == 4096 + 2048


@pytest.mark.slow
def test_grpo_script_prints_the_composed_config(data_files: Path, family: str) -> None:
    result = run(
        ["bash", "recipes/grpo.sh", f"hoi_family={family}", "--cfg", "job"],
        MODEL_PATH=MODEL,
        DATA_DIR=str(data_files),
        PYTHON=sys.executable,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    printed = OmegaConf.create(result.stdout)
    expected = compose_verl("ppo_trainer", _grpo_overrides(data_files, f"hoi_family={family}"))
    assert OmegaConf.to_container(printed) == OmegaConf.to_container(expected)
    assert plain_value(printed, "data.image_patch_size") == FAMILY_RUNS[family][0]


@pytest.mark.slow
def test_grpo_script_starts_from_the_family_sft_checkpoint(tmp_path: Path, data_files: Path, family: str) -> None:
    # sft.sh -> grpo.sh with the same hoi_family and no SFT_DIR or MODEL_PATH, in a fresh working folder.
    patch, run_dir, sft_dir = FAMILY_RUNS[family]
    command = ["bash", str(REPO / "recipes" / "grpo.sh"), f"hoi_family={family}", "--cfg", "job"]
    env = {"MODEL_PATH": "", "SFT_DIR": "", "DATA_DIR": str(data_files), "PYTHON": sys.executable}
    tracker = f"checkpoints/verl_hoi/{sft_dir}/latest_checkpointed_iteration.txt"
    result = run(command, cwd=tmp_path, **env)
    assert (result.returncode, result.stderr.splitlines()[-1:]) == (
        2,
        [f"error: {tracker} not found (run recipes/sft.sh, or set SFT_DIR or MODEL_PATH)"],
    )
    (tmp_path / tracker).parent.mkdir(parents=True)
    (tmp_path / tracker).write_text("7")
    result = run([*command, "--resolve"], cwd=tmp_path, **env)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = OmegaConf.create(result.stdout)
    assert printed.actor_rollout_ref.model.path == f"checkpoints/verl_hoi/{sft_dir}/global_step_7/huggingface"
    assert printed.data.image_patch_size == patch
    assert printed.trainer.default_local_dir == f"checkpoints/verl_hoi/{run_dir}"


def test_grpo_script_takes_the_latest_sft_checkpoint(tmp_path: Path, data_files: Path) -> None:
    sft_dir = tmp_path / "sft"
    sft_dir.mkdir()
    (sft_dir / "latest_checkpointed_iteration.txt").write_text("7")
    # PYTHON=echo prints the command the script would run.
    result = run(
        ["bash", "recipes/grpo.sh", "trainer.total_epochs=2"],
        MODEL_PATH="",
        SFT_DIR=str(sft_dir),
        DATA_DIR=str(data_files),
        NGPUS="4",
        PYTHON="echo",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "-m",
        "verl.trainer.main_ppo",
        "+recipe=hoi_grpo",
        f"actor_rollout_ref.model.path={sft_dir}/global_step_7/huggingface",
        f"data.train_files={data_files}/train.parquet",
        f"data.val_files={data_files}/test.parquet",
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
    result = run(["bash", "recipes/grpo.sh"], PYTHON="echo", **{"MODEL_PATH": "", **env})
    assert result.returncode == 2
    assert result.stderr.startswith(message)
    assert result.stdout == ""


def test_recipe_passes_verl_validate_config(family_config: DictConfig) -> None:
    config = family_config.copy()
    assert need_reference_policy(config)  # KL loss needs the SFT model as reference
    assert not need_critic(config)
    validate_config(config, use_reference_policy=True, use_critic=False)


def test_every_recipe_key_exists_in_verl_config() -> None:
    assert keys_missing_from_verl("hoi_grpo", "ppo_trainer") == (37, [])


def test_recipe_file_is_a_global_package() -> None:
    # Without this header Hydra would put the whole recipe under cfg.recipe and change nothing.
    assert (RECIPES / "hoi_grpo.yaml").read_text().startswith("# @package _global_\n")


def test_dataset_options_are_added_with_plus() -> None:
    # The recipe leaves the adapter's options to the adapter: the documented `+data.hoi...` adds one.
    config = compose_verl("ppo_trainer", _grpo_overrides("data/hicodet", "+data.hoi.on_bad_row=skip"))
    assert OmegaConf.to_container(config.data.hoi) == {"on_bad_row": "skip"}


def _tiny_budget(family: str) -> tuple[int, int]:
    """Pixel budget of the tiny checkpoints and their rows: 4 to 64 image tokens of ``family``."""
    block_pixels = get_family(family).block ** 2
    return 4 * block_pixels, 64 * block_pixels


@pytest.fixture(scope="module")
def tiny_family_model(tmp_path_factory: pytest.TempPathFactory, family: str) -> Path:
    """A tiny random checkpoint of ``family``."""
    min_pixels, max_pixels = _tiny_budget(family)
    out = tmp_path_factory.mktemp(f"tiny_{family}")
    return build_tiny_model(out, family, min_pixels=min_pixels, max_pixels=max_pixels)


@pytest.fixture(scope="module")
def converted_dir(
    tmp_path_factory: pytest.TempPathFactory, sample_annotations: Path, sample_images: Path, family: str
) -> Path:
    """The sample converted for ``family`` at the tiny checkpoint's pixel budget (test.parquet)."""
    min_pixels, max_pixels = _tiny_budget(family)
    out = tmp_path_factory.mktemp("hicodet")
    result = run(
        [sys.executable, "data_prep/hicodet_to_parquet.py", "--annotations", str(sample_annotations)]
        + ["--images", str(sample_images), "--split", "test", "--out", str(out), "--family", family]
        + ["--min-pixels", str(min_pixels), "--max-pixels", str(max_pixels)]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def _family_rows_config(converted_dir: Path, model_dir: Path, family: str, *extra: str) -> DictConfig:
    """grpo.sh's config for ``family``'s converted sample and a model folder."""
    overrides = _grpo_overrides(converted_dir, f"hoi_family={family}", *extra)
    return compose_verl("ppo_trainer", [*overrides, f"actor_rollout_ref.model.path={model_dir}"])


@pytest.mark.slow
def test_dataset_row_through_verl(converted_dir: Path, tiny_family_model: Path, family: str) -> None:
    config = _family_rows_config(converted_dir, tiny_family_model, family)
    row, seen = first_prompt(config, tiny_family_model)
    extra = row["extra_info"]
    assert extra["file_name"] == "HICO_test2015_00000001.jpg"
    (image,) = seen["images"]
    # The processor sees the image at exactly the size the ground-truth boxes were made for ...
    assert list(image.size) == extra["model_size"]
    # ... and spends one token per block (28x28 or 32x32) on it, all inside max_prompt_length.
    block = get_family(family).block
    width, height = extra["model_size"]
    input_ids = seen["inputs"]["input_ids"][0]
    image_token = seen["processor"].tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((input_ids == image_token).sum()) == (width // block) * (height // block)
    assert len(input_ids) <= config.data.max_prompt_length

    # verl's length filter counts exactly these tokens, image tokens included: a limit of that many keeps the
    # row, one less drops it.
    def kept(max_prompt_length: int) -> bool:
        limited = _family_rows_config(
            converted_dir, tiny_family_model, family, f"data.max_prompt_length={max_prompt_length}"
        )
        files = [info["file_name"] for info in rl_dataset(limited, tiny_family_model).dataframe["extra_info"]]
        return extra["file_name"] in files

    assert (kept(len(input_ids)), kept(len(input_ids) - 1)) == (True, False)


@pytest.mark.slow
def test_another_family_on_the_model_stops(converted_dir: Path, tiny_family_model: Path, family: str) -> None:
    # The switch must name the model's family: with another family's patch size verl's length filter would
    # resize the images for other blocks, so the dataset adapter stops first.
    other = next(name for name in available_families() if get_family(name).patch_size != get_family(family).patch_size)
    config = _family_rows_config(converted_dir, tiny_family_model, other)
    with pytest.raises(ValueError, match=rf"data\.image_patch_size={get_family(other).patch_size} "):
        rl_dataset(config, tiny_family_model)


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


def test_reward_options_reach_the_reward_manager(grpo_config: DictConfig, tiny_model_dir: Path) -> None:
    assert "reward_kwargs" not in grpo_config.reward  # the recipe leaves the options to verl_hoi.reward
    config = compose_verl("ppo_trainer", _grpo_overrides("data/hicodet", "+reward.reward_kwargs.iou_weight=0.5"))
    tokenizer = hf_tokenizer(str(tiny_model_dir))
    result = asyncio.run(load_reward_manager(config, tokenizer).run_single(_trajectory(tokenizer, GROUP[1][0])))
    assert result["reward_score"] == pytest.approx(0.9 / 1.1)  # (0.2 format + 0.4 * 0.5 label + 0.5 iou) / 1.1
