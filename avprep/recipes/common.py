"""Helpers shared by the recipes: finding media files and matching clip names."""
from __future__ import annotations

import os
import re

VIDEO_EXTS = {".mp4", ".mkv", ".webm", ".avi", ".mov", ".mpg", ".mpeg", ".flv", ".m4v", ".ts", ".3gp", ".wmv"}
_CLIP_STEM = re.compile(r"^(?P<id>.+)_(?P<start>\d+(?:\.\d+)?)_(?P<end>\d+(?:\.\d+)?)$")


def list_media(root: str, exts: set[str] = VIDEO_EXTS) -> list[str]:
    """All media files under `root`, sorted (deterministic), hidden folders skipped."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if os.path.splitext(name)[1].lower() in exts and not name.startswith("."):
                found.append(os.path.join(folder, name))
    return found


def parse_clip_stem(stem: str) -> tuple[str, float, float] | None:
    """`<id>_<start>_<end>` -> (id, start, end); None for other names."""
    m = _CLIP_STEM.match(stem)
    return (m.group("id"), float(m.group("start")), float(m.group("end"))) if m else None


class MediaIndex:
    """Looks up a row's file: a pre-cut `<id>_<start>_<end>` clip, else a whole `<id>` file."""

    def __init__(self, root: str):
        self.clips: dict[tuple[str, float, float], str] = {}
        self.whole: dict[str, str] = {}
        for path in list_media(root):
            stem = os.path.splitext(os.path.basename(path))[0]
            parsed = parse_clip_stem(stem)
            if parsed:
                vid, s, e = parsed
                self.clips.setdefault((vid, round(s, 2), round(e, 2)), path)
            self.whole.setdefault(stem, path)

    def find(self, vid: str, start: float, end: float) -> tuple[str | None, bool]:
        """(path, needs_cut): a pre-cut clip needs no cut; a whole file is cut to [start, end]."""
        clip = self.clips.get((vid, round(start, 2), round(end, 2)))
        if clip:
            return clip, False
        whole = self.whole.get(vid)
        return (whole, True) if whole else (None, False)
