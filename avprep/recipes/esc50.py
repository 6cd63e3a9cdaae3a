"""ESC-50 (karolpiczak/ESC-50): audio/{fold}-{clip}-{take}-{target}.wav (5 s, 44.1 kHz mono)
and meta/esc50.csv with columns filename,fold,target,category,esc10,src_file,take.

No video stream exists: every sample is audio-only (docs/format.md), its mel on the usual
fps grid from the WAV resampled to 16 kHz by the audio decode. labels = {"label": category,
"label_index": target}; extra = {"fold": 1..5, "esc10": bool, "take": "A", "src_file": ...}.
The protocol is 5-fold cross-validation over `fold`.
"""
from __future__ import annotations

import csv
import os

from avprep.config import BuildConfig, ClipConfig, ConfigError, VideoConfig
from avprep.items import SourceItem
from avprep.recipes.common import files_by_name, open_text, rel_key, unlisted_item
from avprep.recipes.registry import Recipe

SOURCE = "esc50"
META_CSV = os.path.join("meta", "esc50.csv")
COLUMNS = ("filename", "fold", "target", "category", "esc10", "src_file", "take")
AUDIO_EXTS = {".wav"}


def read_esc50_csv(path: str) -> list[dict]:
    """The rows of meta/esc50.csv with fold and target as int and esc10 as bool."""
    with open_text(path) as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError(f"{path} lacks the column(s) {', '.join(missing)} (ESC-50's meta/esc50.csv has "
                              f"{','.join(COLUMNS)})")
        return [_row(path, n, row) for n, row in enumerate(reader, 2)]


def _row(path: str, n: int, row: dict) -> dict:
    try:
        fold, target = int(row["fold"]), int(row["target"])
    except (TypeError, ValueError):
        raise ConfigError(f"{path}:{n}: fold and target must be whole numbers, got {row['fold']!r}, "
                          f"{row['target']!r}") from None
    esc10 = str(row["esc10"]).strip().lower()
    if esc10 not in ("true", "false") or target < 0 or not row["filename"]:
        raise ConfigError(f"{path}:{n}: expected a file name, target >= 0 and esc10 True or False")
    return {"filename": row["filename"], "fold": fold, "target": target, "category": row["category"],
            "esc10": esc10 == "true", "src_file": row["src_file"], "take": row["take"]}


def prepare_esc50(root: str) -> list[SourceItem]:
    """One item per CSV row (in CSV order; a row without its WAV is `missing`), then one
    `unlisted` failure per WAV under audio/ that no row names."""
    csv_path = os.path.join(root, META_CSV)
    if not os.path.isfile(csv_path):
        raise ConfigError(f"no {META_CSV} in {root}: give the ESC-50 folder (it holds audio/ and meta/)")
    audio = os.path.join(root, "audio")
    files, unreadable = files_by_name(audio, SOURCE, AUDIO_EXTS) if os.path.isdir(audio) else ({}, [])
    items, named = [], set()
    for row in read_esc50_csv(csv_path):
        key = rel_key(row["filename"])
        if key in named:
            continue
        named.add(key)
        path = files.get(key)
        items.append(SourceItem(
            path=path or os.path.join(audio, row["filename"]), source=SOURCE,
            item_id=os.path.splitext(row["filename"])[0],
            labels={"label": row["category"], "label_index": row["target"]},
            extra={"fold": row["fold"], "esc10": row["esc10"], "take": row["take"], "src_file": row["src_file"]},
            missing=path is None))
    items += [unlisted_item(root, path, SOURCE, csv_path) for key, path in sorted(files.items())
              if key not in named]
    return items + unreadable


# Audio-only samples: no video stream is required; every 5 s clip is kept whole.
DEFAULTS = BuildConfig(video=VideoConfig(require_video=False), clip=ClipConfig(min_frames=1), shard_prefix=SOURCE)
RECIPE = Recipe(SOURCE, prepare_esc50, defaults=DEFAULTS,
                summary="ESC-50 audio/*.wav + meta/esc50.csv: audio-only samples, fold/target/category kept")
