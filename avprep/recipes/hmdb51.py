"""HMDB51: hmdb51_org/<class>/<video>.avi (the 51 per-class .rar archives unpacked) with
testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt, lines `<video>.avi <tag>`:
tag 1 = train, 2 = test, 0 = unused.

One build serves every split: a sample's extra["splits"] gives its role per split
({"1": "train", "2": "unused", "3": "test"}; "unused" also where that split's list does
not name it). There is no official class index: label_index is the class's place among
the sorted class names of the split lists, 0-based (for the full dataset the same as the
sorted folder names torchvision uses). Names are matched case-insensitively. Audio is
optional by default (files without an audio track become visual-only samples).
"""
from __future__ import annotations

import os
import re

from avprep.config import AudioConfig, BuildConfig, ClipConfig, ConfigError
from avprep.fsio import visible_names
from avprep.items import SourceItem
from avprep.recipes.common import files_by_name, find_list_folder, read_lines, rel_key, unlisted_item
from avprep.recipes.registry import Recipe
from avprep.recipes.ucf101 import Listed

SOURCE = "hmdb51"
SPLITS_FOLDER = "testTrainMulti_7030_splits"
TAGS = {"0": "unused", "1": "train", "2": "test"}
_LIST = re.compile(r"^(?P<cls>.+)_test_split(?P<n>\d+)\.txt$")


def read_split_lists(folder: str) -> tuple[list[str], dict[str, Listed]]:
    """(sorted class names, {rel_key("<class>/<video>"): Listed}) from the split files."""
    found = sorted((m.group("cls"), int(m.group("n")), name) for name in visible_names(folder)
                   if (m := _LIST.match(name)) and os.path.isfile(os.path.join(folder, name)))   # no FIFO
    classes = sorted({cls for cls, _, _ in found})
    index = {cls: i for i, cls in enumerate(classes)}
    split_names = sorted({str(n) for _, n, _ in found}, key=int)
    listed: dict[str, Listed] = {}
    for cls, split, name in found:
        path = os.path.join(folder, name)
        for n, fields in read_lines(path):
            if len(fields) != 2 or fields[1] not in TAGS:
                raise ConfigError(f"{path}:{n}: expected `<video>.avi <tag>` with tag 0 (unused), 1 (train) "
                                  "or 2 (test)")
            rel = f"{cls}/{fields[0]}"
            entry = listed.setdefault(rel_key(rel), Listed(rel, index[cls],
                                                          dict.fromkeys(split_names, "unused")))
            entry.splits[str(split)] = TAGS[fields[1]]
    return classes, listed


def prepare_hmdb51(root: str, splits_dir: str | None = None) -> list[SourceItem]:
    """Every listed video (missing ones as `missing` items) and every unlisted file (an
    `unlisted` failure), in name order. `splits_dir` defaults to
    testTrainMulti_7030_splits/ in or beside `root`."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"HMDB51 folder not found: {root}")
    folder = find_list_folder(root, splits_dir, SPLITS_FOLDER, _LIST.match, "<class>_test_split<N>.txt files")
    classes, listed = read_split_lists(folder)
    files, unreadable = files_by_name(root, SOURCE)
    if not files and _has_archives(root):
        raise ConfigError(f"{root} holds .rar archives but no videos: unpack them first "
                          "(e.g. `unrar x hmdb51_org.rar`, then each <class>.rar into its folder)")
    items = []
    for key in sorted(set(listed) | set(files)):
        entry, path = listed.get(key), files.get(key)
        if entry is None:
            items.append(unlisted_item(root, path, SOURCE, folder))
            continue
        items.append(SourceItem(path=path or os.path.join(root, *entry.rel.split("/")), source=SOURCE,
                                item_id=os.path.splitext(entry.rel)[0],
                                labels={"label": classes[entry.label_index], "label_index": entry.label_index},
                                extra={"splits": dict(entry.splits)}, missing=path is None))
    return items + unreadable


def _has_archives(root: str) -> bool:
    for _, _, names in os.walk(root):
        if any(n.lower().endswith(".rar") for n in names):
            return True
    return False


# Audio optional (visual-only samples); one sample per video up to 60 s; no video is too short.
DEFAULTS = BuildConfig(audio=AudioConfig(require_audio=False), clip=ClipConfig(max_seconds=60.0, min_frames=1),
                       shard_prefix=SOURCE)
RECIPE = Recipe(SOURCE, prepare_hmdb51, args={"root": "root", "splits": "splits_dir"}, defaults=DEFAULTS,
                summary="hmdb51_org/<class>/*.avi + --splits testTrainMulti_7030_splits/: sorted-class labels, "
                        "0/1/2 tags of splits 1-3; audio optional")
