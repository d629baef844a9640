"""Stop ``main_ppo +recipe=hoi_grpo`` and ``sft_trainer +recipe=hoi_sft`` early when Hydra cannot see the recipes.

Hydra finds the ``recipe`` config group only through the search-path plugin in
``hydra_plugins/verl_hoi_searchpath``. When that plugin is not discovered (a broken or partial
install, a ``hydra_plugins/__init__.py`` shadowing the namespace package), Hydra does not fail:
``+recipe=hoi_grpo`` becomes a plain string key and training starts with verl's defaults (naive
reward, plain dataset, wrong lengths). Neither Hydra nor verl can be told to refuse that, and nothing of
verl-hoi runs after composition, so the check happens at ``import verl``, which both trainers' modules
do first: this module is a ``verl.plugins`` entry point, and on import it reads the command line (under
torchrun, each rank's). A ``recipe`` override that Hydra cannot resolve ends the process with
``error: ...`` and exit code 2, before any config is composed or any GPU is touched. Processes
whose command line has no ``recipe`` override (Ray workers, tests) are unaffected.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

PLUGIN_CLASS = "hydra_plugins.verl_hoi_searchpath.verl_hoi_searchpath.VerlHoiSearchPathPlugin"
"""The search-path plugin Hydra must discover (module path and class name)."""

CONFIG_PACKAGE = "verl_hoi.configs"
RECIPE_GROUP = "recipe"

_RECIPE_OVERRIDE = re.compile(rf"^\+{{0,2}}{RECIPE_GROUP}(?:@[\w.]*)?=(?P<value>.*)$")
_CONFIG_DIR_FLAGS = ("--config-dir", "-cd")


def requested_recipe(argv: Sequence[str]) -> str | None:
    """The recipe a Hydra command line selects (``recipe=``, ``+recipe=`` or ``++recipe=``), else None.

    >>> requested_recipe(["main_ppo.py", "+recipe=hoi_grpo", "trainer.nnodes=1"])
    'hoi_grpo'
    >>> requested_recipe(["main_ppo.py", "data.recipe=x"]) is None
    True
    """
    for arg in argv[1:]:
        match = _RECIPE_OVERRIDE.match(arg)
        if match:
            return match.group("value").strip("'\"")
    return None


def available_recipes() -> list[str]:
    """Names of the recipe yaml files shipped in ``verl_hoi/configs/recipe/`` (sorted).

    >>> available_recipes()
    ['hoi_grpo', 'hoi_sft']
    """
    group = resources.files(CONFIG_PACKAGE) / RECIPE_GROUP
    if not group.is_dir():
        return []
    return sorted(entry.name[: -len(".yaml")] for entry in group.iterdir() if entry.name.endswith(".yaml"))


def search_path_plugin_found() -> bool:
    """Whether Hydra's own plugin discovery finds verl-hoi's ``SearchPathPlugin``."""
    from hydra.core.plugins import Plugins
    from hydra.plugins.search_path_plugin import SearchPathPlugin

    found = Plugins.instance().discover(SearchPathPlugin)
    return any(f"{cls.__module__}.{cls.__qualname__}" == PLUGIN_CLASS for cls in found)


def _explicit_search_path(argv: Sequence[str], name: str) -> bool:
    """The command line adds the recipe's folder itself (``hydra.searchpath`` or ``--config-dir``)."""
    for i, arg in enumerate(argv[1:], start=1):
        if arg.lstrip("+").startswith("hydra.searchpath=") and CONFIG_PACKAGE in arg:
            return True
        flag, _, value = arg.partition("=")
        if flag in _CONFIG_DIR_FLAGS:
            folder = value or (argv[i + 1] if i + 1 < len(argv) else "")
            if (Path(folder) / RECIPE_GROUP / f"{name}.yaml").is_file():
                return True
    return False


def command_line_problem(argv: Sequence[str]) -> str | None:
    """Why Hydra would read this command line's ``recipe`` override as a plain key, or None if it will not.

    Args:
        argv: a command line as in ``sys.argv`` (program first, then Hydra overrides).

    Returns:
        None when there is no ``recipe`` override, when the command line adds the recipe folder to
        the search path itself, or when Hydra discovers the plugin and the package ships the
        ``recipe`` group (an unknown recipe name is then Hydra's own loud error); otherwise a
        one-line message that says what is missing and how to fix it.

    >>> command_line_problem(["main_ppo.py", "trainer.nnodes=1"]) is None
    True
    """
    name = requested_recipe(argv)
    if name is None or _explicit_search_path(argv, name):
        return None
    if search_path_plugin_found() and available_recipes():
        return None
    return (
        f"'{RECIPE_GROUP}={name}' would be ignored: Hydra cannot find verl-hoi's '{RECIPE_GROUP}' config group "
        f"(plugin {PLUGIN_CLASS} not discovered, or no {CONFIG_PACKAGE}/{RECIPE_GROUP}/*.yaml installed). "
        "Reinstall with `pip install -e .` (or `pip install verl-hoi`), make sure no hydra_plugins/__init__.py "
        f"shadows the namespace package, or add 'hydra.searchpath=[pkg://{CONFIG_PACKAGE}]' to the command."
    )


def check_command_line(argv: Sequence[str] | None = None) -> None:
    """Exit with ``error: ...`` on stderr and code 2 if the command line's recipe would be ignored.

    Raises ``SystemExit`` on purpose: verl loads its plugins with ``except Exception``, which would
    swallow an ordinary exception at ``import verl``.
    """
    problem = command_line_problem(sys.argv if argv is None else argv)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        raise SystemExit(2)


check_command_line()
