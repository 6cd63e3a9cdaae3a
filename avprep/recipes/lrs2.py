"""LRS2 (mvlrs_v1): main/<video>/<5 digits>.{mp4,txt} and pretrain/<video>/<5 digits>.{mp4,txt}.

Split lists train.txt, val.txt, test.txt (main) and pretrain.txt (pretrain) name the
clips, one per line, by the first token (`<video>/<clip>`; matched to files in either Unicode
normal form, common.on_disk). A transcript's first line is
`Text:  SOME WORDS`; pretrain transcripts add a `WORD START END ASDSCORE` table (line 5
on), kept as `extra.words` ([word, start, end] in seconds).

Curriculum (`max_words` N > 0): a pretrain utterance with word timings becomes one item
per run of at most N consecutive words, cut from its first word's start to its last
word's end; each carries its own `text`, its `words` (times relative to the cut), `span`
(the cut in the utterance) and `utterance` (the whole clip's id). An utterance whose
transcript is empty fails with reason `empty_transcript` (no .txt: `no_transcript`).
"""
from __future__ import annotations

import dataclasses
import os
import re

from avprep.config import BuildConfig, ClipConfig, ConfigError, VideoConfig, with_crop
from avprep.fsio import visible_names
from avprep.items import SourceItem
from avprep.recipes.common import on_disk
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
    for video in visible_names(folder):
        sub = os.path.join(folder, video)
        if os.path.isdir(sub):
            ids.update(f"{video}/{n[:-4]}" for n in visible_names(sub) if n.endswith((".mp4", ".txt")))
    return sorted(ids)


def prepare_lrs2(root: str, splits: tuple[str, ...] = ("pretrain", "train", "val", "test"),
                 max_words: int = 0) -> list[SourceItem]:
    """Items of the given splits; without split lists, every clip of main/ and pretrain/
    (main clips get split None). `max_words` > 0 cuts timed pretrain utterances into runs
    of at most that many words (the curriculum)."""
    if max_words < 0:
        raise ConfigError(f"--max-words must be 0 (whole utterances) or positive, got {max_words}")
    data = _data_dir(root)
    if not os.path.isdir(data):
        raise FileNotFoundError(f"LRS2 root not found: {root}")
    unknown = set(splits) - set(SPLIT_SETS)
    if unknown:
        raise ValueError(f"unknown LRS2 splits {sorted(unknown)} (known: {sorted(SPLIT_SETS)})")
    lists = {s: _split_file(root, data, s) for s in splits}
    if not any(lists.values()):
        found = ([_item(data, "pretrain", "pretrain", i) for i in _scanned_ids(os.path.join(data, "pretrain"))]
                 + [_item(data, "main", None, i) for i in _scanned_ids(os.path.join(data, "main"))])
    else:
        found = [_item(data, SPLIT_SETS[split], split, i) for split in splits if lists[split]
                 for i in _listed_ids(lists[split])]
    return [part for item in found for part in cut_words(item, max_words)]


def _item(data: str, subset: str, split: str | None, clip_id: str) -> SourceItem:
    video, text = (on_disk(os.path.join(data, subset), clip_id + ext) for ext in (".mp4", ".txt"))
    extra: dict = {"set": subset}
    failed = None
    if os.path.isfile(text):
        with open(text, encoding="utf-8", errors="replace") as f:
            extra.update(parse_transcript(f.read()))
        if not extra.get("text"):
            failed = ("empty_transcript", f"{subset}/{clip_id}.txt has no transcript (its `Text:` line is "
                                          "empty or absent); not built")
    else:
        failed = ("no_transcript", f"{subset}/{clip_id}.txt is missing; not built")
    missing = not os.path.lexists(video)      # a dangling symlink, a FIFO: failed with its reason
    return SourceItem(path=video, source="lrs2", item_id=f"{subset}/{clip_id}", split=split,
                      extra=extra, missing=missing, failed=None if missing else failed)


def cut_words(item: SourceItem, max_words: int) -> list[SourceItem]:
    """`item` itself, or (curriculum) one item per run of at most `max_words` timed words:
    cut [first start, last end], item_id `<id>@<first word index>`, its own text and words
    (times relative to the cut), `span` and `utterance`."""
    words = item.extra.get("words")
    if max_words <= 0 or not words or item.missing or item.failed:
        return [item]
    out = []
    for first in range(0, len(words), max_words):
        run = words[first:first + max_words]
        start, end = run[0][1], max(w[2] for w in run)
        if end <= start:
            continue                                   # zero-length timings: nothing to cut
        extra = {**item.extra, "text": " ".join(w[0] for w in run), "span": [start, end],
                 "words": [[w[0], round(w[1] - start, 3), round(w[2] - start, 3)] for w in run],
                 "utterance": item.item_id}
        out.append(dataclasses.replace(item, item_id=f"{item.item_id}@{first}", start=start, end=end, extra=extra))
    return out


# Utterances stay whole up to 30 s (a longer one is split; glcm gives each segment the timed
# words inside it, or skips segments after the first when there are no timings); curriculum
# cuts of a word or two are kept (min_frames 1): glcm skips those too short for their CTC target.
_DEFAULTS = BuildConfig(video=VideoConfig(fps=25.0), clip=ClipConfig(max_seconds=30.0, min_frames=1),
                        shard_prefix="lrs2")
RECIPE = Recipe("lrs2", prepare_lrs2, args={"root": "root", "max_words": "max_words"},
                defaults=with_crop(_DEFAULTS, "lips"),
                summary="mvlrs_v1 main/ and pretrain/: lip crops at 25 fps, transcripts in extra.text; "
                        "--max-words N cuts timed pretrain utterances into runs of N words")
