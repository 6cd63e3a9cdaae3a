"""Raw frame decoding with ffmpeg, for the face tests, tools and benchmark.

The pipeline decodes with avprep's own decoder; this helper only exists so the face stage
can be checked and timed on real files at their native frame rate.
"""
from __future__ import annotations

import subprocess

import numpy as np

from avprep.probe import MediaError, ffmpeg_exe, local_path, probe


def read_frames(path: str, grey: bool = False, max_frames: int | None = None,
                threads: int = 1) -> tuple[np.ndarray, float]:
    """All frames of `path` at native rate: (T,H,W,3) RGB or (T,H,W) grey uint8, and the fps."""
    info = probe(path)
    if info.video is None:
        raise MediaError("no_video", f"no video stream in {path}")
    w, h = info.video.width, info.video.height
    pix_fmt, channels = ("gray", 1) if grey else ("rgb24", 3)
    args = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin",
            "-threads", str(threads), "-i", local_path(path), "-map", "0:v:0"]
    if max_frames is not None:
        args += ["-frames:v", str(max_frames)]
    args += ["-f", "rawvideo", "-pix_fmt", pix_fmt, "-fps_mode", "passthrough", "pipe:"]
    proc = subprocess.run(args, capture_output=True)
    if proc.returncode != 0:
        raise MediaError("unreadable", proc.stderr.decode("utf-8", "replace")[-300:])
    frame_bytes = w * h * channels
    n = len(proc.stdout) // frame_bytes
    data = np.frombuffer(proc.stdout, dtype=np.uint8, count=n * frame_bytes)
    shape = (n, h, w) if grey else (n, h, w, 3)
    return data.reshape(shape), float(info.video.fps or 25.0)
