"""Kinetics-400/600/700: annotation CSV + clips (flat or per-label folders), or a plain folder.

CSV header `label,youtube_id,time_start,time_end,split` (K400 adds `is_cc`; test CSVs have no
label). Files are `{youtube_id}_{start:06d}_{end:06d}.mp4` clips, or whole downloads
`{youtube_id}.{ext}` that are cut to [time_start, time_end].

`classes` (`--classes FILE`, one class name per line, e.g. Kinetics-Sounds) keeps a label
subset: names match labels loosely (case, runs of spaces and underscores), label_index
counts the matched labels in sorted order, and each class of the file that matches no
label becomes an `unmatched_class` failure row (in failures.csv), so the build reports it.
"""
from __future__ import annotations

import csv
import dataclasses
import os
import re

from avprep.config import BuildConfig, ConfigError
from avprep.fsio import visible_names
from avprep.items import SourceItem
from avprep.recipes.common import MediaIndex, open_text
from avprep.recipes.registry import Recipe
from avprep.recipes.videos import prepare_videos


# What an avprep build writes into its output folder that a listing of CSVs would see.
BUILD_CSVS = ("failures.csv",)


def find_csvs(root: str) -> list[str]:
    """The annotation CSVs in `root`, leaving out a build's own tables (`--out` = `root`) and
    what is no regular file (reading a FIFO would wait for a writer forever)."""
    built_here = os.path.isfile(os.path.join(root, "plan.json"))
    paths = (os.path.join(root, n) for n in visible_names(root)      # not macOS's `._train.csv`
             if n.endswith(".csv") and not (built_here and n in BUILD_CSVS))
    return sorted(p for p in paths if os.path.isfile(p))


COLUMNS = ("youtube_id", "time_start", "time_end")       # needed; `label` and `split` optional
_EXPECTED = "a header line label,youtube_id,time_start,time_end,split and one row per clip"


def read_kinetics_csv(path: str) -> list[dict]:
    """The rows of a Kinetics annotation CSV; ConfigError naming `path` (and the line) for a
    file without the needed columns, without rows, or with times that are not numbers."""
    with open_text(path) as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None:
            raise ConfigError(f"{path} is empty (expected {_EXPECTED})")
        lacking = [c for c in COLUMNS if c not in reader.fieldnames]
        if lacking:
            raise ConfigError(f"{path} is not a Kinetics annotation CSV (its header lacks {','.join(lacking)}; "
                              f"expected {_EXPECTED})")
        rows = [_checked_row(path, reader.line_num, row) for row in reader]
    if not rows:
        raise ConfigError(f"{path} lists no clips (expected {_EXPECTED})")
    return rows


def _checked_row(path: str, line: int, row: dict) -> dict:
    try:
        float(row["time_start"]), float(row["time_end"])
    except (TypeError, ValueError):
        raise ConfigError(f"{path}:{line}: time_start and time_end must be seconds, got "
                          f"{row['time_start']!r}, {row['time_end']!r}") from None
    return row


def loose_name(name: str) -> str:
    """How class names are compared: lower case, runs of spaces/underscores as one space."""
    return re.sub(r"[\s_]+", " ", name).strip().lower()


def read_classes(path: str) -> list[str]:
    """Class names of a `--classes` file: one per line, blank lines and `#` comments skipped."""
    with open_text(path) as f:
        names = [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]
    if not names:
        raise ConfigError(f"--classes {path} names no class (one class name per line)")
    return names


def prepare_kinetics(root: str, csv_paths: list[str] | None = None, splits: list[str] | None = None,
                     classes: str | None = None) -> list[SourceItem]:
    """Items for every annotated clip (missing files become `missing` items).

    Without CSV files (none given, none in `root`), every video in `root` is an item and its
    folder name is the label. `classes`: a class-list file; only its labels are kept."""
    csv_paths = csv_paths if csv_paths is not None else find_csvs(root)
    if not csv_paths:
        items = prepare_videos(root, source="kinetics")
    else:
        rows = [r for p in csv_paths for r in read_kinetics_csv(p)]
        items = _rows_to_items(root, [r for r in rows if r.get("split") in splits] if splits else rows)
    return keep_classes(items, classes) if classes else items


def _rows_to_items(root: str, rows: list[dict]) -> list[SourceItem]:
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


def keep_classes(items: list[SourceItem], classes_path: str) -> list[SourceItem]:
    """The items whose label a class of `classes_path` names (loosely), label_index renumbered
    over the matched labels; then one `unmatched_class` failure per class that matched none.
    ConfigError when no class matches at all."""
    wanted: dict[str, str] = {}
    for name in read_classes(classes_path):
        wanted.setdefault(loose_name(name), name)
    labels = sorted({i.labels["label"] for i in items if i.labels.get("label") is not None
                     and loose_name(i.labels["label"]) in wanted})
    if not labels:
        raise ConfigError(f"no class of --classes {classes_path} matches a label of the corpus "
                          f"(e.g. {next(iter(wanted.values()))!r}); check the names")
    index = {name: n for n, name in enumerate(labels)}
    kept = [dataclasses.replace(i, labels={**i.labels, "label_index": index[i.labels["label"]]})
            for i in items if i.labels.get("label") in index]
    matched = {loose_name(name) for name in labels}
    kept += [SourceItem(path=classes_path, source="kinetics", item_id=f"classes/{name}",
                        failed=("unmatched_class", f"class {name!r} of {classes_path} matches no label of the corpus"))
             for key, name in wanted.items() if key not in matched]
    return kept


RECIPE = Recipe("kinetics", prepare_kinetics, args={"root": "root", "csv": "csv_paths", "classes": "classes"},
                defaults=BuildConfig(shard_prefix="kinetics"),
                summary="Kinetics-400/600/700 annotation CSVs + clips or whole downloads; --classes FILE keeps "
                        "a label subset (e.g. Kinetics-Sounds)")
