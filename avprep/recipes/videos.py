"""Any folder of videos: one item per file; the parent folder name is the label."""
from __future__ import annotations

import os

from avprep.items import SourceItem, text
from avprep.recipes.common import scan_media


def prepare_videos(root: str, source: str = "videos", label_from_folder: bool = True) -> list[SourceItem]:
    """One item per media file under `root` (see common.scan_media: hidden files and folders
    are skipped, symlinked folders followed when they point outside `root`). A sub-folder
    that cannot be read becomes one `unreadable` failure (item_id: its path relative to
    `root` plus "/"), listed after the files."""
    listing = scan_media(root)
    paths = listing.paths
    labels = sorted({text(os.path.basename(os.path.dirname(p))) for p in paths
                     if os.path.dirname(p) != root.rstrip("/")})
    index = {name: i for i, name in enumerate(labels)}
    items = []
    for path in paths:
        rel = os.path.relpath(path, root)
        folder = os.path.dirname(rel)
        lab = {}
        if label_from_folder and folder:
            name = text(os.path.basename(folder))
            lab = {"label": name, "label_index": index[name]}
        items.append(SourceItem(path=path, source=source, item_id=os.path.splitext(rel)[0], labels=lab))
    for folder, why in listing.unreadable:
        items.append(SourceItem(path=folder, source=source, item_id=os.path.relpath(folder, root) + "/",
                                failed=("unreadable", f"folder cannot be listed ({why}); its files are "
                                                      "not in this build")))
    return items


# The registry's declaration (see avprep/recipes/registry.py).
from avprep.config import BuildConfig  # noqa: E402
from avprep.recipes.registry import Recipe  # noqa: E402

RECIPE = Recipe("videos", prepare_videos, defaults=BuildConfig(shard_prefix="videos"),
                summary="any folder of videos; the parent folder name is the label")
