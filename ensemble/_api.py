"""Keep DESIGN.md's API names callable when a subpackage shares the function's name."""

from __future__ import annotations

import sys
import types
from typing import Any


def make_module_callable(module_name: str, function: str) -> None:
    """Make the module `module_name` callable as its attribute `function`.

    `ensemble.blend(...)`, `ensemble.predict(...)` and `ensemble.swa(...)` are functions in the API,
    but importing the subpackage of the same name binds `ensemble.<name>` to the module; a callable
    module keeps both spellings working.
    """
    module = sys.modules[module_name]

    class _CallableModule(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return getattr(self, function)(*args, **kwargs)

    module.__class__ = _CallableModule
