"""Finding ffmpeg and reading a file's streams.

ffprobe is not always available (the imageio-ffmpeg wheel ships ffmpeg only), so the
probe parses `ffmpeg -hide_banner -i FILE`, which every ffmpeg build prints.
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass, field
from fractions import Fraction

from avprep.fsio import local_path


class MediaError(Exception):
    """A file that cannot be used; `reason` is the short outcome code stored as data."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """ffmpeg on PATH (or $AVPREP_FFMPEG), else the binary the imageio-ffmpeg wheel ships."""
    env = os.environ.get("AVPREP_FFMPEG")
    if env:
        return env
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg
    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass(frozen=True)
class VideoStream:
    width: int
    height: int
    sar: Fraction            # sample aspect ratio (pixel width / height)
    rotation: int            # degrees the player rotates the picture (0, 90, 180, 270)
    fps: float | None
    codec: str
    start: float | None

    @property
    def display_size(self) -> tuple[int, int]:
        """Width, height as shown: SAR applied, then rotation."""
        w = int(round(self.width * self.sar))
        h = self.height
        return (h, w) if self.rotation in (90, 270) else (w, h)


@dataclass(frozen=True)
class AudioStream:
    sample_rate: int
    channels: str
    codec: str
    start: float | None


@dataclass(frozen=True)
class MediaInfo:
    path: str
    duration: float | None
    start: float
    video: VideoStream | None
    audio: AudioStream | None
    extra_streams: list[str] = field(default_factory=list)


_DURATION = re.compile(r"Duration: (N/A|(\d+):(\d+):(\d+(?:\.\d+)?))(?:, start: (-?\d+(?:\.\d+)?))?")
_STREAM = re.compile(r"Stream #\d+:\d+(?:\[\w+\])?(?:\(\w+\))?: (Video|Audio|Data|Subtitle|Attachment): (.*)")
_SIZE = re.compile(r"(?<![\w.])(\d{2,5})x(\d{2,5})(?![\w.])")
_SAR = re.compile(r"SAR (\d+):(\d+)")
_FPS = re.compile(r"(\d+(?:\.\d+)?) fps")
_START = re.compile(r"start (-?\d+(?:\.\d+)?)")
_HZ = re.compile(r"(\d+) Hz, ([^,]+)")
_ROT = re.compile(r"rotation of (-?\d+(?:\.\d+)?) degrees")


def check_file(path: str) -> None:
    """MediaError for a file that is not there (missing; a dangling symlink says where it
    points), cannot be reached (unreadable: a symlink loop), is no regular file (unreadable:
    a FIFO, whose open would wait for a writer forever, a device, a socket), has no bytes or
    a name that is not UTF-8 (unreadable)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise MediaError("missing", f"{path} is a symlink to {os.readlink(path)}, which is not there") from None
        raise MediaError("missing", f"no such file: {path}") from None
    except OSError as e:                    # ELOOP (a symlink loop), EACCES on a folder, ENAMETOOLONG
        raise MediaError("unreadable", f"cannot reach {path}: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise MediaError("unreadable", f"{path} is {_file_kind(st.st_mode)}, not a regular file; not read")
    if st.st_size == 0:
        raise MediaError("empty", "file has zero bytes")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:              # bytes that are not UTF-8, held as surrogates
        raise MediaError("unreadable", "its path is not UTF-8 text, which ffmpeg-python cannot pass to ffmpeg; "
                                       "rename the file (or its folder)") from None


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return kind
    return "a special file"


def probe(path: str) -> MediaInfo:
    """Streams of `path`; raises MediaError(missing/empty/unreadable/corrupt)."""
    check_file(path)
    try:
        proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", local_path(path)],
                              capture_output=True, timeout=60)
    except subprocess.TimeoutExpired as e:
        raise MediaError("unreadable", "ffmpeg probe timed out") from e
    text = proc.stderr.decode("utf-8", "replace")
    return parse_probe(path, text)


def parse_probe(path: str, text: str) -> MediaInfo:
    if "Input #0" not in text:
        last = text.strip().splitlines()[-1] if text.strip() else "ffmpeg printed nothing"
        reason = "corrupt" if "Invalid data" in text or "moov atom" in text else "unreadable"
        raise MediaError(reason, last)
    duration, start = None, 0.0
    m = _DURATION.search(text)
    if m:
        if m.group(2):
            duration = int(m.group(2)) * 3600 + int(m.group(3)) * 60 + float(m.group(4))
        if m.group(5):
            start = float(m.group(5))
    video = audio = None
    extra: list[str] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        s = _STREAM.search(line)
        if not s:
            continue
        kind, desc = s.groups()
        st = _START.search(desc)
        st_val = float(st.group(1)) if st else None
        codec = desc.split(",")[0].split()[0] if desc else "?"
        if kind == "Video" and video is None and "attached pic" not in desc:
            video = _parse_video(desc, codec, st_val, lines[i + 1:i + 12])
        elif kind == "Audio" and audio is None:
            hz = _HZ.search(desc)
            audio = AudioStream(int(hz.group(1)) if hz else 0, hz.group(2).strip() if hz else "?", codec, st_val)
        else:
            extra.append(f"{kind}: {codec}")
    return MediaInfo(path, duration, start, video, audio, extra)


def _parse_video(desc: str, codec: str, start: float | None, following: list[str]) -> VideoStream:
    size = _SIZE.search(desc)
    w, h = (int(size.group(1)), int(size.group(2))) if size else (0, 0)
    sar_m = _SAR.search(desc)
    sar = Fraction(int(sar_m.group(1)), int(sar_m.group(2))) if sar_m and int(sar_m.group(2)) else Fraction(1)
    if sar <= 0:
        sar = Fraction(1)
    fps_m = _FPS.search(desc)
    rotation = 0
    for line in following:
        if _STREAM.search(line):
            break
        r = _ROT.search(line)
        if r:
            rotation = int(round(float(r.group(1)))) % 360
            rotation = (360 - rotation) % 360  # ffmpeg prints the display matrix angle (counter-clockwise)
            break
    return VideoStream(w, h, sar, rotation, float(fps_m.group(1)) if fps_m else None, codec, start)
