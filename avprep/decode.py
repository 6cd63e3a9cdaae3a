"""Streaming decode of video frames and audio samples on one clock.

Both come from ffmpeg (driven through ffmpeg-python, run with argument lists). ffmpeg
shifts every stream by the file's start time, so video and audio share its clock:
- video passes the `fps` filter (round=up), whose output frame n is the source frame on
  screen at time n/fps; `showinfo` after it reports each frame's pts, which gives the
  global frame number of every frame read;
- audio is resampled to 16 kHz mono and padded with silence up to time 0
  (`aresample=first_pts=0`), so sample s sits at s/sample_rate.
"""
from __future__ import annotations

import re
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Iterator

import ffmpeg
import numpy as np

from avprep.probe import MediaError, MediaInfo, ffmpeg_exe

_PTS = re.compile(r"\bn:\s*(\d+)\s+pts:\s*(-?\d+)\s+pts_time:(-?[\d.]+)")


@dataclass(frozen=True)
class FrameGeometry:
    width: int
    height: int
    filters: tuple[tuple[str, dict], ...]   # ffmpeg filters after fps, in order


def frame_geometry(info: MediaInfo, short_side: int, square: bool) -> FrameGeometry:
    """Output size and scaling filters: SAR applied, rotation honoured (ffmpeg autorotates).

    short_side == 0 keeps the display size (only SAR is squared)."""
    if info.video is None:
        raise MediaError("no_video", "no video stream")
    dw, dh = info.video.display_size
    if dw <= 0 or dh <= 0:
        raise MediaError("unreadable", f"bad video size {dw}x{dh}")
    if short_side == 0:
        w, h = _even(dw), _even(dh)
        return FrameGeometry(w, h, (("scale", {"w": w, "h": h}), ("setsar", {"r": "1"})))
    s = short_side
    if dw >= dh:
        w, h = _even(s * dw / dh), s
    else:
        w, h = s, _even(s * dh / dw)
    filters = [("scale", {"w": w, "h": h, "flags": "area"}), ("setsar", {"r": "1"})]
    if square:
        filters.append(("crop", {"w": s, "h": s}))
        w = h = s
    return FrameGeometry(w, h, tuple(filters))


def _even(x: float) -> int:
    return max(2, int(round(x / 2)) * 2)


class _StderrReader(threading.Thread):
    """Drains a process's stderr; keeps showinfo frame pts and the last lines."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream = stream
        self.pts: deque[int] = deque()
        self.tail: deque[str] = deque(maxlen=20)
        self.ready = threading.Condition()
        self.done = False
        self.timed_out = False
        self.timer: threading.Timer | None = None

    def run(self) -> None:
        for raw in self.stream:
            line = raw.decode("utf-8", "replace").rstrip()
            m = _PTS.search(line)
            with self.ready:
                if m:
                    self.pts.append(int(m.group(2)))
                else:
                    self.tail.append(line)
                self.ready.notify_all()
        with self.ready:
            self.done = True
            self.ready.notify_all()

    def next_pts(self, timeout: float = 60.0) -> int | None:
        with self.ready:
            self.ready.wait_for(lambda: self.pts or self.done, timeout=timeout)
            return self.pts.popleft() if self.pts else None

    def message(self) -> str:
        lines = [t for t in self.tail if t.strip()]
        return " | ".join(lines[-3:]) or "ffmpeg failed"


def _start(args: list[str], deadline: float | None = None) -> tuple[subprocess.Popen, _StderrReader]:
    """Start ffmpeg; past `deadline` (time.monotonic()) a watchdog kills it."""
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            bufsize=0)
    reader = _StderrReader(proc.stderr)
    reader.start()
    if deadline is not None:
        reader.timer = threading.Timer(max(0.0, deadline - time.monotonic()), _expire, (proc, reader))
        reader.timer.daemon = True
        reader.timer.start()
    return proc, reader


def _expire(proc: subprocess.Popen, reader: _StderrReader) -> None:
    reader.timed_out = True
    if proc.poll() is None:
        proc.kill()


def _check_exit(rc: int, reader: _StderrReader, what: str) -> None:
    if reader.timed_out:
        raise MediaError("timeout", f"{what}decoding ran past its time limit; ffmpeg was stopped")
    if rc != 0:
        raise MediaError("decode_error", what + reader.message())


def _input(path: str, cut_start: float | None, cut_end: float | None, threads: int):
    opts = {"threads": threads}
    if cut_start is not None:
        opts["ss"] = f"{cut_start:.6f}"
    if cut_end is not None:
        opts["to"] = f"{cut_end:.6f}"
    return ffmpeg.input(path, **opts)


def iter_frames(path: str, info: MediaInfo, fps: float, geometry: FrameGeometry,
                cut_start: float | None = None, cut_end: float | None = None,
                threads: int = 1, deadline: float | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (global frame number, HxWx3 uint8 RGB frame), streaming, one frame in memory."""
    # round=up: output frame n is the source frame on screen at time n/fps (latest pts <= n/fps)
    stream = _input(path, cut_start, cut_end, threads).video.filter("fps", fps=fps, round="up")
    for name, kwargs in geometry.filters:
        stream = stream.filter(name, **kwargs)
    stream = stream.filter("showinfo")
    out = ffmpeg.output(stream, "pipe:", format="rawvideo", pix_fmt="rgb24", fps_mode="passthrough",
                        an=None, sn=None)
    args = out.global_args("-hide_banner", "-nostdin", "-loglevel", "info").compile(cmd=ffmpeg_exe())
    proc, reader = _start(args, deadline)
    size = geometry.width * geometry.height * 3
    try:
        while True:
            buf = _read_exact(proc.stdout, size)
            if buf is None:
                break
            pts = reader.next_pts()
            if pts is None:
                _check_exit(proc.wait(), reader, "")
                raise MediaError("decode_error", "frame without a timestamp from ffmpeg")
            yield pts, np.frombuffer(buf, np.uint8).reshape(geometry.height, geometry.width, 3)
        rc = proc.wait()
        reader.join(timeout=10)
        _check_exit(rc, reader, "")
    finally:
        _stop(proc, reader)


def _read_exact(pipe, size: int) -> bytes | None:
    chunks, got = [], 0
    while got < size:
        chunk = pipe.read(size - got)
        if not chunk:
            return None  # a trailing partial frame is dropped
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _stop(proc: subprocess.Popen, reader: _StderrReader) -> None:
    if reader.timer is not None:
        reader.timer.cancel()
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for pipe in (proc.stdout, proc.stderr):
        if pipe:
            pipe.close()


class AudioReader:
    """Streams mono float32 samples at `sample_rate`; sample s sits at s/sample_rate.

    `read(a, b)` returns samples [a, b) (a may be < 0: zeros); positions must not go
    back before an earlier `discard_before` call. Memory stays bounded by the request.
    """

    def __init__(self, path: str, sample_rate: int, cut_start: float | None = None,
                 cut_end: float | None = None, threads: int = 1, deadline: float | None = None):
        stream = _input(path, cut_start, cut_end, threads).audio.filter(
            "aresample", sample_rate, first_pts=0)
        out = ffmpeg.output(stream, "pipe:", format="f32le", ac=1, ar=sample_rate, acodec="pcm_f32le",
                            vn=None, sn=None)
        args = out.global_args("-hide_banner", "-nostdin", "-loglevel", "error").compile(cmd=ffmpeg_exe())
        self.proc, self.reader = _start(args, deadline)
        self.base = 0                       # sample index of self.buf[0]
        self.buf = np.zeros(0, np.float32)
        self.eof = False

    def _fill(self, end: int) -> None:
        parts = [self.buf]
        have = self.base + self.buf.size
        while have < end and not self.eof:
            chunk = self.proc.stdout.read(max(4 * (end - have), 65536))
            if not chunk:
                self.eof = True
                _check_exit(self.proc.wait(), self.reader, "audio: ")
                break
            usable = len(chunk) - len(chunk) % 4
            if usable != len(chunk):   # keep byte alignment across reads
                chunk += self.proc.stdout.read(4 - len(chunk) % 4) or b""
                usable = len(chunk) - len(chunk) % 4
            arr = np.frombuffer(chunk[:usable], np.float32)
            parts.append(arr)
            have += arr.size
        self.buf = np.concatenate(parts) if len(parts) > 1 else self.buf

    def available_until(self, end: int) -> int:
        """Number of samples that exist up to `end` (less than `end` when the audio stops)."""
        self._fill(end)
        return min(end, self.base + self.buf.size)

    def read(self, a: int, b: int) -> np.ndarray:
        self._fill(b)
        out = np.zeros(b - a, np.float32)
        lo, hi = max(a, self.base), min(b, self.base + self.buf.size)
        if hi > lo:
            out[lo - a:hi - a] = self.buf[lo - self.base:hi - self.base]
        return out

    def discard_before(self, pos: int) -> None:
        if pos > self.base:
            drop = min(pos - self.base, self.buf.size)
            self.buf = self.buf[drop:].copy()
            self.base += drop

    def close(self) -> None:
        _stop(self.proc, self.reader)
        self.reader.join(timeout=5)
