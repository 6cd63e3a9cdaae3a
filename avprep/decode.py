"""Streaming decode of video frames and audio samples on one clock.

Both come from ffmpeg (driven through ffmpeg-python, run with argument lists). ffmpeg
shifts every stream by the file's start time, so video and audio share its clock:
- video passes the `fps` filter (round=up), whose output frame n is the source frame on
  screen at time n/fps. Its output is constant-rate (it duplicates or drops frames to fill
  every tick), so frame numbers run on by one from the first frame's; `showinfo` reports
  that one's pts, on a branch of the graph that ends after one frame (a `showinfo` on every
  frame was ~1000 writes to stderr for a 29-frame clip, each a reader thread's wake-up);
- audio is resampled to 16 kHz mono and padded with silence up to time 0
  (`aresample=first_pts=0`), so sample s sits at s/sample_rate.

`open_source` decodes an input with one ffmpeg process: the input dump it prints is the
probe, video comes through stdout and audio through a second pipe (see `Source`).
`iter_frames` and `AudioReader` decode one stream each, in a process of their own.
"""
from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterator

import ffmpeg
import numpy as np

from avprep.probe import MediaError, MediaInfo, check_file, ffmpeg_exe, local_path, parse_probe, probe

_PTS = re.compile(r"\bn:\s*(\d+)\s+pts:\s*(-?\d+)\s+pts_time:(-?[\d.]+)")
# the input dump (all a probe prints) ends where ffmpeg starts describing its outputs
_HEADER_END = ("Stream mapping:", "Output #", "Press [q]")
_HEADER_MAX_LINES = 2000    # a process that never ends its dump (errors only) keeps no more
HEADER_TIMEOUT_S = 60.0     # the probe's limit
# Largest raw video (bytes) that one process decodes together with the audio. Its audio pipe
# is drained into memory, and video is read ahead into memory while audio is awaited, so a
# badly interleaved input may hold all of it; larger inputs get a process per stream.
ONE_PROCESS_MAX_BYTES = 256 << 20


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
    """Drains a process's stderr; keeps the input dump, showinfo frame pts and the last lines."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream = stream
        self.pts: deque[int] = deque()
        self.tail: deque[str] = deque(maxlen=20)
        self.header: list[str] = []     # lines up to the end of the input dump
        self.header_done = False
        self.ready = threading.Condition()
        self.done = False
        self.timed_out = False
        self.timer: threading.Timer | None = None

    def run(self) -> None:
        pending = b""
        # whole reads split into lines (iterating an unbuffered pipe reads one byte per call)
        try:
            while chunk := self.stream.read(1 << 16):
                *lines, pending = (pending + chunk).split(b"\n")
                self._take(lines)
        except (OSError, ValueError):   # closed under us (a process that would not end)
            pass
        self._take([pending] if pending else [])
        with self.ready:
            self.done = self.header_done = True
            self.ready.notify_all()

    def _take(self, raws: list[bytes]) -> None:
        lines = [raw.decode("utf-8", "replace").rstrip() for raw in raws]
        with self.ready:
            for line in lines:
                if not self.header_done:
                    self.header_done = line.startswith(_HEADER_END) or len(self.header) >= _HEADER_MAX_LINES
                    if not self.header_done:
                        self.header.append(line)
                m = _PTS.search(line)
                if m:
                    self.pts.append(int(m.group(2)))
                else:
                    self.tail.append(line)
            self.ready.notify_all()

    def next_pts(self, timeout: float = 60.0) -> int | None:
        with self.ready:
            self.ready.wait_for(lambda: self.pts or self.done, timeout=timeout)
            return self.pts.popleft() if self.pts else None

    def header_text(self, timeout: float) -> str | None:
        """The input dump (None if it did not end within `timeout` seconds)."""
        with self.ready:
            if not self.ready.wait_for(lambda: self.header_done, timeout=timeout):
                return None
            return "\n".join(self.header)

    def message(self) -> str:
        lines = [t for t in self.tail if t.strip()]
        return " | ".join(lines[-3:]) or "ffmpeg failed"


def _start(args: list[str], deadline: float | None = None,
           pass_fds: tuple[int, ...] = ()) -> tuple[subprocess.Popen, _StderrReader]:
    """Start ffmpeg; past `deadline` (time.monotonic()) a watchdog kills it."""
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            bufsize=0, pass_fds=pass_fds)
    reader = _StderrReader(proc.stderr)
    reader.start()
    if deadline is not None:
        _arm(proc, reader, deadline)
    return proc, reader


def _arm(proc: subprocess.Popen, reader: _StderrReader, deadline: float) -> None:
    reader.timer = threading.Timer(max(0.0, deadline - time.monotonic()), _expire, (proc, reader))
    reader.timer.daemon = True
    reader.timer.start()


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
    return ffmpeg.input(local_path(path), **opts)      # `x:a.mp4` is a file, not a protocol


def _video_outputs(inp, fps: float, geometry: FrameGeometry, target: str = "pipe:") -> list:
    """The frames, as raw RGB to `target`, and the first frame's number (`showinfo` on a
    branch that ends after one frame, into the null muxer)."""
    # round=up: output frame n is the source frame on screen at time n/fps (latest pts <= n/fps)
    stream = inp.video.filter("fps", fps=fps, round="up")
    for name, kwargs in geometry.filters:
        stream = stream.filter(name, **kwargs)
    branches = stream.split()
    # side data dropped on this branch: showinfo writes an encoder's SEI (x264's options)
    # one byte per write; no per-plane checksums
    first = branches[1].trim(end_frame=1).filter("sidedata", mode="delete").filter("showinfo", checksum=0)
    return [ffmpeg.output(branches[0], target, format="rawvideo", pix_fmt="rgb24", fps_mode="passthrough",
                          an=None, sn=None),
            ffmpeg.output(first, "-", format="null")]


def _audio_output(inp, sample_rate: int, target: str = "pipe:"):
    stream = inp.audio.filter("aresample", sample_rate, first_pts=0)
    return ffmpeg.output(stream, target, format="f32le", ac=1, ar=sample_rate, acodec="pcm_f32le",
                         vn=None, sn=None)


def _compile(out, loglevel: str) -> list[str]:
    """ffmpeg-python builds the argument list (never a shell string)."""
    return out.global_args("-hide_banner", "-nostdin", "-nostats", "-loglevel", loglevel).compile(cmd=ffmpeg_exe())


class _VideoPipe:
    """Raw RGB frames of a running ffmpeg, numbered on from the first one's (showinfo's)."""

    def __init__(self, proc: subprocess.Popen, reader: _StderrReader, geometry: FrameGeometry):
        self.proc, self.reader, self.geometry = proc, reader, geometry
        self.ended = False
        self.number: int | None = None      # of the next frame

    def next(self) -> tuple[int, np.ndarray] | None:
        """The next (frame number, frame), or None at the end of the stream."""
        g = self.geometry
        frame = np.empty((g.height, g.width, 3), np.uint8)
        if self.ended or not _read_into(self.proc.stdout, frame):
            self.ended = True
            return None
        if self.number is None:
            self.number = self.reader.next_pts()
            if self.number is None:
                _check_exit(self.proc.wait(), self.reader, "")
                raise MediaError("decode_error", "frame without a timestamp from ffmpeg")
        self.number += 1
        return self.number - 1, frame

    def finish(self) -> None:
        """After the last frame: wait for ffmpeg and raise if it failed or timed out."""
        rc = self.proc.wait()
        self.reader.join(timeout=10)
        _check_exit(rc, self.reader, "")


def iter_frames(path: str, info: MediaInfo, fps: float, geometry: FrameGeometry,
                cut_start: float | None = None, cut_end: float | None = None,
                threads: int = 1, deadline: float | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (global frame number, HxWx3 uint8 RGB frame), streaming, one frame in memory."""
    args = _compile(ffmpeg.merge_outputs(*_video_outputs(_input(path, cut_start, cut_end, threads), fps, geometry)),
                    "info")
    proc, reader = _start(args, deadline)
    pipe = _VideoPipe(proc, reader, geometry)
    try:
        while (frame := pipe.next()) is not None:
            yield frame
        pipe.finish()
    finally:
        _stop(proc, reader)


def _read_into(pipe, array: np.ndarray) -> bool:
    """Fill `array` from the pipe; False at the end (a trailing partial frame is dropped)."""
    view = memoryview(array).cast("B")
    got = 0
    while got < len(view):
        n = pipe.readinto(view[got:])
        if not n:
            return False
        got += n
    return True


def _stop(proc: subprocess.Popen, reader: _StderrReader) -> None:
    if reader.timer is not None:
        reader.timer.cancel()
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    if proc.stdout:
        proc.stdout.close()
    reader.join(timeout=5)          # the process is gone: its stderr ends; then close it
    if proc.stderr:
        proc.stderr.close()


class SampleBuffer:
    """Mono float32 samples from a byte stream; sample s sits at s/sample_rate.

    `read(a, b)` returns samples [a, b) (a may be < 0: zeros); positions must not go
    back before an earlier `discard_before` call. Memory stays bounded by the request.
    `read_bytes(n)` gives up to n bytes (b"" at the end); `at_end()` runs once at the end
    and raises if the stream's producer failed.
    """

    def __init__(self, read_bytes: Callable[[int], bytes], at_end: Callable[[], None]):
        self._read_bytes, self._at_end = read_bytes, at_end
        self.base = 0                       # sample index of self.buf[0]
        self.buf = np.zeros(0, np.float32)
        self.eof = False

    def _fill(self, end: int) -> None:
        parts = [self.buf]
        have = self.base + self.buf.size
        while have < end and not self.eof:
            chunk = self._read_bytes(max(4 * (end - have), 65536))
            if not chunk:
                self.eof = True
                self._at_end()
                break
            usable = len(chunk) - len(chunk) % 4
            if usable != len(chunk):   # keep byte alignment across reads
                chunk += self._read_bytes(4 - len(chunk) % 4) or b""
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
        """Nothing to stop here; the owner of the producing process stops it."""


class AudioReader(SampleBuffer):
    """SampleBuffer over a process of its own that decodes only the audio."""

    def __init__(self, path: str, sample_rate: int, cut_start: float | None = None,
                 cut_end: float | None = None, threads: int = 1, deadline: float | None = None):
        out = _audio_output(_input(path, cut_start, cut_end, threads), sample_rate)
        self.proc, self.reader = _start(_compile(out, "error"), deadline)
        super().__init__(self.proc.stdout.read, self._exited)

    def _exited(self) -> None:
        _check_exit(self.proc.wait(), self.reader, "audio: ")

    def close(self) -> None:
        _stop(self.proc, self.reader)


class _Pump(threading.Thread):
    """Drains a pipe into memory, so the process writing it never waits for its reader."""

    def __init__(self, fd: int):
        super().__init__(daemon=True)
        self.file = os.fdopen(fd, "rb", buffering=0)
        self.chunks: deque[bytes] = deque()
        self.eof = False
        self.ready = threading.Condition()

    def run(self) -> None:
        try:
            while chunk := self.file.read(1 << 16):
                with self.ready:
                    self.chunks.append(chunk)
                    self.ready.notify_all()
        except (OSError, ValueError):       # closed under us by close()
            pass
        with self.ready:
            self.eof = True
            self.ready.notify_all()

    def take(self, n: int, wait: float) -> bytes | None:
        """Up to n bytes; b"" at the end; None when nothing came within `wait` seconds."""
        with self.ready:
            if not self.ready.wait_for(lambda: self.chunks or self.eof, timeout=wait):
                return None
            if not self.chunks:
                return b""
            parts, got = [], 0
            while self.chunks and got < n:
                chunk = self.chunks.popleft()
                if got + len(chunk) > n:
                    self.chunks.appendleft(chunk[n - got:])
                    chunk = chunk[:n - got]
                parts.append(chunk)
                got += len(chunk)
            return b"".join(parts)

    def close(self) -> None:
        self.file.close()


@dataclass(frozen=True)
class DecodeSpec:
    """What `open_source` decodes: frames at `fps` (geometry from short_side/square), audio
    at `sample_rate`, optionally only [cut_start, cut_end] of the input."""
    fps: float
    short_side: int
    square: bool
    sample_rate: int
    require_audio: bool = True          # no process is started for an input without audio
    cut_start: float | None = None
    cut_end: float | None = None
    threads: int = 1
    timeout_base_s: float = 120.0       # watchdog: base + per_s x the decoded span's seconds
    timeout_per_s: float = 3.0


@dataclass(frozen=True)
class _Layout:
    geometry: FrameGeometry
    audio: bool                         # the input has an audio stream


# The layout of the last input this process opened, per (short_side, square): a corpus's
# inputs mostly share one (LRW: 256x256 with audio), so the next input starts decoding on
# that guess; its own header confirms it, or the process is restarted with the right one.
_last_layout: dict[tuple[int, bool], _Layout] = {}


_INPUT, _AUDIO = "input.placeholder", "pipe:audio.placeholder"    # filled in by position
_templates: dict[tuple, tuple[tuple[str, ...], int, int | None]] = {}


def _source_args(path: str, spec: DecodeSpec, geometry: FrameGeometry, audio_fd: int | None = None) -> list[str]:
    """The argument list of a Source's process: frames of `path` to stdout, and its audio to
    pipe `audio_fd` when given. ffmpeg-python builds it once per spec and geometry (1 ms a
    time, most of a short clip's Python-side start); each input then only fills in its path
    and pipe, by position, so no path can be mistaken for a placeholder."""
    key = (spec.cut_start, spec.cut_end, spec.threads, spec.fps, spec.sample_rate, geometry.width,
           geometry.height, repr(geometry.filters), audio_fd is not None)
    if key not in _templates:
        inp = _input(_INPUT, spec.cut_start, spec.cut_end, spec.threads)
        outputs = _video_outputs(inp, spec.fps, geometry)
        if audio_fd is not None:
            outputs.insert(1, _audio_output(inp, spec.sample_rate, _AUDIO))
        args = _compile(ffmpeg.merge_outputs(*outputs), "info")
        if len(_templates) >= 64:       # cut inputs each have their own times: keep it bounded
            _templates.clear()
        _templates[key] = (tuple(args), args.index(_INPUT), args.index(_AUDIO) if audio_fd is not None else None)
    template, at_input, at_audio = _templates[key]
    args = list(template)
    args[at_input] = local_path(path)      # `x:a.mp4` is a file, not a protocol
    if at_audio is not None:
        args[at_audio] = f"pipe:{audio_fd}"
    return args


class Source:
    """One input decoding: `info` (parsed from ffmpeg's own input dump, so there is no
    separate probe), `geometry`, `frames()` and `audio` (a SampleBuffer, or None).

    One process decodes both streams: frames come through stdout, audio through a second
    pipe that a thread drains. When the reader waits for audio that ffmpeg has not produced
    yet (audio that sits later in the file), frames are read ahead into memory, so ffmpeg
    never blocks on a full pipe: no deadlock on badly interleaved files. Inputs whose raw
    video would exceed ONE_PROCESS_MAX_BYTES get one process per stream instead.
    """

    def __init__(self, path: str, spec: DecodeSpec, info: MediaInfo | None = None):
        self.path, self.spec = path, spec
        self.info = info
        self.geometry: FrameGeometry | None = None
        self.audio: SampleBuffer | None = None
        self._proc: subprocess.Popen | None = None
        self._reader: _StderrReader | None = None
        self._video: _VideoPipe | None = None
        self._pump: _Pump | None = None
        self._ahead: deque[tuple[int, np.ndarray]] = deque()

    # ------------------------------------------------------------ opening

    def open(self) -> Source:
        started = time.monotonic()
        key = (self.spec.short_side, self.spec.square)
        launched = None
        if self.info is None:
            check_file(self.path)
            guess = _last_layout.get(key)
            if guess is None:
                self.info = probe(self.path)        # the first input of this process
            else:
                launched = (guess, guess.audio)
                self._launch(*launched)
                self.info = self._header()
        layout = self._layout_of(self.info)
        if layout is None:                      # nothing to decode here: the caller reports why
            self.close()
            return self
        _last_layout[key] = layout
        one = layout.audio and self._fits_one_process(layout.geometry)
        if launched != (layout, one):
            self.close()
            self._launch(layout, one)
        if layout.audio and not one:
            self.audio = AudioReader(self.path, self.spec.sample_rate, self.spec.cut_start, self.spec.cut_end,
                                     self.spec.threads)
        self._arm_all(started + self.spec.timeout_base_s + self.spec.timeout_per_s * (self._span() or 0.0))
        return self

    def _layout_of(self, info: MediaInfo) -> _Layout | None:
        """What to decode; None when the input has no video, or no audio that is required."""
        if info.video is None or info.audio is None and self.spec.require_audio:
            return None
        return _Layout(frame_geometry(info, self.spec.short_side, self.spec.square), info.audio is not None)

    def _span(self) -> float | None:
        s = self.spec
        if s.cut_start is not None and s.cut_end is not None:
            return s.cut_end - s.cut_start
        return self.info.duration if self.info else None

    def _fits_one_process(self, g: FrameGeometry) -> bool:
        span = self._span()
        return span is not None and span * self.spec.fps * g.width * g.height * 3 <= ONE_PROCESS_MAX_BYTES

    def _launch(self, layout: _Layout, one_process: bool) -> None:
        if not one_process:
            self._proc, self._reader = _start(_source_args(self.path, self.spec, layout.geometry))
        else:
            rfd, wfd = os.pipe()
            try:
                args = _source_args(self.path, self.spec, layout.geometry, audio_fd=wfd)
                self._proc, self._reader = _start(args, pass_fds=(wfd,))
            except BaseException:
                os.close(rfd)
                raise
            finally:
                os.close(wfd)
            self._pump = _Pump(rfd)
            self._pump.start()
            self.audio = SampleBuffer(self._audio_bytes, self._audio_ended)
        self._video = _VideoPipe(self._proc, self._reader, layout.geometry)
        self.geometry = layout.geometry

    def _header(self) -> MediaInfo:
        text = self._reader.header_text(HEADER_TIMEOUT_S)
        if text is None:
            self.close()
            raise MediaError("unreadable", "ffmpeg probe timed out")
        try:
            return parse_probe(self.path, text)
        except MediaError:
            self.close()
            raise

    def _arm_all(self, deadline: float) -> None:
        if self._proc is not None:
            _arm(self._proc, self._reader, deadline)
        if isinstance(self.audio, AudioReader):
            _arm(self.audio.proc, self.audio.reader, deadline)

    # ------------------------------------------------------------ reading

    def frames(self) -> Iterator[tuple[int, np.ndarray]]:
        """(global frame number, HxWx3 uint8 RGB frame), in order; raises MediaError at the
        end if ffmpeg failed or ran past its time limit."""
        while True:
            frame = self._ahead.popleft() if self._ahead else self._video.next()
            if frame is None:
                break
            yield frame
        self._video.finish()

    def _audio_bytes(self, n: int) -> bytes:
        while True:
            data = self._pump.take(n, wait=0.0 if not self._video.ended else 1.0)
            if data is not None:
                return data
            if not self._video.ended:               # audio comes later in the file: take
                frame = self._video.next()          # the frame ffmpeg is waiting to write
                if frame is not None:
                    self._ahead.append(frame)

    def _audio_ended(self) -> None:
        """The audio pipe closed: once the video is in, ffmpeg's exit status says how it went."""
        while (frame := self._video.next()) is not None:
            self._ahead.append(frame)
        rc = self._proc.wait()
        _check_exit(rc, self._reader, "audio: ")

    # ------------------------------------------------------------ closing

    def close(self) -> None:
        if self._proc is not None:
            _stop(self._proc, self._reader)
        if self._pump is not None:
            self._pump.close()
            self._pump.join(timeout=5)
        if self.audio is not None:
            self.audio.close()
        self._proc = self._reader = self._video = self._pump = self.audio = self.geometry = None
        self._ahead.clear()


def open_source(path: str, spec: DecodeSpec, info: MediaInfo | None = None) -> Source:
    """Start decoding `path` (see Source). Raises MediaError for inputs ffmpeg cannot read
    (missing, empty, corrupt, unreadable, timeout). `source.info` says what the input holds;
    when it has no video, or no audio and audio is required, nothing is decoded
    (`source.audio` and `source.geometry` are None) and the caller reports why."""
    return Source(path, spec, info).open()
