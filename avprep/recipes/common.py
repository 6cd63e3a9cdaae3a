"""Helpers shared by the recipes: finding media files, matching clip names, and matching
the names of list files to files (UCF101, HMDB51, ESC-50)."""
from __future__ import annotations

import io
import os
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Callable

from avprep.config import ConfigError
from avprep.fsio import is_hidden
from avprep.items import SourceItem

VIDEO_EXTS = {".mp4", ".mkv", ".webm", ".avi", ".mov", ".mpg", ".mpeg", ".flv", ".m4v", ".ts", ".3gp", ".wmv"}
_CLIP_STEM = re.compile(r"^(?P<id>.+)_(?P<start>\d+(?:\.\d+)?)_(?P<end>\d+(?:\.\d+)?)$")


@dataclass
class MediaListing:
    paths: list[str] = field(default_factory=list)              # media files, in walk order
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (folder, why) not listed


def scan_media(root: str, exts: set[str] = VIDEO_EXTS) -> MediaListing:
    """Media files under `root` in a deterministic order, and the folders that could not be read.

    Walk order: a folder's files (sorted by name), then its sub-folders (sorted), depth first.
    Hidden files and folders (a leading dot) are skipped. A symlinked folder that points
    outside `root` is followed (its files are listed under the link's path); one that points
    inside `root` (an alias, or a loop back up) is not, as its files are listed at their real
    place; a folder reached twice (two links to one outside folder) is read at its first place
    only. A folder that cannot be listed (no permission, I/O error) is reported in
    `unreadable` instead of vanishing; the root itself raises its OSError."""
    listing, seen = MediaListing(), set()
    real_root = os.path.realpath(root)
    stack = [root]
    while stack:
        folder = stack.pop()
        subdirs = _scan_folder(folder, exts, listing, seen, folder == root, real_root)
        stack.extend(reversed(subdirs))
    return listing


def _scan_folder(folder: str, exts: set[str], listing: MediaListing, seen: set, is_root: bool,
                 real_root: str) -> list[str]:
    """Add one folder's media files to `listing`; returns its sub-folders to visit."""
    try:
        st = os.stat(folder)
        if (st.st_dev, st.st_ino) in seen:
            return []
        seen.add((st.st_dev, st.st_ino))
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        if is_root:
            raise
        listing.unreadable.append((folder, exc.strerror or str(exc)))
        return []
    subdirs = []
    for entry in entries:
        if is_hidden(entry.name):
            continue
        if _is_dir(entry):
            if not (entry.is_symlink() and _is_inside(os.path.realpath(entry.path), real_root)):
                subdirs.append(entry.path)
        elif os.path.splitext(entry.name)[1].lower() in exts:
            listing.paths.append(entry.path)
    return subdirs


def _is_inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()       # follows symlinks
    except OSError:
        return False


def list_media(root: str, exts: set[str] = VIDEO_EXTS) -> list[str]:
    """The media files of `scan_media` (its unreadable folders are dropped: a recipe that
    lists files itself should use scan_media and record them)."""
    return scan_media(root, exts).paths


def parse_clip_stem(stem: str) -> tuple[str, float, float] | None:
    """`<id>_<start>_<end>` -> (id, start, end); None for other names."""
    m = _CLIP_STEM.match(stem)
    return (m.group("id"), float(m.group("start")), float(m.group("end"))) if m else None


class MediaIndex:
    """Looks up a row's file: a pre-cut `<id>_<start>_<end>` clip, else a whole `<id>` file."""

    def __init__(self, root: str):
        self.clips: dict[tuple[str, float, float], str] = {}
        self.whole: dict[str, str] = {}
        listing = scan_media(root)
        self.unreadable = listing.unreadable     # (folder, why): their files end as `missing` rows
        for path in listing.paths:
            stem = unicodedata.normalize("NFC", os.path.splitext(os.path.basename(path))[0])
            parsed = parse_clip_stem(stem)
            if parsed:
                vid, s, e = parsed
                self.clips.setdefault((vid, round(s, 2), round(e, 2)), path)
            self.whole.setdefault(stem, path)

    def find(self, vid: str, start: float, end: float) -> tuple[str | None, bool]:
        """(path, needs_cut): a pre-cut clip needs no cut; a whole file is cut to [start, end].
        Names match in either Unicode normal form (stems are keyed in NFC)."""
        vid = unicodedata.normalize("NFC", vid)
        clip = self.clips.get((vid, round(start, 2), round(end, 2)))
        if clip:
            return clip, False
        whole = self.whole.get(vid)
        return (whole, True) if whole else (None, False)


# ---- inputs named by list files ----------------------------------------------------------
# A listed name is matched to the file on disk case-insensitively (UCF101's
# `HandstandPushups/v_HandStandPushups_...` quirk) and in either Unicode normal form
# (`rel_key`; the file is opened by its own name); a listed name without a file is a
# `missing` item; a file that no list names is an `unlisted` failure, so it shows in
# failures.csv instead of vanishing.

UNLISTED = "unlisted"


def find_list_folder(root: str, given: str | None, folder_name: str, holds: Callable[[str], bool],
                     what: str, option: str = "--splits") -> str:
    """The folder of list files: `given`, else `folder_name` inside or beside `root`.

    `holds(name)` is true for a file name such a folder holds (`what` names it for the user);
    ConfigError (one line saying what to pass) when there is no such folder."""
    if given is not None:
        if not os.path.isdir(given):
            raise ConfigError(f"{option} {given} is not a folder: give the {folder_name}/ folder")
        if not _holds(given, holds):
            raise ConfigError(f"{option} {given} holds no {what}: give the {folder_name}/ folder")
        return given
    parent = os.path.dirname(os.path.abspath(root))
    for candidate in (os.path.join(root, folder_name), os.path.join(parent, folder_name)):
        if os.path.isdir(candidate) and _holds(candidate, holds):
            return candidate
    raise ConfigError(f"no {folder_name}/ folder (with {what}) in or beside {root}: pass {option} {folder_name}/")


def _holds(folder: str, holds: Callable[[str], bool]) -> bool:
    try:
        return any(holds(name) for name in os.listdir(folder))
    except OSError:
        return False


def open_text(path: str) -> io.StringIO:
    """A corpus's CSV or JSON file, decoded as UTF-8 (a BOM dropped), for csv/json readers;
    a file that is not text is a ConfigError naming it (not a bare codec error)."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return io.StringIO(data.decode("utf-8-sig"), newline="")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path} is not a UTF-8 text file (byte {e.start} is not text): give the "
                          "corpus's own file") from None


def read_lines(path: str) -> list[tuple[int, list[str]]]:
    """(line number, whitespace-split fields) of the non-blank lines of a list file."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return [(n, line.split()) for n, line in enumerate(f, 1) if line.strip()]


def files_by_name(root: str, source: str, exts: set[str] = VIDEO_EXTS) -> tuple[dict[str, str], list[SourceItem]]:
    """{rel_key of the path relative to `root`: path} of the media files under
    `root`, and one `unreadable` failure per folder that could not be listed."""
    listing = scan_media(root, exts)
    found: dict[str, str] = {}
    for path in listing.paths:
        found.setdefault(rel_key(os.path.relpath(path, root)), path)
    return found, [unreadable_item(root, folder, why, source) for folder, why in listing.unreadable]


def rel_key(rel: str) -> str:
    """How listed names and files are matched: '/' separators, Unicode NFC (a list's `é` is
    one code point, macOS writes `e` + a combining accent on disk), lower case."""
    return unicodedata.normalize("NFC", rel.replace(os.sep, "/")).lower()


def on_disk(folder: str, rel: str) -> str:
    """`folder`/`rel` ('/'-separated) as the disk spells it: a part that is not there as
    written is found among its folder's names by Unicode NFC form (a list in NFC, files that
    macOS wrote in NFD); the path as written when nothing matches."""
    path = folder
    for part in rel.split("/"):
        written = os.path.join(path, part)
        path = written if part.isascii() or os.path.lexists(written) else _same_name(path, part) or written
    return path


def _same_name(folder: str, name: str) -> str | None:
    key = unicodedata.normalize("NFC", name)
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return None
    return next((os.path.join(folder, n) for n in names if unicodedata.normalize("NFC", n) == key), None)


def unlisted_item(root: str, path: str, source: str, lists: str) -> SourceItem:
    """A file that no list names: recorded as a failure with reason `unlisted`, not built."""
    rel = os.path.relpath(path, root).replace(os.sep, "/")
    return SourceItem(path=path, source=source, item_id=os.path.splitext(rel)[0],
                      failed=(UNLISTED, f"no list in {lists} names this file; not built"))


def unreadable_item(root: str, folder: str, why: str, source: str) -> SourceItem:
    rel = os.path.relpath(folder, root).replace(os.sep, "/")
    return SourceItem(path=folder, source=source, item_id=rel + "/",
                      failed=("unreadable", f"folder cannot be listed ({why}); its files are not in this build"))
