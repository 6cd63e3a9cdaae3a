"""DFDC (Deepfake Detection Challenge): dfdc_train_part_N/metadata.json + videos.

metadata.json = {"x.mp4": {"label": "REAL"|"FAKE", "split": "train", "original": "y.mp4"}};
`original` is given on FAKE entries only. label_index: REAL 0, FAKE 1.
"""
from __future__ import annotations

import json
import os
import re

from avprep.config import BuildConfig, with_crop
from avprep.items import SourceItem
from avprep.recipes.common import on_disk, open_text
from avprep.recipes.registry import Recipe

LABELS = {"REAL": 0, "FAKE": 1}
_PART = re.compile(r"^dfdc_train_part_(\d+)$")


def _parts(root: str) -> list[str]:
    if os.path.isfile(os.path.join(root, "metadata.json")):
        return [root]
    names = [n for n in os.listdir(root) if _PART.match(n) and os.path.isdir(os.path.join(root, n))]
    return [os.path.join(root, n) for n in sorted(names, key=lambda n: int(_PART.match(n).group(1)))]


def prepare_dfdc(root: str) -> list[SourceItem]:
    """One item per metadata.json entry, in part order then file name order."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"DFDC root not found: {root}")
    items = []
    for part in _parts(root):
        with open_text(os.path.join(part, "metadata.json")) as f:
            meta = json.load(f)
        if not isinstance(meta, dict):
            raise ValueError(f"{part}/metadata.json is not a JSON object")
        items += [_item(part, name, meta[name]) for name in sorted(meta)]
    return items


def _item(part: str, name: str, entry: dict) -> SourceItem:
    label = str(entry.get("label", "")).upper()
    if label not in LABELS:
        raise ValueError(f"{part}/metadata.json: {name} has label {entry.get('label')!r} (REAL or FAKE)")
    part_name = os.path.basename(os.path.normpath(part))
    path = on_disk(part, name)          # metadata.json's name in either Unicode normal form
    extra = {"part": part_name}
    if entry.get("original"):
        extra["original"] = f"{part_name}/{entry['original']}"
    return SourceItem(path=path, source="dfdc", item_id=f"{part_name}/{name}",
                      labels={"label": label, "label_index": LABELS[label]},
                      split=entry.get("split", "train"), extra=extra, missing=not os.path.lexists(path))


RECIPE = Recipe("dfdc", prepare_dfdc, defaults=with_crop(BuildConfig(shard_prefix="dfdc"), "face"),
                summary="face crops, REAL/FAKE labels (dfdc_train_part_N/metadata.json; --crop none: whole frames)")
