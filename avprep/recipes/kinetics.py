"""Kinetics-400/600/700: annotation CSV + clips (flat or per-label folders), or a plain folder.

CSV header `label,youtube_id,time_start,time_end,split` (K400 adds `is_cc`; test CSVs have no
label). Files are `{youtube_id}_{start:06d}_{end:06d}.mp4` clips, or whole downloads
`{youtube_id}.{ext}` that are cut to [time_start, time_end].
"""
from __future__ import annotations

import csv
import os

from avprep.config import BuildConfig
from avprep.items import SourceItem
from avprep.recipes.common import MediaIndex
from avprep.recipes.registry import Recipe
from avprep.recipes.videos import prepare_videos


def find_csvs(root: str) -> list[str]:
    return sorted(os.path.join(root, n) for n in os.listdir(root) if n.endswith(".csv"))


def read_kinetics_csv(path: str) -> list[dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        if "youtube_id" not in row or "time_start" not in row:
            raise ValueError(f"{path} is not a Kinetics annotation CSV (need youtube_id,time_start,time_end)")
    return rows


def prepare_kinetics(root: str, csv_paths: list[str] | None = None, splits: list[str] | None = None) -> list[SourceItem]:
    """Items for every annotated clip (missing files become `missing` items).

    Without CSV files (none given, none in `root`), every video in `root` is an item and its
    folder name is the label."""
    csv_paths = csv_paths if csv_paths is not None else find_csvs(root)
    if not csv_paths:
        return prepare_videos(root, source="kinetics")
    rows = [r for p in csv_paths for r in read_kinetics_csv(p)]
    if splits:
        rows = [r for r in rows if r.get("split") in splits]
    labels = sorted({r["label"] for r in rows if r.get("label")})
    label_index = {name: i for i, name in enumerate(labels)}
    index = MediaIndex(root)
    items, seen = [], set()
    for r in rows:
        vid, start, end = r["youtube_id"], float(r["time_start"]), float(r["time_end"])
        item_id = f"{vid}_{int(start):06d}_{int(end):06d}"
        if item_id in seen:
            continue
        seen.add(item_id)
        path, cut = index.find(vid, start, end)
        lab = {"label": r["label"], "label_index": label_index[r["label"]]} if r.get("label") else {}
        items.append(SourceItem(path=path or os.path.join(root, item_id + ".mp4"), source="kinetics",
                                item_id=item_id, labels=lab, start=start if cut else None,
                                end=end if cut else None, split=r.get("split") or None, missing=path is None))
    return items


RECIPE = Recipe("kinetics", prepare_kinetics, args={"root": "root", "csv": "csv_paths"},
                defaults=BuildConfig(shard_prefix="kinetics"),
                summary="Kinetics-400/600/700 annotation CSVs + clips or whole downloads")
