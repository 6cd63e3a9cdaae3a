"""LRS2 (mvlrs_v1): main/<video>/<5 digits>.{mp4,txt} and pretrain/<video>/<5 digits>.{mp4,txt}.

Split lists train.txt, val.txt, test.txt (main) and pretrain.txt (pretrain) name the
clips, one per line, by the first token (`<video>/<clip>`). A transcript's first line is
`Text:  SOME WORDS`; pretrain transcripts add a `WORD START END ASDSCORE` table.
"""
from __future__ import annotations

import os
import re

from avprep.config import BuildConfig, VideoConfig, with_crop
from avprep.items import SourceItem
from avprep.recipes.registry import Recipe

SPLIT_SETS = {"train": "main", "val": "main", "test": "main", "pretrain": "pretrain"}
_TEXT = re.compile(r"^Text:\s*(.*)$")
_WORD_ROW = re.compile(r"^(\S+)\s+(\d+(?:\.\d+)?)\s+(\d+(?:\.\d+)?)\s+(-?\d+(?:\.\d+)?)\s*$")


def _data_dir(root: str) -> str:
    inner = os.path.join(root, "mvlrs_v1")
    return inner if os.path.isdir(inner) else root


def parse_transcript(text: str) -> dict:
    """{"text": ..., "words": [[word, start, end], ...]} from an LRS2 .txt."""
    out: dict = {"text": None}
    words = []
    for line in text.splitlines():
        m = _TEXT.match(line.strip())
        if m and out["text"] is None:
            out["text"] = m.group(1).strip()
            continue
        row = _WORD_ROW.match(line.strip())
        if row:
            words.append([row.group(1), float(row.group(2)), float(row.group(3))])
    if words:
        out["words"] = words
    return out


def _split_file(root: str, data: str, split: str) -> str | None:
    for folder in (root, data, os.path.dirname(os.path.abspath(data))):
        path = os.path.join(folder, split + ".txt")
        if os.path.isfile(path):
            return path
    return None


def _listed_ids(path: str) -> list[str]:
    with open(path, encoding="utf-8", errors="replace") as f:
        return [line.split()[0] for line in f if line.strip()]


def _scanned_ids(folder: str) -> list[str]:
    if not os.path.isdir(folder):
        return []
    ids = set()
    for video in os.listdir(folder):
        sub = os.path.join(folder, video)
        if os.path.isdir(sub):
            ids.update(f"{video}/{n[:-4]}" for n in os.listdir(sub) if n.endswith((".mp4", ".txt")))
    return sorted(ids)


def prepare_lrs2(root: str, splits: tuple[str, ...] = ("pretrain", "train", "val", "test")) -> list[SourceItem]:
    """Items of the given splits; without split lists, every clip of main/ and pretrain/
    (main clips get split None)."""
    data = _data_dir(root)
    if not os.path.isdir(data):
        raise FileNotFoundError(f"LRS2 root not found: {root}")
    unknown = set(splits) - set(SPLIT_SETS)
    if unknown:
        raise ValueError(f"unknown LRS2 splits {sorted(unknown)} (known: {sorted(SPLIT_SETS)})")
    lists = {s: _split_file(root, data, s) for s in splits}
    if not any(lists.values()):
        return ([_item(data, "pretrain", "pretrain", i) for i in _scanned_ids(os.path.join(data, "pretrain"))]
                + [_item(data, "main", None, i) for i in _scanned_ids(os.path.join(data, "main"))])
    items = []
    for split in splits:
        if lists[split]:
            items += [_item(data, SPLIT_SETS[split], split, i) for i in _listed_ids(lists[split])]
    return items


def _item(data: str, subset: str, split: str | None, clip_id: str) -> SourceItem:
    base = os.path.join(data, subset, *clip_id.split("/"))
    extra: dict = {"set": subset}
    if os.path.isfile(base + ".txt"):
        with open(base + ".txt", encoding="utf-8", errors="replace") as f:
            extra.update(parse_transcript(f.read()))
    return SourceItem(path=base + ".mp4", source="lrs2", item_id=f"{subset}/{clip_id}", split=split,
                      extra=extra, missing=not os.path.isfile(base + ".mp4"))


RECIPE = Recipe("lrs2", prepare_lrs2,
                defaults=with_crop(BuildConfig(video=VideoConfig(fps=25.0), shard_prefix="lrs2"), "lips"),
                summary="mvlrs_v1 main/ and pretrain/: lip crops at 25 fps, transcripts kept")
