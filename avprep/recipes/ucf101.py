"""UCF101: UCF-101/<Class>/v_<Class>_gXX_cYY.avi with the split lists of ucfTrainTestlist/.

classInd.txt: `<1-based index> <Class>`; trainlist0N.txt: `<Class>/<file>.avi <1-based label>`;
testlist0N.txt: `<Class>/<file>.avi` (the label is the folder's). One build serves every
split: a sample's extra["splits"] gives its role in each split found, e.g.
{"1": "train", "2": "test", "3": "train"} ("unused" where that split's lists do not name it).
labels = {"label": <Class as classInd spells it>, "label_index": <classInd index - 1>}.
Listed names are matched to files case-insensitively (folder HandstandPushups holds
v_HandStandPushups_*.avi). Many files have no audio track: audio is optional by default
(those become visual-only samples).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from avprep.config import AudioConfig, BuildConfig, ClipConfig, ConfigError
from avprep.fsio import visible_names
from avprep.items import SourceItem
from avprep.recipes.common import files_by_name, find_list_folder, read_lines, rel_key, unlisted_item
from avprep.recipes.registry import Recipe

SOURCE = "ucf101"
SPLITS_FOLDER = "ucfTrainTestlist"
CLASS_IND = "classInd.txt"
_LIST = re.compile(r"^(train|test)list(\d+)\.txt$", re.IGNORECASE)


@dataclass
class Listed:
    rel: str                    # the name as the lists spell it: <Class>/<file>.avi
    label_index: int            # 0-based
    splits: dict[str, str]      # split number -> "train" | "test" | "unused"


def read_class_ind(path: str) -> list[str]:
    """Class names in classInd.txt order (index 1 first)."""
    names: list[str] = []
    for n, fields in read_lines(path):
        if len(fields) != 2 or fields[0] != str(len(names) + 1):
            raise ConfigError(f"{path}:{n}: expected `{len(names) + 1} <Class>` (classInd.txt lines are "
                              "`<index> <Class>` with indices 1, 2, ... in order)")
        names.append(fields[1])
    if not names:
        raise ConfigError(f"{path} lists no class")
    return names


def read_split_lists(folder: str, classes: list[str]) -> dict[str, Listed]:
    """{rel_key(listed name): Listed} from every trainlistNN.txt / testlistNN.txt in `folder`."""
    lists = sorted((int(m.group(2)), m.group(1).lower(), name) for name in visible_names(folder)
                   if (m := _LIST.match(name)) and os.path.isfile(os.path.join(folder, name)))   # no FIFO
    if not lists:
        raise ConfigError(f"{folder} holds no trainlist01.txt / testlist01.txt: give the {SPLITS_FOLDER}/ folder")
    split_names = sorted({str(split) for split, _, _ in lists}, key=int)
    index = {rel_key(name): i for i, name in enumerate(classes)}
    listed: dict[str, Listed] = {}
    for split, role, name in lists:
        path = os.path.join(folder, name)
        for n, fields in read_lines(path):
            rel = fields[0].replace("\\", "/")
            label = _label(path, n, rel, fields[1:], role, index, classes)
            entry = listed.setdefault(rel_key(rel), Listed(rel, label, dict.fromkeys(split_names, "unused")))
            if entry.splits[str(split)] not in ("unused", role):
                raise ConfigError(f"{path}:{n}: {rel} is in both the train and the test list of split {split}")
            entry.splits[str(split)] = role
    return listed


def _label(path: str, n: int, rel: str, rest: list[str], role: str, index: dict[str, int],
           classes: list[str]) -> int:
    """The 0-based class of a listed file (its folder), checked against a train list's label."""
    folder = rel.split("/")[0]
    if "/" not in rel or rel_key(folder) not in index:
        raise ConfigError(f"{path}:{n}: {rel} names class {folder!r}, which {CLASS_IND} does not list "
                          f"(is --splits the {SPLITS_FOLDER}/ folder of this corpus?)")
    label = index[rel_key(folder)]
    if role == "train" and rest and rest[0] != str(label + 1):
        raise ConfigError(f"{path}:{n}: label {rest[0]} for {rel}, but {CLASS_IND} gives {classes[label]} "
                          f"index {label + 1}")
    return label


def prepare_ucf101(root: str, splits_dir: str | None = None) -> list[SourceItem]:
    """Every listed file (missing ones as `missing` items) and every unlisted file (an
    `unlisted` failure), in name order. `splits_dir` defaults to ucfTrainTestlist/ in or
    beside `root`."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"UCF101 folder not found: {root}")
    folder = find_list_folder(root, splits_dir, SPLITS_FOLDER, lambda n: n == CLASS_IND, CLASS_IND)
    classes = read_class_ind(os.path.join(folder, CLASS_IND))
    listed = read_split_lists(folder, classes)
    files, unreadable = files_by_name(root, SOURCE)
    items = []
    for key in sorted(set(listed) | set(files)):
        entry, path = listed.get(key), files.get(key)
        if entry is None:
            items.append(unlisted_item(root, path, SOURCE, folder))
        else:
            items.append(_item(root, entry, path, classes))
    return items + unreadable


def _item(root: str, entry: Listed, path: str | None, classes: list[str]) -> SourceItem:
    return SourceItem(path=path or os.path.join(root, *entry.rel.split("/")), source=SOURCE,
                      item_id=os.path.splitext(entry.rel)[0],
                      labels={"label": classes[entry.label_index], "label_index": entry.label_index},
                      extra={"splits": dict(entry.splits)}, missing=path is None)


# Audio optional (visual-only samples); one sample per video up to 60 s; no video is too short.
DEFAULTS = BuildConfig(audio=AudioConfig(require_audio=False), clip=ClipConfig(max_seconds=60.0, min_frames=1),
                       shard_prefix=SOURCE)
RECIPE = Recipe(SOURCE, prepare_ucf101, args={"root": "root", "splits": "splits_dir"}, defaults=DEFAULTS,
                summary="UCF-101/<Class>/*.avi + --splits ucfTrainTestlist/: classInd labels, roles in "
                        "splits 1-3; audio optional")
