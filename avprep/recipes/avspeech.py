"""AVSpeech: `avspeech_{train,test}.csv` with NO header: youtube id, start, end, face x, face y.

x, y is the speaker's face centre, normalised to [0, 1] from the top-left; it goes into each
sample's `extra` (and guides the optional face crop). Files are pre-cut `<id>_<start>_<end>`
clips or whole `<id>.<ext>` downloads that are cut to [start, end].
"""
from __future__ import annotations

import csv
import os

from avprep.config import BuildConfig, ConfigError
from avprep.items import SourceItem
from avprep.recipes.common import MediaIndex, open_text
from avprep.recipes.registry import Recipe


def read_avspeech_csv(path: str) -> list[tuple[str, float, float, float, float]]:
    rows = []
    with open_text(path) as f:
        for line_no, row in enumerate(csv.reader(f), 1):
            if not row:
                continue
            if len(row) < 5:
                raise ValueError(f"{path}:{line_no}: expected 5 columns (id,start,end,x,y), got {len(row)}")
            try:
                rows.append((row[0], float(row[1]), float(row[2]), float(row[3]), float(row[4])))
            except ValueError as e:
                raise ValueError(f"{path}:{line_no}: {e} (AVSpeech CSVs have no header)") from e
    if not rows:
        raise ConfigError(f"{path} lists no clips (expected headerless rows youtube_id,start,end,face_x,face_y)")
    return rows


def prepare_avspeech(root: str, csv_paths: list[str] | None = None) -> list[SourceItem]:
    if csv_paths is None:
        named = (os.path.join(root, n) for n in os.listdir(root) if n.startswith("avspeech_") and n.endswith(".csv"))
        csv_paths = sorted(p for p in named if os.path.isfile(p))         # regular files: a FIFO would hang
    if not csv_paths:
        raise FileNotFoundError(f"no avspeech_*.csv in {root}; pass the CSV explicitly")
    index = MediaIndex(root)
    items, seen = [], set()
    for csv_path in csv_paths:
        split = os.path.splitext(os.path.basename(csv_path))[0].replace("avspeech_", "") or None
        for vid, start, end, x, y in read_avspeech_csv(csv_path):
            item_id = f"{vid}_{start:.3f}_{end:.3f}"
            if item_id in seen:
                continue
            seen.add(item_id)
            path, cut = index.find(vid, start, end)
            items.append(SourceItem(path=path or os.path.join(root, vid + ".mp4"), source="avspeech",
                                    item_id=item_id, start=start if cut else None, end=end if cut else None,
                                    split=split, extra={"face_x": x, "face_y": y}, missing=path is None))
    return items


RECIPE = Recipe("avspeech", prepare_avspeech, args={"root": "root", "csv": "csv_paths"},
                defaults=BuildConfig(shard_prefix="avspeech"),
                summary="headerless avspeech_*.csv + clips or whole downloads; face x, y kept")
