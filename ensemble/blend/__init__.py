"""Blending: every ensemble method, fitted and scored honestly, written as tables, recipe and submission.

`blend` fits and scores a blend (`BlendResult`, one shape for every method; `BlendOptions` says
what it fits); `write_blend` writes it all-or-nothing; `apply_recipe` replays a recipe (the one
`ensemble.recipe.Recipe` record) on (new) tables without refitting; `blend_folders` does what
`ens blend` does (read prediction folders, blend or re-apply, write, record). Methods live in one
registry, `METHODS` (ensemble.blend.methods); seed averaging is a step before any of them. Names
load on first use, so the CLI can read the registry without compiling anything.
"""

from __future__ import annotations

import importlib
from typing import Any

from ensemble._api import make_module_callable

_LAZY = {
    "blend": "ensemble.blend.core",
    "BlendOptions": "ensemble.blend.core",
    "BlendResult": "ensemble.blend.assemble",
    "METHODS": "ensemble.blend.methods",
    "apply_recipe": "ensemble.blend.apply",
    "read_recipe": "ensemble.recipe",
    "Recipe": "ensemble.recipe",
    "write_blend": "ensemble.blend.write",
    "blend_folders": "ensemble.blend.folders",
    "WrittenBlend": "ensemble.blend.folders",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ensemble.blend' has no attribute {name!r}")


make_module_callable(__name__, "blend")
