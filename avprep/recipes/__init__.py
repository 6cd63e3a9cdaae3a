"""Corpus recipes: each module's pure `prepare_x(root, ...)` returns the SourceItems to
build, and its `RECIPE` declares the name, arguments and build defaults (registry.py).

Adding a corpus: write a module with `prepare_x` and `RECIPE = Recipe(...)`, and add the
module to `_MODULES` below; the CLI's `avprep build` choices come from `RECIPES`.
"""
from __future__ import annotations

from avprep.recipes import avspeech, dfdc, esc50, hmdb51, kav, kinetics, lrs2, lrw, ucf101, videos
from avprep.recipes.avspeech import prepare_avspeech
from avprep.recipes.esc50 import prepare_esc50
from avprep.recipes.hmdb51 import prepare_hmdb51
from avprep.recipes.kav import prepare_kav
from avprep.recipes.kinetics import prepare_kinetics
from avprep.recipes.registry import Recipe, build_recipe
from avprep.recipes.ucf101 import prepare_ucf101
from avprep.recipes.videos import prepare_videos

_MODULES = (videos, kinetics, avspeech, kav, lrs2, dfdc, lrw, ucf101, hmdb51, esc50)
RECIPES: dict[str, Recipe] = {m.RECIPE.name: m.RECIPE for m in _MODULES}

__all__ = ["RECIPES", "Recipe", "build_recipe", "get_recipe", "prepare_avspeech", "prepare_esc50",
           "prepare_hmdb51", "prepare_kav", "prepare_kinetics", "prepare_ucf101", "prepare_videos"]


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        from avprep.config import ConfigError
        raise ConfigError(f"unknown recipe {name!r} (known: {', '.join(RECIPES)})") from None
