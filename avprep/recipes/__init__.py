"""Corpus recipes: each `prepare_x(root, ...)` returns the list of SourceItems to build."""
from __future__ import annotations

from avprep.items import SourceItem
from avprep.recipes.avspeech import prepare_avspeech
from avprep.recipes.kav import prepare_kav
from avprep.recipes.kinetics import prepare_kinetics
from avprep.recipes.videos import prepare_videos

__all__ = ["prepare", "prepare_avspeech", "prepare_kav", "prepare_kinetics", "prepare_videos"]


def prepare(recipe: str, root: str, csvs: list[str] | None = None) -> list[SourceItem]:
    """The items of one single-root recipe by name."""
    if recipe == "videos":
        return prepare_videos(root)
    if recipe == "kinetics":
        return prepare_kinetics(root, csvs)
    if recipe == "avspeech":
        return prepare_avspeech(root, csvs)
    if recipe == "lrs2":
        from avprep.recipes.lrs2 import prepare_lrs2
        return prepare_lrs2(root)
    if recipe == "dfdc":
        from avprep.recipes.dfdc import prepare_dfdc
        return prepare_dfdc(root)
    if recipe == "lrw":
        from avprep.recipes.lrw import prepare_lrw
        return prepare_lrw(root)
    raise ValueError(f"unknown recipe {recipe!r}")
