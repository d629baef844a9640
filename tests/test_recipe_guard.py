"""The missing-plugin guard (``verl_hoi.verl_plugin.recipe_guard``) on the command lines of the recipes' apps."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from recipe_harness import REPO, run

from verl_hoi.verl_plugin.recipe_guard import command_line_problem, requested_recipe

# (argv, recipe it selects) for the guard's command-line reader.
REQUESTED = [
    (["main_ppo.py", "+recipe=hoi_grpo"], "hoi_grpo"),  # the documented form
    (["sft_trainer.py", "+recipe=hoi_sft", "data.train_files=a.parquet"], "hoi_sft"),  # a torchrun rank's argv
    (["main_ppo.py", "recipe=hoi_grpo"], "hoi_grpo"),  # without +: also a group selection
    (["main_ppo.py", "++recipe='hoi_grpo'"], "hoi_grpo"),  # forced add, quoted value
    (["main_ppo.py", "+recipe@_global_=x", "a=1"], "x"),  # with a package
    (["main_ppo.py", "hoi_family=qwen3_vl", "+recipe=hoi_grpo"], "hoi_grpo"),  # the family switch is no recipe
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
    ["sft_trainer.py", "+recipe=hoi_sft"],
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


# (module run with -m, the recipe it takes): verl's trainers and the SFT app that only prints.
APPS = [
    ("verl.trainer.main_ppo", "hoi_grpo"),
    ("verl.trainer.sft_trainer", "hoi_sft"),
    ("verl_hoi.verl_plugin.sft_config_app", "hoi_sft"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("module", "recipe"), APPS)
def test_guard_stops_the_app_when_the_plugin_is_missing(
    shadowed_plugins: dict[str, str], module: str, recipe: str
) -> None:
    result = run([sys.executable, "-m", module, f"+recipe={recipe}", "--cfg", "job"], **shadowed_plugins)
    assert result.returncode == 2
    assert f"error: 'recipe={recipe}' would be ignored" in result.stderr
    assert result.stdout == ""  # nothing was composed


# Ways to name the recipe folder on the command line, which Hydra honours without the plugin.
EXPLICIT_SEARCH_PATHS = [
    ["hydra.searchpath=[pkg://verl_hoi.configs]"],  # Hydra's search-path override
    ["--config-dir", str(REPO / "verl_hoi" / "configs")],  # an extra config folder
]


@pytest.mark.slow
@pytest.mark.parametrize("search_path", EXPLICIT_SEARCH_PATHS)
@pytest.mark.parametrize(("module", "recipe"), [APPS[0], APPS[2]])  # verl's SFT trainer needs its training extras
def test_guard_lets_an_explicit_search_path_through(
    shadowed_plugins: dict[str, str], search_path: list[str], module: str, recipe: str
) -> None:
    command = [sys.executable, "-m", module, *search_path, f"+recipe={recipe}", "hoi_family=qwen3_5", "--cfg", "job"]
    result = run(command, **shadowed_plugins)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = OmegaConf.create(result.stdout)
    # The recipe and the family it was given, both found through the same search path.
    assert (printed.verl_hoi.recipe, printed.verl_hoi.family.name) == (recipe, "qwen3_5")
