"""Blending: every ensemble method, fitted and scored honestly, written as tables, recipe and submission.

`blend` fits and scores a blend (`BlendResult`); `write_blend` writes it all-or-nothing;
`apply_recipe` replays a recipe on (new) tables without refitting; `blend_folders` does what
`ens blend` does (read prediction folders, blend or re-apply, write). Methods live in one registry,
`METHODS` (ensemble.blend.methods). Names load on first use, so the CLI can read the registry
without compiling anything.
"""

from __future__ import annotations

import importlib
from typing import Any

from ensemble._api import make_module_callable

_LAZY = {
    "blend": "ensemble.blend.core",
    "BlendResult": "ensemble.blend.core",
    "METHODS": "ensemble.blend.methods",
    "apply_recipe": "ensemble.blend.recipe",
    "read_recipe": "ensemble.blend.recipe",
    "recipe_dict": "ensemble.blend.recipe",
    "write_blend": "ensemble.blend.recipe",
    "blend_folders": "ensemble.blend.folders",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ensemble.blend' has no attribute {name!r}")


make_module_callable(__name__, "blend")
