"""verl integration: the ``verl.plugins`` entry point that makes ``reward.reward_manager.name=hoi`` work.

``import verl`` imports this module in every process (Ray workers included), so it stays light: it
does not import verl's reward loop (scipy, transformers, aiohttp, ...) itself. The ``hoi`` reward
manager (:mod:`verl_hoi.verl_plugin.reward_manager`) is registered the moment verl's reward-manager
registry package is imported, right after it, or at once if it already is. The dataset adapter
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
