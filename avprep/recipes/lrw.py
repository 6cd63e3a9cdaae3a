"""LRW (Lip Reading in the Wild): lipread_mp4/<WORD>/{train,val,test}/<WORD>_<5 digits>.mp4.

Each clip has a .txt whose lines include `Duration: 0.53 seconds`, the spoken word's
duration (the word is centred in the 1.16 s clip). Label = index of the word in sorted order
(hidden folders such as `.ipynb_checkpoints` are no words).
"""
from __future__ import annotations

import os
import re

from avprep.config import BuildConfig, ClipConfig, VideoConfig, override, with_crop
from avprep.fsio import visible_names
from avprep.items import SourceItem
from avprep.recipes.registry import Recipe

SPLITS = ("train", "val", "test")
_NAME = re.compile(r"^(?P<word>[A-Z0-9']+)_(?P<num>\d{5})\.(?i:mp4|txt)$")     # `.MP4` too
_DURATION = re.compile(r"Duration:\s*([0-9]*\.?[0-9]+)\s*seconds?", re.IGNORECASE)


def _data_dir(root: str) -> str:
    inner = os.path.join(root, "lipread_mp4")
    return inner if os.path.isdir(inner) else root


def parse_duration(text: str) -> float | None:
    """The word duration from an LRW .txt (None when the line is absent)."""
    m = _DURATION.search(text)
    return float(m.group(1)) if m else None


def _read_duration(path: str) -> float | None:
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8", errors="replace") as f:
        return parse_duration(f.read())


def prepare_lrw(root: str) -> list[SourceItem]:
    """One item per LRW clip (an .mp4, or a .txt whose .mp4 is missing)."""
    data = _data_dir(root)
    if not os.path.isdir(data):
        raise FileNotFoundError(f"LRW root not found: {root}")
    words = [w for w in visible_names(data)           # `.ipynb_checkpoints/train` is no word
             if any(os.path.isdir(os.path.join(data, w, s)) for s in SPLITS)]
    items = []
    for index, word in enumerate(words):
        for split in SPLITS:
            folder = os.path.join(data, word, split)
            if not os.path.isdir(folder):
                continue
            items += _folder_items(folder, word, index, split)
    return items


def _folder_items(folder: str, word: str, index: int, split: str) -> list[SourceItem]:
    """One item per clip file of one word's split folder (any case of `.mp4`; a second file
    of one stem, `X.mp4` and `X.MP4`, fails in the build as a duplicate_key), and a missing
    item per `.txt` without a clip."""
    names = [n for n in visible_names(folder) if _NAME.match(n)]
    texts = {n[:-4]: n for n in names if n[-4:].lower() == ".txt"}
    videos = [n for n in names if n[-4:].lower() == ".mp4"]
    have = {n[:-4] for n in videos}
    found = [(n[:-4], n) for n in videos] + [(s, s + ".mp4") for s in texts if s not in have]
    return [_item(folder, word, index, split, stem, video, texts.get(stem)) for stem, video in sorted(found)]


def _item(folder: str, word: str, index: int, split: str, stem: str, video: str, text: str | None) -> SourceItem:
    path = os.path.join(folder, video)
    duration = _read_duration(os.path.join(folder, text)) if text else None
    # lexists: a dangling or looping symlink, a FIFO is there and fails with its own reason
    return SourceItem(path=path, source="lrw", item_id=f"{word}/{split}/{stem}",
                      labels={"label": word, "label_index": index}, split=split,
                      extra={"word_duration": duration}, missing=not os.path.lexists(path))


_DEFAULTS = BuildConfig(video=VideoConfig(fps=25.0), clip=ClipConfig(max_seconds=2.0, min_frames=20),
                        videos_per_shard=1000, shard_prefix="lrw")
# A clip is 29 frames (1.16 s): the face found on the first frame is followed with the
# quality check on every frame and not re-detected (the default re-check every 10 frames
# ran the detector twice per clip for nothing: ~9 % of a clip's CPU, same landmarks on the
# benchmark's clips, docs/benchmarks.md). A lost face is still searched for at once.
_LIPS = override(with_crop(_DEFAULTS, "lips"), {"crop.detect_every": 30})
RECIPE = Recipe("lrw", prepare_lrw, per_split=True, defaults=_LIPS,
                summary="lip crops at 25 fps, all 29 frames, one shard set per split (--crop none: whole frames, for glcm finetune --input full-frames)")
