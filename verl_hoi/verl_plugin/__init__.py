"""verl integration: the ``verl.plugins`` entry point that makes ``reward.reward_manager.name=hoi`` work.

verl 0.9.1 looks ``hoi`` up in a registry that only importing :mod:`verl_hoi.verl_plugin.reward_manager`
fills, and this entry point, run at every ``import verl`` (Ray workers and SFT ranks included), is verl's
hook for that short of an environment variable (``VERL_USE_EXTERNAL_MODULES``); to stay light it imports
the manager only when verl imports its reward-manager registry package (a reward loop of about 1,000
modules that other processes never load), or at once if verl already has. The dataset adapter
(``verl_hoi.verl_plugin.dataset``) is loaded by verl through ``data.custom_cls.path``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType

_REGISTRY_PACKAGE = "verl.experimental.reward_loop.reward_manager"
_REWARD_MANAGER = "verl_hoi.verl_plugin.reward_manager"


class _RegisterAfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself; gives the registry package's loader a last step: import the reward manager.

    It stays in ``sys.meta_path`` until the package has really been executed (a mere
    ``importlib.util.find_spec`` by someone else must not use it up).
    """

    def __init__(self) -> None:
        self._looking = False

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != _REGISTRY_PACKAGE or self._looking:
            return None
        self._looking = True
        try:
            spec = importlib.util.find_spec(fullname)  # whichever finder really provides it
        finally:
            self._looking = False
        if spec is not None and spec.loader is not None:
            execute = spec.loader.exec_module

            def exec_module(module: ModuleType) -> None:
                execute(module)
                if self in sys.meta_path:
                    sys.meta_path.remove(self)
                importlib.import_module(_REWARD_MANAGER)

            spec.loader.exec_module = exec_module  # this loader instance serves this one module only
        return spec


if _REGISTRY_PACKAGE in sys.modules:
    importlib.import_module(_REWARD_MANAGER)
elif not any(isinstance(finder, _RegisterAfterImport) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterImport())
