"""The wheel: the Hydra search-path plugin, the recipes, the SFT config app and the verl entry points."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest
from recipe_harness import run


@pytest.mark.slow
def test_wheel_ships_the_plugin_and_the_recipes(tmp_path: Path) -> None:
    result = run(
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
    assert {"verl_hoi/configs/recipe/hoi_grpo.yaml", "verl_hoi/configs/recipe/hoi_sft.yaml"} <= names
    assert "verl_hoi/verl_plugin/sft_config_app.py" in names
    assert "verl_hoi = verl_hoi.verl_plugin\n" in entry_points_text
    assert "verl_hoi_recipe_guard = verl_hoi.verl_plugin.recipe_guard\n" in entry_points_text
