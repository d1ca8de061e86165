"""Blending: every ensemble method, fitted and scored honestly, written as tables, recipe and submission.

`blend` fits and scores a blend (`BlendResult`); `write_blend` writes it all-or-nothing;
`apply_recipe` replays a recipe on (new) tables without refitting. Methods live in one registry,
`METHODS`.
"""

from ensemble.blend.core import BlendResult, blend
from ensemble.blend.methods import METHODS
from ensemble.blend.recipe import apply_recipe, read_recipe, recipe_dict, write_blend

__all__ = ["METHODS", "BlendResult", "apply_recipe", "blend", "read_recipe", "recipe_dict", "write_blend"]
