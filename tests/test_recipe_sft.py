"""The SFT recipe (``+recipe=hoi_sft``, ``recipes/sft.sh``) through verl's own SFT config and config classes.

The composed config is verl's ``sft_trainer_engine`` with the recipe and sft.sh's overrides, composed here as
``python -m verl.trainer.sft_trainer ... --cfg job`` prints it, for every model family (``hoi_family=NAME``); the
slow tests check that ``sft.sh --cfg job`` prints exactly this through ``verl_hoi.verl_plugin.sft_config_app`` (the
same Hydra app without the trainer's imports). The family files (``verl_hoi/configs/hoi_family/``) are checked
against ``verl_hoi.families``. The rows themselves go through the recipe's dataset class in ``test_sft_on_cpu.py``.
"""

from __future__ import annotations

import ast
import sys
from importlib import resources
from pathlib import Path

import pytest
import verl.trainer
from omegaconf import DictConfig, OmegaConf
from recipe_harness import (
    FAMILY_FILES,
    RECIPES,
    VERL_CONFIGS,
    compose_verl,
    family_file,
    keys_missing_from_verl,
    plain_value,
    run,
)
from verl.utils.config import omega_conf_to_dataclass
from verl.workers.config import FSDPEngineConfig, FSDPOptimizerConfig, HFModelConfig

from verl_hoi.families import available_families, get_family
from verl_hoi.tiny_model import build_tiny_model
from verl_hoi.verl_plugin import sft_config_app

SFT_DATA = "data/hicodet_sft/sft.parquet"


def _sft_overrides(sft_data: Path | str, *extra: str) -> list[str]:
    """What recipes/sft.sh passes with SFT_DATA=sft_data, NGPUS=8 and its default NNODES."""
    return [
        "+recipe=hoi_sft",
        f"data.train_files={sft_data}",
        "trainer.nnodes=1",
        "trainer.n_gpus_per_node=8",
        *extra,
    ]


@pytest.fixture(scope="module")
def sft_config() -> DictConfig:
    return compose_verl("sft_trainer_engine", _sft_overrides(SFT_DATA))


@pytest.fixture(scope="module", params=available_families())
def family(request: pytest.FixtureRequest) -> str:
    """Each registered model family."""
    return request.param


@pytest.fixture
def sft_data(tmp_path: Path) -> Path:
    """An SFT_DATA that passes sft.sh's check (never read)."""
    path = tmp_path / "sft.parquet"
    path.touch()
    return path


# (dotted key, expected value) of the composed config; one comment per row says why.
RECIPE_VALUES = [
    ("verl_hoi.recipe", "hoi_sft"),  # the recipe file itself was composed, not a plain `recipe` key
    ("verl_hoi.family.name", "qwen2_5_vl"),  # the default family
    ("data.train_files", SFT_DATA),  # sft.sh's SFT_DATA
    ("data.val_files", None),  # verl's default: no validation
    ("data.custom_cls.path", "pkg://verl_hoi.verl_plugin.dataset"),  # every row checked before training
    ("data.custom_cls.name", "HOISFTDataset"),
    ("data.train_batch_size", 64),
    ("data.max_length", 8192),  # prompt + image + reasoning + ~60 answer items
    ("data.truncation", "error"),  # verl's default: a longer sample stops the run
    ("data.pad_mode", "no_padding"),  # verl's default
    ("data.use_dynamic_bsz", True),  # verl's default: batches packed by tokens ...
    ("data.max_token_len_per_gpu", 16384),  # ... two of the longest samples per forward
    ("model.path", "Qwen/Qwen2.5-VL-3B-Instruct"),
    ("model.enable_gradient_checkpointing", True),  # verl's default
    ("model.use_remove_padding", True),  # verl's default
    ("engine.strategy", "fsdp2"),
    ("optim.optimizer", "AdamW"),  # verl's default
    ("optim.lr", 1e-5),
    ("optim.lr_warmup_steps_ratio", 0.05),
    ("optim.lr_scheduler_type", "cosine"),
    ("optim.min_lr_ratio", 0.1),
    ("optim.weight_decay", 0.01),  # verl's default
    ("optim.clip_grad", 1.0),  # verl's default
    ("checkpoint.save_contents", ["model", "optimizer", "extra", "hf_model"]),  # a Hugging Face model for GRPO
    ("checkpoint.load_contents", ["model", "optimizer", "extra", "hf_model"]),  # verl: the saved contents
    ("trainer.default_local_dir", "checkpoints/verl_hoi/hoi_r1_sft_qwen2_5_vl_3b"),  # grpo.sh's SFT_DIR default
    ("trainer.logger", ["console"]),
    ("trainer.total_epochs", 1),  # HOI-R1's one epoch
    ("trainer.save_freq", 200),
    ("trainer.resume_mode", "auto"),  # verl's default: a rerun continues
    ("trainer.nnodes", 1),  # sft.sh's NNODES default
    ("trainer.n_gpus_per_node", 8),
]


@pytest.mark.parametrize(("key", "expected"), RECIPE_VALUES, ids=[key for key, _ in RECIPE_VALUES])
def test_composed_recipe_values(sft_config: DictConfig, key: str, expected: object) -> None:
    assert plain_value(sft_config, key) == expected


# family: (its start model, the checkpoint folder, which grpo.sh reads for the same family)
FAMILY_RUNS = {
    "qwen2_5_vl": ("Qwen/Qwen2.5-VL-3B-Instruct", "checkpoints/verl_hoi/hoi_r1_sft_qwen2_5_vl_3b"),
    "qwen3_vl": ("Qwen/Qwen3-VL-4B-Instruct", "checkpoints/verl_hoi/hoi_r1_sft_qwen3_vl_4b"),
    "qwen3_5": ("Qwen/Qwen3.5-4B", "checkpoints/verl_hoi/hoi_r1_sft_qwen3_5_4b"),
}


def test_every_family_has_a_run() -> None:
    assert list(FAMILY_RUNS) == list(available_families())


def test_family_values(family: str) -> None:
    config = compose_verl("sft_trainer_engine", _sft_overrides(SFT_DATA, f"hoi_family={family}"))
    model, checkpoints = FAMILY_RUNS[family]
    assert model == get_family(family).base_model  # the yaml's value is the registry's
    assert plain_value(config, "verl_hoi.family.name") == family
    assert plain_value(config, "model.path") == model
    assert plain_value(config, "trainer.default_local_dir") == checkpoints


def test_every_registered_family_has_a_family_file() -> None:
    assert sorted(path.stem for path in FAMILY_FILES.glob("*.yaml")) == sorted(available_families())


def test_family_file_matches_the_registry(family: str) -> None:
    values = family_file(family)
    registered = get_family(family)
    # run_name has no registry counterpart: test_family_values checks the folder it names.
    assert values.pop("run_name").startswith(f"{family}_")
    assert values == {"name": registered.name, "base_model": registered.base_model, "patch_size": registered.patch_size}
    # Hydra puts the file's values under verl_hoi.family, wherever the recipe lists it.
    assert (FAMILY_FILES / f"{family}.yaml").read_text().startswith("# @package verl_hoi.family\n")


def test_every_recipe_key_exists_in_verl_config() -> None:
    assert keys_missing_from_verl("hoi_sft", "sft_trainer_engine") == (18, [])


def test_recipe_file_is_a_global_package() -> None:
    assert (RECIPES / "hoi_sft.yaml").read_text().startswith("# @package _global_\n")


def test_recipe_builds_verl_sft_config_classes(tmp_path: Path, family: str) -> None:
    # What verl.trainer.sft_trainer.SFTTrainer._build_config does before it builds the engine, with a tiny
    # checkpoint of the family in place of its base model.
    model_dir = build_tiny_model(tmp_path, family)
    overrides = _sft_overrides(SFT_DATA, f"hoi_family={family}", f"model.path={model_dir}")
    config = compose_verl("sft_trainer_engine", overrides)
    model = omega_conf_to_dataclass(config.model)
    assert model.hf_config.model_type in get_family(family).model_types
    engine = omega_conf_to_dataclass(config.engine)
    optim = omega_conf_to_dataclass(config.optim)
    checkpoint = omega_conf_to_dataclass(config.checkpoint)
    omega_conf_to_dataclass(config.profiler)
    assert isinstance(model, HFModelConfig) and model.processor is not None  # the multimodal processor
    assert isinstance(engine, FSDPEngineConfig) and engine.strategy == "fsdp2"
    assert isinstance(optim, FSDPOptimizerConfig)
    assert (optim.lr, optim.lr_scheduler_type, optim.min_lr_ratio) == (1e-5, "cosine", 0.1)
    assert list(checkpoint.save_contents) == ["model", "optimizer", "extra", "hf_model"]
    assert list(config.trainer.profile_interval) == [-1, -1]  # what _validate_profiler_interval accepts


def test_config_app_is_verl_sft_app() -> None:
    # verl.trainer.sft_trainer cannot be imported without verl's training extras: read its decorator instead.
    source = Path(verl.trainer.__file__).with_name("sft_trainer.py")
    (main,) = [node for node in ast.parse(source.read_text()).body if getattr(node, "name", None) == "main"]
    (decorator,) = main.decorator_list
    assert ast.unparse(decorator.func) == "hydra.main"
    arguments = {keyword.arg: ast.literal_eval(keyword.value) for keyword in decorator.keywords}
    assert arguments == {"config_path": "config", "config_name": "sft_trainer_engine", "version_base": None}
    assert source.parent / arguments["config_path"] == VERL_CONFIGS
    package = sft_config_app.CONFIG_PATH.removeprefix("pkg://")
    assert Path(str(resources.files(package))) == VERL_CONFIGS
    assert arguments["config_name"] == sft_config_app.CONFIG_NAME


def test_config_app_trains_nothing() -> None:
    with pytest.raises(SystemExit, match=r"^error: this app only prints the config \(--cfg job\)"):
        sft_config_app.main(OmegaConf.create({}))


# (environment, arguments, the command sft.sh runs after $PYTHON) with PYTHON=echo.
SFT_COMMANDS = [
    (  # one node: torchrun's standalone rendezvous; extra arguments come last, so they win
        {"NGPUS": "4"},
        ["optim.lr=2e-5"],
        ["-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc-per-node=4"]
        + ["-m", "verl.trainer.sft_trainer", "+recipe=hoi_sft", "data.train_files={data}"]
        + ["trainer.nnodes=1", "trainer.n_gpus_per_node=4", "optim.lr=2e-5"],
    ),
    (  # node 1 of 2, start model and checkpoint folder from the environment
        {"NGPUS": "8", "NNODES": "2", "NODE_RANK": "1", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29600"}
        | {"MODEL_PATH": "/models/base", "CKPT_DIR": "/ckpt/sft"},
        [],
        ["-m", "torch.distributed.run", "--nnodes=2", "--node-rank=1", "--master-addr=10.0.0.1"]
        + ["--master-port=29600", "--nproc-per-node=8", "-m", "verl.trainer.sft_trainer", "+recipe=hoi_sft"]
        + ["data.train_files={data}", "model.path=/models/base", "trainer.default_local_dir=/ckpt/sft"]
        + ["trainer.nnodes=2", "trainer.n_gpus_per_node=8"],
    ),
    (  # --cfg job: one process that prints the config, no GPU needed
        {"NGPUS": "0"},
        ["--cfg", "job"],
        ["-m", "verl_hoi.verl_plugin.sft_config_app", "+recipe=hoi_sft", "data.train_files={data}"]
        + ["trainer.nnodes=1", "trainer.n_gpus_per_node=0", "--cfg", "job"],
    ),
]


@pytest.mark.parametrize(("env", "args", "expected"), SFT_COMMANDS)
def test_sft_script_command(sft_data: Path, env: dict[str, str], args: list[str], expected: list[str]) -> None:
    result = run(["bash", "recipes/sft.sh", *args], SFT_DATA=str(sft_data), PYTHON="echo", **env)
    assert result.returncode == 0, result.stderr
    command = [part.format(data=sft_data) for part in expected]
    assert result.stdout.split() == command
    assert result.stderr == f"+ echo {' '.join(command)}\n"  # the script prints what it runs


# (environment, the one line sft.sh stops with) for the common mistakes.
SFT_SCRIPT_ERRORS = [
    (
        {"SFT_DATA": "/nonexistent.parquet"},
        "error: SFT data /nonexistent.parquet not found (make it with data_prep/distill_thinking.py, or set SFT_DATA)",
    ),
    ({"NGPUS": "0"}, "error: no GPU found (set NGPUS to the number of GPUs per node)"),
    (
        {"NGPUS": "8", "NNODES": "2", "MASTER_ADDR": "10.0.0.1"},
        "error: NNODES=2 needs MASTER_ADDR (node 0's address) and NODE_RANK (this node's, from 0)",
    ),
    ({"LR": "2e-5"}, "error: LR is no longer read: pass optim.lr=2e-5 as an argument instead"),  # now an override
    ({"PRINT_CONFIG": "1"}, "error: PRINT_CONFIG is no longer read: pass --cfg job as an argument instead"),
]


@pytest.mark.parametrize(("env", "message"), SFT_SCRIPT_ERRORS)
def test_sft_script_errors(sft_data: Path, env: dict[str, str], message: str) -> None:
    result = run(["bash", "recipes/sft.sh"], PYTHON="echo", **{"SFT_DATA": str(sft_data), **env})
    assert result.returncode == 2
    assert result.stderr == f"{message}\n"
    assert result.stdout == ""


@pytest.mark.slow
def test_sft_script_prints_the_composed_config(sft_data: Path, family: str) -> None:
    result = run(
        ["bash", "recipes/sft.sh", f"hoi_family={family}", "--cfg", "job"],
        SFT_DATA=str(sft_data),
        NGPUS="8",
        PYTHON=sys.executable,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    printed = OmegaConf.create(result.stdout)
    expected = compose_verl("sft_trainer_engine", _sft_overrides(sft_data, f"hoi_family={family}"))
    assert OmegaConf.to_container(printed) == OmegaConf.to_container(expected)
    # The family's model, and the patch size its processor cuts (verl's SFT dataset takes the processor's).
    assert plain_value(printed, "model.path") == FAMILY_RUNS[family][0]
    assert plain_value(printed, "verl_hoi.family.patch_size") == get_family(family).patch_size


@pytest.mark.slow
def test_sft_script_rejects_an_unknown_key(sft_data: Path) -> None:
    result = run(
        ["bash", "recipes/sft.sh", "data.no_such_key=1", "--cfg", "job"], SFT_DATA=str(sft_data), PYTHON=sys.executable
    )
    assert result.returncode == 1
    assert "Could not override 'data.no_such_key'." in result.stderr
    assert result.stdout == ""
